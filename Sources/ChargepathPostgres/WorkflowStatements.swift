import Foundation
import PostgresNIO

// The statements of every workflow step (`PostgresWorkflowEngine.step`, `record`, `finish`),
// as prepared statements: sent as ordinary queries, PostgreSQL parsed and planned each of them
// for every step, 0.38 ms of a step's ~1 ms of database time when a thousand sessions ended
// together (pg_stat_statements, 2026-11-26). Each runs inside the step's transaction, on its
// connection.

/// The execution of the oldest due inbox event whose execution no other step holds, locked
/// (`FOR NO KEY UPDATE … SKIP LOCKED`, see `PostgresWorkflowEngine.step`); and when that event fell due.
struct StepCandidateStatement: PostgresPreparedStatement {
    static let sql = """
        SELECT e.id, e.workflow, e.state::text, e.status, i.available_at
        FROM workflow_inbox i JOIN workflow_executions e ON e.id = i.execution_id
        WHERE i.available_at <= $1
        ORDER BY i.available_at, i.id
        LIMIT 1
        FOR NO KEY UPDATE OF e SKIP LOCKED
        """
    static let bindingDataTypes: [PostgresDataType] = [.timestamptz]
    typealias Row = (String, String, String, String, Date)

    var now: Date

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(now)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// Takes (deletes and returns) the oldest due event of a locked execution.
struct TakeDueEventStatement: PostgresPreparedStatement {
    static let sql = """
        DELETE FROM workflow_inbox WHERE id = (
            SELECT id FROM workflow_inbox WHERE execution_id = $1 AND available_at <= $2
            ORDER BY available_at, id LIMIT 1
        )
        RETURNING event::text
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .timestamptz]
    typealias Row = String

    var executionID: String
    var now: Date

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 2)
        bindings.append(executionID)
        bindings.append(now)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// A transition's new state and what it waits for, with its history entries (the event, when
/// there is one, and the transition), in their order.
struct RecordTransitionStatement: PostgresPreparedStatement {
    static let sql = """
        WITH execution AS (
            UPDATE workflow_executions SET state = $1::jsonb, waiting_for = $2::jsonb, updated_at = $3
            WHERE id = $4 RETURNING id
        )
        INSERT INTO workflow_history (execution_id, kind, detail, at)
        SELECT execution.id, h.kind, h.detail::jsonb, $3
        FROM execution, unnest($5::text[], $6::text[]) WITH ORDINALITY AS h (kind, detail, n)
        ORDER BY h.n
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .text, .timestamptz, .text, .textArray, .textArray]
    typealias Row = ()

    var state: String
    var waitingFor: String
    var at: Date
    var executionID: String
    var kinds: [String]
    var details: [String]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 6)
        bindings.append(state)
        bindings.append(waitingFor)
        bindings.append(at)
        bindings.append(executionID)
        bindings.append(kinds)
        bindings.append(details)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {}
}

/// Ends an execution: its status and result, its pending timers and unsent calls gone, and its
/// `finished` history entry.
struct FinishExecutionStatement: PostgresPreparedStatement {
    static let sql = """
        WITH execution AS (
            UPDATE workflow_executions SET status = $1, output = $2::jsonb,
                error = $3::jsonb, waiting_for = '[]'::jsonb, finished_at = $4, updated_at = $4
            WHERE id = $5
        ), timers AS (
            DELETE FROM workflow_inbox WHERE execution_id = $5
        ), calls AS (
            UPDATE workflow_outbox SET done_at = $4 WHERE execution_id = $5 AND done_at IS NULL
        )
        INSERT INTO workflow_history (execution_id, kind, detail, at) VALUES ($5, 'finished', $6::jsonb, $4)
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .text, .text, .timestamptz, .text, .text]
    typealias Row = ()

    var status: String
    var output: String?
    var error: String?
    var at: Date
    var executionID: String
    var detail: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 6)
        bindings.append(status)
        bindings.append(output)
        bindings.append(error)
        bindings.append(at)
        bindings.append(executionID)
        bindings.append(detail)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {}
}

/// Claims (deletes and returns) up to `limit` starts that charger messages asked for
/// (`PostgresWorkflowEngine.claimAndStart`); rows another worker holds are passed over.
struct ClaimStartsStatement: PostgresPreparedStatement {
    static let sql = """
        WITH picked AS MATERIALIZED (
            SELECT id FROM workflow_starts ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1
        )
        DELETE FROM workflow_starts s USING picked WHERE s.id = picked.id
        RETURNING s.id, s.execution_id, s.workflow, s.input::text, s.created_at
        """
    static let bindingDataTypes: [PostgresDataType] = [.int8]
    typealias Row = (Int64, String, String, String, Date)

    var limit: Int

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(limit)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// New executions with their history entries (`started`, and the first transition unless it
/// failed at once), skipping those that exist already (the same message, handled twice); returns
/// the ids inserted (`PostgresWorkflowEngine.claimAndStart`). One statement for a whole batch of
/// claimed starts, where there was one per start, each a round trip inside the batch's transaction
/// that waits for a core under load (1,422 of them in 15 s at ~5,000 msg/s: BENCHMARKS.md,
/// 2026-11-27 hand notes).
struct StartExecutionsStatement: PostgresPreparedStatement {
    static let sql = """
        WITH execution AS (
            INSERT INTO workflow_executions (id, workflow, version, charge_point_id, input, state, status, waiting_for, created_at, updated_at)
            SELECT e.id, e.workflow, e.version, nullif(e.charge_point_id, ''), e.input::jsonb, e.state::jsonb, 'RUNNING', e.waiting_for::jsonb, $8, $8
            FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY
                AS e (id, workflow, version, charge_point_id, input, state, waiting_for, n)
            ORDER BY e.n
            ON CONFLICT (id) DO NOTHING RETURNING id
        ),
        history AS (
            INSERT INTO workflow_history (execution_id, kind, detail, at)
            SELECT h.execution_id, h.kind, h.detail::jsonb, $8
            FROM unnest($9::text[], $10::text[], $11::text[]) WITH ORDINALITY AS h (execution_id, kind, detail, n)
            WHERE h.execution_id IN (SELECT id FROM execution)
            ORDER BY h.n
        )
        SELECT id FROM execution
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .textArray, .textArray, .int8Array, .textArray, .textArray, .textArray, .textArray, .timestamptz, .textArray, .textArray, .textArray,
    ]
    typealias Row = String

    /// One new execution: its row and its history entries, in order.
    struct Execution {
        var id: String
        var workflow: String
        var version: Int
        var chargePointID: String?
        var input: String
        var state: String
        var waitingFor: String
        var kinds: [String]
        var details: [String]
    }

    var executions: [Execution]
    var at: Date

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 11)
        bindings.append(executions.map(\.id))
        bindings.append(executions.map(\.workflow))
        bindings.append(executions.map(\.version))
        bindings.append(executions.map { $0.chargePointID ?? "" })  // no charger: NULL (ids are never empty)
        bindings.append(executions.map(\.input))
        bindings.append(executions.map(\.state))
        bindings.append(executions.map(\.waitingFor))
        bindings.append(at)
        bindings.append(executions.flatMap { execution in execution.kinds.map { _ in execution.id } })
        bindings.append(executions.flatMap(\.kinds))
        bindings.append(executions.flatMap(\.details))
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// The running executions of a charger, told when it disconnects (`PostgresWorkflowEngine.chargerDisconnected`):
/// once per closed socket, so a fleet going away (a node's restart) asks it thousands of times.
struct RunningExecutionsStatement: PostgresPreparedStatement {
    static let sql = "SELECT id FROM workflow_executions WHERE status = 'RUNNING' AND charge_point_id = $1"
    static let bindingDataTypes: [PostgresDataType] = [.text]
    typealias Row = String

    var chargePointID: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(chargePointID)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
