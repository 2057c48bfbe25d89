import OCPP16
import Prometheus

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
/// `action` is one of OCPP 1.6's charger-to-central-system actions, or `other`: a label value a
/// charger can choose would let it make series without bound. The handles are made once, so a
/// CALL costs two uncontended updates and no lookup beyond a small dictionary.
public final class ServerMetrics: Sendable {
    struct ActionMetrics: Sendable {
        let results: Counter
        let errors: Counter
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

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        let calls = MetricNameDescriptor(
            namespace: "chargepath", subsystem: "ocpp", metricName: "calls", unitName: "total",
            helpText: "Charger CALLs answered, by action and outcome (result: CALLRESULT, error: CALLERROR).")
        let duration = MetricNameDescriptor(
            namespace: "chargepath", subsystem: "ocpp", metricName: "call_duration", unitName: "seconds",
            helpText: "From the start of a charger CALL's handling to its answer being written (validation, handler, commit).")
        func metrics(_ action: String) -> ActionMetrics {
            ActionMetrics(
                results: registry.makeCounter(descriptor: calls, labels: [("action", action), ("outcome", "result")]),
                errors: registry.makeCounter(descriptor: calls, labels: [("action", action), ("outcome", "error")]),
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

    /// The Prometheus text exposition of every metric, with the connected chargers as of now.
    public func exposition(connectedChargers: Int) -> [UInt8] {
        connected.set(Int64(connectedChargers))
        return registry.emitToBuffer()
    }
}
