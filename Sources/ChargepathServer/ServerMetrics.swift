public import ChargepathWorkflows
import Chargepath
import OCPP16
import Prometheus
import Synchronization

/// What a node counts about the chargers' CALLs, for Prometheus (`GET /metrics` on the operator
/// port, behind the API token):
///
/// - `chargepath_ocpp_calls_total{action, outcome}`: the CALLs answered, `outcome` being `result`
///   (a CALLRESULT) or `error` (a CALLERROR: bad input, a time limit, a database away);
/// - `chargepath_ocpp_call_duration_seconds{action}`: from the start of a CALL's handling (the
///   task the event loop starts once it has read the frame) to its answer being written:
///   validation, the handler, the commit. What a charger sees adds the wait before the read (in
///   the socket, for a busy loop: under saturation most of it), the network and its own side
///   (BENCHMARKS.md, 2026-11-27 10:45). A frame that is not a readable CALL is not counted;
/// - `chargepath_chargers_connected`: the charger sockets this node holds;
/// - `chargepath_charger_upgrades_refused_total{status}`: chargers turned away before the upgrade
///   (400, 401, 404, 503, or `other`): a charger with a wrong password or an unknown identity, a
///   full port.
///
/// The workflow engine's, for the node's own work:
///
/// - `chargepath_workflow_executions_started_total{workflow}`, `chargepath_workflow_steps_total{workflow}`
///   (events applied) and `chargepath_workflow_executions_finished_total{workflow, status}`
///   (SUCCEEDED, FAILED, CANCELLED), each counted once committed;
/// - `chargepath_workflow_failed_rounds_total`: start batches and steps given up on (an error, or
///   the step time limit: such a round may still commit later, and is then counted as done too);
/// - `chargepath_workflow_charger_calls_total{action, outcome}`: calls to chargers, `answered`,
///   `failed` or `not_connected` (tried again a little later);
///
/// and, read from the database at each scrape (the same on every node that shares it):
///
/// - `chargepath_workflow_backlog{queue}` and `chargepath_workflow_backlog_oldest_seconds{queue}`:
///   the starts (`starts`), due events (`events`) and due calls (`calls`) no worker has taken yet,
///   and how long the oldest has waited: the workers keep up while these stay near 0;
/// - `chargepath_workflow_executions_running{workflow}`;
/// - `chargepath_database_up`: 1 when that read succeeded. When it did not (the database away, or
///   slower than 2 s), it is 0 and the values read from the database are NaN.
///
/// `action` is one of OCPP 1.6's actions of the right direction, or `other`, and `workflow` one
/// this build has, or `other`: a label value a charger can choose would let it make series
/// without bound. The handles are made once, so a
/// CALL costs two uncontended updates and no lookup beyond a small dictionary.
public final class ServerMetrics: Sendable {
    struct ActionMetrics: Sendable {
        let results: Counter
        let errors: Counter
        /// Answers given because the CALL could not be stored (an error or the time limit).
        let unstored: Counter
        let duration: DurationHistogram
    }

    /// Upper bounds of the duration buckets: fine below 100 ms, where the aims are.
    static let buckets: [Duration] = [
        0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 2_500, 5_000, 10_000,
    ].map { Duration.milliseconds($0) }

    let registry: PrometheusCollectorRegistry
    private let byAction: [String: ActionMetrics]
    private let other: ActionMetrics
    private let connected: Gauge
    /// Refused WebSocket upgrades on the charger port, by HTTP status (`other` past these).
    private let refusals: [Int: Counter]
    private let otherRefusals: Counter
    static let refusalStatuses = [400, 401, 404, 503]

    struct WorkflowMetrics: Sendable {
        let started: Counter
        let steps: Counter
        /// By final status.
        let finished: [String: Counter]
    }

    private let workflowMetrics: [String: WorkflowMetrics]
    private let otherWorkflow: WorkflowMetrics
    private let failedRounds: Counter
    private let lanesWorking: Gauge
    private let lanesBehind: Gauge
    /// By action, then by how the call ended.
    private let chargerCalls: [String: [WorkflowActivity.CallEnd: Counter]]
    private let otherChargerCalls: [WorkflowActivity.CallEnd: Counter]
    /// By queue (`starts`, `events`, `calls`).
    private let backlogCounts: [String: Gauge]
    private let backlogAges: [String: Gauge]
    private let running: [String: Gauge]
    private let databaseUp: Gauge
    /// The backlog read running, if one is (see `refreshWorkflowBacklog`).
    private let backlogRead = Mutex<Task<WorkflowBacklog, any Error>?>(nil)
    static let finalStatuses = ["SUCCEEDED", "FAILED", "CANCELLED"]
    static let backlogQueues = ["starts", "events", "calls"]

    /// `workflows`: the names of the workflows the node's engine runs.
    public init(workflows: [String] = []) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        let calls = MetricNameDescriptor(
            namespace: "chargepath", subsystem: "ocpp", metricName: "calls", unitName: "total",
            helpText: "Charger CALLs answered, by action and outcome (result: CALLRESULT, error: CALLERROR).")
        let duration = MetricNameDescriptor(
            namespace: "chargepath", subsystem: "ocpp", metricName: "call_duration", unitName: "seconds",
            helpText: "From the start of a charger CALL's handling to its answer being written (validation, handler, commit).")
        let unstored = MetricNameDescriptor(
            namespace: "chargepath", subsystem: "ocpp", metricName: "calls_not_stored", unitName: "total",
            helpText: "Charger CALLs that could not be stored (the database failed, or passed the time limit), by action: answered InternalError, a BootNotification Pending. Also counted in calls_total.")
        func metrics(_ action: String) -> ActionMetrics {
            ActionMetrics(
                results: registry.makeCounter(descriptor: calls, labels: [("action", action), ("outcome", "result")]),
                errors: registry.makeCounter(descriptor: calls, labels: [("action", action), ("outcome", "error")]),
                unstored: registry.makeCounter(descriptor: unstored, labels: [("action", action)]),
                duration: registry.makeDurationHistogram(descriptor: duration, labels: [("action", action)], buckets: Self.buckets)
            )
        }
        var byAction: [String: ActionMetrics] = [:]
        for action in OCPP16Action.allCases where action.direction == .chargePointToCentralSystem {
            byAction[action.rawValue] = metrics(action.rawValue)
        }
        self.byAction = byAction
        self.other = metrics("other")
        self.connected = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "chargepath", metricName: "chargers", unitName: "connected", helpText: "Charger sockets this node holds."))
        let refused = MetricNameDescriptor(
            namespace: "chargepath", subsystem: "charger", metricName: "upgrades_refused", unitName: "total",
            helpText: "WebSocket upgrades refused on the charger port, by HTTP status (400 bad request or identity, 401 credentials, 404 unknown charger, 503 port full).")
        var refusals: [Int: Counter] = [:]
        for status in Self.refusalStatuses {
            refusals[status] = registry.makeCounter(descriptor: refused, labels: [("status", String(status))])
        }
        self.refusals = refusals
        self.otherRefusals = registry.makeCounter(descriptor: refused, labels: [("status", "other")])

        func workflow(_ name: String) -> WorkflowMetrics {
            var finished: [String: Counter] = [:]
            for status in Self.finalStatuses {
                finished[status] = registry.makeCounter(
                    descriptor: MetricNameDescriptor(
                        namespace: "chargepath", subsystem: "workflow", metricName: "executions_finished", unitName: "total",
                        helpText: "Workflow executions this node ended, by workflow and status."),
                    labels: [("workflow", name), ("status", status)])
            }
            return WorkflowMetrics(
                started: registry.makeCounter(
                    descriptor: MetricNameDescriptor(
                        namespace: "chargepath", subsystem: "workflow", metricName: "executions_started", unitName: "total",
                        helpText: "Workflow executions this node started, by workflow."),
                    labels: [("workflow", name)]),
                steps: registry.makeCounter(
                    descriptor: MetricNameDescriptor(
                        namespace: "chargepath", subsystem: "workflow", metricName: "steps", unitName: "total",
                        helpText: "Events this node applied to workflow executions, by workflow."),
                    labels: [("workflow", name)]),
                finished: finished)
        }
        var workflowMetrics: [String: WorkflowMetrics] = [:]
        var running: [String: Gauge] = [:]
        for name in workflows {
            workflowMetrics[name] = workflow(name)
            running[name] = registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "chargepath", subsystem: "workflow", metricName: "executions_running",
                    helpText: "Running workflow executions, by workflow (read from the database at each scrape)."),
                labels: [("workflow", name)])
        }
        self.workflowMetrics = workflowMetrics
        self.otherWorkflow = workflow("other")
        self.running = running
        self.failedRounds = registry.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "chargepath", subsystem: "workflow", metricName: "failed_rounds", unitName: "total",
            helpText: "Workflow start batches and steps this node gave up on (an error, or the time limit: such a round may still commit); they are tried again."))
        self.lanesWorking = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "chargepath", subsystem: "workflow", metricName: "lanes", unitName: "working",
            helpText: "Lanes of this node starting workflow executions and applying their events: the base lanes, with the catch-up lanes while the worker is behind."))
        self.lanesBehind = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "chargepath", subsystem: "workflow", metricName: "catch_up", unitName: "active",
            helpText: "1 while this node's workflow catch-up lanes work (the work taken waited longer than the catch-up limit), else 0; always 0 with no catch-up lanes."))
        let callDescriptor = MetricNameDescriptor(
            namespace: "chargepath", subsystem: "workflow", metricName: "charger_calls", unitName: "total",
            helpText: "Calls this node's workflows made to chargers, by action and outcome (answered, failed, not_connected: tried again later).")
        func callCounters(_ action: String) -> [WorkflowActivity.CallEnd: Counter] {
            var counters: [WorkflowActivity.CallEnd: Counter] = [:]
            for end in [WorkflowActivity.CallEnd.answered, .failed, .notConnected] {
                counters[end] = registry.makeCounter(descriptor: callDescriptor, labels: [("action", action), ("outcome", end.rawValue)])
            }
            return counters
        }
        var chargerCalls: [String: [WorkflowActivity.CallEnd: Counter]] = [:]
        for action in OCPP16Action.allCases where action.direction == .centralSystemToChargePoint {
            chargerCalls[action.rawValue] = callCounters(action.rawValue)
        }
        self.chargerCalls = chargerCalls
        self.otherChargerCalls = callCounters("other")
        var backlogCounts: [String: Gauge] = [:]
        var backlogAges: [String: Gauge] = [:]
        for queue in Self.backlogQueues {
            backlogCounts[queue] = registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "chargepath", subsystem: "workflow", metricName: "backlog",
                    helpText: "Workflow starts, due events and due calls that no worker has taken yet (read from the database at each scrape)."),
                labels: [("queue", queue)])
            backlogAges[queue] = registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "chargepath", subsystem: "workflow", metricName: "backlog_oldest", unitName: "seconds",
                    helpText: "How long the oldest item of each workflow backlog has waited; 0 when there is none."),
                labels: [("queue", queue)])
        }
        self.backlogCounts = backlogCounts
        self.backlogAges = backlogAges
        self.databaseUp = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "chargepath", metricName: "database_up",
            helpText: "1 when this scrape read the workflow backlog from the database, 0 when it could not (those values are then NaN)."))
    }

    /// What the workflow engine reports (`PostgresWorkflowEngine`'s observer).
    public func workflowActivity(_ activity: WorkflowActivity) {
        switch activity {
        case .started(let workflow, let finished):
            let metrics = workflowMetrics[workflow] ?? otherWorkflow
            metrics.started.increment()
            if let finished { metrics.finished[finished]?.increment() }
        case .stepped(let workflow, let finished):
            let metrics = workflowMetrics[workflow] ?? otherWorkflow
            metrics.steps.increment()
            if let finished { metrics.finished[finished]?.increment() }
        case .failedRound:
            failedRounds.increment()
        case .call(let action, let end):
            (chargerCalls[action] ?? otherChargerCalls)[end]?.increment()
        case .lanes(let working, let behind):
            lanesWorking.set(Int64(working))
            lanesBehind.set(Int64(behind ? 1 : 0))
        }
    }

    /// Reads the workflow backlog with `read` and records it, within `limit`; records it as
    /// unknown (and throws) when the read fails or takes longer. Scrapes that come while a read
    /// runs wait for that same read (each within its own limit) instead of starting another: two
    /// Prometheus servers scraping at once share one read, and during an outage (the driver's wait
    /// for a connection does not end on cancellation) a read that outlives its limit is left to
    /// finish on its own while the scrapes after it do not pile up reads of their own.
    public func refreshWorkflowBacklog(within limit: Duration, _ read: @escaping @Sendable () async throws -> WorkflowBacklog) async throws {
        let running = backlogRead.withLock { current -> Task<WorkflowBacklog, any Error> in
            if let current { return current }
            // Made under the lock, so the task cannot clear the slot before it is in it; and only
            // the task in the slot clears it (a new one is made only once the slot is empty).
            let task = Task<WorkflowBacklog, any Error> { [self] in
                defer { backlogRead.withLock { $0 = nil } }
                return try await read()
            }
            current = task
            return task
        }
        do {
            // Cancelling this wait at the limit leaves the shared read running.
            record(backlog: try await withTimeLimit(limit) { try await running.value })
        } catch {
            record(backlog: nil)
            throw error
        }
    }

    /// The values read from the database at a scrape; nil when it could not be read.
    func record(backlog: WorkflowBacklog?) {
        guard let backlog else {
            databaseUp.set(Int64(0))
            for gauge in Array(backlogCounts.values) + Array(backlogAges.values) + Array(running.values) { gauge.set(Double.nan) }
            return
        }
        databaseUp.set(Int64(1))
        for (queue, value) in [("starts", backlog.starts), ("events", backlog.events), ("calls", backlog.calls)] {
            backlogCounts[queue]?.set(Int64(value.count))
            backlogAges[queue]?.set(value.oldestAgeSeconds)
        }
        for (name, gauge) in running {
            gauge.set(Int64(backlog.running[name] ?? 0))
        }
    }

    /// A charger's WebSocket upgrade was refused with HTTP `status`.
    func refusedUpgrade(status: Int) {
        (refusals[status] ?? otherRefusals).increment()
    }

    /// What a connection of `PinnedConnections` named `name` reports: each statement's duration
    /// (`chargepath_database_statement_duration_seconds{connection}`, from its start to its rows
    /// back in the caller's task) and its failures (`chargepath_database_statement_failures_total`).
    /// Those connections carry the batches most charger messages wait for (MeterValues, statuses,
    /// boots, connection rows, admission lookups, workflow probes).
    public func databaseObserver(connection name: String) -> @Sendable (Duration, Bool) -> Void {
        let label = String(name.map { $0 == " " ? "_" : $0 })
        let duration = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
                namespace: "chargepath", subsystem: "database", metricName: "statement_duration", unitName: "seconds",
                helpText: "Statements on the connections that batch charger messages (e.g. meter_values), from start to rows back."),
            labels: [("connection", label)], buckets: Self.buckets)
        let failures = registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "chargepath", subsystem: "database", metricName: "statement_failures", unitName: "total",
                helpText: "Statements that failed on the connections that batch charger messages (their items are then written alone)."),
            labels: [("connection", label)])
        return { elapsed, failed in
            duration.record(elapsed)
            if failed { failures.increment() }
        }
    }

    /// A CALL of `action` was answered (with a CALLERROR when `error`), `duration` after its handling began.
    func answered(action: String, error: Bool, duration: Duration) {
        let metrics = byAction[action] ?? other
        (error ? metrics.errors : metrics.results).increment()
        metrics.duration.record(duration)
    }

    /// A CALL of `action` could not be stored, and was answered as such (InternalError, or Pending
    /// for a BootNotification).
    func notStored(action: String) {
        (byAction[action] ?? other).unstored.increment()
    }

    /// The Prometheus text exposition of every metric, with the connected chargers as of now.
    public func exposition(connectedChargers: Int) -> [UInt8] {
        connected.set(Int64(connectedChargers))
        return registry.emitToBuffer()
    }
}
