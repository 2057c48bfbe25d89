/// What a workflow engine has waiting, across every node that shares its database: whether the
/// workers keep up (`GET /metrics`). Read on demand, never kept up to date.
public struct WorkflowBacklog: Sendable, Equatable {
    /// Items of one kind waiting for a worker, and how long the oldest has waited.
    public struct Queue: Sendable, Equatable {
        public var count: Int
        /// Seconds since the oldest became due; 0 when there is none.
        public var oldestAgeSeconds: Double

        public init(count: Int, oldestAgeSeconds: Double) {
            self.count = count
            self.oldestAgeSeconds = oldestAgeSeconds
        }
    }

    /// Executions that charger messages asked for (a StartTransaction's ChargingSession, an
    /// Accepted boot's Provisioning), not started yet.
    public var starts: Queue
    /// Events due (a charger's message, a call's answer, a timer that fell due, a signal), not applied yet.
    public var events: Queue
    /// Calls to chargers due to be sent (or sent again), not yet taken by a worker.
    public var calls: Queue
    /// Running executions of each workflow this build has.
    public var running: [String: Int]

    public init(starts: Queue, events: Queue, calls: Queue, running: [String: Int]) {
        self.starts = starts
        self.events = events
        self.calls = calls
        self.running = running
    }
}

/// What a workflow engine tells its observer as it works (metrics), on the node that did it:
/// starts and steps once committed, calls as each one ends.
public enum WorkflowActivity: Sendable, Equatable {
    /// An execution of `workflow` started; `finished` is its status when it ended at once
    /// (SUCCEEDED, FAILED or CANCELLED).
    case started(workflow: String, finished: String?)
    /// An event was applied to an execution of `workflow`; `finished` as for `started`.
    case stepped(workflow: String, finished: String?)
    /// A batch of starts or a step was given up on (an error, or the step time limit, after which
    /// it may still commit and be reported as done too); it is tried again.
    case failedRound
    /// A call to a charger ended.
    case call(action: String, outcome: CallEnd)
    /// The lanes now starting executions and applying their events on this node: the base lanes,
    /// with the catch-up lanes while the work they take is late (`WorkflowCatchUp`). Reported
    /// when the worker starts and at each change.
    case lanes(working: Int, behind: Bool)

    public enum CallEnd: String, Sendable, Equatable {
        /// A CALLRESULT.
        case answered
        /// A CALLERROR, no answer in time, or a charger that did not come back before the call gave up.
        case failed
        /// The charger is not connected to this node: the call is tried again a little later.
        case notConnected = "not_connected"
    }
}

extension WorkflowOutcome {
    /// The status an execution ends with: SUCCEEDED, CANCELLED (a failure whose reason is
    /// "Cancelled") or FAILED.
    public var finalStatus: String {
        switch self {
        case .succeeded: "SUCCEEDED"
        case .failed(let reason, _): reason == "Cancelled" ? "CANCELLED" : "FAILED"
        }
    }
}
