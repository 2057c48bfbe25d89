import Chargepath
import ChargepathPostgres
import ChargepathWorkflows
import Foundation
import OCPPCore
import PostgresNIO
import Synchronization
import Testing

/// What the workflow engine tells an operator about itself (`GET /metrics`): its backlog, read
/// from the database, and its own work as it commits it. Real PostgreSQL, engines built directly
/// as in WorkflowFaultTests.
@Suite(.timeLimit(.minutes(3))) struct WorkflowMetricsTests {
    @Test func theBacklogCountsWhatIsDueAndHowLongItHasWaitedAndEmptiesOnceAWorkerRuns() async throws {
        try await Self.withTallyEngine { engine, database, reported, workersMayStart in
            let empty = WorkflowBacklog.Queue(count: 0, oldestAgeSeconds: 0)
            #expect(try await engine.backlog() == WorkflowBacklog(starts: empty, events: empty, calls: empty, running: ["Tally": 0]))

            // Two executions started by an operator (their first step is taken at once), three
            // asked for by charger messages and not started yet, the oldest 30 s ago.
            let a = try await engine.start(workflow: "Tally", input: ["signals": 2])
            let b = try await engine.start(workflow: "Tally", input: ["signals": 1])
            try await WorkflowFaultTests.withConnection(database) { connection in
                try await connection.query(
                    """
                    INSERT INTO workflow_starts (execution_id, workflow, input, created_at)
                    SELECT 'waiting-' || i, 'Tally', '{"signals": 1}'::jsonb, now() - make_interval(secs => i * 10)
                    FROM generate_series(1, 3) i
                    """,
                    logger: TestDatabase.logger
                )
            }
            // Two events due, one of them 20 s late; a timer due in an hour is not in the backlog.
            try await engine.deliver(.signal(name: "s0", payload: .null), to: a)
            try await engine.deliver(.signal(name: "s0", payload: .null), to: b)
            // Calls: one due 5 s ago (past its give-up time), one leased to a worker, one done.
            try await WorkflowFaultTests.withConnection(database) { connection in
                try await connection.query(
                    "UPDATE workflow_inbox SET available_at = available_at - interval '20 seconds' WHERE execution_id = \(a)",
                    logger: TestDatabase.logger
                )
                try await connection.query(
                    """
                    INSERT INTO workflow_inbox (execution_id, event, timer_name, available_at, created_at)
                    VALUES (\(b), '{"timerFired": {"name": "later"}}'::jsonb, 'later', now() + interval '1 hour', now())
                    """,
                    logger: TestDatabase.logger
                )
                try await connection.query(
                    """
                    INSERT INTO workflow_outbox (execution_id, key, charge_point_id, action, payload, next_attempt_at, give_up_at, done_at, created_at)
                    VALUES (\(a), 'due', 'CP-1', 'Reset', '{"type": "Soft"}', now() - interval '5 seconds', now() - interval '1 second', NULL, now()),
                           (\(a), 'leased', 'CP-1', 'Reset', '{"type": "Soft"}', now() + interval '60 seconds', now() + interval '1 hour', NULL, now()),
                           (\(a), 'done', 'CP-1', 'Reset', '{"type": "Soft"}', now() - interval '60 seconds', now() + interval '1 hour', now(), now())
                    """,
                    logger: TestDatabase.logger
                )
            }
            let backlog = try await engine.backlog()
            #expect(backlog.starts.count == 3)
            #expect((29.5...40).contains(backlog.starts.oldestAgeSeconds), "\(backlog.starts)")
            #expect(backlog.events.count == 2)
            #expect((19.5...30).contains(backlog.events.oldestAgeSeconds), "\(backlog.events)")
            #expect(backlog.calls.count == 1)
            #expect((4.5...15).contains(backlog.calls.oldestAgeSeconds), "\(backlog.calls)")
            #expect(backlog.running == ["Tally": 2])
            #expect(reported.activity.withLock { $0 } == [.started(workflow: "Tally", finished: nil), .started(workflow: "Tally", finished: nil)])

            // A worker takes all of it: the starts, the two signals (b's last: it ends), the call
            // (it fails: this test's chargers answer nothing) and its answer (a ignores it).
            workersMayStart.open()
            try await eventually(timeout: .seconds(60), "the backlog empties") {
                let now = try await engine.backlog()
                return now.starts == empty && now.events == empty && now.calls == empty
            }
            #expect(try await engine.backlog().running == ["Tally": 4], "a and the three new ones; b has ended")
            try await eventually(timeout: .seconds(10), "every step is reported") {
                reported.activity.withLock { $0.filter { if case .stepped = $0 { true } else { false } }.count } == 3
            }
            let activity = reported.activity.withLock { $0 }
            #expect(activity.filter { $0 == .started(workflow: "Tally", finished: nil) }.count == 5)
            #expect(activity.filter { $0 == .stepped(workflow: "Tally", finished: "SUCCEEDED") }.count == 1)
            #expect(activity.filter { $0 == .stepped(workflow: "Tally", finished: nil) }.count == 2)
            #expect(activity.filter { $0 == .call(action: "Reset", outcome: .failed) }.count == 1)
            #expect(!activity.contains(.failedRound))
        }
    }

    /// One batch of starts (one statement for all of them): the good ones start, input a workflow
    /// refuses and a workflow this build lacks each give a FAILED execution that says why, and a
    /// start whose execution exists already (the same message handled twice) changes nothing.
    @Test func aBatchOfStartsStartsTheGoodOnesRecordsWhyTheOthersFailedAndSkipsOnesThatExist() async throws {
        try await Self.withTallyEngine { engine, database, reported, workersMayStart in
            _ = try await engine.start(workflow: "Tally", input: ["signals": 2], executionID: "exists")
            try await WorkflowFaultTests.withConnection(database) { connection in
                try await connection.query(
                    """
                    INSERT INTO workflow_starts (execution_id, workflow, input, created_at) VALUES
                        ('good-1', 'Tally', '{"signals": 1, "chargePointId": "CP-A"}', now()),
                        ('refused', 'Tally', '{"signals": "many"}', now()),
                        ('unknown', 'NoSuchWorkflow', '{}', now()),
                        ('exists', 'Tally', '{"signals": 5}', now()),
                        ('good-2', 'Tally', '{"signals": 1}', now())
                    """,
                    logger: TestDatabase.logger
                )
            }
            workersMayStart.open()
            try await eventually(timeout: .seconds(30), "every start is taken") {
                let statuses = try await WorkflowFaultTests.statuses(database)
                let waiting = try await engine.backlog().starts.count
                return statuses.count == 5 && waiting == 0
            }
            let statuses = try await WorkflowFaultTests.statuses(database)
            #expect(statuses["good-1"]?.status == "RUNNING")
            #expect(statuses["good-2"]?.status == "RUNNING")
            #expect(statuses["exists"]?.status == "RUNNING")
            #expect(statuses["refused"]?.status == "FAILED")
            #expect(statuses["unknown"]?.status == "FAILED")
            let rows = try await WorkflowFaultTests.withConnection(database) { connection in
                var found: [String: (String?, String?, String)] = [:]
                let rows = try await connection.query(
                    "SELECT id, charge_point_id, error ->> 'reason', input::text FROM workflow_executions", logger: TestDatabase.logger
                )
                for try await (id, chargePoint, reason, input) in rows.decode((String, String?, String?, String).self) {
                    found[id] = (chargePoint, reason, input)
                }
                return found
            }
            #expect(rows["good-1"]?.0 == "CP-A")
            #expect(rows["good-2"]?.0 == nil)
            #expect(rows["refused"]?.1 == "BadInput")
            #expect(rows["unknown"]?.1 == "UnknownWorkflow")
            #expect(try JSONValue.parse(try #require(rows["exists"]?.2)) == ["signals": 2], "the existing execution is untouched")
            let history = try await WorkflowFaultTests.history(database)
            #expect(history["good-1"]?.map(\.kind) == ["started", "transition"])
            #expect(history["good-1"]?.first?.detail["by"] == "charger message")
            #expect(history["refused"]?.map(\.kind) == ["started", "finished"])
            #expect(history["exists"]?.filter { $0.kind == "started" }.count == 1)
            // Reported once each batch's commit is acknowledged, which may come a moment after
            // another session sees the rows.
            try await eventually(timeout: .seconds(10), "every start is reported") {
                reported.activity.withLock { $0.filter { if case .started = $0 { true } else { false } }.count } == 5
            }
            let activity = reported.activity.withLock { $0 }
            #expect(activity.filter { $0 == .started(workflow: "Tally", finished: nil) }.count == 3, "exists (by the API), good-1, good-2")
            #expect(activity.contains(.started(workflow: "Tally", finished: "FAILED")))
            #expect(activity.contains(.started(workflow: "NoSuchWorkflow", finished: "FAILED")))
        }
    }

    /// One worker of one lane (not started until `workersMayStart` opens) running TallyWorkflow on
    /// a fresh migrated database; `reported` collects what it tells its observer.
    static func withTallyEngine(
        _ body: @Sendable (PostgresWorkflowEngine, DatabaseEndpoint, Reported, Gate) async throws -> Void
    ) async throws {
        let database = try await WorkflowFaultTests.migratedDatabase()
        let reported = Reported()
        let configuration = PostgresWorkflowEngine.Configuration(
            pollInterval: .milliseconds(20), stepTimeout: .seconds(30), workerConcurrency: 1, startBatchSize: 16
        )
        try await WorkflowFaultTests.withEngines(
            database, workers: ["A"], configuration: configuration,
            workflows: { _ in [AnyWorkflow(TallyWorkflow())] },
            observer: { activity in reported.activity.withLock { $0.append(activity) } },
            caller: WorkflowFaultTests.noCalls
        ) { engines, workersMayStart in
            try await body(engines[0], database, reported, workersMayStart)
        }
    }

    /// What an engine told its observer, in order.
    final class Reported: Sendable {
        let activity = Mutex<[WorkflowActivity]>([])
    }
}
