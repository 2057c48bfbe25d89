/// A server-initiated call managed by `CallCorrelator`. `Token` is opaque caller data
/// (e.g. a continuation id) handed back when the call completes or fails.
public struct OutgoingCall<Token: Sendable>: Sendable {
    public var id: String
    public var action: String
    public var payload: JSONValue
    public var token: Token
    /// Set when the call is handed out for sending.
    public internal(set) var deadline: ContinuousClock.Instant?

    public init(id: String, action: String, payload: JSONValue, token: Token) {
        self.id = id
        self.action = action
        self.payload = payload
        self.token = token
        self.deadline = nil
    }

    /// The CALL frame to put on the wire.
    public var frame: OCPPFrame { .call(id: id, action: action, payload: payload) }
}

extension OutgoingCall: Equatable where Token: Equatable {}

/// Pure (clock-free) correlation state for one OCPP-J connection.
///
/// Outgoing (server → charger) calls: at most one in flight (OCPP-J rule), the rest wait in a bounded FIFO.
/// The timeout starts when a call is handed out for sending (not while queued). Every mutating method
/// returns what the caller must do: send a frame, resume a waiter, or fail one. Time is passed in (`now`),
/// so the type is deterministic and testable; call `tick(now:)` at `nextDeadline`.
///
/// Incoming (charger → server) calls: tracked by id. OCPP says one outstanding CALL per direction, but
/// real chargers violate it; we still process concurrent calls (up to `maxConcurrentIncoming`) and report
/// them as `.acceptedConcurrent` so the caller can log. A CALL whose id is already being processed is a
/// retransmission → `.duplicate`: do not process it again (the pending answer will serve both).
public struct CallCorrelator<Token: Sendable>: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Max calls waiting behind the in-flight one (not counting it).
        public var queueCapacity: Int
        /// Time allowed for the charger to answer a sent call.
        public var timeout: Duration
        /// Max incoming calls processed concurrently (beyond → `.rejectedTooMany`).
        public var maxConcurrentIncoming: Int
        /// How many timed-out/cancelled ids are remembered to classify late answers.
        public var lateIDMemory: Int

        public init(queueCapacity: Int = 32, timeout: Duration = .seconds(30), maxConcurrentIncoming: Int = 4, lateIDMemory: Int = 16) {
            self.queueCapacity = max(0, queueCapacity)
            self.timeout = timeout
            self.maxConcurrentIncoming = max(1, maxConcurrentIncoming)
            self.lateIDMemory = max(0, lateIDMemory)
        }
    }

    public enum RejectionReason: Sendable, Equatable {
        case queueFull
        case closed
        case duplicateID
    }

    public enum FailureReason: Sendable, Equatable {
        case timeout
        case connectionClosed
        case cancelled
    }

    public enum EnqueueAction: Sendable {
        /// Send `call.frame` now; its deadline is set.
        case send(OutgoingCall<Token>)
        /// Waiting; `position` 1 = next to be sent.
        case queued(position: Int)
        /// Not accepted; fail the caller immediately.
        case rejected(OutgoingCall<Token>, RejectionReason)
    }

    public enum UnmatchedReason: Sendable, Equatable {
        /// Answer for a call that already timed out / was cancelled (recently). Log and ignore.
        case late
        /// Not an id we sent (or forgotten long ago). Log and ignore.
        case unknown
    }

    public enum ReceiveAction: Sendable {
        /// The in-flight call is answered: resume `call.token` with the result/error; send `next` if any.
        case matched(OutgoingCall<Token>, next: OutgoingCall<Token>?)
        case unmatched(UnmatchedReason)
    }

    public struct TickAction: Sendable {
        /// Call whose deadline passed: fail its token with `.timeout`.
        public var timedOut: OutgoingCall<Token>?
        /// Next call to send (deadline set), if the timeout freed the slot.
        public var next: OutgoingCall<Token>?
        public var isEmpty: Bool { timedOut == nil && next == nil }
    }

    public enum CancelAction: Sendable {
        /// Removed (in flight or queued); fail its token with `.cancelled`; send `next` if any.
        case cancelled(OutgoingCall<Token>, next: OutgoingCall<Token>?)
        case notFound
    }

    public enum IncomingDecision: Sendable, Equatable {
        case accepted
        /// Accepted although `otherInFlight` calls are still unanswered (protocol violation by the charger; log).
        case acceptedConcurrent(otherInFlight: Int)
        /// Same id already being processed: drop this copy (log).
        case duplicate
        /// Too many concurrent incoming calls: answer CALLERROR (suggested: GenericError) without processing.
        case rejectedTooMany
    }

    public let configuration: Configuration
    public private(set) var inFlight: OutgoingCall<Token>?
    private var queue: [OutgoingCall<Token>] = []
    private var queueHead = 0
    private var recentlyExpired: [String] = []
    private var incoming: Set<String> = []
    public private(set) var isClosed = false

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Calls waiting behind the in-flight one.
    public var queuedCount: Int { queue.count - queueHead }
    /// Deadline of the in-flight call; schedule `tick(now:)` for it.
    public var nextDeadline: ContinuousClock.Instant? { inFlight?.deadline }
    public var incomingInFlight: Int { incoming.count }

    // MARK: Outgoing

    public mutating func enqueue(_ call: OutgoingCall<Token>, now: ContinuousClock.Instant) -> EnqueueAction {
        if isClosed { return .rejected(call, .closed) }
        if inFlight?.id == call.id || queue[queueHead...].contains(where: { $0.id == call.id }) {
            return .rejected(call, .duplicateID)
        }
        if inFlight == nil {
            var c = call
            c.deadline = now.advanced(by: configuration.timeout)
            inFlight = c
            return .send(c)
        }
        if queuedCount >= configuration.queueCapacity { return .rejected(call, .queueFull) }
        queue.append(call)
        return .queued(position: queuedCount)
    }

    /// A CALLRESULT arrived.
    public mutating func receiveResult(id: String, now: ContinuousClock.Instant) -> ReceiveAction {
        receive(id: id, now: now)
    }

    /// A CALLERROR arrived (or a malformed response for `id`).
    public mutating func receiveError(id: String, now: ContinuousClock.Instant) -> ReceiveAction {
        receive(id: id, now: now)
    }

    private mutating func receive(id: String, now: ContinuousClock.Instant) -> ReceiveAction {
        guard let current = inFlight, current.id == id else {
            return .unmatched(recentlyExpired.contains(id) ? .late : .unknown)
        }
        inFlight = nil
        return .matched(current, next: startNext(now: now))
    }

    /// Fails the in-flight call if its deadline is at or before `now`, and starts the next one.
    public mutating func tick(now: ContinuousClock.Instant) -> TickAction {
        guard let current = inFlight, let deadline = current.deadline, deadline <= now else {
            return TickAction(timedOut: nil, next: nil)
        }
        inFlight = nil
        remember(current.id)
        return TickAction(timedOut: current, next: startNext(now: now))
    }

    /// Cancels a call (e.g. the awaiting task was cancelled). An in-flight call's later answer is `.late`.
    public mutating func cancel(id: String, now: ContinuousClock.Instant) -> CancelAction {
        if let current = inFlight, current.id == id {
            inFlight = nil
            remember(id)
            return .cancelled(current, next: startNext(now: now))
        }
        if let i = queue[queueHead...].firstIndex(where: { $0.id == id }) {
            let c = queue.remove(at: i)
            return .cancelled(c, next: nil)
        }
        return .notFound
    }

    /// Connection closed: returns every pending call (in-flight first, then queued in order) to fail with
    /// `.connectionClosed`. Afterwards all enqueues are rejected with `.closed`; incoming tracking is cleared.
    public mutating func close() -> [OutgoingCall<Token>] {
        isClosed = true
        var failed: [OutgoingCall<Token>] = []
        if let c = inFlight { failed.append(c) }
        failed.append(contentsOf: queue[queueHead...])
        inFlight = nil
        queue.removeAll()
        queueHead = 0
        incoming.removeAll()
        return failed
    }

    private mutating func startNext(now: ContinuousClock.Instant) -> OutgoingCall<Token>? {
        guard queueHead < queue.count else { return nil }
        var c = queue[queueHead]
        queueHead += 1
        if queueHead > 32 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        } else if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        }
        c.deadline = now.advanced(by: configuration.timeout)
        inFlight = c
        return c
    }

    private mutating func remember(_ id: String) {
        guard configuration.lateIDMemory > 0 else { return }
        if recentlyExpired.count >= configuration.lateIDMemory { recentlyExpired.removeFirst() }
        recentlyExpired.append(id)
    }

    // MARK: Incoming

    /// Call when a CALL from the charger arrives (before dispatching it).
    public mutating func beginIncoming(id: String) -> IncomingDecision {
        if incoming.contains(id) { return .duplicate }
        if incoming.count >= configuration.maxConcurrentIncoming { return .rejectedTooMany }
        let others = incoming.count
        incoming.insert(id)
        return others == 0 ? .accepted : .acceptedConcurrent(otherInFlight: others)
    }

    /// Call after the answer (CALLRESULT/CALLERROR) for `id` was sent. Returns false if `id` was not tracked.
    @discardableResult
    public mutating func finishIncoming(id: String) -> Bool {
        incoming.remove(id) != nil
    }
}
