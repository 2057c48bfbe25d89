import Chargepath
import ChargepathPostgres
import ChargepathWorkflows
import Foundation
import Logging
import NIOPosix
import OCPPCore
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Testing

/// Issue 5, "bad input and faults": the database going away mid-step, and two workers claiming
/// the same timers. Engines built directly on a fresh migrated database (real PostgreSQL), with a
/// small workflow of this file and a fake charger caller.
@Suite(.timeLimit(.minutes(3))) struct WorkflowFaultTests {
    // MARK: The database going away mid-step

    @Test func theDatabaseGoingAwayMidStepRollsTheStepBackAndItIsAppliedOnceWhenItIsBack() async throws {
        let database = try await Self.migratedDatabase()
        let admin = database.with(database: "postgres")
        let calls = CallLog()
        let logs = LogCapture()
        var logger = Logger(label: "workflow-faults", factory: { _ in logs })
        logger.logLevel = .warning
        let configuration = PostgresWorkflowEngine.Configuration(
            pollInterval: .milliseconds(50), callLease: .seconds(10), stepTimeout: .seconds(2)
        )
        try await Self.withEngines(database, workers: ["A"], configuration: configuration, logger: logger, caller: { chargePoint, action, _ in
            calls.lines.withLock { $0.append("\(chargePoint) \(action)") }
            return .answered(["status": "Accepted"])
        }) { engines, workersMayStart in
            let engine = engines[0]
            // A timer due now, whose inbox row another transaction holds: a lane locks the
            // execution, then waits for the timer inside the step's transaction.
            let held = try await engine.start(workflow: AlarmWorkflow.name, input: AlarmWorkflow.input(due: Date(), call: true))
            let blocker = try await Self.connect(database)
            do {
                try await Self.holdTimers(of: held, on: blocker)
                workersMayStart.open()
                try await eventually(timeout: .seconds(30), "the worker waits inside the step") {
                    try await Self.lockWaiters(database).count == 1
                }
                // Another timer that falls due while the database is away.
                let overdueAt = Date().addingTimeInterval(2)
                let overdue = try await engine.start(workflow: AlarmWorkflow.name, input: AlarmWorkflow.input(due: overdueAt, call: false))

                // The database goes away with the step's transaction open.
                let failuresBefore = Self.retriedSteps(logs)
                try await TestDatabase.execute("ALTER DATABASE \(database.database) ALLOW_CONNECTIONS false", on: admin)
                do {
                    try await TestDatabase.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(database.database)'", on: admin
                    )
                    try await eventually(timeout: .seconds(60), "the worker finds the database gone and the second timer falls due") {
                        Self.retriedSteps(logs) > failuresBefore && Date() > overdueAt.addingTimeInterval(1)
                    }
                } catch {
                    try? await TestDatabase.execute("ALTER DATABASE \(database.database) ALLOW_CONNECTIONS true", on: admin)
                    throw error
                }
                try await TestDatabase.execute("ALTER DATABASE \(database.database) ALLOW_CONNECTIONS true", on: admin)
                try? await blocker.close()

                // Back: the cut-off step is applied, once, and so is the timer that fell due meanwhile.
                try await eventually(timeout: .seconds(90), "both executions finish once the database is back") {
                    let statuses = try await Self.statuses(database)
                    return statuses.count == 2 && statuses.values.allSatisfy { $0.status == "SUCCEEDED" }
                }
                let executions = try await Self.statuses(database)
                #expect(executions.count == 2)
                #expect(executions[held]?.output?["rangBy"] == "A")
                #expect(executions[held]?.output?["answer"]?["status"] == "Accepted")
                #expect(calls.lines.withLock { $0 }.allSatisfy { $0 == "CP-FAULT DataTransfer" })
                #expect(calls.lines.withLock { $0.count } >= 1)

                let history = try await Self.history(database)
                Self.expectWholeSteps(history[held] ?? [], events: ["timerFired:alarm", "callAnswered:ping"])
                Self.expectWholeSteps(history[overdue] ?? [], events: ["timerFired:alarm", "timerFired:done"])
                #expect(try await Self.leftovers(database) == 0, "no pending timer or unsent call is left behind")
            } catch {
                try? await blocker.close()
                throw error
            }
        }
    }

    // MARK: Two workers, the same timers

    @Test func twoWorkersRacingForTimersDueAtTheSameMomentApplyEachOnce() async throws {
        let database = try await Self.migratedDatabase()
        let count = 50
        let configuration = PostgresWorkflowEngine.Configuration(pollInterval: .milliseconds(20), stepTimeout: .seconds(15))
        try await Self.withEngines(database, workers: ["A", "B"], configuration: configuration, caller: Self.noCalls) { engines, workersMayStart in
            workersMayStart.open()
            // All due at one moment, a little ahead, so that both workers are polling when it comes.
            let due = Date().addingTimeInterval(3)
            var ids: [String] = []
            for index in 0..<count {
                ids.append(try await engines[index % 2].start(workflow: AlarmWorkflow.name, input: AlarmWorkflow.input(due: due, call: false)))
            }
            try await eventually(timeout: .seconds(90), "every execution finishes") {
                let statuses = try await Self.statuses(database)
                return statuses.count == count && statuses.values.allSatisfy { $0.status != "RUNNING" }
            }
            let executions = try await Self.statuses(database)
            #expect(executions.values.allSatisfy { $0.status == "SUCCEEDED" })
            let history = try await Self.history(database)
            for id in ids {
                Self.expectWholeSteps(history[id] ?? [], events: ["timerFired:alarm", "timerFired:done"])
            }
            // Who applied the steps is not asserted here: on a busy machine one worker may get them
            // all. `aTimerHeldByOneWorkerIsSkippedByTheOther...` shows both working, deterministically.
        }
    }

    @Test func anExecutionHeldByOneWorkerIsSkippedByTheOtherNeitherWaitedForNorAppliedTwice() async throws {
        let database = try await Self.migratedDatabase()
        let count = 20
        // A step time limit longer than the test: the worker whose step waits for the held timer
        // stays in that step, holding the execution, until the timer is released, so every other
        // step is the other worker's. One lane each, so that "worker" means one step at a time
        // (WorkflowLaneTests has several lanes of one worker doing the same).
        let configuration = PostgresWorkflowEngine.Configuration(pollInterval: .milliseconds(20), stepTimeout: .seconds(150),
                                                                 workerConcurrency: 1)
        try await Self.withEngines(database, workers: ["A", "B"], configuration: configuration, caller: Self.noCalls) { engines, workersMayStart in
            // All due at the same (past) moment; the first one created is first in line.
            let due = Date().addingTimeInterval(-1)
            var ids: [String] = []
            for _ in 0..<count {
                ids.append(try await engines[0].start(workflow: AlarmWorkflow.name, input: AlarmWorkflow.input(due: due, call: false)))
            }
            let held = ids[0]
            let blocker = try await Self.connect(database)
            do {
                try await Self.holdTimers(of: held, on: blocker)
                workersMayStart.open()

                // Whichever worker takes the first execution waits in its step for the timer; the
                // other skips that execution (it does not wait for it) and applies all the others.
                var waiters: [String] = []
                try await eventually(timeout: .seconds(30), "a worker waits inside the held execution's step") {
                    waiters = try await Self.lockWaiters(database)
                    return !waiters.isEmpty
                }
                let stuck = try #require(waiters.first?.replacingOccurrences(of: "worker-", with: ""))
                let free = stuck == "A" ? "B" : "A"
                try await eventually(timeout: .seconds(60), "the other worker applies every other timer meanwhile") {
                    let statuses = try await Self.statuses(database)
                    return ids.dropFirst().allSatisfy { statuses[$0]?.status == "SUCCEEDED" }
                }
                #expect(try await Self.lockWaiters(database) == ["worker-\(stuck)"], "only the held step waits")
                var executions = try await Self.statuses(database)
                #expect(executions[held]?.status == "RUNNING")
                for id in ids.dropFirst() {
                    #expect(executions[id]?.output?["rangBy"]?.stringValue == free)
                    #expect(executions[id]?.output?["doneBy"]?.stringValue == free)
                }
                #expect(try await Self.history(database)[held]?.contains { $0.kind == "event" } == false, "the held step is not applied yet")

                // Released: the waiting step goes on and is applied once, by the worker that claimed it.
                try await blocker.query("COMMIT", logger: TestDatabase.logger)
                try await eventually(timeout: .seconds(60), "the held execution finishes") {
                    try await Self.statuses(database)[held]?.status == "SUCCEEDED"
                }
                executions = try await Self.statuses(database)
                #expect(executions[held]?.output?["rangBy"]?.stringValue == stuck)
                let history = try await Self.history(database)
                for id in ids {
                    Self.expectWholeSteps(history[id] ?? [], events: ["timerFired:alarm", "timerFired:done"])
                }
                try? await blocker.close()
            } catch {
                try? await blocker.close()
                throw error
            }
        }
    }

    // MARK: Support

    static let noCalls: @Sendable (String, String, JSONValue) async -> PostgresWorkflowEngine.CallOutcome = { _, _, _ in
        .failed(code: "NotExpected", description: "this test sends no calls")
    }

    static func migratedDatabase() async throws -> DatabaseEndpoint {
        let database = try await TestDatabase.shared.freshDatabase()
        _ = try await TestDatabase.withClient(database) { client in
            try await MigrationRunner().run(on: client, logger: TestDatabase.logger)
        }
        return database
    }

    /// Runs one engine per worker name, each on a client of its own (its connections carry
    /// `application_name` worker-<name>). The workers start when the gate passed to `body` opens.
    static func withEngines<T: Sendable>(
        _ database: DatabaseEndpoint, workers: [String], configuration: PostgresWorkflowEngine.Configuration,
        logger: Logger = TestDatabase.logger, poolSize: Int = 4,
        workflows: (String) -> [AnyWorkflow] = { [AnyWorkflow(AlarmWorkflow(worker: $0))] },
        observer: @escaping @Sendable (WorkflowActivity) -> Void = { _ in },
        caller: @escaping @Sendable (String, String, JSONValue) async -> PostgresWorkflowEngine.CallOutcome,
        _ body: @Sendable ([PostgresWorkflowEngine], Gate) async throws -> T
    ) async throws -> T {
        let workersMayStart = Gate()
        var clients: [PostgresClient] = []
        var engines: [PostgresWorkflowEngine] = []
        for worker in workers {
            var clientConfiguration = database.clientConfiguration(maximumConnections: poolSize)
            clientConfiguration.options.additionalStartupParameters = [("application_name", "worker-\(worker)")]
            let client = PostgresClient(configuration: clientConfiguration, backgroundLogger: TestDatabase.logger)
            clients.append(client)
            engines.append(PostgresWorkflowEngine(
                client: client, workflows: workflows(worker), configuration: configuration,
                logger: logger, schemaReady: workersMayStart, observer: observer, caller: caller
            ))
        }
        let services = clients.map { $0 as any Service } + engines.map { $0 as any Service }
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: TestDatabase.logger))
        let running = engines
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let result = try await body(running, workersMayStart)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }

    /// Opens a transaction on `connection` that holds the inbox rows (timers) of execution `id`:
    /// a step of that execution locks the execution, then waits for them.
    static func holdTimers(of id: String, on connection: PostgresConnection) async throws {
        try await connection.query("BEGIN", logger: TestDatabase.logger)
        try await connection.query("SELECT id FROM workflow_inbox WHERE execution_id = \(id) FOR UPDATE", logger: TestDatabase.logger)
    }

    /// A connection of its own, outside any pool (a pool's request can wait without end while the
    /// database refuses connections).
    static func connect(_ endpoint: DatabaseEndpoint) async throws -> PostgresConnection {
        let configuration = PostgresConnection.Configuration(
            host: endpoint.host, port: endpoint.port, username: endpoint.username, password: endpoint.password,
            database: endpoint.database, tls: .disable
        )
        return try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: 7, logger: TestDatabase.logger
        )
    }

    static func withConnection<T: Sendable>(_ endpoint: DatabaseEndpoint, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await connect(endpoint)
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// The workers' backends waiting for a lock in `database` (their application names).
    static func lockWaiters(_ database: DatabaseEndpoint) async throws -> [String] {
        try await withConnection(database.with(database: "postgres")) { connection in
            var names: [String] = []
            let rows = try await connection.query(
                """
                SELECT application_name FROM pg_stat_activity
                WHERE datname = \(database.database) AND wait_event_type = 'Lock' AND application_name LIKE 'worker-%'
                ORDER BY application_name
                """,
                logger: TestDatabase.logger
            )
            for try await name in rows.decode(String.self) { names.append(name) }
            return names
        }
    }

    static func statuses(_ database: DatabaseEndpoint) async throws -> [String: (status: String, output: JSONValue?)] {
        try await withConnection(database) { connection in
            var result: [String: (status: String, output: JSONValue?)] = [:]
            let rows = try await connection.query("SELECT id, status, output::text FROM workflow_executions", logger: TestDatabase.logger)
            for try await (id, status, output) in rows.decode((String, String, String?).self) {
                result[id] = (status, try output.map { try JSONValue.parse($0) })
            }
            return result
        }
    }

    /// The calls the fake charger caller received.
    final class CallLog: Sendable {
        let lines = Mutex<[String]>([])
    }

    struct Entry: Sendable {
        let kind: String
        let detail: JSONValue
    }

    static func history(_ database: DatabaseEndpoint) async throws -> [String: [Entry]] {
        try await withConnection(database) { connection in
            var result: [String: [Entry]] = [:]
            let rows = try await connection.query(
                "SELECT execution_id, kind, detail::text FROM workflow_history ORDER BY id", logger: TestDatabase.logger
            )
            for try await (id, kind, detail) in rows.decode((String, String, String).self) {
                result[id, default: []].append(Entry(kind: kind, detail: try JSONValue.parse(detail)))
            }
            return result
        }
    }

    /// Timers still pending and calls never done.
    static func leftovers(_ database: DatabaseEndpoint) async throws -> Int {
        try await withConnection(database) { connection in
            let rows = try await connection.query(
                """
                SELECT (SELECT count(*) FROM workflow_inbox)::int + (SELECT count(*) FROM workflow_outbox WHERE done_at IS NULL)::int
                """,
                logger: TestDatabase.logger
            )
            var count = 0
            for try await value in rows.decode(Int.self) { count = value }
            return count
        }
    }

    /// How many times the worker said a step failed and would be retried.
    static func retriedSteps(_ logs: LogCapture) -> Int {
        logs.messages.filter { $0.contains("A workflow step failed") }.count
    }

    /// An execution's history holds the events, each exactly once and in this order, and every
    /// step whole: each event is followed by its transition, each transition but the first
    /// follows an event, and it ends with one `finished`.
    static func expectWholeSteps(_ history: [Entry], events expected: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let kinds = history.map(\.kind)
        let events = history.filter { $0.kind == "event" }.map { entry -> String in
            let (name, detail) = entry.detail.objectValue.flatMap { Array($0).first }.map { ($0.key, $0.value) } ?? ("?", JSONValue.null)
            return "\(name):\(detail["name"]?.stringValue ?? detail["key"]?.stringValue ?? "?")"
        }
        #expect(events == expected, "each event once: \(kinds)", sourceLocation: sourceLocation)
        #expect(kinds.first == "started", sourceLocation: sourceLocation)
        #expect(kinds.filter { $0 == "finished" }.count == 1 && kinds.last == "finished", "\(kinds)", sourceLocation: sourceLocation)
        for (index, kind) in kinds.enumerated() {
            switch kind {
            case "event":
                #expect(kinds.indices.contains(index + 1) && kinds[index + 1] == "transition", "an event without its transition: \(kinds)",
                        sourceLocation: sourceLocation)
            case "transition":
                #expect(index > 0 && ["started", "event"].contains(kinds[index - 1]), "a transition without its event: \(kinds)",
                        sourceLocation: sourceLocation)
            default:
                break
            }
        }
        #expect(kinds.filter { $0 == "transition" }.count == expected.count + 1, "\(kinds)", sourceLocation: sourceLocation)
    }
}

/// A small workflow for the fault tests: an alarm timer; when it rings, either a call to a charger
/// or a second timer due at once; then the end. `worker` names the engine that applied a step, so
/// a test can tell which of two workers did what.
struct AlarmWorkflow: WorkflowDefinition {
    static let name = "Alarm"
    static let version = 1

    struct Input: Sendable, Codable {
        var dueAt: Date
        var call: Bool
    }

    enum State: Sendable, Codable, Equatable {
        case waiting(call: Bool)
        case rang(by: String)
        case calling(rangBy: String)
        case finished
    }

    let worker: String

    static func input(due: Date, call: Bool) -> JSONValue {
        ["dueAt": .string(ISO8601DateFormatter().string(from: due)), "call": .bool(call)]
    }

    func start(_ input: Input, now: Date) throws(WorkflowInputError) -> WorkflowTransition<State> {
        WorkflowTransition(state: .waiting(call: input.call), commands: [.setTimer(name: "alarm", at: input.dueAt)], note: "Alarm set")
    }

    func handle(_ event: WorkflowEvent, in state: State, now: Date) -> WorkflowTransition<State> {
        switch (state, event) {
        case (.waiting(let call), .timerFired("alarm")):
            if call {
                return WorkflowTransition(
                    state: .calling(rangBy: worker),
                    commands: [.call(key: "ping", chargePointID: "CP-FAULT", action: "DataTransfer", payload: ["vendorId": "test"])],
                    note: "Rang; calling the charger"
                )
            }
            return WorkflowTransition(state: .rang(by: worker), commands: [.setTimer(name: "done", at: now)], note: "Rang")
        case (.rang(let rangBy), .timerFired("done")):
            return WorkflowTransition(
                state: .finished, outcome: .succeeded(["rangBy": .string(rangBy), "doneBy": .string(worker)]), note: "Done"
            )
        case (.calling(let rangBy), .callAnswered("ping", let answer)):
            return WorkflowTransition(
                state: .finished, outcome: .succeeded(["rangBy": .string(rangBy), "doneBy": .string(worker), "answer": answer]), note: "Answered"
            )
        default:
            return WorkflowTransition(state: state, note: "Ignored an unexpected event")
        }
    }
}
