import Chargepath
import ChargepathPostgres
import ChargepathWorkflows
import Foundation
import OCPP16
import OCPPCore
import PostgresNIO
import Testing

/// The worker's lanes: several starts and steps at once in one process, none applied twice nor
/// out of order. Engines built directly on a fresh migrated database (real PostgreSQL), as in
/// WorkflowFaultTests.
@Suite(.timeLimit(.minutes(3))) struct WorkflowLaneTests {
    @Test func manyStartsAndEventsOverSeveralLanesAreEachAppliedOnceAndInOrder() async throws {
        let database = try await WorkflowFaultTests.migratedDatabase()
        let executions = 200
        let signals = 5
        // Two workers of four lanes each (and small start batches, so that the starts are shared
        // out too) race for the same starts and events.
        let configuration = PostgresWorkflowEngine.Configuration(
            pollInterval: .milliseconds(20), stepTimeout: .seconds(30), workerConcurrency: 4, startBatchSize: 7
        )
        try await WorkflowFaultTests.withEngines(
            database, workers: ["A", "B"], configuration: configuration, poolSize: 6,
            workflows: { _ in [AnyWorkflow(TallyWorkflow())] }, caller: WorkflowFaultTests.noCalls
        ) { engines, workersMayStart in
            // Starts as charger messages ask for them: rows of workflow_starts, all there at once.
            try await WorkflowFaultTests.withConnection(database) { connection in
                try await connection.query(
                    """
                    INSERT INTO workflow_starts (execution_id, workflow, input, created_at)
                    SELECT 'tally-' || i, 'Tally', jsonb_build_object('signals', \(signals)::integer), now()
                    FROM generate_series(1, \(executions)::integer) i
                    """,
                    logger: TestDatabase.logger
                )
            }
            let ids = (1...executions).map { "tally-\($0)" }
            workersMayStart.open()
            try await eventually(timeout: .seconds(90), "every execution starts") {
                try await WorkflowFaultTests.statuses(database).count == executions
            }
            // Each execution's signals in order, the executions' all at once: the lanes apply
            // steps while further events arrive.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, id) in ids.enumerated() {
                    group.addTask {
                        for signal in 0..<signals {
                            try await engines[index % 2].deliver(.signal(name: "s\(signal)", payload: .null), to: id)
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await eventually(timeout: .seconds(120), "every execution has all its signals") {
                let statuses = try await WorkflowFaultTests.statuses(database)
                return statuses.count == executions && statuses.values.allSatisfy { $0.status != "RUNNING" }
            }
            let statuses = try await WorkflowFaultTests.statuses(database)
            let expected: JSONValue = .array((0..<signals).map { .string("s\($0)") })
            #expect(statuses.values.allSatisfy { $0.status == "SUCCEEDED" })
            #expect(ids.allSatisfy { statuses[$0]?.output == expected }, "every execution saw its signals once each, in order")
            let history = try await WorkflowFaultTests.history(database)
            for id in ids {
                let entries = history[id] ?? []
                WorkflowFaultTests.expectWholeSteps(entries, events: (0..<signals).map { "signal:s\($0)" })
                #expect(entries.filter { $0.kind == "started" }.count == 1, "started once: \(id)")
                // Each step but the last (re)set the one "tick" timer; the end removed it.
                #expect(entries.filter { $0.kind == "command" }.count == signals - 1)
            }
            #expect(try await WorkflowFaultTests.leftovers(database) == 0, "no timer left behind")
            #expect(try await Self.count("workflow_starts", database) == 0)
        }
    }

    @Test func aStepWaitingForALockHoldsUpOnlyItsOwnLane() async throws {
        let database = try await WorkflowFaultTests.migratedDatabase()
        let count = 30
        // One worker. With one lane, the held step would stop everything behind it; with four,
        // the others go on.
        let configuration = PostgresWorkflowEngine.Configuration(
            pollInterval: .milliseconds(20), stepTimeout: .seconds(150), workerConcurrency: 4
        )
        try await WorkflowFaultTests.withEngines(
            database, workers: ["A"], configuration: configuration, caller: WorkflowFaultTests.noCalls
        ) { engines, workersMayStart in
            let due = Date().addingTimeInterval(-1)
            var ids: [String] = []
            for _ in 0..<count {
                ids.append(try await engines[0].start(workflow: AlarmWorkflow.name, input: AlarmWorkflow.input(due: due, call: false)))
            }
            let held = ids[0]
            let blocker = try await WorkflowFaultTests.connect(database)
            do {
                try await WorkflowFaultTests.holdTimers(of: held, on: blocker)
                workersMayStart.open()
                try await eventually(timeout: .seconds(30), "a lane waits inside the held execution's step") {
                    try await WorkflowFaultTests.lockWaiters(database) == ["worker-A"]
                }
                try await eventually(timeout: .seconds(60), "the other lanes apply every other step meanwhile") {
                    let statuses = try await WorkflowFaultTests.statuses(database)
                    return ids.dropFirst().allSatisfy { statuses[$0]?.status == "SUCCEEDED" }
                }
                #expect(try await WorkflowFaultTests.lockWaiters(database) == ["worker-A"], "only the held step waits")
                #expect(try await WorkflowFaultTests.statuses(database)[held]?.status == "RUNNING")
                #expect(try await WorkflowFaultTests.history(database)[held]?.contains { $0.kind == "event" } == false)

                try await blocker.query("COMMIT", logger: TestDatabase.logger)
                try await eventually(timeout: .seconds(60), "the held execution finishes") {
                    try await WorkflowFaultTests.statuses(database)[held]?.status == "SUCCEEDED"
                }
                let history = try await WorkflowFaultTests.history(database)
                for id in ids {
                    WorkflowFaultTests.expectWholeSteps(history[id] ?? [], events: ["timerFired:alarm", "timerFired:done"])
                }
                try? await blocker.close()
            } catch {
                try? await blocker.close()
                throw error
            }
        }
    }

    static func count(_ table: String, _ database: DatabaseEndpoint) async throws -> Int {
        try await WorkflowFaultTests.withConnection(database) { connection in
            let rows = try await connection.query(PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(table)"), logger: TestDatabase.logger)
            var count = 0
            for try await value in rows.decode(Int.self) { count = value }
            return count
        }
    }
}

/// Counts signals: ends with their names, in the order applied, once it has `signals` of them.
/// Every step (re)sets a far timer, so steps replace inbox rows while others are applied.
struct TallyWorkflow: WorkflowDefinition {
    static let name = "Tally"
    static let version = 1

    struct Input: Sendable, Codable {
        var signals: Int
    }

    struct State: Sendable, Codable, Equatable {
        var expected: Int
        var seen: [String]
    }

    func start(_ input: Input, now: Date) throws(WorkflowInputError) -> WorkflowTransition<State> {
        WorkflowTransition(state: State(expected: input.signals, seen: []), note: "Counting")
    }

    func handle(_ event: WorkflowEvent, in state: State, now: Date) -> WorkflowTransition<State> {
        guard case .signal(let name, _) = event else { return WorkflowTransition(state: state, note: "Ignored") }
        var next = state
        next.seen.append(name)
        if next.seen.count >= next.expected {
            return WorkflowTransition(state: next, outcome: .succeeded(.array(next.seen.map { .string($0) })), note: "All in")
        }
        return WorkflowTransition(state: next, commands: [.setTimer(name: "tick", at: now.addingTimeInterval(3600))], note: "Seen \(name)")
    }
}

/// `workflow_waits` (migration 0008) is what every stored charger message probes before it is
/// answered: it must list exactly the (charge point, action) pairs running executions wait for.
@Suite(.timeLimit(.minutes(2))) struct WorkflowWaitsTests {
    @Test func theWaitsFollowEachExecutionsFiltersAndStatus() async throws {
        let database = try await WorkflowFaultTests.migratedDatabase()
        try await WorkflowFaultTests.withConnection(database) { connection in
            func waits() async throws -> [String] {
                let rows = try await connection.query(
                    "SELECT execution_id || ' ' || charge_point_id || ' ' || action FROM workflow_waits ORDER BY 1", logger: TestDatabase.logger
                )
                var found: [String] = []
                for try await row in rows.decode(String.self) { found.append(row) }
                return found
            }
            func run(_ sql: String) async throws {
                try await connection.query(PostgresQuery(unsafeSQL: sql), logger: TestDatabase.logger)
            }
            // Two filters on one action (two connectors) give one row; a running execution's
            // filters appear as it is inserted.
            try await run("""
                INSERT INTO workflow_executions (id, workflow, version, charge_point_id, input, state, status, waiting_for, created_at, updated_at)
                VALUES ('x1', 'T', 1, 'CP-1', '{}', 'null', 'RUNNING',
                    '[{"chargePointID":"CP-1","action":"StatusNotification","connectorID":1},
                      {"chargePointID":"CP-1","action":"StatusNotification","connectorID":2},
                      {"chargePointID":"CP-1","action":"StopTransaction","transactionID":7}]', now(), now()),
                    ('x2', 'T', 1, 'CP-2', '{}', 'null', 'RUNNING', '[{"chargePointID":"CP-2","action":"MeterValues"}]', now(), now())
                """)
            #expect(try await waits() == ["x1 CP-1 StatusNotification", "x1 CP-1 StopTransaction", "x2 CP-2 MeterValues"])
            // A step changes what it waits for: the rows follow.
            try await run("""
                UPDATE workflow_executions SET waiting_for = '[{"chargePointID":"CP-1","action":"StartTransaction"}]' WHERE id = 'x1'
                """)
            #expect(try await waits() == ["x1 CP-1 StartTransaction", "x2 CP-2 MeterValues"])
            // An update that leaves the filters alone (a state change only) keeps them.
            try await run("UPDATE workflow_executions SET state = '{\"n\":1}' WHERE id = 'x1'")
            #expect(try await waits() == ["x1 CP-1 StartTransaction", "x2 CP-2 MeterValues"])
            // A finished execution waits for nothing, even if its column still says otherwise.
            try await run("UPDATE workflow_executions SET status = 'SUCCEEDED' WHERE id = 'x2'")
            #expect(try await waits() == ["x1 CP-1 StartTransaction"])
            try await run("DELETE FROM workflow_executions WHERE id = 'x1'")
            #expect(try await waits() == [])
        }
    }

    /// Under load the probes of many chargers' messages go in one statement: each message must
    /// get exactly the running executions waiting for its own charger and action.
    @Test func aBatchOfProbesAnswersEachProbeWithItsOwnWaiters() async throws {
        let database = try await WorkflowFaultTests.migratedDatabase()
        try await TestDatabase.execute("""
            INSERT INTO workflow_executions (id, workflow, version, charge_point_id, input, state, status, waiting_for, created_at, updated_at)
            VALUES ('x1', 'T', 1, 'CP-1', '{}', 'null', 'RUNNING',
                    '[{"chargePointID":"CP-1","action":"StatusNotification","connectorID":1},
                      {"chargePointID":"CP-1","action":"StopTransaction","transactionID":7}]', now(), now()),
                ('x2', 'T', 1, 'CP-2', '{}', 'null', 'RUNNING', '[{"chargePointID":"CP-2","action":"MeterValues"}]', now(), now()),
                ('x3', 'T', 1, 'CP-1', '{}', 'null', 'RUNNING', '[{"chargePointID":"CP-1","action":"StatusNotification"}]', now(), now()),
                ('x4', 'T', 1, 'CP-2', '{}', 'null', 'SUCCEEDED', '[{"chargePointID":"CP-2","action":"MeterValues"}]', now(), now())
            """, on: database)
        let probes = [
            WaitProbe(chargePointID: "CP-1", action: "StatusNotification"), WaitProbe(chargePointID: "CP-2", action: "MeterValues"),
            WaitProbe(chargePointID: "CP-3", action: "Heartbeat"), WaitProbe(chargePointID: "CP-1", action: "StatusNotification"),
            WaitProbe(chargePointID: "CP-1", action: "MeterValues"), WaitProbe(chargePointID: "CP-1", action: "StopTransaction"),
        ]
        let expected = [["x1", "x3"], ["x2"], [], ["x1", "x3"], [], ["x1"]]
        try await TestDatabase.withClient(database) { client in
            let batch = try await PostgresWorkflowEngine.waitingExecutions(probes, client: client, logger: TestDatabase.logger)
            #expect(batch.map { $0.map(\.executionID).sorted() } == expected)
            #expect(batch[1].first?.waitingFor.contains("MeterValues") == true)
            // Alone (a quiet system) the same answers.
            for (probe, ids) in zip(probes, expected) {
                let alone = try await PostgresWorkflowEngine.waitingExecutions([probe], client: client, logger: TestDatabase.logger)
                #expect(alone.map { $0.map(\.executionID).sorted() } == [ids])
            }
            // MeterValues read their waiters in the statement that stores them: the same answers
            // for each message of a batch, and every reading stored.
            let at = Date(timeIntervalSince1970: 1_795_608_000)
            let chargers = ["CP-1", "CP-2", "CP-3", "CP-2"]
            let writes = chargers.enumerated().map { i, charger in
                MeterValuesWrite(chargePointID: charger, connectorID: 1, transactionID: i == 0 ? nil : 7, samples: [
                    MeterSample(sampledAt: at.addingTimeInterval(Double(i)), value: "\(1000 + i)", measurand: "Energy.Active.Import.Register", unit: "Wh"),
                    MeterSample(sampledAt: at.addingTimeInterval(Double(i) + 0.5), value: "\(2000 + i)", measurand: "Energy.Active.Import.Register", unit: "Wh"),
                ], receivedAt: at)
            }
            let stored = try await PostgresCentralSystemStore.recordMeterValues(writes, slot: nil, pinned: nil, client: client, logger: TestDatabase.logger)
            #expect(stored.map { $0.map(\.executionID) } == [[], ["x2"], [], ["x2"]])
            #expect(stored[1].first?.waitingFor.contains("MeterValues") == true)
            let readings = try await client.query("SELECT charge_point_id, count(*)::int FROM meter_readings WHERE source = 'MeterValues' GROUP BY 1 ORDER BY 1", logger: TestDatabase.logger)
            var counts: [String: Int] = [:]
            for try await (charger, count) in readings.decode((String, Int).self) { counts[charger] = count }
            #expect(counts == ["CP-1": 2, "CP-2": 4, "CP-3": 2])
            // The same batch again (an unclear failure, written again): nothing doubled, the same waiters.
            let again = try await PostgresCentralSystemStore.recordMeterValues(writes, slot: nil, pinned: nil, client: client, logger: TestDatabase.logger)
            #expect(again.map { $0.map(\.executionID) } == [[], ["x2"], [], ["x2"]])
            let total = try await client.query("SELECT count(*)::int FROM meter_readings", logger: TestDatabase.logger)
            for try await count in total.decode(Int.self) { #expect(count == 8) }
        }
    }

    /// The events of several charger messages go to the inbox in one statement: each execution
    /// gets its message's event, in the order the messages came, and no execution another's.
    @Test func aBatchOfDeliveriesGivesEachExecutionItsOwnEvents() async throws {
        let database = try await WorkflowFaultTests.migratedDatabase()
        try await TestDatabase.execute("""
            INSERT INTO workflow_executions (id, workflow, version, charge_point_id, input, state, status, waiting_for, created_at, updated_at)
            VALUES ('d1', 'T', 1, 'CP-1', '{}', 'null', 'RUNNING', '[]', now(), now()),
                ('d2', 'T', 1, 'CP-2', '{}', 'null', 'RUNNING', '[]', now(), now()),
                ('d3', 'T', 1, 'CP-3', '{}', 'null', 'RUNNING', '[]', now(), now())
            """, on: database)
        let at = Date(timeIntervalSince1970: 1_795_608_000)
        let deliveries = [
            EventDelivery(executionIDs: ["d1", "d2"], event: #"{"timerFired":{"name":"a"}}"#, at: at),
            EventDelivery(executionIDs: ["d3"], event: #"{"timerFired":{"name":"b"}}"#, at: at.addingTimeInterval(1)),
            EventDelivery(executionIDs: ["d1"], event: #"{"timerFired":{"name":"c"}}"#, at: at.addingTimeInterval(2)),
        ]
        try await TestDatabase.withClient(database) { client in
            try await PostgresWorkflowEngine.deliver(deliveries, client: client, logger: TestDatabase.logger)
            let inbox = try await client.query(
                "SELECT execution_id, event->'timerFired'->>'name', available_at FROM workflow_inbox ORDER BY id", logger: TestDatabase.logger
            )
            var rows: [String] = []
            for try await (id, name, available) in inbox.decode((String, String, Date).self) {
                rows.append("\(id):\(name):\(Int(available.timeIntervalSince(at)))")
            }
            #expect(rows == ["d1:a:0", "d2:a:0", "d3:b:1", "d1:c:2"])
        }
    }

    /// A StopTransaction that comes before the worker has started its transaction's session (a
    /// short transaction while the worker is behind) is not lost: the session ends as it starts,
    /// with the charger's meter stop and reason, and waits for nothing.
    @Test func aStopBeforeTheSessionStartsEndsTheSessionAsItStarts() async throws {
        let database = try await WorkflowFaultTests.migratedDatabase()
        try await WorkflowFaultTests.withEngines(
            database, workers: ["A"], configuration: .init(),
            workflows: { _ in [AnyWorkflow(ChargingSessionWorkflow())] }, caller: WorkflowFaultTests.noCalls
        ) { _, workersMayStart in
            let at = Date(timeIntervalSince1970: 1_795_608_000)
            let transactionID = try await TestDatabase.withClient(database) { client in
                let store = PostgresCentralSystemStore(client: client, logger: TestDatabase.logger)
                let started = try await store.startTransaction(
                    chargePointID: "CP-R", StartTransactionRequest(connectorId: 1, idTag: "TAG-R", meterStart: 1_000, timestamp: at), receivedAt: at
                )
                let stopped = try await store.stopTransaction(
                    chargePointID: "CP-R",
                    StopTransactionRequest(meterStop: 1_600, timestamp: at.addingTimeInterval(60), transactionId: started.transactionID, reason: .evDisconnected),
                    samples: [], receivedAt: at.addingTimeInterval(60)
                )
                #expect(stopped.outcome == .stopped)
                // Nobody waits for it yet: the workflow engine is to look again, not to drop it.
                #expect(stopped.waitingWorkflows == nil)
                return started.transactionID
            }
            workersMayStart.open()
            let id = "session-\(transactionID)"
            try await eventually(timeout: .seconds(30), "the session ends") {
                try await WorkflowFaultTests.statuses(database)[id]?.status == "SUCCEEDED"
            }
            let output = try await WorkflowFaultTests.statuses(database)[id]?.output
            #expect(output?["meterStop"]?.int64Value == 1_600)
            #expect(output?["energyWh"]?.int64Value == 600)
            #expect(output?["stopReason"]?.stringValue == "EVDisconnected")
            #expect(output?["interrupted"] == .bool(false))
            try await TestDatabase.withClient(database) { client in
                let waits = try await client.query("SELECT count(*)::int FROM workflow_waits WHERE execution_id = \(id)", logger: TestDatabase.logger)
                for try await count in waits.decode(Int.self) { #expect(count == 0) }
            }
        }
    }
}
