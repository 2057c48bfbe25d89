public import Logging
public import OCPP16
public import OCPPCore
import EventLoopExecutor
import NIOCore
import NIOPosix
import Synchronization

/// One simulated OCPP 1.6J charge point.
///
/// All of its work happens in `run()` (one task); the other methods send it commands and wait.
/// ```swift
/// let cp = SimulatedChargePoint(configuration: .init(url: "ws://127.0.0.1:9000/ocpp", identity: "CP-1"))
/// try await cp.withRunning { cp in
///     try await cp.waitUntilBooted()
///     let hb = try await cp.call(HeartbeatRequest())
/// }
/// ```
public final class SimulatedChargePoint: Sendable {
    public let configuration: ChargePointConfiguration
    /// Every text frame received from the central system, raw, in order (bounded by
    /// `inboundBufferSize`, newest kept). Single consumer.
    public let inbound: AsyncStream<String>

    private let inboundContinuation: AsyncStream<String>.Continuation?
    private let events: AsyncStream<EngineEvent>
    private let eventsContinuation: AsyncStream<EngineEvent>.Continuation
    private let box = SnapshotBox()
    private let hook: HookBox
    private let started = Atomic<Bool>(false)
    private let logger: Logger
    private let stats: (any ChargePointStatsSink)?
    private let scenario: ChargerScenario
    private let rateLimiter: RateLimiter?

    public convenience init(
        configuration: ChargePointConfiguration,
        stats: (any ChargePointStatsSink)? = nil,
        logger: Logger = Logger(label: "chargepath.simulator")
    ) {
        self.init(configuration: configuration, scenario: .idle, rateLimiter: nil, stats: stats, logger: logger)
    }

    init(
        configuration: ChargePointConfiguration,
        scenario: ChargerScenario,
        rateLimiter: RateLimiter?,
        stats: (any ChargePointStatsSink)?,
        logger: Logger
    ) {
        self.configuration = configuration
        self.scenario = scenario
        self.rateLimiter = rateLimiter
        self.stats = stats
        self.logger = logger
        self.hook = HookBox(configuration.centralSystemCallHook)
        (events, eventsContinuation) = AsyncStream.makeStream(of: EngineEvent.self, bufferingPolicy: .unbounded)
        if configuration.inboundBufferSize > 0 {
            let (stream, continuation) = AsyncStream.makeStream(
                of: String.self, bufferingPolicy: .bufferingNewest(configuration.inboundBufferSize)
            )
            inbound = stream
            inboundContinuation = continuation
        } else {
            inbound = AsyncStream { $0.finish() }
            inboundContinuation = nil
        }
    }

    // MARK: Lifecycle

    /// Runs the charger until `stop()` or task cancellation: connects (if `autoConnect`), boots,
    /// heartbeats, answers the central system, reconnects with backoff. Call once.
    /// Throws only for a bad configuration or, with `failFast`, when the first connection fails.
    public func run() async throws {
        guard !started.exchange(true, ordering: .relaxed) else {
            throw SimulatorError(.invalidConfiguration, "run() was already called on \(configuration.identity)")
        }
        // One event loop for everything this charger does: its socket, its timers, and its engine's
        // task, so that a message, its answer and the next timer never hop between threads.
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let engine: ChargePointEngine
        do {
            engine = try ChargePointEngine(
                config: configuration, events: events, eventsContinuation: eventsContinuation,
                inbound: inboundContinuation, box: box, hook: hook, stats: stats,
                scenario: scenario, rateLimiter: rateLimiter, group: loop, logger: logger
            )
        } catch {
            eventsContinuation.finish()
            box.finish()
            throw error
        }
        try await withTaskExecutorPreference(EventLoopTaskExecutor.for(loop)) {
            try await engine.run()
        }
    }

    /// Runs the charger in a child task around `body`, then stops it.
    public func withRunning<T>(_ body: (SimulatedChargePoint) async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.run() }
            do {
                let result = try await body(self)
                stop()
                try await group.waitForAll()
                return result
            } catch {
                stop()
                group.cancelAll()
                throw error
            }
        }
    }

    /// Asks `run()` to close the connection and return.
    public func stop() {
        eventsContinuation.yield(.command(.stop))
    }

    /// Connects now (if not connected) and waits for the outcome of that attempt: throws
    /// `SimulatorError` `.unreachable`, `.upgradeRefused` (with `httpStatus`, `body`), ...
    /// Reconnecting continues in the background if `reconnect` is on.
    public func connect() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            send(.connect(reply: c)) { c.resume(throwing: $0) }
        }
    }

    /// Closes the WebSocket (close handshake, or a bare TCP close with `abort`) and stays offline
    /// until `connect()`. Transactions go on; their messages are queued.
    public func disconnect(abort: Bool = false) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            send(.disconnect(abort: abort, reply: c)) { _ in c.resume() }
        }
    }

    // MARK: Messages

    /// Sends a typed CALL and returns the typed answer. Throws `CallError` for a CALLERROR and
    /// `SimulatorError` for `.notConnected`, `.timeout`, `.connectionClosed`, `.schemaViolation`,
    /// `.decodingFailed`. CALLs are sent one at a time (OCPP-J); others wait their turn.
    public func call<R: OCPPRequest>(_ request: R) async throws -> R.Response {
        let payload = try JSONValue(encoding: request, using: OCPP16Coding.valueEncoder)
        let answer = try await call(action: R.action, payload: payload)
        do {
            return try answer.decode(R.Response.self, using: OCPP16Coding.valueDecoder)
        } catch {
            throw SimulatorError(.decodingFailed, "cannot decode \(R.action) response \(answer.serialized()): \(error)")
        }
    }

    /// Sends an untyped CALL and returns the CALLRESULT payload.
    public func call(action: String, payload: JSONValue) async throws -> JSONValue {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<JSONValue, any Error>) in
            send(.call(action: action, payload: payload, reply: c)) { c.resume(throwing: $0) }
        }
    }

    /// Writes a text frame as is (for bad-input tests); answers arrive on `inbound`.
    public func sendRaw(_ text: String) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            send(.raw(text, reply: c)) { c.resume(throwing: $0) }
        }
    }

    // MARK: Charger actions

    /// Plugs in and swipes `idTag` on `connectorId` (or the first free one): Authorize (if
    /// `authorize`), Preparing, StartTransaction, Charging, MeterValues every `MeterValueSampleInterval`.
    /// Works offline too (the transaction messages are queued).
    public func startTransaction(connectorId: Int? = nil, idTag: String, authorize: Bool = true) {
        eventsContinuation.yield(.command(.startSession(connector: connectorId, idTag: idTag, authorize: authorize)))
    }

    /// Ends the session on `connectorId`: Finishing, StopTransaction (with transactionData), Available.
    public func stopTransaction(connectorId: Int, reason: Reason = .local) {
        eventsContinuation.yield(.command(.stopSession(connector: connectorId, reason: reason)))
    }

    /// Replaces the hook that decides answers to central-system calls (`nil`: configured behaviour).
    public func setCentralSystemCallHook(_ hook: CentralSystemCallHook?) {
        self.hook.value.withLock { $0 = hook }
    }

    // MARK: Observation

    /// The charger's state now.
    public var snapshot: ChargePointSnapshot { box.current }

    /// Waits until `condition` holds for the snapshot (checked on every change); throws
    /// `SimulatorError(.timeout)` after `timeout`, `.notRunning` if the charger stops.
    public func waitUntil(
        timeout: Duration = .seconds(10), _ condition: @escaping @Sendable (ChargePointSnapshot) -> Bool
    ) async throws {
        try await box.wait(timeout: timeout, condition)
    }

    /// Waits until connected and the last BootNotification was Accepted.
    public func waitUntilBooted(timeout: Duration = .seconds(10)) async throws {
        try await waitUntil(timeout: timeout) { $0.isConnected && $0.registrationStatus == .accepted }
    }

    private func send(_ command: EngineCommand, onTerminated: (SimulatorError) -> Void) {
        if case .terminated = eventsContinuation.yield(.command(command)) {
            onTerminated(SimulatorError(.notRunning, "charger \(configuration.identity) is not running"))
        }
    }
}

/// The answer hook, shared by the public object and its engine.
final class HookBox: Sendable {
    let value: Mutex<CentralSystemCallHook?>
    init(_ hook: CentralSystemCallHook?) { value = Mutex(hook) }
}
