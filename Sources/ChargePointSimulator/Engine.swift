import Foundation
import Logging
import NIOCore
import NIOPosix
import OCPP16
import OCPPCore
import Synchronization

/// Everything that reaches a charger's single task, in arrival order.
enum EngineEvent: Sendable {
    case transport(generation: UInt64, TransportEvent)
    case wake(UInt64)
    case command(EngineCommand)
}

enum EngineCommand: Sendable {
    case call(action: String, payload: JSONValue, reply: CheckedContinuation<JSONValue, any Error>)
    case raw(String, reply: CheckedContinuation<Void, any Error>)
    case connect(reply: CheckedContinuation<Void, any Error>)
    case disconnect(abort: Bool, reply: CheckedContinuation<Void, Never>)
    case startSession(connector: Int?, idTag: String, authorize: Bool)
    case stopSession(connector: Int, reason: Reason)
    case stop
}

/// Work the charger does by itself, in order, when it gets to it.
enum WorkItem {
    case statusAll
    case status(connector: Int, ChargePointStatus)
    case boot
    case heartbeat
    case meterValues(connector: Int?)
    case diagnosticsStatus
    case firmwareStatus
    case startSession(connector: Int, idTag: String, authorize: Bool, stopAfter: Duration?)
    case stopSession(connector: Int, reason: Reason)
    case reset(ResetType)
}

/// The charger itself: one task runs `run()`; all state is owned by that task (no locks, no actor hops).
///
/// Inbound frames, timers and API commands all arrive through one `AsyncStream`; while a CALL is
/// outstanding the same loop keeps answering central-system calls (they never wait on our CALL), so
/// neither direction can block the other.
final class ChargePointEngine {
    typealias Instant = ContinuousClock.Instant

    let config: ChargePointConfiguration
    let endpoint: WebSocketEndpoint
    let transportOptions: TransportOptions
    let group: any EventLoopGroup
    let logger: Logger
    let box: SnapshotBox
    let inbound: AsyncStream<String>.Continuation?
    let events: AsyncStream<EngineEvent>.Continuation
    var iterator: AsyncStream<EngineEvent>.AsyncIterator
    let stats: (any ChargePointStatsSink)?
    let hook: HookBox
    let scenario: ChargerScenario
    let rateLimiter: RateLimiter?
    let clock = ContinuousClock()

    // Connection
    var connection: TransportConnection?
    var generation: UInt64 = 0
    var wantConnected = false
    var nextConnectAt: Instant
    var backoff: Duration
    var everConnected = false
    var connectWaiters: [CheckedContinuation<Void, any Error>] = []
    var stopRequested = false

    // Registration and timers
    var registration: RegistrationStatus?
    var bootDueAt: Instant?
    var heartbeatInterval: Duration
    var meterInterval: Duration
    var nextHeartbeatAt: Instant?
    var scenarioSlot: Instant?
    var scenarioNextAt: Instant?
    var floodStep = 0

    // Outstanding CALL
    var pendingCall: (id: String, action: String, generation: UInt64)?
    var pendingResult: Result<JSONValue, any Error>?
    var ids = MessageIDGenerator()

    // Charger state
    var connectors: [ConnectorState]
    var store: ConfigurationStore
    var txQueue: [TransactionMessage] = []
    var work: [WorkItem] = []
    var userCalls: [EngineCommand] = []
    var nextLocalTransactionID = 1
    var serverTransactionIDs: [Int: Int] = [:]
    var droppedLocalTransactions: Set<Int> = []
    var localListVersion = 0
    var chargingProfiles: [Int: (connector: Int, profile: ChargingProfile)] = [:]

    // Timer
    var wakeSequence: UInt64 = 0
    /// The wakes asked of `wakes` (the wheel of the charger's loop) that have not come yet, at most `maxArmedWakes` (see `scheduleWake`).
    var armedWakes: [(at: Instant, seq: UInt64)] = []
    static let maxArmedWakes = 3
    let wakes: WakeWheel

    init(
        config: ChargePointConfiguration,
        events: AsyncStream<EngineEvent>,
        eventsContinuation: AsyncStream<EngineEvent>.Continuation,
        inbound: AsyncStream<String>.Continuation?,
        box: SnapshotBox,
        hook: HookBox,
        stats: (any ChargePointStatsSink)?,
        scenario: ChargerScenario,
        rateLimiter: RateLimiter?,
        group: any EventLoopGroup,
        logger: Logger
    ) throws(SimulatorError) {
        self.config = config
        self.endpoint = try WebSocketEndpoint.parse(base: config.url, identity: config.identity)
        var headers = config.additionalHeaders
        if let password = config.basicAuthPassword {
            let token = Data("\(config.identity):\(password)".utf8).base64EncodedString()
            headers.append(("Authorization", "Basic \(token)"))
        }
        var local: SocketAddress?
        if let address = config.localAddress {
            do { local = try SocketAddress(ipAddress: address, port: 0) } catch {
                throw SimulatorError(.invalidConfiguration, "invalid local address '\(address)'")
            }
        }
        self.transportOptions = TransportOptions(
            subprotocols: config.subprotocols, headers: headers, localAddress: local,
            connectTimeout: .nanoseconds(config.connectTimeout.nanoseconds),
            handshakeTimeout: .nanoseconds(config.connectTimeout.nanoseconds),
            maxFrameSize: config.maxFrameSize
        )
        guard config.numberOfConnectors >= 1 else {
            throw SimulatorError(.invalidConfiguration, "numberOfConnectors must be at least 1")
        }
        self.iterator = events.makeAsyncIterator()
        self.events = eventsContinuation
        self.inbound = inbound
        self.box = box
        self.hook = hook
        self.stats = stats
        self.scenario = scenario
        self.rateLimiter = rateLimiter
        self.group = group
        self.wakes = WakeWheel.of(group.next())
        var logger = logger
        logger[metadataKey: "ocpp.charge_point"] = .string(config.identity)
        self.logger = logger
        self.nextConnectAt = .now
        self.backoff = config.reconnectInitialBackoff
        self.heartbeatInterval = config.heartbeatInterval
        self.meterInterval = config.meterValueInterval
        self.connectors = (0...config.numberOfConnectors).map { _ in
            ConnectorState(meter: EnergyMeter(registerWh: Double(Int.random(in: 100_000...5_000_000))))
        }
        self.store = ConfigurationStore(
            heartbeat: Int(config.heartbeatInterval.seconds), meterInterval: Int(config.meterValueInterval.seconds),
            connectors: config.numberOfConnectors
        )
        publish()
    }

    // MARK: - Main loop

    func run() async throws {
        defer { shutdown() }
        if config.autoConnect { wantConnected = true; nextConnectAt = clock.now }
        while !stopRequested && !Task.isCancelled {
            let now = clock.now
            let canSend = connection != nil && registration == .accepted
            if connection == nil {
                failUserCalls()
                if wantConnected && now >= nextConnectAt {
                    try await attemptConnect()
                    continue
                }
            } else if registration != .accepted, let due = bootDueAt, now >= due {
                await boot()
                continue
            }
            if canSend, !txQueue.isEmpty {
                await deliverNextTransactionMessage()
                continue
            }
            if connection != nil, !userCalls.isEmpty {
                await executeUserCall(userCalls.removeFirst())
                continue
            }
            if let item = nextWorkItem(canSend: canSend) {
                await perform(item)
                continue
            }
            if processSessionTimers(now: now) { continue }
            if canSend, let hb = nextHeartbeatAt, now >= hb {
                await heartbeat()
                continue
            }
            if canSend, await scenarioStep(now: now) { continue }
            var deadline = earliest(sessionDeadline(), scenarioDeadline(canSend: canSend))
            if connection == nil, wantConnected { deadline = earliest(deadline, nextConnectAt) }
            if connection != nil, registration != .accepted { deadline = earliest(deadline, bootDueAt) }
            if canSend { deadline = earliest(deadline, nextHeartbeatAt) }
            guard await waitForEvent(until: deadline) else { break }
        }
    }

    /// Work items that need the central system wait until the charger is accepted; local ones
    /// (session start/stop) run offline too.
    private func nextWorkItem(canSend: Bool) -> WorkItem? {
        if canSend { return work.isEmpty ? nil : work.removeFirst() }
        guard let i = work.firstIndex(where: {
            switch $0 {
            case .startSession, .stopSession: true
            default: false
            }
        }) else { return nil }
        return work.remove(at: i)
    }

    private func shutdown() {
        if let connection {
            connection.channel.close(promise: nil)
            self.connection = nil
        }
        events.finish()
        // Fail everything still waiting on this charger.
        let notRunning = SimulatorError(.notRunning, "charger \(config.identity) stopped")
        for c in connectWaiters { c.resume(throwing: notRunning) }
        connectWaiters.removeAll()
        failUserCalls(with: notRunning)
        publish { $0.isConnected = false }
        box.finish()
        inbound?.finish()
    }

    // MARK: - Events

    /// Waits for one event (or the deadline) and handles it. Returns false when the stream ended
    /// (task cancelled).
    private func waitForEvent(until deadline: Instant?) async -> Bool {
        if let deadline {
            if deadline <= clock.now { return true }
            scheduleWake(at: deadline)
        }
        guard let event = await iterator.next() else { return false }
        await handle(event)
        return true
    }

    /// Makes sure a wake comes no later than `deadline` (rounded up to `timerGranularity`). A wake already due at or before it is kept:
    /// it wakes the loop early, which then asks again for its real deadline. So a charger calling
    /// back to back (each call's timeout a little later than the last) keeps one timer per timeout
    /// period instead of arming and cancelling one per call (7% of the simulator's CPU in the
    /// heartbeat benchmark).
    ///
    /// A wake due later than `deadline` stays too (a wake cannot be cancelled, see `WakeWheel`):
    /// when it comes, the loop only looks again. Past `maxArmedWakes` the latest is forgotten
    /// here, and comes all the same.
    private func scheduleWake(at deadline: Instant) {
        if armedWakes.contains(where: { $0.at <= deadline }) { return }
        if armedWakes.count >= Self.maxArmedWakes, let latest = armedWakes.indices.max(by: { armedWakes[$0].at < armedWakes[$1].at }) {
            armedWakes.remove(at: latest)
        }
        wakeSequence &+= 1
        let delay = clock.now.duration(to: deadline)
        let at = NIODeadline.now() + .nanoseconds(max(0, delay.nanoseconds))
        let onGrid = TimerGrid.point(atOrAfter: at.uptimeNanoseconds, step: config.timerGranularity)
        wakes.add(at: onGrid, events: events, sequence: wakeSequence)
        armedWakes.append((deadline, wakeSequence))
    }

    private func handle(_ event: EngineEvent) async {
        switch event {
        case .wake(let seq):
            armedWakes.removeAll { $0.seq == seq }
        case .transport(let gen, let transportEvent):
            guard gen == generation, connection != nil else { return }
            switch transportEvent {
            case .text(let text):
                await received(text: text)
            case .binary(let count):
                logger.warning("ignored a binary WebSocket frame", metadata: ["ocpp.bytes": "\(count)"])
            case .closed(let reason):
                connectionLost(reason: reason)
            }
        case .command(let command):
            await handle(command)
        }
    }

    private func handle(_ command: EngineCommand) async {
        switch command {
        case .call(let action, _, let reply):
            if connection == nil {
                reply.resume(throwing: SimulatorError.notConnected(action))
            } else {
                userCalls.append(command)
            }
        case .raw(let text, let reply):
            guard let connection else { reply.resume(throwing: SimulatorError.notConnected("raw frame")); return }
            do {
                try await connection.send(text: text)
                reply.resume()
            } catch {
                reply.resume(throwing: SimulatorError(.connectionClosed, "sending raw frame failed: \(error)"))
            }
        case .connect(let reply):
            wantConnected = true
            if connection != nil {
                reply.resume()
            } else {
                connectWaiters.append(reply)
                nextConnectAt = clock.now
            }
        case .disconnect(let abort, let reply):
            wantConnected = false
            if let connection {
                generation &+= 1 // ignore the close event of this socket
                if abort { await connection.abort() } else { await connection.close() }
                connectionLost(reason: "disconnected by the simulator")
            }
            reply.resume()
        case .startSession(let connector, let idTag, let authorize):
            let target = connector ?? firstFreeConnector() ?? 1
            work.append(.startSession(connector: target, idTag: idTag, authorize: authorize, stopAfter: nil))
        case .stopSession(let connector, let reason):
            work.append(.stopSession(connector: connector, reason: reason))
        case .stop:
            stopRequested = true
        }
    }

    private func failUserCalls(with error: SimulatorError? = nil) {
        guard !userCalls.isEmpty else { return }
        let calls = userCalls
        userCalls.removeAll()
        for case .call(let action, _, let reply) in calls {
            reply.resume(throwing: error ?? SimulatorError.notConnected(action))
        }
    }

    // MARK: - Connection

    private func attemptConnect() async throws {
        generation &+= 1
        let gen = generation
        let events = self.events
        let sink: @Sendable (TransportEvent) -> Void = { event in events.yield(.transport(generation: gen, event)) }
        do {
            let conn = try await WebSocketTransport.connect(
                endpoint: endpoint, options: transportOptions, group: group, sink: sink
            )
            connection = conn
            everConnected = true
            backoff = config.reconnectInitialBackoff
            stats?.connected()
            logger.debug("connected", metadata: ["ocpp.url": .string(endpoint.displayURL)])
            if registration != .accepted || config.bootOnReconnect {
                if config.bootOnReconnect { registration = nil }
                bootDueAt = clock.now
            } else {
                // Same registration: report the connectors again and carry on.
                work.insert(.statusAll, at: 0)
                nextHeartbeatAt = clock.now + heartbeatInterval
            }
            publish {
                $0.isConnected = true
                $0.connectionCount += 1
                $0.subprotocol = conn.negotiatedSubprotocol
                $0.registrationStatus = self.registration
            }
            let waiters = connectWaiters
            connectWaiters.removeAll()
            for w in waiters { w.resume() }
        } catch {
            stats?.connectFailed(error, identity: config.identity)
            logger.debug("connect failed", metadata: ["error": .string(error.message)])
            publish { $0.lastError = error.message }
            let waiters = connectWaiters
            connectWaiters.removeAll()
            for w in waiters { w.resume(throwing: error) }
            if !everConnected && config.failFast { throw error }
            if config.reconnect {
                nextConnectAt = clock.now + jittered(backoff)
                backoff = min(backoff * 2, config.reconnectMaxBackoff)
            } else {
                wantConnected = false
            }
        }
    }

    private func connectionLost(reason: String) {
        guard connection != nil else { return }
        connection = nil
        stats?.disconnected()
        logger.debug("connection lost", metadata: ["reason": .string(reason)])
        if pendingCall != nil, pendingResult == nil {
            pendingResult = .failure(SimulatorError(.connectionClosed, "connection closed while waiting for \(pendingCall!.action) answer: \(reason)"))
        }
        nextHeartbeatAt = nil
        scenarioSlot = nil
        if wantConnected && config.reconnect {
            nextConnectAt = clock.now + jittered(backoff)
            backoff = min(backoff * 2, config.reconnectMaxBackoff)
        } else {
            wantConnected = false
        }
        publish {
            $0.isConnected = false
            $0.lastError = reason
        }
    }

    private func jittered(_ d: Duration) -> Duration {
        d * Double.random(in: 0.8...1.2)
    }

    // MARK: - CALLs

    /// Sends one CALL and waits for its answer, answering central-system calls meanwhile.
    func call(action: String, payload: JSONValue) async throws -> JSONValue {
        try await call(action: action, validating: payload) { id in .text(OCPPFrame.call(id: id, action: action, payload: payload).encode()) }
    }

    /// Sends a MeterValues, its frame written straight to bytes (`MeterValuesRequest.callFrame`);
    /// its payload is built as a `JSONValue` only to be validated, when the simulator validates.
    func callMeterValues(_ request: MeterValuesRequest) async throws {
        _ = try await call(action: MeterValuesRequest.action, validating: config.validateMessages ? request.payload : nil) { id in
            .bytes(request.callFrame(id: id))
        }
    }

    /// A CALL's frame as it goes on the wire.
    enum OutgoingFrame {
        case text(String)
        case bytes([UInt8])
    }

    /// `payload`: what `config.validateMessages` checks against the schema (nil: nothing to check).
    private func call(action: String, validating payload: JSONValue?, frame makeFrame: (String) -> OutgoingFrame) async throws -> JSONValue {
        guard let connection else { throw SimulatorError.notConnected(action) }
        if config.validateMessages, let payload, let violations = OCPP16Validation.request(action, payload), !violations.isEmpty {
            let error = SimulatorError(.schemaViolation, "outgoing \(action) violates the OCPP 1.6 schema: \(violations.summary())")
            stats?.callFailed(action: action, error: error)
            logger.error("schema violation in outgoing CALL", metadata: ["ocpp.action": .string(action), "error": .string(error.message)])
            throw error
        }
        let id = ids.next()
        let frame = makeFrame(id)
        pendingCall = (id, action, generation)
        pendingResult = nil
        defer { pendingCall = nil; pendingResult = nil }
        let started = clock.now
        do {
            switch frame {
            case .text(let text): try await connection.send(text: text)
            case .bytes(let bytes): try await connection.send(utf8: bytes)
            }
        } catch {
            let e = SimulatorError(.connectionClosed, "sending \(action) failed: \(WebSocketTransport.describe(error))")
            stats?.callFailed(action: action, error: e)
            throw e
        }
        let deadline = started + config.callTimeout
        while pendingResult == nil {
            if clock.now >= deadline {
                pendingResult = .failure(SimulatorError(.timeout, "no answer to \(action) (id \(id)) within \(config.callTimeout)"))
                break
            }
            if !(await waitForEvent(until: deadline)) {
                pendingResult = .failure(SimulatorError(.cancelled, "charger stopped while waiting for \(action)"))
            }
        }
        let rtt = started.duration(to: clock.now)
        switch pendingResult! {
        case .success(let payload):
            stats?.callCompleted(action: action, roundTrip: rtt, isError: false)
            if config.validateMessages, let violations = OCPP16Validation.response(action, payload), !violations.isEmpty {
                let error = SimulatorError(.schemaViolation, "\(action) response violates the OCPP 1.6 schema: \(violations.summary())")
                logger.error("schema violation in CALLRESULT", metadata: ["ocpp.action": .string(action), "error": .string(error.message)])
                throw error
            }
            return payload
        case .failure(let error):
            if error is CallError {
                stats?.callCompleted(action: action, roundTrip: rtt, isError: true)
            } else if let e = error as? SimulatorError, e.code != .cancelled {
                stats?.callFailed(action: action, error: e)
            }
            throw error
        }
    }

    func call<R: OCPPRequest>(_ request: R) async throws -> R.Response {
        let payload = try JSONValue(encoding: request, using: OCPP16Coding.valueEncoder)
        let answer = try await call(action: R.action, payload: payload)
        do {
            return try answer.decode(R.Response.self, using: OCPP16Coding.valueDecoder)
        } catch {
            throw SimulatorError(.decodingFailed, "cannot decode \(R.action) response \(answer.serialized()): \(error)")
        }
    }

    private func executeUserCall(_ command: EngineCommand) async {
        guard case .call(let action, let payload, let reply) = command else { return }
        do {
            reply.resume(returning: try await call(action: action, payload: payload))
        } catch {
            reply.resume(throwing: error)
        }
    }

    // MARK: - Inbound frames

    private func received(text: String) async {
        inbound?.yield(text)
        switch OCPPFrame.decode(text: text, version: .ocpp16) {
        case .success(let frame):
            switch frame {
            case .call(let id, let action, let payload):
                await answerCentralSystemCall(id: id, action: action, payload: payload)
            case .callResult(let id, let payload):
                if let p = pendingCall, p.id == id, pendingResult == nil {
                    pendingResult = .success(payload)
                } else {
                    logger.warning("CALLRESULT for an unknown or late message id", metadata: ["ocpp.message_id": .string(id)])
                }
            case .callError(let id, let code, let description, let details):
                if let p = pendingCall, p.id == id, pendingResult == nil {
                    pendingResult = .failure(CallError(wireCode: code, errorDescription: description, details: details))
                } else {
                    logger.warning("CALLERROR for an unknown or late message id", metadata: ["ocpp.message_id": .string(id)])
                }
            }
        case .failure(let error):
            switch error.disposition(for: .ocpp16) {
            case .drop(let reason):
                logger.warning("dropped an unreadable frame", metadata: ["reason": .string(reason)])
            case .reply(let frame):
                await send(frame)
            case .failPendingCall(let id, let reason):
                if let p = pendingCall, p.id == id, pendingResult == nil {
                    pendingResult = .failure(SimulatorError(.decodingFailed, "malformed answer to \(p.action): \(reason)"))
                }
            }
        }
    }

    func send(_ frame: OCPPFrame) async {
        guard let connection else { return }
        do { try await connection.send(text: frame.encode()) } catch {
            logger.debug("send failed", metadata: ["error": .string("\(error)")])
        }
    }

    // MARK: - Helpers

    func publish(_ extra: ((inout ChargePointSnapshot) -> Void)? = nil) {
        let statuses = connectors.map(\.status)
        var txIDs: [Int: Int] = [:]
        var sessions: Set<Int> = []
        for (i, c) in connectors.enumerated() {
            if let s = c.session {
                sessions.insert(i)
                if let id = serverTransactionIDs[s.localTransactionID] { txIDs[i] = id }
            }
        }
        let queued = txQueue.count
        let registration = self.registration
        let configuration = store.dictionary
        box.update { s in
            s.connectorStatus = statuses
            s.transactionIDs = txIDs
            s.sessionConnectors = sessions
            s.queuedTransactionMessages = queued
            s.registrationStatus = registration
            s.configuration = configuration
            extra?(&s)
        }
    }

    /// Publishes the transaction queue's depth alone (what a MeterValues enqueued or delivered changes).
    func publishQueueDepth() {
        let queued = txQueue.count
        box.update { $0.queuedTransactionMessages = queued }
    }

    func earliest(_ a: Instant?, _ b: Instant?) -> Instant? {
        switch (a, b) {
        case (nil, nil): nil
        case (let a?, nil): a
        case (nil, let b?): b
        case (let a?, let b?): min(a, b)
        }
    }

    func firstFreeConnector() -> Int? {
        connectors.indices.dropFirst().first { connectors[$0].session == nil && connectors[$0].operative && connectors[$0].status == .available }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let c = components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }

    var seconds: Double { Double(nanoseconds) / 1e9 }
}

/// The grid that chargers' timers fire on (`ChargePointConfiguration.timerGranularity`).
package enum TimerGrid {
    /// The first point of the grid of `step` (multiples of it on the monotonic clock, the same
    /// points for every charger) at or after `nanoseconds`; `nanoseconds` itself for a step of
    /// zero.
    package static func point(atOrAfter nanoseconds: UInt64, step: Duration) -> UInt64 {
        let step = UInt64(max(0, step.nanoseconds))
        guard step > 1 else { return nanoseconds }
        let (sum, overflow) = nanoseconds.addingReportingOverflow(step - 1)
        return overflow ? nanoseconds : sum / step * step
    }
}
