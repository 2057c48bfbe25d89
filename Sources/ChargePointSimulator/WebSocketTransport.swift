import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Where a charger connects: parsed once from `ws://host:port/path` plus the identity.
struct WebSocketEndpoint: Sendable, Equatable {
    var host: String
    var port: Int
    /// Request target including the identity as the last path segment (percent-encoded).
    var requestPath: String
    var displayURL: String

    /// `base` is `ws://host[:port][/path]`; `identity` is appended as the last path segment.
    static func parse(base: String, identity: String) throws(SimulatorError) -> WebSocketEndpoint {
        guard let components = URLComponents(string: base), let scheme = components.scheme?.lowercased() else {
            throw SimulatorError(.invalidConfiguration, "invalid URL '\(base)': expected ws://host:port/path")
        }
        guard scheme == "ws" else {
            if scheme == "wss" {
                throw SimulatorError(.invalidConfiguration, "invalid URL '\(base)': wss:// (TLS) is not supported by the simulator yet")
            }
            throw SimulatorError(.invalidConfiguration, "invalid URL '\(base)': scheme must be ws://")
        }
        guard let host = components.host, !host.isEmpty else {
            throw SimulatorError(.invalidConfiguration, "invalid URL '\(base)': no host")
        }
        guard !identity.isEmpty else { throw SimulatorError(.invalidConfiguration, "empty charge point identity") }
        var path = components.percentEncodedPath
        if !path.hasSuffix("/") { path += "/" }
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/;?#%")
        let encodedIdentity = identity.addingPercentEncoding(withAllowedCharacters: allowed) ?? identity
        path += encodedIdentity
        let port = components.port ?? 80
        let hostForURL = host.contains(":") ? "[\(host)]" : host
        return WebSocketEndpoint(
            host: host, port: port, requestPath: path,
            displayURL: "ws://\(hostForURL):\(port)\(path)"
        )
    }

    var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? h : "\(h):\(port)"
    }
}

/// What the socket reports to the charger engine.
enum TransportEvent: Sendable {
    case text(String)
    /// A non-text data frame (OCPP-J uses text frames only); reported for diagnostics.
    case binary(Int)
    case closed(reason: String)
}

/// An open, upgraded WebSocket.
struct TransportConnection: Sendable {
    let channel: any Channel
    let negotiatedSubprotocol: String?

    func send(text: String) async throws {
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        try await sendText(buffer)
    }

    /// Sends a text frame whose UTF-8 is already written.
    func send(utf8 bytes: [UInt8]) async throws {
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        try await sendText(buffer)
    }

    private func sendText(_ utf8: ByteBuffer) async throws {
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: MaskingKeys.next(), data: utf8)
        try await channel.writeAndFlush(frame).get()
    }

    /// Sends a close frame (1000) and closes the socket.
    func close() async {
        var data = channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: .normalClosure)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: MaskingKeys.next(), data: data)
        _ = try? await channel.writeAndFlush(frame).get()
        _ = try? await channel.close().get()
    }

    /// Closes the TCP connection without a close handshake (simulates a network loss).
    func abort() async {
        _ = try? await channel.close().get()
    }
}

struct TransportOptions: Sendable {
    var subprotocols: [String]
    var headers: [(String, String)]
    var localAddress: SocketAddress?
    var connectTimeout: TimeAmount
    var handshakeTimeout: TimeAmount
    var maxFrameSize: Int
}

/// A minimal OCPP-J WebSocket client on NIOWebSocket's typed client upgrader.
///
/// Chosen over WSClient because a load generator must bind local source addresses
/// (`ClientBootstrap.bind(to:)`) and a refused upgrade must report its HTTP status and body.
/// Per connection: one channel with the WebSocket codec, an aggregator and one handler that forwards
/// text frames to `sink`; no tasks, no unbounded buffers of its own.
enum WebSocketTransport {
    private enum UpgradeOutcome: Sendable {
        case upgraded(any Channel, subprotocol: String?)
        case refused(any Channel, EventLoopFuture<RefusedUpgrade>)
    }

    struct RefusedUpgrade: Sendable {
        var status: HTTPResponseStatus
        var body: String
    }

    static func connect(
        endpoint: WebSocketEndpoint,
        options: TransportOptions,
        group: any EventLoopGroup,
        sink: @escaping @Sendable (TransportEvent) -> Void
    ) async throws(SimulatorError) -> TransportConnection {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: endpoint.hostHeader)
        if !options.subprotocols.isEmpty {
            headers.add(name: "Sec-WebSocket-Protocol", value: options.subprotocols.joined(separator: ", "))
        }
        for (name, value) in options.headers { headers.add(name: name, value: value) }
        let requestHead = HTTPRequestHead(version: .http1_1, method: .GET, uri: endpoint.requestPath, headers: headers)
        let maxFrameSize = options.maxFrameSize
        let handshakeTimeout = options.handshakeTimeout

        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(options.connectTimeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        if let local = options.localAddress {
            bootstrap = bootstrap.bind(to: local)
        }

        let outcomeFuture: EventLoopFuture<UpgradeOutcome>
        do {
            outcomeFuture = try await bootstrap.connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<UpgradeOutcome>(
                        maxFrameSize: maxFrameSize,
                        upgradePipelineHandler: { channel, responseHead in
                            channel.eventLoop.makeCompletedFuture {
                                let ops = channel.pipeline.syncOperations
                                try ops.addHandler(NIOWebSocketFrameAggregator(
                                    minNonFinalFragmentSize: 0,
                                    maxAccumulatedFrameCount: 64,
                                    maxAccumulatedFrameSize: maxFrameSize
                                ))
                                try ops.addHandler(OCPPWebSocketHandler(sink: sink))
                                let proto = responseHead.headers.first(name: "Sec-WebSocket-Protocol")?
                                    .trimmingCharacters(in: .whitespaces)
                                return UpgradeOutcome.upgraded(channel, subprotocol: proto)
                            }
                        }
                    )
                    let configuration = NIOTypedHTTPClientUpgradeConfiguration<UpgradeOutcome>(
                        upgradeRequestHead: requestHead,
                        upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in
                            channel.eventLoop.makeCompletedFuture {
                                let promise = channel.eventLoop.makePromise(of: RefusedUpgrade.self)
                                try channel.pipeline.syncOperations.addHandler(RefusedUpgradeCollector(promise: promise))
                                return UpgradeOutcome.refused(channel, promise.futureResult)
                            }
                        }
                    )
                    var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
                    pipeline.leftOverBytesStrategy = .forwardBytes
                    let upgradeResult = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: pipeline
                    )
                    // Bound the whole handshake: a server that accepts TCP but never answers.
                    let timer = channel.eventLoop.scheduleTask(in: handshakeTimeout) {
                        channel.close(promise: nil)
                    }
                    upgradeResult.whenComplete { _ in timer.cancel() }
                    return upgradeResult
                }
            }
        } catch {
            throw SimulatorError(.unreachable, "cannot connect to \(endpoint.host):\(endpoint.port) (\(describe(error)))")
        }

        let outcome: UpgradeOutcome
        do {
            outcome = try await outcomeFuture.get()
        } catch {
            throw SimulatorError(
                .connectionClosed,
                "WebSocket handshake with \(endpoint.displayURL) failed (\(describe(error))); no HTTP answer within \(handshakeTimeout.nanoseconds / 1_000_000) ms or connection closed"
            )
        }
        switch outcome {
        case .upgraded(let channel, let proto):
            if let proto, !options.subprotocols.contains(where: { $0.caseInsensitiveCompare(proto) == .orderedSame }) {
                channel.close(promise: nil)
                throw SimulatorError(
                    .subprotocolMismatch,
                    "server at \(endpoint.displayURL) selected subprotocol '\(proto)', offered: \(options.subprotocols.isEmpty ? "none" : options.subprotocols.joined(separator: ", "))"
                )
            }
            return TransportConnection(channel: channel, negotiatedSubprotocol: proto)
        case .refused(let channel, let responseFuture):
            let refused: RefusedUpgrade
            do {
                refused = try await responseFuture.get()
            } catch {
                channel.close(promise: nil)
                throw SimulatorError(.upgradeRefused, "server at \(endpoint.displayURL) refused the WebSocket upgrade (\(describe(error)))")
            }
            channel.close(promise: nil)
            let status = Int(refused.status.code)
            let body = refused.body
            throw SimulatorError(
                .upgradeRefused,
                "server at \(endpoint.displayURL) refused the WebSocket upgrade: HTTP \(status) \(refused.status.reasonPhrase)"
                    + (body.isEmpty ? "" : ": " + body.split(whereSeparator: \.isWhitespace).joined(separator: " ").prefix(200)),
                httpStatus: status, body: body
            )
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? NIOConnectionError {
            if let first = e.connectionErrors.first { return describe(first.error) }
            if let dns = e.dnsAAAAError ?? e.dnsAError { return "DNS: \(dns)" }
            return "connection failed"
        }
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        if let e = error as? ChannelError {
            switch e {
            case .connectTimeout(let t): return "connect timeout after \(t.nanoseconds / 1_000_000) ms"
            case .alreadyClosed, .ioOnClosedChannel, .eof, .inappropriateOperationForState: return "connection closed"
            default: return "\(e)"
            }
        }
        return "\(error)"
    }
}

/// After a non-101 answer: collects the response status and up to 2 KiB of body.
private final class RefusedUpgradeCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<WebSocketTransport.RefusedUpgrade>
    private var status: HTTPResponseStatus?
    private var body = ""
    private var done = false

    init(promise: EventLoopPromise<WebSocketTransport.RefusedUpgrade>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(var buffer):
            if body.utf8.count < 2048 {
                let n = min(buffer.readableBytes, 2048 - body.utf8.count)
                body += buffer.readString(length: n) ?? ""
            }
        case .end:
            finish()
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish()
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) { finish() }

    private func finish() {
        guard !done else { return }
        done = true
        if let status {
            promise.succeed(.init(status: status, body: body))
        } else {
            promise.fail(ChannelError.eof)
        }
    }
}

/// Forwards text frames, answers pings, completes the close handshake.
private final class OCPPWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let sink: @Sendable (TransportEvent) -> Void
    private var closeReason: String?
    private var reported = false

    init(sink: @escaping @Sendable (TransportEvent) -> Void) { self.sink = sink }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            var payload = frame.unmaskedData
            sink(.text(payload.readString(length: payload.readableBytes) ?? ""))
        case .binary:
            sink(.binary(frame.length))
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: MaskingKeys.next(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            var payload = frame.unmaskedData
            let code = payload.readWebSocketErrorCode()
            closeReason = "server closed the WebSocket" + (code.map { " (\($0))" } ?? "")
            var echo = context.channel.allocator.buffer(capacity: 2)
            echo.write(webSocketErrorCode: code ?? .normalClosure)
            let reply = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: MaskingKeys.next(), data: echo)
            context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in context.close(promise: nil) }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !reported {
            reported = true
            sink(.closed(reason: closeReason ?? "connection closed"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if closeReason == nil { closeReason = "connection error: \(WebSocketTransport.describe(error))" }
        context.close(promise: nil)
    }
}
