public import Chargepath
public import ChargepathWorkflows
public import Foundation
public import Logging
public import OCPPCore
public import PostgresNIO
public import ServiceLifecycle
import NIOCore
import Synchronization

/// Runs durable workflows on PostgreSQL (migration 0005).
///
/// Each step is one transaction: lock an execution that has a due event (`FOR NO KEY UPDATE SKIP
/// LOCKED`, so several lanes, workers and nodes share the work and no step runs twice at once), take its
/// oldest due event from its inbox, apply the pure step function, and write the new state, the
/// history, the timers (inbox rows with a due time) and the calls to make (outbox rows). A worker
/// runs `workerConcurrency` lanes of starts and steps side by side, and one task that claims calls
/// in batches; starts that charger messages asked for are claimed in batches too. Calls leave the
/// process only after that commit, at least once, under a stable key; a worker that dies while a
/// call is out hands it on when its lease runs out. Kill the process anywhere: the next start
/// continues from the last committed step, and timers that fell due meanwhile fire at once.
public final class PostgresWorkflowEngine: Service, WorkflowEngine, Sendable {
    public struct Configuration: Sendable {
        /// How often an idle worker looks for due work.
        public var pollInterval: Duration
        /// How long a claimed call is leased (beyond it, another worker may send it again).
        public var callLease: Duration
        /// How long a call waits for a charger that is not connected before it fails as NotConnected.
        public var notConnectedGiveUp: Duration
        /// Calls out at once, per process.
        public var maximumCallsInFlight: Int
        /// The longest one step's transaction may take before the worker gives up on it and tries
        /// again (the step's row lock keeps a late commit and the retry from both applying).
        public var stepTimeout: Duration
        /// Lanes per process: each runs starts and steps on its own pool connection, so one slow
        /// round trip (a busy pool, a step waiting for a lock) does not hold up the others.
        ///
        /// By default half the cores, at least one (`defaultWorkerConcurrency`). Steps are
        /// background work, and every lane is one more busy PostgreSQL backend competing for the
        /// CPU with the statements chargers wait for. On 2 cores, the sessions benchmark at half
        /// its rate had a p99 of 65–78 ms with 4 lanes and 30–37 ms with one: the waves of session
        /// starts and stops, each a step, ran four at a time. One lane provisioned 1,000 booted
        /// chargers in 3.9 s against 2.8 s with four (BENCHMARKS.md).
        public var workerConcurrency: Int
        /// Lanes per process that join the others only while the worker is behind: while the
        /// starts and events its lanes take waited `catchUpAfter` or longer (`WorkflowCatchUp`).
        /// 0: none. By default as many as the cores (`defaultCatchUpLanes`).
        ///
        /// At the sessions benchmark's maximum rate on 2 cores (1,000 chargers saturating the
        /// node for 100 s), the one lane fell further behind all along: 3,829 starts waiting at
        /// the end, the oldest 95 s. With the catch-up lanes the backlog peaked at 2,029 (34 s) and
        /// was down to 319 (7.8 s) at the end, for 1% fewer charger messages a second over the run
        /// (7,604 against 7,696), 10–13% fewer in the first 40 s, while they worked
        /// (BENCHMARKS.md, 2026-11-27). Background work comes later under load, but is not
        /// avoided; a queue that only grows is worse.
        public var catchUpLanes: Int
        /// How late the work taken must be for the catch-up lanes to join; they stop once a lane
        /// takes work that waited less than half of it, or finds none.
        public var catchUpAfter: Duration
        /// The most `workflow_starts` rows one transaction claims and starts; also the most steps
        /// (one transaction each) a lane applies in a row before it looks for starts again.
        public var startBatchSize: Int

        public init(pollInterval: Duration = .milliseconds(100), callLease: Duration = .seconds(60),
                    notConnectedGiveUp: Duration = .seconds(300), maximumCallsInFlight: Int = 64,
                    stepTimeout: Duration = .seconds(15), workerConcurrency: Int = Configuration.defaultWorkerConcurrency, startBatchSize: Int = 16,
                    catchUpLanes: Int = Configuration.defaultCatchUpLanes, catchUpAfter: Duration = .seconds(5)) {
            self.pollInterval = pollInterval
            self.callLease = callLease
            self.notConnectedGiveUp = notConnectedGiveUp
            self.maximumCallsInFlight = maximumCallsInFlight
            self.stepTimeout = stepTimeout
            self.workerConcurrency = workerConcurrency
            self.startBatchSize = startBatchSize
            self.catchUpLanes = catchUpLanes
            self.catchUpAfter = catchUpAfter
        }

        /// Half this machine's cores, at least one.
        public static var defaultWorkerConcurrency: Int { max(1, System.coreCount / 2) }

        /// As many as the cores.
        public static var defaultCatchUpLanes: Int { System.coreCount }
    }

    /// How a call to a charger went, as the runner tells the workflow.
    public enum CallOutcome: Sendable {
        case answered(JSONValue)
        case failed(code: String, description: String)
        /// Not connected to this node: try again later (until `notConnectedGiveUp`).
        case notConnected
    }

    public typealias Execution = WorkflowExecution

    let client: PostgresClient
    let workflows: [String: AnyWorkflow]
    let caller: @Sendable (String, String, JSONValue) async -> CallOutcome
    let configuration: Configuration
    let logger: Logger
    let now: @Sendable () -> Date
    let schemaReady: Gate
    /// The wake-up probes of many chargers' messages in one round trip (see `chargerMessage`).
    let waitProbes: GroupCommit<WaitProbe, [WaitingWorkflow]>
    /// The events of many chargers' messages for the executions they wake, in one INSERT (see `chargerMessage`).
    let deliveries: GroupCommit<EventDelivery, Void>
    /// Told of each committed start and step, failed round and finished call (metrics).
    let observer: @Sendable (WorkflowActivity) -> Void

    public init(
        client: PostgresClient, workflows: [AnyWorkflow], configuration: Configuration = .init(), logger: Logger,
        schemaReady: Gate = Gate(open: true),
        probeConnections: PinnedConnections? = nil,
        now: @escaping @Sendable () -> Date = { Date() },
        observer: @escaping @Sendable (WorkflowActivity) -> Void = { _ in },
        caller: @escaping @Sendable (_ chargePointID: String, _ action: String, _ payload: JSONValue) async -> CallOutcome
    ) {
        self.client = client
        self.workflows = Dictionary(uniqueKeysWithValues: workflows.map { ($0.name, $0) })
        self.caller = caller
        self.configuration = configuration
        self.logger = logger
        self.now = now
        self.schemaReady = schemaReady
        self.observer = observer
        let logger = logger
        // One slot (see `GroupCommit.Configuration.maximumConcurrentWrites`), on its own connection when given.
        self.waitProbes = GroupCommit(configuration: .init(maximumBatchSize: 512, maximumConcurrentWrites: 1)) { probes, slot in
            try await Self.waitingExecutions(probes, slot: slot, pinned: probeConnections, client: client, logger: logger)
        }
        // Through the pool: events are few but come in bursts (a fleet's sessions ending together).
        self.deliveries = GroupCommit(configuration: .init(maximumBatchSize: 512, maximumConcurrentWrites: 1)) { deliveries, _ in
            try await Self.deliver(deliveries, client: client, logger: logger)
        }
    }

    public var workflowNames: [String] { workflows.keys.sorted() }

    // MARK: Starting, reading, cancelling

    /// Starts an execution; returns its id. The first step is recorded in the same transaction.
    public func start(workflow name: String, input: JSONValue) async throws -> String {
        try await start(workflow: name, input: input, executionID: nil)
    }

    /// Starts an execution under `executionID` (a new random id when nil); returns the id.
    public func start(workflow name: String, input: JSONValue, executionID: String?) async throws -> String {
        guard let workflow = workflows[name] else { throw WorkflowStartError.unknownWorkflow(name) }
        let date = now()
        let transition: StoredTransition
        do {
            transition = try workflow.start(input: input, now: date)
        } catch {
            throw WorkflowStartError.badInput(error)
        }
        let id = executionID ?? Self.newID()
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query(
                """
                INSERT INTO workflow_executions (id, workflow, version, charge_point_id, input, state, status, created_at, updated_at)
                VALUES (\(id), \(workflow.name), \(workflow.version), \(workflow.chargePointID(input)), \(input.serialized())::jsonb,
                    \(transition.state.serialized())::jsonb, 'RUNNING', \(date), \(date))
                """,
                logger: logger
            )
            try await self.history(id, "started", ["input": input], at: date, on: connection)
            try await self.apply(transition, to: id, at: date, on: connection)
        }
        observer(.started(workflow: name, finished: transition.outcome?.finalStatus))
        return id
    }

    public func execution(id: String) async throws -> Execution? {
        let rows = try await client.query("SELECT \(unescaped: Self.columns) FROM workflow_executions WHERE id = \(id)", logger: logger)
        var found: Execution?
        for try await row in rows { found = try Self.execution(row) }
        guard var execution = found else { return nil }
        let history = try await client.query(
            "SELECT kind, detail::text, at FROM workflow_history WHERE execution_id = \(id) ORDER BY id", logger: logger
        )
        for try await (kind, detail, at) in history.decode((String, String, Date).self) {
            var entry = JSONObject()
            entry["kind"] = .string(kind)
            entry["at"] = .string(at.formatted(.iso8601))  // no ICU formatter built per entry
            entry["detail"] = (try? JSONValue.parse(detail)) ?? .null
            execution.history.append(.object(entry))
        }
        return execution
    }

    public func executions(workflow: String?, chargePointID: String?, status: String?, limit: Int) async throws -> [Execution] {
        let rows = try await client.query(
            """
            SELECT \(unescaped: Self.columns) FROM workflow_executions
            WHERE (\(workflow)::text IS NULL OR workflow = \(workflow))
              AND (\(chargePointID)::text IS NULL OR charge_point_id = \(chargePointID))
              AND (\(status)::text IS NULL OR status = \(status))
            ORDER BY created_at DESC, id DESC LIMIT \(limit)
            """,
            logger: logger
        )
        var result: [Execution] = []
        for try await row in rows { result.append(try Self.execution(row)) }
        return result
    }

    public func cancel(id: String) async throws -> WorkflowCancelResult {
        guard let status = try await status(of: id) else { return .notFound }
        guard status == "RUNNING" else { return .alreadyFinished }
        try await deliver(.cancelled, to: id)
        return .cancelled
    }

    public func signal(id: String, name: String, payload: JSONValue) async throws -> WorkflowSignalResult {
        guard let status = try await status(of: id) else { return .notFound }
        guard status == "RUNNING" else { return .alreadyFinished }
        try await deliver(.signal(name: name, payload: payload), to: id)
        return .delivered
    }

    /// An execution's status (RUNNING, SUCCEEDED, ...), or nil when there is no such execution.
    private func status(of id: String) async throws -> String? {
        let rows = try await client.query("SELECT status FROM workflow_executions WHERE id = \(id)", logger: logger)
        var status: String?
        for try await value in rows.decode(String.self) { status = value }
        return status
    }

    /// Sends an operator signal to an execution.
    public func deliver(_ event: WorkflowEvent, to id: String) async throws {
        try await deliver(event, to: [id])
    }

    /// One event for several executions, in one statement.
    func deliver(_ event: WorkflowEvent, to ids: [String]) async throws {
        try await Self.deliver([EventDelivery(executionIDs: ids, event: try Self.json(event), at: now())], client: client, logger: logger)
    }

    // MARK: Charger events

    /// A charger message was persisted: wake the executions waiting for it.
    public func chargerMessage(chargePointID: String, action: String, request: JSONValue, response: JSONValue, waiting known: [WaitingWorkflow]?) async {
        do {
            // Most messages wake nobody: a probe of `workflow_waits` (migration 0008) says so at once,
            // unless the statement that stored the message read it already (MeterValues,
            // StatusNotification, StartTransaction, StopTransaction); the filters (connector,
            // transaction) are checked here for the few that wait.
            // Batched: under load one statement probes for many chargers' messages at once.
            let waiting: [WaitingWorkflow]
            if let known {
                waiting = known
            } else {
                waiting = try await waitProbes.submit(WaitProbe(chargePointID: chargePointID, action: action))
            }
            var matching: [String] = []
            for execution in waiting {
                let id = execution.executionID
                let filters = try JSONValue.parse(execution.waitingFor).decode([MessageFilter].self, using: JSONValueDecoder())
                if filters.contains(where: { $0.matches(chargePointID: chargePointID, action: action, request: request, response: response) }) {
                    matching.append(id)
                }
            }
            guard !matching.isEmpty else { return }
            // Stored before the message is answered (a charger that has its answer does not send it
            // again), with other messages' events in one statement when several come at once.
            let event = WorkflowEvent.chargerMessage(chargePointID: chargePointID, action: action, request: request, response: response)
            try await deliveries.submit(EventDelivery(executionIDs: matching, event: try Self.json(event), at: now()))
        } catch {
            logger.error("Could not hand a charger message to waiting workflows", metadata: ["ocpp.action": "\(action)", "error": "\(error)"])
        }
    }

    /// The running executions waiting for each probe's charger and action, in the probes' order:
    /// one statement for one probe (a quiet system) or many, on `slot`'s pinned connection or
    /// through the pool.
    package static func waitingExecutions(
        _ probes: [WaitProbe], slot: Int? = nil, pinned: PinnedConnections? = nil, client: PostgresClient, logger: Logger
    ) async throws -> [[WaitingWorkflow]] {
        let rows = try await client.rows(of: WaitingExecutionsStatement(probes: probes), slot: slot, pinned: pinned, logger: logger)
        return WaitingExecutionsStatement.waiting(rows, probes: probes.count)
    }

    /// Adds the events of `deliveries` to the inbox in one statement, in their order.
    package static func deliver(_ deliveries: [EventDelivery], client: PostgresClient, logger: Logger) async throws {
        try await client.run(DeliverEventsStatement(deliveries), logger: logger)
    }

    public func chargerDisconnected(chargePointID: String) async {
        do {
            var ids: [String] = []
            for try await id in try await client.execute(RunningExecutionsStatement(chargePointID: chargePointID), logger: logger) {
                ids.append(id)
            }
            if !ids.isEmpty { try await deliver(.chargerDisconnected(chargePointID: chargePointID), to: ids) }
        } catch {
            logger.error("Could not tell workflows that a charger disconnected", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Backlog

    public func backlog() async throws -> WorkflowBacklog {
        let date = now()
        let queues = try await client.query(
            """
            WITH s AS (SELECT count(*) AS n, min(created_at) AS oldest FROM workflow_starts),
                 i AS (SELECT count(*) AS n, min(available_at) AS oldest FROM workflow_inbox WHERE available_at <= \(date)),
                 o AS (SELECT count(*) AS n, min(next_attempt_at) AS oldest FROM workflow_outbox WHERE done_at IS NULL AND next_attempt_at <= \(date))
            SELECT s.n, s.oldest, i.n, i.oldest, o.n, o.oldest FROM s, i, o
            """,
            logger: logger
        )
        func queue(_ count: Int, _ oldest: Date?) -> WorkflowBacklog.Queue {
            WorkflowBacklog.Queue(count: count, oldestAgeSeconds: oldest.map { max(0, date.timeIntervalSince($0)) } ?? 0)
        }
        var backlog = WorkflowBacklog(starts: queue(0, nil), events: queue(0, nil), calls: queue(0, nil), running: [:])
        for try await (starts, oldestStart, events, oldestEvent, calls, oldestCall) in queues.decode((Int, Date?, Int, Date?, Int, Date?).self) {
            backlog.starts = queue(starts, oldestStart)
            backlog.events = queue(events, oldestEvent)
            backlog.calls = queue(calls, oldestCall)
        }
        // One count per workflow, each an index range of (workflow, status): the finished
        // executions, however many, are not read.
        let running = try await client.query(
            """
            SELECT w, (SELECT count(*) FROM workflow_executions e WHERE e.workflow = w AND e.status = 'RUNNING')
            FROM unnest(\(workflowNames)::text[]) AS w
            """,
            logger: logger
        )
        for try await (name, count) in running.decode((String, Int).self) {
            backlog.running[name] = count
        }
        return backlog
    }

    // MARK: The worker

    public func run() async throws {
        // The worker starts once the schema is in place (the node migrates before it serves).
        do {
            try await cancelWhenGracefulShutdown { try await self.schemaReady.wait() }
        } catch {
            return
        }
        let inFlight = CallCounter()
        let found = CallCounter()
        let baseLanes = max(1, configuration.workerConcurrency)
        let catchUpLanes = max(0, configuration.catchUpLanes)
        let catchUp = CatchUpSwitch(WorkflowCatchUp(after: configuration.catchUpAfter), baseLanes: baseLanes, catchUpLanes: catchUpLanes)
        observer(.lanes(working: baseLanes, behind: false))
        await withDiscardingTaskGroup { group in
            // Lanes start executions and apply steps, each on a connection of its own; the
            // catch-up lanes only while the worker is behind.
            for lane in 0..<(baseLanes + catchUpLanes) {
                group.addTask { await self.runLane(lane, catchUpOnly: lane >= baseLanes, found: found, catchUp: catchUp) }
            }
            // This task hands out the due calls, each sent by a child task, at most
            // `maximumCallsInFlight` of them out at once.
            while !Task.isShuttingDownGracefully, !Task.isCancelled {
                var claimed: [ClaimedCall] = []
                let room = configuration.maximumCallsInFlight - inFlight.value
                if room > 0 {
                    do {
                        claimed = try await bounded { try await self.claimCalls(limit: min(room, Self.callClaimBatch)) }
                    } catch where Task.isShuttingDownGracefully || Task.isCancelled {
                        break
                    } catch {
                        logger.warning("Could not claim workflow calls; trying again", metadata: ["error": "\(String(reflecting: error))"])
                    }
                }
                for call in claimed {
                    inFlight.add(1)
                    group.addTask {
                        await self.perform(call)
                        inFlight.add(-1)
                    }
                }
                if claimed.isEmpty {
                    do {
                        try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.configuration.pollInterval) }
                    } catch {
                        break
                    }
                }
            }
        }
    }

    /// The most calls one claim takes.
    static let callClaimBatch = 16

    /// Idle lanes other than the first look at the database only every this many poll intervals,
    /// unless a lane found work meanwhile: an idle worker polls about as often as one lane would.
    static let idleLaneSkips = 10

    /// One lane: starts and steps while there are any, and looks again after `pollInterval` when
    /// there were none. Lanes share nothing but the pool (the row locks keep them apart),
    /// `found`, a count of the rounds in which some lane found work, which wakes idle lanes, and
    /// `catchUp`, which each round tells how late its work was. A catch-up lane (`catchUpOnly`)
    /// looks only while `catchUp` says the worker is behind.
    private func runLane(_ lane: Int, catchUpOnly: Bool, found: CallCounter, catchUp: CatchUpSwitch) async {
        // Per round, one batch of starts, then as many steps (one transaction each) while any
        // are due: neither kind of work waits long behind the other.
        let stepsPerRound = max(1, configuration.startBatchSize)
        var seen = found.value
        var idleRounds = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            var worked = false
            let news = found.value
            let look = catchUpOnly ? catchUp.behind : (lane == 0 || news != seen || idleRounds % Self.idleLaneSkips == 0)
            seen = news
            if look {
                do {
                    let began = ContinuousClock.now
                    let lateness: Duration?
                    (worked, lateness) = try await laneRound(steps: stepsPerRound)
                    if let lanes = catchUp.observe(lateness: lateness, began: began, report: observer) {
                        if lanes.behind {
                            logger.notice("Workflow work is late: catch-up lanes join", metadata: [
                                "workflow.lateness": "\(lateness.map { String(describing: $0) } ?? "-")",
                                "workflow.lanes": "\(lanes.working)",
                            ])
                        } else {
                            logger.notice("Workflow work caught up: catch-up lanes stop", metadata: ["workflow.lanes": "\(lanes.working)"])
                        }
                    }
                } catch where Task.isShuttingDownGracefully || Task.isCancelled {
                    break
                } catch {
                    // The database went away mid-step: the transaction rolled back; try again shortly.
                    observer(.failedRound)
                    logger.warning("A workflow step failed; it will be retried",
                                   metadata: ["workflow.lane": "\(lane)", "error": "\(String(reflecting: error))"])
                }
            }
            if worked {
                found.add(1)
                seen += 1  // This lane's own news.
                idleRounds = 0
            } else {
                idleRounds += 1
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.configuration.pollInterval) }
                } catch {
                    break
                }
            }
        }
    }

    /// One batch of starts, then up to `steps` steps while any are due. Returns whether there was
    /// work, and how long the one that waited longest had waited when it was taken (nil: there
    /// was none).
    private func laneRound(steps: Int) async throws -> (worked: Bool, lateness: Duration?) {
        // Each database round is bounded and ends at shutdown, even while it waits for a pool
        // connection (a wait the driver does not end on cancellation).
        let starts = try await bounded { try await self.claimAndStart() }
        var worked = starts.count > 0
        var lateness = starts.lateness
        for _ in 0..<steps {
            guard !Task.isShuttingDownGracefully, !Task.isCancelled, let late = try await bounded({ try await self.step() }) else { break }
            worked = true
            lateness = max(lateness ?? late, late)
        }
        return (worked, lateness)
    }

    /// How long something due at `due` has waited at `date`.
    static func lateness(of due: Date, at date: Date) -> Duration {
        .milliseconds(Int64(max(0, date.timeIntervalSince(due)) * 1000))
    }

    /// Runs one database round with the step time limit; returns early at graceful shutdown.
    private func bounded<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let limit = configuration.stepTimeout
        return try await cancelWhenGracefulShutdown {
            try await withTimeLimit(limit, operation)
        }
    }

    /// Starts the executions that charger messages asked for (rows of `workflow_starts`, written
    /// with the messages' data), up to `startBatchSize` of them in one transaction: all started or,
    /// if it fails, none (the rows stay for the next try). Input a workflow refuses, or a workflow
    /// this build lacks, gives a FAILED execution that says why. Returns how many rows it took,
    /// and how long the oldest of them had waited.
    private func claimAndStart() async throws -> (count: Int, lateness: Duration?) {
        let (count, lateness, started) = try await client.withTransaction(logger: logger) { connection in
            var claimed = try await connection.rows(of: ClaimStartsStatement(limit: max(1, configuration.startBatchSize)), logger: logger)
            guard !claimed.isEmpty else { return (0, Duration?.none, [WorkflowActivity]()) }
            claimed.sort { $0.0 < $1.0 }
            let date = now()
            let starts = try claimed.map { _, id, name, inputText, _ in try self.prepareStart(id: id, workflow: name, inputText: inputText, at: date) }
            // Every execution, its `started` entry and (unless it failed at once) its first
            // transition, in one statement; none for an execution that exists already (the same
            // message, handled twice). Then each one's commands, or its end.
            let inserted = Set(try await connection.rows(
                of: StartExecutionsStatement(executions: starts.map(\.row), at: date), logger: logger
            ))
            var started: [WorkflowActivity] = []
            for start in starts where inserted.contains(start.row.id) {
                if let failure = start.failure {
                    try await self.finish(start.row.id, status: "FAILED", output: nil, error: failure, at: date, on: connection)
                    started.append(.started(workflow: start.row.workflow, finished: "FAILED"))
                } else {
                    try await self.carryOut(start.transition, of: start.row.id, at: date, on: connection)
                    started.append(.started(workflow: start.row.workflow, finished: start.transition.outcome?.finalStatus))
                }
            }
            return (claimed.count, claimed.map(\.4).min().map { Self.lateness(of: $0, at: date) }, started)
        }
        started.forEach(observer)
        return (count, lateness)
    }

    /// A claimed start, worked out before anything is written: the execution's row and first
    /// history entries, its first transition, and why it failed at once, if it did.
    private struct PreparedStart {
        var row: StartExecutionsStatement.Execution
        var transition: StoredTransition
        var failure: JSONValue?
    }

    /// Applies a claimed start's workflow to its input (pure: no database).
    private func prepareStart(id: String, workflow name: String, inputText: String, at date: Date) throws -> PreparedStart {
        let input = (try? JSONValue.parse(inputText)) ?? .emptyObject
        let transition: StoredTransition
        var failure: JSONValue?
        if let workflow = workflows[name] {
            do {
                transition = try workflow.start(input: input, now: date)
            } catch {  // typed: a WorkflowInputError
                transition = StoredTransition(state: .null, commands: [], waitingFor: [], outcome: nil, note: "Input refused")
                failure = ["reason": "BadInput", "detail": ["field": .string(error.field), "problem": .string(error.problem)]]
            }
        } else {
            transition = StoredTransition(state: .null, commands: [], waitingFor: [], outcome: nil, note: "Unknown workflow")
            failure = ["reason": "UnknownWorkflow", "detail": .string("no workflow '\(name)' in this build")]
        }
        var kinds = ["started"]
        var details = [(["input": input, "by": "charger message"] as JSONValue).serialized()]
        if failure == nil {
            kinds.append("transition")
            details.append((["note": .string(transition.note), "state": transition.state] as JSONValue).serialized())
        }
        let waitingFor = failure == nil ? try Self.json(transition.waitingFor) : "[]"
        let row = StartExecutionsStatement.Execution(
            id: id, workflow: name, version: workflows[name]?.version ?? 0, chargePointID: input["chargePointId"]?.stringValue,
            input: inputText, state: transition.state.serialized(), waitingFor: waitingFor, kinds: kinds, details: details
        )
        return PreparedStart(row: row, transition: transition, failure: failure)
    }

    /// Applies the oldest due event of one execution. Returns how long that event had waited since
    /// it fell due, nil when nothing was due.
    ///
    /// The execution is locked first (`FOR NO KEY UPDATE SKIP LOCKED`: one that another step
    /// holds is passed over, not waited for), then its oldest due event is taken. So a step never
    /// holds an event while it waits for its execution: two lanes cannot apply one execution's
    /// events out of order, nor deadlock over the timers a step replaces. (NO KEY: steps exclude
    /// each other, but a charger message or a call's answer adding an event to the inbox, whose
    /// foreign-key check takes KEY SHARE, does not wait for a step.)
    private func step() async throws -> Duration? {
        // nil: nothing was due; else how late the event was, with what to report (nil: an event
        // taken but not applied, a finished execution's leftover).
        let stepped: (Duration, WorkflowActivity?)? = try await client.withTransaction(logger: logger) { connection in
            let date = now()
            let execution = try await connection.rows(of: StepCandidateStatement(now: date), logger: logger).last
            guard let (executionID, name, stateText, status, dueAt) = execution else { return nil }
            let lateness = Self.lateness(of: dueAt, at: date)
            // With the execution held, nobody else takes its events: the oldest due one is ours.
            let eventText = try await connection.rows(of: TakeDueEventStatement(executionID: executionID, now: date), logger: logger).last
            // Nothing due any more (a step that committed meanwhile took it), or a finished execution's leftover.
            guard let eventText, status == "RUNNING" else { return (lateness, nil) }
            let event = try JSONValue.parse(eventText).decode(WorkflowEvent.self, using: JSONValueDecoder())
            let eventDetail = try JSONValue(encoding: event, using: JSONValueEncoder())
            guard let workflow = workflows[name] else {
                try await self.history(executionID, "event", eventDetail, at: date, on: connection)
                try await self.finish(executionID, status: "FAILED", output: nil,
                                      error: ["reason": "UnknownWorkflow", "detail": .string("no workflow '\(name)' in this build")], at: date, on: connection)
                return (lateness, .stepped(workflow: name, finished: "FAILED"))
            }
            let transition = try workflow.handle(event, state: try JSONValue.parse(stateText), now: date)
            try await self.record(transition, of: executionID, event: eventDetail, at: date, on: connection)
            try await self.carryOut(transition, of: executionID, at: date, on: connection)
            return (lateness, .stepped(workflow: name, finished: transition.outcome?.finalStatus))
        }
        guard let (lateness, activity) = stepped else { return nil }
        if let activity { observer(activity) }
        return lateness
    }

    /// Records a transition: state, history, timers, calls, and the end if it is the end.
    func apply(_ transition: StoredTransition, to id: String, at date: Date, on connection: PostgresConnection) async throws {
        try await record(transition, of: id, event: nil, at: date, on: connection)
        try await carryOut(transition, of: id, at: date, on: connection)
    }

    /// Writes the new state and what it waits for, with the history of the event (when there is
    /// one) and of the transition, in one statement.
    private func record(_ transition: StoredTransition, of id: String, event: JSONValue?, at date: Date, on connection: PostgresConnection) async throws {
        var kinds: [String] = []
        var details: [String] = []
        if let event {
            kinds.append("event")
            details.append(event.serialized())
        }
        kinds.append("transition")
        details.append((["note": .string(transition.note), "state": transition.state] as JSONValue).serialized())
        try await connection.run(RecordTransitionStatement(
            state: transition.state.serialized(), waitingFor: try Self.json(transition.waitingFor), at: date,
            executionID: id, kinds: kinds, details: details
        ), logger: logger)
    }

    /// Carries out a recorded transition's commands, each with its history entry in the same
    /// statement, and ends the execution if the transition ends it.
    private func carryOut(_ transition: StoredTransition, of id: String, at date: Date, on connection: PostgresConnection) async throws {
        for command in transition.commands {
            let detail = try JSONValue(encoding: command).serialized()
            switch command {
            case .call(let key, let chargePointID, let action, let payload):
                try await connection.query(
                    """
                    WITH call AS (
                        INSERT INTO workflow_outbox (execution_id, key, charge_point_id, action, payload, next_attempt_at, give_up_at, created_at)
                        VALUES (\(id), \(key), \(chargePointID), \(action), \(payload.serialized())::jsonb, \(date),
                            \(date.addingTimeInterval(Self.seconds(configuration.notConnectedGiveUp))), \(date))
                        ON CONFLICT (execution_id, key) DO NOTHING
                    )
                    INSERT INTO workflow_history (execution_id, kind, detail, at) VALUES (\(id), 'command', \(detail)::jsonb, \(date))
                    """,
                    logger: logger
                )
            case .setTimer(let name, let due):
                // The statement's DELETE does not see the row its INSERT adds: it removes only the old timer.
                try await connection.query(
                    """
                    WITH replaced AS (
                        DELETE FROM workflow_inbox WHERE execution_id = \(id) AND timer_name = \(name)
                    ), timer AS (
                        INSERT INTO workflow_inbox (execution_id, event, timer_name, available_at, created_at)
                        VALUES (\(id), \(try Self.json(WorkflowEvent.timerFired(name: name)))::jsonb, \(name), \(due), \(date))
                    )
                    INSERT INTO workflow_history (execution_id, kind, detail, at) VALUES (\(id), 'command', \(detail)::jsonb, \(date))
                    """,
                    logger: logger
                )
            case .cancelTimer(let name):
                try await connection.query(
                    """
                    WITH cancelled AS (
                        DELETE FROM workflow_inbox WHERE execution_id = \(id) AND timer_name = \(name)
                    )
                    INSERT INTO workflow_history (execution_id, kind, detail, at) VALUES (\(id), 'command', \(detail)::jsonb, \(date))
                    """,
                    logger: logger
                )
            case .closeTransaction(let transactionID, let reason):
                // The last whole-meter energy register reading recorded for the transaction (Wh),
                // else its meter start; only a transaction still open is closed.
                try await connection.query(
                    """
                    WITH closed AS (
                        UPDATE transactions t SET
                            meter_stop = coalesce((
                                SELECT round(CASE WHEN m.unit = 'kWh' THEN m.value::numeric * 1000 ELSE m.value::numeric END)::integer
                                FROM meter_values m
                                WHERE m.transaction_id = t.transaction_id
                                  AND coalesce(m.measurand, 'Energy.Active.Import.Register') = 'Energy.Active.Import.Register'
                                  AND m.phase IS NULL AND coalesce(m.format, 'Raw') = 'Raw'
                                  AND m.value ~ '^-?[0-9]+(\\.[0-9]+)?$'
                                ORDER BY m.sampled_at DESC, m.reading_id DESC, m.sample_index DESC LIMIT 1
                            ), t.meter_start),
                            stopped_at = \(date), stop_reason = \(reason), received_stop_at = \(date)
                        WHERE t.transaction_id = \(transactionID) AND t.meter_stop IS NULL
                    )
                    INSERT INTO workflow_history (execution_id, kind, detail, at) VALUES (\(id), 'command', \(detail)::jsonb, \(date))
                    """,
                    logger: logger
                )
            case .recordCommandOutcome(let callID, let state, let response, let error):
                try await connection.query(
                    """
                    WITH recorded AS (
                        UPDATE charger_calls SET state = \(state), response = \(response?.serialized())::jsonb,
                            error = \(error?.serialized())::jsonb, finished_at = \(date)
                        WHERE id = \(callID) AND state = 'RUNNING'
                    )
                    INSERT INTO workflow_history (execution_id, kind, detail, at) VALUES (\(id), 'command', \(detail)::jsonb, \(date))
                    """,
                    logger: logger
                )
            }
        }
        guard let outcome = transition.outcome else { return }
        switch outcome {
        case .succeeded(let output):
            try await finish(id, status: outcome.finalStatus, output: output, error: nil, at: date, on: connection)
        case .failed(let reason, let detail):
            try await finish(id, status: outcome.finalStatus, output: nil, error: ["reason": .string(reason), "detail": detail], at: date, on: connection)
        }
    }

    /// Ends an execution: its status and result, and (nothing more will be applied) its pending
    /// timers and unsent calls go; one statement.
    func finish(_ id: String, status: String, output: JSONValue?, error: JSONValue?, at date: Date, on connection: PostgresConnection) async throws {
        let detail: JSONValue = ["status": .string(status), "output": output ?? .null, "error": error ?? .null]
        try await connection.run(FinishExecutionStatement(
            status: status, output: output?.serialized(), error: error?.serialized(), at: date, executionID: id, detail: detail.serialized()
        ), logger: logger)
    }

    struct ClaimedCall: Sendable {
        let id: Int64
        let executionID: String
        let key: String
        let chargePointID: String
        let action: String
        let payload: JSONValue
        let attempt: Int
        let giveUpAt: Date
    }

    /// Takes up to `limit` due calls and leases them to this worker, with an `attempt` history
    /// entry each; one statement.
    func claimCalls(limit: Int) async throws -> [ClaimedCall] {
        let date = now()
        let rows = try await client.query(
            """
            WITH picked AS MATERIALIZED (
                SELECT id FROM workflow_outbox WHERE done_at IS NULL AND next_attempt_at <= \(date)
                ORDER BY next_attempt_at FOR UPDATE SKIP LOCKED LIMIT \(max(1, limit))
            ), claimed AS (
                UPDATE workflow_outbox o SET attempts = o.attempts + 1,
                    next_attempt_at = \(date.addingTimeInterval(Self.seconds(configuration.callLease)))
                FROM picked WHERE o.id = picked.id
                RETURNING o.id, o.execution_id, o.key, o.charge_point_id, o.action, o.payload, o.attempts, o.give_up_at
            ), attempts AS (
                INSERT INTO workflow_history (execution_id, kind, detail, at)
                SELECT execution_id, 'attempt', jsonb_build_object('key', key, 'attempt', attempts), \(date) FROM claimed ORDER BY id
            )
            SELECT id, execution_id, key, charge_point_id, action, payload::text, attempts, give_up_at FROM claimed ORDER BY id
            """,
            logger: logger
        )
        var calls: [ClaimedCall] = []
        for try await (id, execution, key, chargePoint, action, payload, attempts, giveUp) in rows.decode(
            (Int64, String, String, String, String, String, Int, Date).self
        ) {
            calls.append(ClaimedCall(id: id, executionID: execution, key: key, chargePointID: chargePoint, action: action,
                                     payload: try JSONValue.parse(payload), attempt: attempts, giveUpAt: giveUp))
        }
        return calls
    }

    /// Sends a claimed call and turns its outcome into an event for the execution.
    func perform(_ call: ClaimedCall) async {
        let outcome = await caller(call.chargePointID, call.action, call.payload)
        let date = now()
        let event: WorkflowEvent
        switch outcome {
        case .answered(let payload):
            observer(.call(action: call.action, outcome: .answered))
            event = .callAnswered(key: call.key, payload: payload)
        case .failed(let code, let description):
            observer(.call(action: call.action, outcome: .failed))
            event = .callFailed(key: call.key, code: code, description: description)
        case .notConnected where date < call.giveUpAt:
            observer(.call(action: call.action, outcome: .notConnected))
            // Waits for the charger to come back: try again in a few seconds.
            do {
                try await client.query(
                    "UPDATE workflow_outbox SET next_attempt_at = \(date.addingTimeInterval(3)) WHERE id = \(call.id) AND done_at IS NULL",
                    logger: logger
                )
            } catch {
                logger.warning("Could not reschedule a workflow call; its lease will", metadata: ["error": "\(error)"])
            }
            return
        case .notConnected:
            observer(.call(action: call.action, outcome: .failed))
            event = .callFailed(key: call.key, code: "NotConnected", description: "The charger did not come back in time")
        }
        do {
            // One statement, so one round trip and atomic: the call is marked done and its outcome
            // becomes an event, or neither (an earlier attempt's answer was recorded already).
            try await client.query(
                """
                WITH done AS (
                    UPDATE workflow_outbox SET done_at = \(date) WHERE id = \(call.id) AND done_at IS NULL RETURNING id
                )
                INSERT INTO workflow_inbox (execution_id, event, available_at, created_at)
                SELECT \(call.executionID), \(try Self.json(event))::jsonb, \(date), \(date) FROM done
                """,
                logger: logger
            )
        } catch {
            // The lease runs out and the call is sent again under the same key.
            logger.warning("Could not record a workflow call's outcome; it will be retried", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Helpers

    func history(_ id: String, _ kind: String, _ detail: JSONValue, at date: Date, on connection: PostgresConnection) async throws {
        try await connection.query(
            "INSERT INTO workflow_history (execution_id, kind, detail, at) VALUES (\(id), \(kind), \(detail.serialized())::jsonb, \(date))",
            logger: logger
        )
    }

    static let columns =
        "id, workflow, version, charge_point_id, input::text, state::text, status, output::text, error::text, created_at, updated_at, finished_at"

    static func execution(_ row: PostgresRow) throws -> Execution {
        let (id, workflow, version, chargePoint, input, state, status, output, error, created, updated, finished) = try row.decode(
            (String, String, Int, String?, String, String, String, String?, String?, Date, Date, Date?).self
        )
        return Execution(
            id: id, workflow: workflow, version: version, chargePointID: chargePoint,
            input: try JSONValue.parse(input), state: try JSONValue.parse(state), status: status,
            output: try output.map { try JSONValue.parse($0) }, error: try error.map { try JSONValue.parse($0) },
            createdAt: created, updatedAt: updated, finishedAt: finished, history: []
        )
    }

    /// Events and filters as JSON text (neither holds a date), without a `JSONEncoder` text round trip.
    static func json(_ value: some Encodable) throws -> String {
        try JSONValue(encoding: value, using: JSONValueEncoder()).serialized()
    }

    static func seconds(_ duration: Duration) -> TimeInterval {
        let (seconds, attoseconds) = duration.components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }

    static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}

/// Whether a worker's catch-up lanes work (`WorkflowCatchUp`), shared by its lanes.
final class CatchUpSwitch: Sendable {
    private let state: Mutex<WorkflowCatchUp>
    let baseLanes: Int
    let catchUpLanes: Int

    init(_ catchUp: WorkflowCatchUp, baseLanes: Int, catchUpLanes: Int) {
        self.state = Mutex(catchUp)
        self.baseLanes = baseLanes
        self.catchUpLanes = catchUpLanes
    }

    var behind: Bool { state.withLock { $0.behind } }

    /// Tells the switch how late the work of a round begun at `began` was (nil: it found none);
    /// returns the lanes now working when that changed whether the worker is behind, nil
    /// otherwise. Without catch-up lanes nothing changes. A change is `report`ed under the lock,
    /// so that two changes close together reach the observer in their order.
    func observe(
        lateness: Duration?, began: ContinuousClock.Instant, report: (WorkflowActivity) -> Void
    ) -> (working: Int, behind: Bool)? {
        guard catchUpLanes > 0 else { return nil }
        return state.withLock { catchUp in
            guard catchUp.observe(lateness: lateness, began: began, now: .now) else { return nil }
            let lanes = (working: baseLanes + (catchUp.behind ? catchUpLanes : 0), behind: catchUp.behind)
            report(.lanes(working: lanes.working, behind: lanes.behind))
            return lanes
        }
    }
}

/// A count shared by the worker's tasks: calls in flight; rounds in which a lane found work.
final class CallCounter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func add(_ delta: Int) { count.withLock { $0 += delta } }
}
