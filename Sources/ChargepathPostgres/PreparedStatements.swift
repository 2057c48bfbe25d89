import Chargepath
package import Foundation
import Logging
import PostgresNIO

// The statements on a charger's message path, as PostgreSQL prepared statements: PostgresNIO
// parses and plans each once per pooled connection and then only binds and executes it. Sent as
// ordinary queries (an unnamed statement each time), PostgreSQL spent more time parsing and
// planning them than running them: in a boot storm of 10,000 chargers, 3.9 s of planning against
// 3.0 s of execution (pg_stat_statements with track_planning), 85 µs to plan the workflow wake-up
// probe that then ran in 3 µs, once per charger message. See BENCHMARKS.md.
//
// Each declares its parameter types (`bindingDataTypes`): a statement is prepared with the types
// of its first execution's values otherwise, and a NULL there would leave a type to PostgreSQL's
// guess, which a later non-NULL value of another binary type would not match.

extension PostgresClient {
    /// Runs a prepared statement that returns no rows.
    func run<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger) async throws where Statement.Row == () {
        for try await _ in try await execute(statement, logger: logger) {}
    }
}

extension PostgresClient {
    /// A batch's statement's rows: on its slot's connection of `pinned` when both are given,
    /// otherwise through this pool (an item written alone, or no pinned connections).
    func rows<Statement: PostgresPreparedStatement>(
        of statement: Statement, slot: Int?, pinned: PinnedConnections?, logger: Logger
    ) async throws -> [Statement.Row] {
        if let slot, let pinned {
            return try await pinned.withConnection(slot: slot) { try await $0.rows(of: statement, logger: logger) }
        }
        var rows: [Statement.Row] = []
        for try await row in try await execute(statement, logger: logger) { rows.append(row) }
        return rows
    }
}

extension PostgresConnection {
    /// Runs a prepared statement that returns no rows, on this connection (inside its transaction, if one is open).
    func run<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger) async throws where Statement.Row == () {
        for try await _ in try await execute(statement, logger: logger) {}
    }

    /// A prepared statement's rows, on this connection (inside its transaction, if one is open).
    func rows<Statement: PostgresPreparedStatement>(of statement: Statement, logger: Logger) async throws -> [Statement.Row] {
        var rows: [Statement.Row] = []
        for try await row in try await execute(statement, logger: logger) { rows.append(row) }
        return rows
    }
}

/// The readings of many MeterValues messages in one INSERT, committed as one, one array per
/// column (`PostgresCentralSystemStore.meterValuesStatement`). A resent reading is ignored, so
/// writing a message again after an unclear failure doubles nothing. Prepared: as an ordinary
/// query PostgreSQL parsed and planned it for every batch, the largest share of its CPU per
/// statement besides the commit at low load (perf).
///
/// The same statement reads the workflow executions waiting for each message's charger's
/// MeterValues (`$9`, one charger per message; rows name their message by position, from 1).
/// As a second statement, that wake-up probe was a second round trip for every batch of the
/// busiest message, before its answer: 6% of the server's CPU per message, and 4% of the
/// sessions benchmark's throughput (BENCHMARKS.md).
struct RecordMeterValuesStatement: PostgresPreparedStatement {
    static let sql = """
        WITH stored AS (
            INSERT INTO meter_readings (charge_point_id, connector_id, transaction_id, sampled_at, samples, source, received_at, samples_hash)
            SELECT cp, cn, CASE WHEN has_tx THEN tx END, t::timestamptz, s::jsonb, 'MeterValues', r, h
            FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::boolean[], $5::timestamptz[], $6::text[], $7::text[], $8::bigint[])
                AS s(cp, cn, tx, has_tx, r, t, s, h)
            ON CONFLICT DO NOTHING
        )
        SELECT p.n::bigint, w.id, w.waiting_for::text
        FROM unnest($9::text[]) WITH ORDINALITY AS p(charge_point_id, n)
        \(WaitingExecutionsStatement.lookup(action: "'MeterValues'"))
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .textArray, .int8Array, .int8Array, .boolArray, .timestamptzArray, .textArray, .textArray, .int8Array, .textArray,
    ]
    typealias Row = (Int, String, String)

    var chargePoints: [String] = [], connectors: [Int] = [], transactions: [Int] = [], hasTransaction: [Bool] = []
    var received: [Date] = [], times: [String] = [], samples: [String] = [], hashes: [Int64] = []
    /// Each message's charger, in the batch's order.
    var messages: [String] = []

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 9)
        bindings.append(chargePoints)
        bindings.append(connectors)
        bindings.append(transactions)
        bindings.append(hasTransaction)
        bindings.append(received)
        bindings.append(times)
        bindings.append(samples)
        bindings.append(hashes)
        bindings.append(messages)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// One charger message's wake-up probe: its charger and action.
package struct WaitProbe: Sendable {
    package var chargePointID: String
    package var action: String

    package init(chargePointID: String, action: String) {
        self.chargePointID = chargePointID
        self.action = action
    }
}

/// One charger message's event for the workflow executions it wakes (`PostgresWorkflowEngine.chargerMessage`).
package struct EventDelivery: Sendable {
    package var executionIDs: [String]
    /// The `WorkflowEvent` as JSON text.
    package var event: String
    package var at: Date

    package init(executionIDs: [String], event: String, at: Date) {
        self.executionIDs = executionIDs
        self.event = event
        self.at = at
    }
}

/// The inbox events of many charger messages in one INSERT (`PostgresWorkflowEngine.deliveries`):
/// one row per (execution, event), in the deliveries' order. One by one, each was a round trip of
/// an unprepared INSERT, planned every time, before its message's answer: a thousand sessions
/// ending together made two thousand of them in a couple of seconds (pg_stat_statements).
struct DeliverEventsStatement: PostgresPreparedStatement {
    static let sql = """
        INSERT INTO workflow_inbox (execution_id, event, available_at, created_at)
        SELECT d.id, d.event::jsonb, d.at, d.at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS d (id, event, at, n)
        ORDER BY d.n
        """
    static let bindingDataTypes: [PostgresDataType] = [.textArray, .textArray, .timestamptzArray]
    typealias Row = ()

    var ids: [String] = [], events: [String] = [], dates: [Date] = []

    init(_ deliveries: [EventDelivery]) {
        for delivery in deliveries {
            for id in delivery.executionIDs {
                ids.append(id)
                events.append(delivery.event)
                dates.append(delivery.at)
            }
        }
    }

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 3)
        bindings.append(ids)
        bindings.append(events)
        bindings.append(dates)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {}
}

/// The running workflow executions waiting for charger messages (migration 0008), for one probe or
/// many in one statement (`PostgresWorkflowEngine.chargerMessage`): each row names its probe by
/// position (from 1).
struct WaitingExecutionsStatement: PostgresPreparedStatement {
    /// One primary-key lookup per probe, whatever the tables' sizes: as a plain join, the generic
    /// plan of this prepared statement (which guesses 100 probes) hashed all of `workflow_waits`
    /// and `workflow_executions` for every batch, 0.23 ms a batch with a thousand sessions running
    /// and growing with the tables. `OFFSET 0` keeps the planner from flattening the lookups back
    /// into that join.
    static let sql = """
        SELECT p.n::bigint, w.id, w.waiting_for::text
        FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS p(charge_point_id, action, n)
        \(lookup(action: "p.action"))
        """

    /// The lookup for each row `p` (its `charge_point_id`) of the executions waiting for `action`.
    static func lookup(action: String) -> String {
        """
        CROSS JOIN LATERAL (
            SELECT e.id, e.waiting_for FROM workflow_waits ww
            JOIN workflow_executions e ON e.id = ww.execution_id
            WHERE ww.charge_point_id = p.charge_point_id AND ww.action = \(action) AND e.status = 'RUNNING'
            OFFSET 0
        ) w
        """
    }
    static let bindingDataTypes: [PostgresDataType] = [.textArray, .textArray]
    typealias Row = (Int, String, String)

    var probes: [WaitProbe]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 2)
        bindings.append(probes.map(\.chargePointID))
        bindings.append(probes.map(\.action))
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }

    /// A one-row subquery (to join laterally) of the running executions waiting for the messages
    /// of `action` from the charger `chargePoint` (an SQL expression): their ids and filters as two
    /// arrays, NULL for none.
    static func waitersRow(chargePoint: String, action: String) -> String {
        """
        CROSS JOIN LATERAL (
            SELECT array_agg(e.id ORDER BY e.id) AS ids, array_agg(e.waiting_for::text ORDER BY e.id) AS filters
            FROM workflow_waits ww JOIN workflow_executions e ON e.id = ww.execution_id
            WHERE ww.charge_point_id = \(chargePoint) AND ww.action = \(action) AND e.status = 'RUNNING'
        ) waiters
        """
    }

    /// The executions of a `waitersRow`'s two arrays.
    static func waiting(ids: [String]?, filters: [String]?) -> [WaitingWorkflow] {
        zip(ids ?? [], filters ?? []).map { WaitingWorkflow(executionID: $0, waitingFor: $1) }
    }

    /// Each probe's executions, in the probes' order, from rows that name their probe by position.
    static func waiting(_ rows: [(Int, String, String)], probes: Int) -> [[WaitingWorkflow]] {
        var found = Array(repeating: [WaitingWorkflow](), count: probes)
        for (n, id, waitingFor) in rows { found[n - 1].append(WaitingWorkflow(executionID: id, waitingFor: waitingFor)) }
        return found
    }
}

/// What admission needs to know about a charger (`PostgresManagementStore.credentials`).
struct ChargePointCredentialsStatement: PostgresPreparedStatement {
    static let sql = "SELECT registered, password_hash, registration_status FROM charge_points WHERE charge_point_id = $1"
    static let bindingDataTypes: [PostgresDataType] = [.text]
    typealias Row = (Bool, String?, String)

    var chargePointID: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(chargePointID)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// What admission needs to know about many chargers at once (`PostgresManagementStore.credentials`
/// through `GroupCommit`, while chargers connect faster than one lookup at a time keeps up): a row
/// per charger that exists, naming its item by position (from 1).
struct ManyChargePointCredentialsStatement: PostgresPreparedStatement {
    static let sql = """
        SELECT i.n::bigint, c.registered, c.password_hash, c.registration_status
        FROM unnest($1::text[]) WITH ORDINALITY AS i(charge_point_id, n)
        JOIN charge_points c ON c.charge_point_id = i.charge_point_id
        """
    static let bindingDataTypes: [PostgresDataType] = [.textArray]
    typealias Row = (Int, Bool, String?, String)

    var chargePointIDs: [String]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(chargePointIDs)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// A new connection's row, replacing the charger's previous one; returns the replaced
/// connection's id (`PostgresConnectionRepository.open`).
struct OpenConnectionStatement: PostgresPreparedStatement {
    /// The newest connection wins: it replaces the charger's row (also `OpenConnectionsStatement`'s).
    static let onConflict = """
        ON CONFLICT (charge_point_id) DO UPDATE SET
                connection_id = EXCLUDED.connection_id, path = EXCLUDED.path, query = EXCLUDED.query,
                headers = EXCLUDED.headers, subprotocol = EXCLUDED.subprotocol,
                remote_address = EXCLUDED.remote_address, node_id = EXCLUDED.node_id,
                connected_at = EXCLUDED.connected_at, last_seen_at = EXCLUDED.last_seen_at,
                expires_at = EXCLUDED.expires_at
        """
    static let sql = """
        WITH previous AS (
            SELECT connection_id FROM connections WHERE charge_point_id = $2 FOR UPDATE
        ), upserted AS (
            INSERT INTO connections (connection_id, charge_point_id, path, query, headers, subprotocol,
                                     remote_address, node_id, connected_at, last_seen_at, expires_at)
            VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11)
            \(onConflict)
            RETURNING connection_id
        )
        SELECT previous.connection_id FROM previous, upserted
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .text, .text, .text, .text, .text, .text, .text, .text, .timestamptz, .timestamptz, .timestamptz,
    ]
    typealias Row = String

    var connectionID: String
    var chargePointID: String
    var path: String
    var query: String
    var headers: String
    var subprotocol: String?
    var remoteAddress: String?
    var nodeID: String
    var connectedAt: Date
    var lastSeenAt: Date
    var expiresAt: Date

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 11)
        bindings.append(connectionID)
        bindings.append(chargePointID)
        bindings.append(path)
        bindings.append(query)
        bindings.append(headers)
        bindings.append(subprotocol)
        bindings.append(remoteAddress)
        bindings.append(nodeID)
        bindings.append(connectedAt)
        bindings.append(lastSeenAt)
        bindings.append(expiresAt)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// Many chargers' new connections in one statement and one commit (`PostgresConnectionRepository.open`
/// through `GroupCommit`, when chargers connect faster than one statement at a time keeps up, as
/// in a boot storm): each row replaces its charger's previous one, as `OpenConnectionStatement`
/// does, and its rows name the replaced connection of each item by position (from 1). Two items
/// of one charger in a batch make PostgreSQL refuse it ("cannot affect row a second time"); the
/// batch's items are then written one by one. Arrays cannot hold NULL here, so each optional
/// column comes with a flag array.
struct OpenConnectionsStatement: PostgresPreparedStatement {
    static let sql = """
        WITH input AS MATERIALIZED (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[],
                                 $8::text[], $9::boolean[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[])
                WITH ORDINALITY AS u(connection_id, charge_point_id, path, query, headers, subprotocol, has_subprotocol,
                                     remote_address, has_remote_address, node_id, connected_at, last_seen_at, expires_at, n)
        ), previous AS MATERIALIZED (
            -- Not FOR UPDATE: in one statement with the upsert, a lock taken after the upsert has
            -- changed the row finds it changed by this very statement and skips it (the answer then
            -- depended on the plan). Read from the statement's snapshot instead, so a replacement
            -- committed by another node between that snapshot and the upsert names the connection
            -- before it; `OpenConnectionStatement` (one charger) locks.
            SELECT c.charge_point_id, c.connection_id FROM connections c
            WHERE c.charge_point_id IN (SELECT charge_point_id FROM input)
        ), upserted AS (
            INSERT INTO connections (connection_id, charge_point_id, path, query, headers, subprotocol,
                                     remote_address, node_id, connected_at, last_seen_at, expires_at)
            SELECT connection_id, charge_point_id, path, query::jsonb, headers::jsonb,
                CASE WHEN has_subprotocol THEN subprotocol END, CASE WHEN has_remote_address THEN remote_address END,
                node_id, connected_at, last_seen_at, expires_at
            FROM input ORDER BY n
            \(OpenConnectionStatement.onConflict)
            RETURNING charge_point_id
        )
        SELECT i.n::bigint, p.connection_id FROM input i JOIN previous p ON p.charge_point_id = i.charge_point_id
        WHERE i.charge_point_id IN (SELECT charge_point_id FROM upserted)
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .textArray, .textArray, .textArray, .textArray, .textArray, .textArray, .boolArray,
        .textArray, .boolArray, .textArray, .timestamptzArray, .timestamptzArray, .timestamptzArray,
    ]
    typealias Row = (Int, String)

    var connectionIDs: [String] = [], chargePointIDs: [String] = [], paths: [String] = [], queries: [String] = []
    var headers: [String] = [], subprotocols: [String] = [], hasSubprotocol: [Bool] = []
    var remoteAddresses: [String] = [], hasRemoteAddress: [Bool] = [], nodeIDs: [String] = []
    var connectedAt: [Date] = [], lastSeenAt: [Date] = [], expiresAt: [Date] = []

    /// `query` and `headers`: each record's as JSON text.
    init(_ records: [(record: ConnectionRecord, query: String, headers: String)]) {
        for (record, query, headers) in records {
            connectionIDs.append(record.connectionID.rawValue)
            chargePointIDs.append(record.chargePointID)
            paths.append(record.path)
            queries.append(query)
            self.headers.append(headers)
            subprotocols.append(record.subprotocol ?? "")
            hasSubprotocol.append(record.subprotocol != nil)
            remoteAddresses.append(record.remoteAddress ?? "")
            hasRemoteAddress.append(record.remoteAddress != nil)
            nodeIDs.append(record.nodeID.rawValue)
            connectedAt.append(record.connectedAt)
            lastSeenAt.append(record.lastSeenAt)
            expiresAt.append(record.expiresAt)
        }
    }

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 13)
        bindings.append(connectionIDs)
        bindings.append(chargePointIDs)
        bindings.append(paths)
        bindings.append(queries)
        bindings.append(headers)
        bindings.append(subprotocols)
        bindings.append(hasSubprotocol)
        bindings.append(remoteAddresses)
        bindings.append(hasRemoteAddress)
        bindings.append(nodeIDs)
        bindings.append(connectedAt)
        bindings.append(lastSeenAt)
        bindings.append(expiresAt)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// A connection's row goes when its socket closes (`PostgresConnectionRepository.close`).
struct CloseConnectionStatement: PostgresPreparedStatement {
    static let sql = "DELETE FROM connections WHERE connection_id = $1"
    static let bindingDataTypes: [PostgresDataType] = [.text]
    typealias Row = ()

    var connectionID: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(connectionID)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {}
}

/// A BootNotification: the charge point's row, and for an Accepted boot a Provisioning start in
/// the same commit; returns the registration status (`PostgresCentralSystemStore.recordBoot`).
struct RecordBootStatement: PostgresPreparedStatement {
    /// A boot updates the charger's row (also `RecordBootsStatement`'s).
    static let onConflict = """
        ON CONFLICT (charge_point_id) DO UPDATE SET
            vendor = EXCLUDED.vendor, model = EXCLUDED.model, serial_number = EXCLUDED.serial_number,
            charge_box_serial_number = EXCLUDED.charge_box_serial_number, firmware_version = EXCLUDED.firmware_version,
            iccid = EXCLUDED.iccid, imsi = EXCLUDED.imsi, meter_type = EXCLUDED.meter_type,
            meter_serial_number = EXCLUDED.meter_serial_number, last_boot_at = EXCLUDED.last_boot_at,
            last_seen_at = EXCLUDED.last_seen_at
        """

    /// A Provisioning's input for the charger `chargePoint` (an SQL expression): the configuration
    /// set for this charger or for all ('*'); the charger's own value for a key wins.
    static func provisioningInput(chargePoint: String) -> String {
        """
        jsonb_build_object(
                'chargePointId', \(chargePoint),
                'configuration', coalesce((
                    SELECT jsonb_agg(jsonb_build_object('key', c.key, 'value', c.value) ORDER BY c.key) FROM (
                        SELECT DISTINCT ON (key) key, value FROM charger_configuration
                        WHERE scope IN ('*', \(chargePoint)) ORDER BY key, scope = '*'
                    ) c
                ), '[]'::jsonb)
            )
        """
    }

    /// The boot's time in milliseconds, in its Provisioning's execution id.
    static func millis(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    static let sql = """
        WITH booted AS (
        INSERT INTO charge_points (charge_point_id, vendor, model, serial_number, charge_box_serial_number,
            firmware_version, iccid, imsi, meter_type, meter_serial_number, last_boot_at, last_seen_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
        \(onConflict)
        RETURNING registration_status
        ),
        provisioning AS (
            -- An Accepted boot starts a Provisioning in this same commit, with the configuration
            -- set for this charger or for all ('*'); the charger's own value for a key wins.
            INSERT INTO workflow_starts (execution_id, workflow, input, created_at)
            SELECT 'provision-' || $1 || '-' || $12::bigint, 'Provisioning', \(provisioningInput(chargePoint: "$1")), $11
            FROM booted b WHERE b.registration_status = 'Accepted' AND $13
            ON CONFLICT (execution_id) DO NOTHING
        )
        SELECT registration_status FROM booted
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .text, .text, .text, .text, .text, .text, .text, .text, .text, .text, .timestamptz, .int8, .bool,
    ]
    typealias Row = String

    var chargePointID: String
    var vendor: String
    var model: String
    var serialNumber: String?
    var chargeBoxSerialNumber: String?
    var firmwareVersion: String?
    var iccid: String?
    var imsi: String?
    var meterType: String?
    var meterSerialNumber: String?
    var bootedAt: Date
    var provisionOnBoot: Bool

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 13)
        bindings.append(chargePointID)
        bindings.append(vendor)
        bindings.append(model)
        bindings.append(serialNumber)
        bindings.append(chargeBoxSerialNumber)
        bindings.append(firmwareVersion)
        bindings.append(iccid)
        bindings.append(imsi)
        bindings.append(meterType)
        bindings.append(meterSerialNumber)
        bindings.append(bootedAt)
        bindings.append(Self.millis(bootedAt))
        bindings.append(provisionOnBoot)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// BootNotifications of many chargers in one statement and one commit (`PostgresCentralSystemStore.recordBoot`
/// through `GroupCommit`, while chargers boot faster than one statement at a time keeps up, as in a
/// boot storm): what `RecordBootStatement` does for one, for each. Each item is its charger's boot
/// data as a JSON object (absent fields are SQL NULLs through `->>`); its rows give each item's
/// registration status by position (from 1). Two boots of one charger in a batch make PostgreSQL
/// refuse it ("cannot affect row a second time"); the batch's items are then written one by one.
struct RecordBootsStatement: PostgresPreparedStatement {
    static let sql = """
        WITH input AS MATERIALIZED (
            SELECT p.n, p.d ->> 'chargePointId' AS cp, p.d, p.at, p.millis
            FROM (
                SELECT u.t::jsonb AS d, u.at, u.millis, u.n
                FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) WITH ORDINALITY AS u(t, at, millis, n)
                OFFSET 0  -- not pulled up: each item's JSON is parsed once, not once per reference
            ) p
        ),
        booted AS (
            INSERT INTO charge_points (charge_point_id, vendor, model, serial_number, charge_box_serial_number,
                firmware_version, iccid, imsi, meter_type, meter_serial_number, last_boot_at, last_seen_at)
            SELECT cp, d ->> 'vendor', d ->> 'model', d ->> 'serialNumber', d ->> 'chargeBoxSerialNumber',
                d ->> 'firmwareVersion', d ->> 'iccid', d ->> 'imsi', d ->> 'meterType', d ->> 'meterSerialNumber', at, at
            FROM input ORDER BY n
            \(RecordBootStatement.onConflict)
            RETURNING charge_point_id, registration_status
        ),
        provisioning AS (
            INSERT INTO workflow_starts (execution_id, workflow, input, created_at)
            SELECT 'provision-' || i.cp || '-' || i.millis, 'Provisioning', \(RecordBootStatement.provisioningInput(chargePoint: "i.cp")), i.at
            FROM input i JOIN booted b ON b.charge_point_id = i.cp
            WHERE b.registration_status = 'Accepted' AND $4
            ON CONFLICT (execution_id) DO NOTHING
        )
        SELECT i.n::bigint, b.registration_status FROM input i JOIN booted b ON b.charge_point_id = i.cp
        """
    static let bindingDataTypes: [PostgresDataType] = [.textArray, .timestamptzArray, .int8Array, .bool]
    typealias Row = (Int, String)

    var items: [String] = [], bootedAt: [Date] = [], millis: [Int64] = []
    var provisionOnBoot: Bool

    init(_ boots: [BootWrite], provisionOnBoot: Bool) {
        self.provisionOnBoot = provisionOnBoot
        for boot in boots {
            items.append(boot.json)
            bootedAt.append(boot.bootedAt)
            millis.append(RecordBootStatement.millis(boot.bootedAt))
        }
    }

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 4)
        bindings.append(items)
        bindings.append(bootedAt)
        bindings.append(millis)
        bindings.append(provisionOnBoot)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// StatusNotifications of many chargers in one statement (`PostgresCentralSystemStore.recordStatus`,
/// through `GroupCommit`): their history rows in order of arrival, and each connector's current
/// status unless a newer one is already there (chargers replay queued notifications after a
/// reconnect). Of two notifications for one connector in a batch (two sockets of one charge point),
/// the one with the newest timestamp (of equals, the later arrival; one without a timestamp only
/// when none has one) is compared with the current status: what they would have left one after
/// the other, when they have timestamps. Arrays cannot hold NULL here, so
/// each optional column comes with a flag array saying whether it has a value. Its rows: the
/// workflow executions waiting for each notification's charger's StatusNotifications, named by
/// position (from 1), as `RecordMeterValuesStatement` reads them.
struct RecordStatusesStatement: PostgresPreparedStatement {
    static let sql = """
        WITH s AS MATERIALIZED (
            SELECT cp, cn, status, error_code,
                CASE WHEN has_info THEN info END AS info,
                CASE WHEN has_vendor_id THEN vendor_id END AS vendor_id,
                CASE WHEN has_vendor_error_code THEN vendor_error_code END AS vendor_error_code,
                CASE WHEN has_status_at THEN status_at END AS status_at,
                received_at, n
            FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::boolean[], $7::text[], $8::boolean[],
                        $9::text[], $10::boolean[], $11::timestamptz[], $12::boolean[], $13::timestamptz[])
                WITH ORDINALITY AS u(cp, cn, status, error_code, info, has_info, vendor_id, has_vendor_id,
                                     vendor_error_code, has_vendor_error_code, status_at, has_status_at, received_at, n)
        ),
        history AS (
            INSERT INTO status_history (charge_point_id, connector_id, status, error_code, info, vendor_id,
                vendor_error_code, status_at, received_at)
            SELECT cp, cn, status, error_code, info, vendor_id, vendor_error_code, status_at, received_at
            FROM s ORDER BY n
        ),
        current AS (
            INSERT INTO connector_status (charge_point_id, connector_id, status, error_code, info, vendor_id,
                vendor_error_code, status_at, received_at)
            SELECT DISTINCT ON (cp, cn) cp, cn, status, error_code, info, vendor_id, vendor_error_code, status_at, received_at
            FROM s ORDER BY cp, cn, status_at DESC NULLS LAST, n DESC
            ON CONFLICT (charge_point_id, connector_id) DO UPDATE SET
                status = EXCLUDED.status, error_code = EXCLUDED.error_code, info = EXCLUDED.info,
                vendor_id = EXCLUDED.vendor_id, vendor_error_code = EXCLUDED.vendor_error_code,
                status_at = EXCLUDED.status_at, received_at = EXCLUDED.received_at
            WHERE connector_status.status_at IS NULL OR EXCLUDED.status_at IS NULL
                OR EXCLUDED.status_at >= connector_status.status_at
        )
        SELECT p.n::bigint, w.id, w.waiting_for::text
        FROM (SELECT cp AS charge_point_id, n FROM s) p
        \(WaitingExecutionsStatement.lookup(action: "'StatusNotification'"))
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .textArray, .int8Array, .textArray, .textArray, .textArray, .boolArray, .textArray, .boolArray,
        .textArray, .boolArray, .timestamptzArray, .boolArray, .timestamptzArray,
    ]
    typealias Row = (Int, String, String)

    var chargePoints: [String] = [], connectors: [Int] = [], statuses: [String] = [], errorCodes: [String] = []
    var infos: [String] = [], hasInfo: [Bool] = [], vendorIDs: [String] = [], hasVendorID: [Bool] = []
    var vendorErrorCodes: [String] = [], hasVendorErrorCode: [Bool] = []
    var statusTimes: [Date] = [], hasStatusTime: [Bool] = [], received: [Date] = []

    init(_ writes: [StatusWrite]) {
        for write in writes {
            chargePoints.append(write.chargePointID)
            connectors.append(write.connectorID)
            statuses.append(write.status)
            errorCodes.append(write.errorCode)
            infos.append(write.info ?? "")
            hasInfo.append(write.info != nil)
            vendorIDs.append(write.vendorID ?? "")
            hasVendorID.append(write.vendorID != nil)
            vendorErrorCodes.append(write.vendorErrorCode ?? "")
            hasVendorErrorCode.append(write.vendorErrorCode != nil)
            statusTimes.append(write.statusAt ?? write.receivedAt)
            hasStatusTime.append(write.statusAt != nil)
            received.append(write.receivedAt)
        }
    }

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 13)
        bindings.append(chargePoints)
        bindings.append(connectors)
        bindings.append(statuses)
        bindings.append(errorCodes)
        bindings.append(infos)
        bindings.append(hasInfo)
        bindings.append(vendorIDs)
        bindings.append(hasVendorID)
        bindings.append(vendorErrorCodes)
        bindings.append(hasVendorErrorCode)
        bindings.append(statusTimes)
        bindings.append(hasStatusTime)
        bindings.append(received)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// One StatusNotification to store.
package struct StatusWrite: Sendable {
    var chargePointID: String
    var connectorID: Int
    var status: String
    var errorCode: String
    var info: String?
    var vendorID: String?
    var vendorErrorCode: String?
    var statusAt: Date?
    var receivedAt: Date
}

/// An id tag's authorization, case-insensitively (`PostgresCentralSystemStore.authorize`).
struct IdTagStatement: PostgresPreparedStatement {
    static let sql = "SELECT status, expiry_date, parent_id_tag FROM id_tags WHERE lower(id_tag) = lower($1)"
    static let bindingDataTypes: [PostgresDataType] = [.text]
    typealias Row = (String, Date?, String?)

    var idTag: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(idTag)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// A StartTransaction: the transaction's row (a retried start finds its first row) and its
/// ChargingSession start in the same commit (`PostgresCentralSystemStore.startTransaction`), and
/// the workflow executions waiting for the charger's StartTransactions (a RemoteStart, say).
struct StartTransactionStatement: PostgresPreparedStatement {
    static let sql = """
        WITH inserted AS (
            INSERT INTO transactions (charge_point_id, connector_id, id_tag, id_tag_status, meter_start, started_at,
                reservation_id, received_start_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT ON CONSTRAINT transactions_start_key DO NOTHING
            RETURNING transaction_id, false AS retry
        ),
        session AS (
            -- Every new transaction gets a ChargingSession, started in this same commit. Its limits:
            -- the id tag's, overridden field by field by those of a RemoteStart waiting on this connector.
            INSERT INTO workflow_starts (execution_id, workflow, input, created_at)
            SELECT 'session-' || i.transaction_id, 'ChargingSession', jsonb_build_object(
                'chargePointId', $1, 'connectorId', $2::integer,
                'transactionId', i.transaction_id, 'idTag', $3, 'meterStart', $5::integer,
                'limits', coalesce((SELECT session_limits FROM id_tags WHERE lower(id_tag) = lower($3)), '{}'::jsonb)
                    || coalesce((
                        SELECT e.input->'limits' FROM workflow_waits w JOIN workflow_executions e ON e.id = w.execution_id
                        WHERE w.charge_point_id = $1 AND w.action = 'StartTransaction'
                          AND e.status = 'RUNNING' AND e.workflow = 'RemoteStart' AND jsonb_typeof(e.input->'limits') = 'object'
                          AND e.waiting_for @> jsonb_build_array(jsonb_build_object(
                              'chargePointID', $1, 'action', 'StartTransaction', 'connectorID', $2::integer))
                        ORDER BY e.created_at DESC LIMIT 1
                    ), '{}'::jsonb),
                'interruptGraceSeconds', $9::integer
            ), $8
            FROM inserted i
            ON CONFLICT (execution_id) DO NOTHING
        )
        SELECT r.transaction_id, r.retry, waiters.ids, waiters.filters
        FROM (
            SELECT transaction_id, retry FROM inserted
            UNION ALL
            SELECT transaction_id, true FROM transactions
            WHERE charge_point_id = $1 AND connector_id = $2 AND id_tag = $3
                AND meter_start = $5 AND started_at = $6
                AND NOT EXISTS (SELECT 1 FROM inserted)
        ) r
        \(WaitingExecutionsStatement.waitersRow(chargePoint: "$1", action: "'StartTransaction'"))
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .text, .int8, .text, .text, .int8, .timestamptz, .int8, .timestamptz, .int8,
    ]
    typealias Row = (Int, Bool, [String]?, [String]?)

    var chargePointID: String
    var connectorID: Int
    var idTag: String
    var idTagStatus: String
    var meterStart: Int
    var startedAt: Date
    var reservationID: Int?
    var receivedAt: Date
    var interruptGraceSeconds: Int

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 9)
        bindings.append(chargePointID)
        bindings.append(connectorID)
        bindings.append(idTag)
        bindings.append(idTagStatus)
        bindings.append(meterStart)
        bindings.append(startedAt)
        bindings.append(reservationID)
        bindings.append(receivedAt)
        bindings.append(interruptGraceSeconds)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// A StopTransaction in one statement (`PostgresCentralSystemStore.stopTransaction`): the
/// transaction locked and stopped (a transaction the central system closed as interrupted takes
/// the charger's figures), an anomaly for an unknown transaction or a different second stop, the
/// transactionData readings, and the stop's id tag looked up. As a transaction of four statements
/// and a lookup after it, a stop leased pool connections five times, and under a fleet's load each
/// lease waited for the connections that the others held between their statements: a stop's
/// answer took 190 ms (p50) while a MeterValues took 8. It also reads the workflow executions
/// waiting for the charger's StopTransactions (the wake-up probe, without a round trip of its own).
struct StopTransactionStatement: PostgresPreparedStatement {
    static let sql = """
        WITH found AS (
            SELECT transaction_id, connector_id, meter_stop, stopped_at, stop_reason FROM transactions
            WHERE transaction_id = $1 AND charge_point_id = $2
            FOR UPDATE
        ),
        stopped AS (
            UPDATE transactions t SET meter_stop = $3, stopped_at = $4, stop_reason = $5, stop_id_tag = $6, received_stop_at = $7
            FROM found f
            WHERE t.transaction_id = f.transaction_id AND (f.meter_stop IS NULL OR f.stop_reason = 'Interrupted')
            RETURNING t.transaction_id
        ),
        outcome AS (
            SELECT CASE
                WHEN EXISTS (SELECT FROM stopped) THEN 'stopped'
                WHEN NOT EXISTS (SELECT FROM found) THEN 'unknown'
                WHEN EXISTS (SELECT FROM found WHERE meter_stop = $3 AND stopped_at = $4) THEN 'same'
                ELSE 'different'
            END AS kind
        ),
        anomaly AS (
            INSERT INTO anomalies (charge_point_id, kind, detail, occurred_at)
            SELECT $2, CASE kind WHEN 'unknown' THEN 'StopTransactionUnknown' ELSE 'StopTransactionAlreadyStopped' END,
                jsonb_build_object('transactionId', $1::text, 'meterStop', $3::text, 'timestamp', $8::text,
                                   'reason', $9::text, 'idTag', coalesce($6, '')),
                $7
            FROM outcome WHERE kind IN ('unknown', 'different')
        ),
        readings AS (
            INSERT INTO meter_readings (charge_point_id, connector_id, transaction_id, sampled_at, samples, source, received_at, samples_hash)
            SELECT $2, coalesce((SELECT connector_id FROM found), 0), $1, r.t::timestamptz, r.s::jsonb, 'StopTransaction', $7, r.h
            FROM unnest($10::text[], $11::text[], $12::bigint[]) AS r(t, s, h)
            ON CONFLICT DO NOTHING
        ),
        -- A session the worker has not started yet (StartTransaction's statement asked for it)
        -- would never see this stop: its start is told instead, and the session ends as it starts.
        early AS (
            UPDATE workflow_starts SET input = input || jsonb_build_object(
                'stoppedBeforeStart', jsonb_build_object('meterStop', $3::bigint, 'reason', $5::text))
            WHERE execution_id = 'session-' || $1::text AND workflow = 'ChargingSession' AND EXISTS (SELECT FROM stopped)
        )
        SELECT o.kind, tag.status, tag.expiry_date, tag.parent_id_tag, waiters.ids, waiters.filters
        FROM outcome o
        LEFT JOIN id_tags tag ON $6::text IS NOT NULL AND lower(tag.id_tag) = lower($6)
        \(WaitingExecutionsStatement.waitersRow(chargePoint: "$2", action: "'StopTransaction'"))
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .int8, .text, .int8, .timestamptz, .text, .text, .timestamptz, .text, .text, .textArray, .textArray, .int8Array,
    ]
    typealias Row = (String, String?, Date?, String?, [String]?, [String]?)

    var transactionID: Int
    var chargePointID: String
    var meterStop: Int
    var stoppedAt: Date
    var stopReason: String
    var idTag: String?
    var receivedAt: Date
    /// The stop's timestamp and reason as the anomaly's detail gives them ("" for no reason).
    var timestampText: String
    var reasonText: String
    /// The transactionData readings: times (as text with milliseconds), samples (JSON), hashes.
    var readingTimes: [String] = [], readingSamples: [String] = [], readingHashes: [Int64] = []

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 12)
        bindings.append(transactionID)
        bindings.append(chargePointID)
        bindings.append(meterStop)
        bindings.append(stoppedAt)
        bindings.append(stopReason)
        bindings.append(idTag)
        bindings.append(receivedAt)
        bindings.append(timestampText)
        bindings.append(reasonText)
        bindings.append(readingTimes)
        bindings.append(readingSamples)
        bindings.append(readingHashes)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
