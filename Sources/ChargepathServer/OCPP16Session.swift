import Chargepath
import ChargepathWorkflows
import Foundation
import Logging
import NIOWebSocket
import OCPP16
public import OCPPCore
import Synchronization

/// The official 1.6 request schemas, compiled once per process.
enum OCPP16RequestSchemas {
    static let byAction: [String: JSONSchema] = {
        var schemas: [String: JSONSchema] = [:]
        for action in OCPP16Action.allCases {
            guard let text = OCPP16Schemas.request(for: action.rawValue), let schema = try? JSONSchema(jsonText: text) else {
                preconditionFailure("The embedded schema for \(action.rawValue) does not compile; regenerate Sources/OCPP16/Generated")
            }
            schemas[action.rawValue] = schema
        }
        return schemas
    }()

    static let responsesByAction: [String: JSONSchema] = {
        var schemas: [String: JSONSchema] = [:]
        for action in OCPP16Action.allCases {
            guard let text = OCPP16Schemas.response(for: action.rawValue), let schema = try? JSONSchema(jsonText: text) else {
                preconditionFailure("The embedded response schema for \(action.rawValue) does not compile")
            }
            schemas[action.rawValue] = schema
        }
        return schemas
    }()
}

/// Why a call to a charger failed.
public struct ChargerCallFailure: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The charger answered with a CALLERROR.
        case callError(code: String, description: String, details: JSONValue)
        /// No answer within the call timeout.
        case timeout
        /// The connection closed before the answer came.
        case connectionClosed
        /// Too many calls already wait for this charger.
        case queueFull
        /// The charger's answer was malformed.
        case malformedAnswer(String)
        /// The payload we were asked to send violates the action's schema.
        case invalidPayload(String)
        case notConnected
    }

    public let kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public var description: String {
        switch kind {
        case .callError(let code, let description, _): "The charger answered \(code): \(description)"
        case .timeout: "The charger did not answer in time"
        case .connectionClosed: "The connection closed before the charger answered"
        case .queueFull: "Too many calls are already waiting for this charger; try again later"
        case .malformedAnswer(let reason): "The charger's answer was malformed: \(reason)"
        case .invalidPayload(let reason): "The payload does not match the action's schema: \(reason)"
        case .notConnected: "The charge point is not connected to this node"
        }
    }
}

/// One OCPP 1.6J charger connection: reads frames in order, answers its CALLs through the
/// default handler, and carries the server's CALLs to it (one in flight, a bounded queue behind).
final class OCPP16Session: ChargerSession {
    struct Configuration: Sendable {
        var callTimeout: Duration
        var callQueueCapacity: Int
        /// How long handling one CALL may take (mostly: the database) before the charger gets InternalError.
        var handlerTimeout: Duration
        /// Where answered CALLs are counted and timed (nil: nowhere).
        var metrics: ServerMetrics? = nil
    }

    private struct LoopState {
        var session: OCPP16SessionState
        /// The last CALL answered, to answer a resent copy without doing it twice.
        var lastAnswered: (id: String, action: String, reply: String)?
    }

    private struct CallState {
        var correlator: CallCorrelator<String>
        var waiters: [String: AsyncThrowingStream<JSONValue, any Error>.Continuation] = [:]
        var ids = MessageIDGenerator()
        /// A charger's CALL is being handled: our CALLs wait until its answer is written.
        var answering = false
        /// CALLs that came up while answering (a workflow woken by the very message being answered).
        var held: [String] = []
    }

    let chargePointID: String
    private let socket: ChargerSocket
    private let handler: OCPP16Handler
    private let workflows: (any WorkflowEngine)?
    private let configuration: Configuration
    private let logger: Logger
    private let loop: Mutex<LoopState>
    private let calls: Mutex<CallState>

    init(chargePointID: String, socket: ChargerSocket, handler: OCPP16Handler, workflows: (any WorkflowEngine)?,
         configuration: Configuration, logger: Logger) {
        self.chargePointID = chargePointID
        self.socket = socket
        self.handler = handler
        self.workflows = workflows
        self.configuration = configuration
        self.logger = logger
        self.loop = Mutex(LoopState(session: OCPP16SessionState(chargePointID: chargePointID)))
        self.calls = Mutex(CallState(correlator: CallCorrelator(configuration: .init(
            queueCapacity: configuration.callQueueCapacity, timeout: configuration.callTimeout
        ))))
    }

    // MARK: Frames from the charger

    func handle(text: String, turn: MessageTurn) async {
        switch OCPPFrame.decode(text: text, version: .ocpp16) {
        case .failure(let error):
            switch error.disposition(for: .ocpp16) {
            case .drop(let reason):
                logger.warning("Dropped a frame that cannot be answered", metadata: ["reason": "\(reason)"])
            case .reply(let frame):
                logger.warning("Answered a malformed frame with a CALLERROR", metadata: ["reason": "\(error)"])
                send(frame.encode())
            case .failPendingCall(let id, let reason):
                complete(id: id, with: .failure(ChargerCallFailure(.malformedAnswer(reason))))
            }
        case .success(.call(let id, let action, let payload)):
            await handleCall(id: id, action: action, payload: payload, turn: turn)
        case .success(.callResult(let id, let payload)):
            complete(id: id, with: .success(payload))
        case .success(.callError(let id, let code, let description, let details)):
            // An error code 1.6 does not define counts as GenericError (OCPP-J 1.6 §4.2.3).
            let known = OCPPErrorCode(wireName: code) != nil ? code : OCPPErrorCode.genericError.wireName(for: .ocpp16)
            complete(id: id, with: .failure(ChargerCallFailure(.callError(code: known, description: description, details: details))))
        }
    }

    private func handleCall(id: String, action: String, payload: JSONValue, turn: MessageTurn) async {
        let started = ContinuousClock.now
        let (lastAnswered, current) = loop.withLock { ($0.lastAnswered, $0.session) }
        if let last = lastAnswered, last.id == id, last.action == action {
            // A resent CALL (the charger missed our answer, or sent it twice): answer again, do nothing twice.
            logger.info("Answering a resent CALL again without handling it twice", metadata: ["ocpp.action": "\(action)", "ocpp.message_id": "\(id)"])
            send(last.reply)
            count(action: action, reply: last.reply, started: started)
            return
        }
        // Until this CALL is answered, our own CALLs wait: a workflow woken by this message (a
        // remote start waiting for the boot, provisioning after it) must not reach the charger
        // before the answer to its BootNotification does.
        calls.withLock { $0.answering = true }
        if OCPP16Handler.answersWithoutStorage(action, state: current) {
            let answered = await respond(id: id, action: action, payload: payload, state: current)
            answer(id: id, action: action, reply: answered.reply, state: answered.state, started: started)
            return
        }
        // Everything the CALL needs (validation, the handler, the database, waking workflows) is
        // bounded by one time limit: a database that does not answer gets the charger an
        // InternalError in time, the work is cancelled, and the socket goes on to the next message.
        // The work runs in this task; the deadline answers from the sweeper (no second task per CALL).
        let answered = Atomic(false)
        let limit = configuration.handlerTimeout
        let deadline = DeadlineSweeper.shared.add(deadline: .now + limit) { [self] in
            guard Self.claim(answered) else { return }
            let reply = unavailableReply(id: id, action: action)
            logger.error("Could not handle a CALL in time", metadata: [
                "ocpp.action": "\(action)", "ocpp.message_id": "\(id)", "limit": "\(limit)", "ocpp.answer": "\(reply.summary)",
            ])
            answer(id: id, action: action, reply: reply.frame, state: nil, started: started)
            turn.abandon()
        }
        let result = await respond(id: id, action: action, payload: payload, state: current)
        DeadlineSweeper.shared.remove(deadline)
        guard Self.claim(answered) else { return }
        answer(id: id, action: action, reply: result.reply, state: result.state, started: started)
    }

    /// Counts and times an answered CALL (`ServerMetrics`); a CALLERROR's frame starts `[4,`.
    private func count(action: String, reply: String, started: ContinuousClock.Instant) {
        guard let metrics = configuration.metrics else { return }
        metrics.answered(action: action, error: reply.utf8.starts(with: "[4,".utf8), duration: started.duration(to: .now))
    }

    /// Sends the answer to a charger's CALL, remembers it (and the session state after it, nil when
    /// unchanged), and sends the CALLs held while it was prepared.
    private func answer(id: String, action: String, reply: String, state: OCPP16SessionState?, started: ContinuousClock.Instant) {
        loop.withLock {
            if let state { $0.session = state }
            $0.lastAnswered = (id, action, reply)
        }
        send(reply)
        count(action: action, reply: reply, started: started)
        let held = calls.withLock { state in
            state.answering = false
            defer { state.held.removeAll() }
            return state.held
        }
        for call in held { send(call) }
    }

    /// True for the first of the answer and the deadline to claim the CALL's answer.
    private static func claim(_ answered: borrowing Atomic<Bool>) -> Bool {
        answered.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }

    static let storeUnavailable = "The central system could not store this message right now; send it again later."

    /// The answer to a CALL that could not be stored (an error, or the time limit): a
    /// BootNotification is answered Pending, to boot again after a while
    /// (`OCPP16Handler.bootPendingWhileUnavailable`); anything else InternalError, to send again.
    /// Counted (`ServerMetrics.notStored`) unless the work was cancelled: the deadline that
    /// cancelled it has answered, and counted, already.
    private func unavailableReply(id: String, action: String) -> (frame: String, summary: String) {
        if !Task.isCancelled { configuration.metrics?.notStored(action: action) }
        if action == OCPP16Action.bootNotification.rawValue {
            let payload = handler.bootPendingWhileUnavailable(jitter: Double.random(in: 0...1))
            return (OCPPFrame.callResult(id: id, payload: payload).encode(), "Pending, interval \(payload["interval"].map { $0.serialized() } ?? "?") s")
        }
        return (Self.error(id, .internalError, Self.storeUnavailable).encode(), "InternalError")
    }

    /// Validates and handles one CALL; returns the answer's text and the session state after it.
    /// Workflows waiting for the message hear of it once it is stored, before the charger is
    /// answered: a crash in between makes the charger send it again (handled once, heard at least once).
    private func respond(id: String, action: String, payload: JSONValue, state: OCPP16SessionState) async -> (reply: String, state: OCPP16SessionState) {
        // The CALL's fields go into each log line's metadata, not into a copy of the logger: setting
        // a logger's metadata costs every message (StreamLogHandler formats it again each time).
        guard let known = OCPP16Action(rawValue: action) else {
            return (Self.error(id, .notImplemented, "Unknown action '\(action.prefix(60))' for OCPP 1.6.").encode(), state)
        }
        if known.direction == .centralSystemToChargePoint {
            return (Self.error(id, .notSupported, "\(action) is sent by a central system to a charge point, not the other way round.").encode(), state)
        }
        if let violations = OCPP16RequestSchemas.byAction[action]?.validate(payload), !violations.isEmpty {
            let code = violations.errorCode(for: .ocpp16) ?? .formationViolation
            logger.info("Rejected a CALL that violates its schema", metadata: [
                "ocpp.action": "\(action)", "ocpp.message_id": "\(id)", "ocpp.error_code": "\(code.wireName(for: .ocpp16))",
            ])
            return (Self.error(id, code, violations.summary()).encode(), state)
        }
        var updated = state
        let answer: OCPP16Handler.Answer
        do {
            answer = try await handler.handle(action: known, payload: payload, state: &updated)
        } catch let error as OCPPCallError {
            return (Self.error(id, error.code, error.message).encode(), state)
        } catch {
            let reply = unavailableReply(id: id, action: action)
            logger.error("Could not handle a CALL", metadata: [
                "ocpp.action": "\(action)", "ocpp.message_id": "\(id)", "error": "\(String(reflecting: error))", "ocpp.answer": "\(reply.summary)",
            ])
            return (reply.frame, state)
        }
        if let workflows, Self.actionsWorkflowsWaitFor.contains(action) {
            await workflows.chargerMessage(
                chargePointID: chargePointID, action: action, request: payload, response: answer.payload, waiting: answer.waitingWorkflows
            )
        }
        return (OCPPFrame.callResult(id: id, payload: answer.payload).encode(), updated)
    }

    static let actionsWorkflowsWaitFor: Set<String> = ["BootNotification", "StartTransaction", "StopTransaction", "StatusNotification", "MeterValues"]

    private static func error(_ id: String, _ code: OCPPErrorCode, _ description: String) -> OCPPFrame {
        .callError(id: id, code: code, description: description, details: .emptyObject, version: .ocpp16)
    }

    /// Queues a frame on the socket; a closing socket drops it (its charger resends what it missed).
    private func send(_ text: String) {
        socket.send(text)
    }

    /// Sends one of our CALLs now, or right after the answer being prepared for the charger.
    private func sendCall(_ text: String) {
        let now = calls.withLock { state in
            if state.answering { state.held.append(text) }
            return !state.answering
        }
        if now { send(text) }
    }

    // MARK: Calls to the charger

    func call(action: String, payload: JSONValue) async throws -> JSONValue {
        if let schema = OCPP16RequestSchemas.byAction[action] {
            let violations = schema.validate(payload)
            guard violations.isEmpty else { throw ChargerCallFailure(.invalidPayload(violations.summary())) }
        } else {
            throw ChargerCallFailure(.invalidPayload("'\(action)' is not an OCPP 1.6 action"))
        }
        let (answer, continuation) = AsyncThrowingStream.makeStream(of: JSONValue.self, throwing: (any Error).self)
        let (id, decision): (String, CallCorrelator<String>.EnqueueAction) = calls.withLock { state in
            let id = state.ids.next()
            let decision = state.correlator.enqueue(OutgoingCall(id: id, action: action, payload: payload, token: id), now: .now)
            if case .rejected = decision {} else { state.waiters[id] = continuation }
            return (id, decision)
        }
        switch decision {
        case .send(let call):
            sendCall(call.frame.encode())
        case .queued:
            break
        case .rejected(_, let reason):
            throw ChargerCallFailure(reason == .queueFull ? .queueFull : .connectionClosed)
        }
        do {
            // The timeout counts from now; a queued call waits its turn within it too.
            return try await withTimeLimit(configuration.callTimeout + configuration.callTimeout * calls.withLock { $0.correlator.queuedCount }) {
                for try await value in answer { return value }
                throw ChargerCallFailure(.connectionClosed)
            }
        } catch is TimeLimitExceeded {
            let next: OutgoingCall<String>? = calls.withLock { state in
                state.waiters[id] = nil
                if case .cancelled(_, let next) = state.correlator.cancel(id: id, now: .now) { return next }
                return nil
            }
            if let next { sendCall(next.frame.encode()) }
            logger.warning("A call to the charger timed out", metadata: ["ocpp.action": "\(action)", "ocpp.message_id": "\(id)"])
            throw ChargerCallFailure(.timeout)
        }
    }

    private func complete(id: String, with result: Result<JSONValue, ChargerCallFailure>) {
        let (waiter, next): (AsyncThrowingStream<JSONValue, any Error>.Continuation?, OutgoingCall<String>?) = calls.withLock { state in
            switch state.correlator.receiveResult(id: id, now: .now) {
            case .matched(let call, let next):
                return (state.waiters.removeValue(forKey: call.token), next)
            case .unmatched(let reason):
                logger.info("Ignored an answer that matches no pending call", metadata: ["ocpp.message_id": "\(id)", "reason": "\(reason)"])
                return (nil, nil)
            }
        }
        if let waiter {
            switch result {
            case .success(let payload): waiter.yield(payload); waiter.finish()
            case .failure(let failure): waiter.finish(throwing: failure)
            }
        }
        if let next {
            // The next queued call goes out from the read loop, right after the answer that freed the slot.
            sendCall(next.frame.encode())
        }
    }

    func closed() async {
        let waiters = calls.withLock { state in
            _ = state.correlator.close()
            let waiters = state.waiters
            state.waiters.removeAll()
            return waiters
        }
        for waiter in waiters.values { waiter.finish(throwing: ChargerCallFailure(.connectionClosed)) }
    }
}
