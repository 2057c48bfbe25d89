import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import OCPP16
import OCPPCore
import Synchronization

/// A tiny OCPP 1.6 central system for the simulator's tests (Hummingbird + WebSocket upgrade).
///
/// Chargers connect to `ws://127.0.0.1:<port>/ocpp/<identity>`; other paths are refused (400). It answers charger CALLs, records them in arrival order, and can send CALLs.
final class TestCentralSystem: Sendable {
    struct Received: Sendable {
        var identity: String
        var action: String
        var payload: JSONValue
        /// When it arrived.
        var at: ContinuousClock.Instant = .now
    }

    private struct State {
        var received: [Received] = []
        var writers: [String: WebSocketOutboundWriter] = [:]
        var channels: [String: any Channel] = [:]
        var authorization: [String: String] = [:]
        var remoteAddresses: [String: String] = [:]
        var bootStatuses: [String: [RegistrationStatus]] = [:]
        var refused: Set<String> = []
        var nextTransactionID = 100
        var pending: [String: CheckedContinuation<OCPPFrame, any Error>] = [:]
        var nextCallID = 0
        var heartbeatInterval = 300
    }

    private let state = Mutex(State())
    let port: Int

    private init(port: Int) { self.port = port }

    var baseURL: String { "ws://127.0.0.1:\(port)/ocpp" }

    /// Runs a server for the duration of `body`.
    static func with<T>(_ body: (TestCentralSystem) async throws -> T) async throws -> T {
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let holder = Mutex<TestCentralSystem?>(nil)
        let router = Router()
        var logger = Logger(label: "test-csms")
        logger.logLevel = .critical
        let app = Application(
            router: router,
            server: .http1WebSocketUpgrade { request, channel, _ in
                let path = request.path ?? ""
                guard path.hasPrefix("/ocpp/"), let server = holder.withLock({ $0 }) else { return .dontUpgrade }
                let identity = String(path.dropFirst("/ocpp/".count))
                guard server.accept(identity: identity, channel: channel, authorization: request.headerFields[.authorization]) else {
                    return .dontUpgrade
                }
                return .upgrade([.secWebSocketProtocol: "ocpp1.6"]) { inbound, outbound, _ in
                    try await server.serve(identity: identity, inbound: inbound, outbound: outbound)
                }
            },
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = portStream.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            let server = TestCentralSystem(port: port)
            holder.withLock { $0 = server }
            do {
                let result = try await body(server)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    /// A plain HTTP server (no WebSocket upgrade): `/refuse/<id>` answers 400 with a body, the rest 404.
    static func withPlainHTTP<T>(_ body: (Int) async throws -> T) async throws -> T {
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let router = Router()
        router.get("refuse/{id}") { _, _ -> Response in
            Response(status: .badRequest, body: .init(byteBuffer: ByteBuffer(string: "unknown charge point")))
        }
        var logger = Logger(label: "test-http")
        logger.logLevel = .warning
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = portStream.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            defer { group.cancelAll() }
            return try await body(port)
        }
    }

    // MARK: Test controls

    func setBootStatuses(_ identity: String, _ statuses: [RegistrationStatus]) {
        state.withLock { $0.bootStatuses[identity] = statuses }
    }

    func setHeartbeatInterval(_ seconds: Int) { state.withLock { $0.heartbeatInterval = seconds } }

    /// Refuse (404) or accept new connections from `identity`.
    func setRefused(_ identity: String, _ refused: Bool) {
        state.withLock { if refused { $0.refused.insert(identity) } else { $0.refused.remove(identity) } }
    }

    /// Closes the TCP connection of `identity` without a close handshake.
    func dropConnection(_ identity: String) async throws {
        let channel = state.withLock { $0.channels[identity] }
        try await channel?.close()
    }

    func received(_ identity: String) -> [Received] {
        state.withLock { $0.received.filter { $0.identity == identity } }
    }

    func authorization(_ identity: String) -> String? { state.withLock { $0.authorization[identity] } }

    func remoteAddress(_ identity: String) -> String? { state.withLock { $0.remoteAddresses[identity] } }

    /// Polls until `condition` holds for the messages received from `identity`.
    func waitFor(
        _ identity: String, timeout: Duration = .seconds(10), _ what: String = "condition",
        _ condition: ([Received]) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(received(identity)) {
            if ContinuousClock.now >= deadline {
                throw TestFailure("timed out waiting for \(what); received: \(received(identity).map(\.action))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sends a CALL to the charger and returns its answer (CALLRESULT or CALLERROR frame).
    func call(_ identity: String, action: String, payload: JSONValue, timeout: Duration = .seconds(10)) async throws -> OCPPFrame {
        let (writer, id) = state.withLock { s -> (WebSocketOutboundWriter?, String) in
            s.nextCallID += 1
            return (s.writers[identity], "cs-\(s.nextCallID)")
        }
        guard let writer else { throw TestFailure("\(identity) is not connected") }
        return try await withThrowingTaskGroup(of: OCPPFrame.self) { group in
            group.addTask {
                // Cancelled (the time limit passed: an ignored call), the wait ends at once.
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { c in
                        let cancelled = self.state.withLock { s -> Bool in
                            if Task.isCancelled { return true }
                            s.pending[id] = c
                            return false
                        }
                        if cancelled { return c.resume(throwing: CancellationError()) }
                        Task { try? await writer.write(.text(OCPPFrame.call(id: id, action: action, payload: payload).encode())) }
                    }
                } onCancel: {
                    self.state.withLock { $0.pending.removeValue(forKey: id) }?.resume(throwing: CancellationError())
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw TestFailure("no answer to \(action) from \(identity)")
            }
            defer { group.cancelAll() }
            let frame = try await group.next()!
            return frame
        }
    }

    func call<R: OCPPRequest>(_ identity: String, _ request: R) async throws -> R.Response {
        let payload = try JSONValue(encoding: request, encoder: OCPP16Coding.makeEncoder())
        let frame = try await call(identity, action: R.action, payload: payload)
        guard case .callResult(_, let result) = frame else { throw TestFailure("\(R.action) answered \(frame.encode())") }
        return try result.decode(R.Response.self, decoder: OCPP16Coding.makeDecoder())
    }

    // MARK: Server side

    private func accept(identity: String, channel: any Channel, authorization: String?) -> Bool {
        state.withLock { s in
            guard !s.refused.contains(identity) else { return false }
            s.channels[identity] = channel
            s.authorization[identity] = authorization
            s.remoteAddresses[identity] = channel.remoteAddress?.ipAddress
            return true
        }
    }

    private func serve(identity: String, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        state.withLock { $0.writers[identity] = outbound }
        for try await message in inbound.messages(maxSize: 1 << 20) {
            guard case .text(let text) = message, case .success(let frame) = OCPPFrame.decode(text: text) else { continue }
            switch frame {
            case .call(let id, let action, let payload):
                state.withLock { $0.received.append(Received(identity: identity, action: action, payload: payload)) }
                let answer = (try? answer(identity: identity, id: id, action: action))
                    ?? .callError(id: id, code: .internalError, description: "test server", version: .ocpp16)
                try await outbound.write(.text(answer.encode()))
            case .callResult(let id, _), .callError(let id, _, _, _):
                let c = state.withLock { $0.pending.removeValue(forKey: id) }
                c?.resume(returning: frame)
            }
        }
    }

    private func answer(identity: String, id: String, action: String) throws -> OCPPFrame {
        let encoder = OCPP16Coding.makeEncoder()
        func result(_ r: some OCPPPayload) throws -> OCPPFrame { try .callResult(id: id, response: r, encoder: encoder) }
        switch action {
        case "BootNotification":
            let (status, interval) = state.withLock { s -> (RegistrationStatus, Int) in
                var queue = s.bootStatuses[identity] ?? []
                let status = queue.isEmpty ? .accepted : queue.removeFirst()
                s.bootStatuses[identity] = queue
                return (status, status == .accepted ? s.heartbeatInterval : 1)
            }
            return try result(BootNotificationResponse(status: status, currentTime: Date(), interval: interval))
        case "Heartbeat":
            return try result(HeartbeatResponse(currentTime: Date()))
        case "StatusNotification":
            return try result(StatusNotificationResponse())
        case "MeterValues":
            return try result(MeterValuesResponse())
        case "Authorize":
            return try result(AuthorizeResponse(idTagInfo: IdTagInfo(status: .accepted)))
        case "StartTransaction":
            let txID = state.withLock { s -> Int in defer { s.nextTransactionID += 1 }; return s.nextTransactionID }
            return try result(StartTransactionResponse(idTagInfo: IdTagInfo(status: .accepted), transactionId: txID))
        case "StopTransaction":
            return try result(StopTransactionResponse(idTagInfo: IdTagInfo(status: .accepted)))
        default:
            return .callError(id: id, code: .notImplemented, description: "\(action) not implemented by the test server", version: .ocpp16)
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension TestCentralSystem.Received {
    var connectorId: Int? { payload["connectorId"]?.int64Value.map(Int.init) }
    var transactionId: Int? { payload["transactionId"]?.int64Value.map(Int.init) }
    var status: String? { payload["status"]?.stringValue }
}
