public import Chargepath
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// What the gateway learned from an upgrade request it accepted.
public struct ChargerUpgrade: Sendable {
    /// The id this socket gets (in the `connections` table and the `@connections` API).
    public let connectionID: ConnectionID
    public let accepted: ChargerHandshake.Accepted
    /// The request headers as stored (lower-cased names, secrets redacted).
    public let headers: [String: String]
    public let remoteAddress: String?
}

/// The charger port's child channel: HTTP/1.1 that upgrades to a WebSocket when the handshake
/// allows it, and answers everything else with a clear HTTP status.
///
/// Why not `HTTP1WebSocketUpgradeChannel`: it answers every refused upgrade with an empty 400.
/// Chargers (and the people reading their logs) deserve the reason, and a plain HTTP request
/// to this port deserves `426 Upgrade Required`, so this channel keeps the refusal and writes it.
/// The shape follows `HTTP1WebSocketUpgradeChannel` (hummingbird-websocket) closely.
struct ChargerGatewayChannel: ServerChildChannel, HTTPChannelHandler {
    typealias SessionHandler = @Sendable (ChargerUpgrade, ChargerSocket, Logger) async -> Void

    enum UpgradeResult: Sendable {
        /// The socket, what the upgrade learned, and a logger carrying the charger's identity.
        case websocket(ChargerSocket, ChargerUpgrade, Logger)
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, ChargerHandshake.Refusal)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let handshake: ChargerHandshake
    let admission: ChargerAdmission?
    let configuration: GatewayConfiguration
    /// The bound on open sockets (`GatewayConfiguration.maximumConnections`), shared by the port's connections.
    let slots: ConnectionSlots?
    /// Counts the refused upgrades (`ServerMetrics`).
    let metrics: ServerMetrics?
    let session: SessionHandler

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            if let slots, try !slots.admit(
                channel, refusal: ConnectionSlots.chargerPortFull,
                warning: "Refusing chargers (503): the charger port holds its most connections. Raise the open-file limit or add a node.",
                logger: logger
            ) {
                metrics?.refusedUpgrade(status: 503)
                return Value(upgradeResult: channel.eventLoop.makeFailedFuture(ConnectionLimitReached()), channel: channel)
            }
            // Each socket keeps its receive buffer between reads: start it at 512 bytes (an OCPP
            // message is a few hundred) rather than NIO's 2,048; it grows for larger reads.
            try channel.syncOptions?.setOption(
                ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65_536)
            )
            let refusal = NIOLoopBoundBox<ChargerHandshake.Refusal?>(nil, eventLoop: channel.eventLoop)
            let handshake = self.handshake
            let admission = self.admission
            let socketConfiguration = ChargerSocketHandler.Configuration(
                state: .init(maxMessageSize: self.configuration.maxMessageSize),
                pingInterval: self.configuration.pingInterval,
                closeTimeout: self.configuration.closeTimeout
            )
            // Set when the upgrade request's head has arrived (on the channel's event loop): from
            // then on the handshake timeout no longer applies (see below).
            let requestArrived = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: self.configuration.maxMessageSize,
                enableAutomaticErrorHandling: true,
                shouldUpgrade: { channel, head in
                    requestArrived.value = true
                    let offered = head.headers["Sec-WebSocket-Protocol"]
                    switch handshake.decide(uri: head.uri, offeredSubprotocols: offered) {
                    case .success(let accepted):
                        var headers = HTTPHeaders()
                        if let echo = accepted.subprotocolToEcho {
                            headers.add(name: "Sec-WebSocket-Protocol", value: echo)
                        }
                        guard let admission else { return channel.eventLoop.makeSucceededFuture(headers) }
                        // Registration and password checks need the database: decided off the event loop.
                        let authorization = head.headers.first(name: "Authorization")
                        let eventLoop = channel.eventLoop
                        return eventLoop.makeFutureWithTask {
                            await admission.admit(identity: accepted.identity, authorization: authorization)
                        }.map { (denied: ChargerHandshake.Refusal?) -> HTTPHeaders? in
                            if let denied {
                                refusal.value = denied
                                return nil
                            }
                            return headers
                        }
                    case .failure(let reason):
                        refusal.value = reason
                        return channel.eventLoop.makeSucceededFuture(nil)
                    }
                },
                upgradePipelineHandler: { channel, head in
                    channel.eventLoop.makeCompletedFuture {
                        // The handshake accepted this head a moment ago; deciding again is pure and cheap.
                        guard case .success(let accepted) = handshake.decide(uri: head.uri, offeredSubprotocols: head.headers["Sec-WebSocket-Protocol"]) else {
                            throw ChannelError.inputClosed
                        }
                        let upgrade = ChargerUpgrade(
                            connectionID: ConnectionID.random(),
                            accepted: accepted,
                            headers: ConnectionRecord.storableHeaders(head.headers.map { (name: $0.name, value: $0.value) }),
                            remoteAddress: channel.remoteAddress?.ipAddress
                        )
                        var logger = logger
                        logger[metadataKey: "ocpp.charge_point"] = "\(upgrade.accepted.identity)"
                        logger[metadataKey: "ocpp.connection_id"] = "\(upgrade.connectionID)"
                        let handler = ChargerSocketHandler(configuration: socketConfiguration, logger: logger)
                        try channel.pipeline.syncOperations.addHandler(handler)
                        return UpgradeResult.websocket(ChargerSocket(channel: channel, handler: handler), upgrade, logger)
                    }
                }
            )
            let serverUpgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                        if let reason = refusal.value {
                            return UpgradeResult.refused(asyncChannel, reason)
                        }
                        return UpgradeResult.notUpgraded(asyncChannel)
                    }
                }
            )
            var pipeline = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: serverUpgradeConfiguration)
            pipeline.enablePipelining = false
            pipeline.enableErrorHandling = true
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
            // A connection that has not sent its whole upgrade request in time is closed. Without
            // this, a socket whose client vanished before it sent one (a reset during a connect
            // storm left the server's side established) was kept for good, and the server's
            // graceful shutdown waited for it forever. A request that has arrived is not timed:
            // its admission waits for the database, and a charger whose request came in time is
            // answered however long that takes (on a loaded machine it took more than 3 s, and
            // closing the socket then left the client library waiting for an answer for good).
            let timeout = self.configuration.handshakeTimeout
            let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
                guard !requestArrived.value else { return }
                logger.debug("Closing a connection that sent no complete upgrade request in time", metadata: ["timeout": "\(timeout)"])
                channel.close(promise: nil)
            }
            result.whenComplete { _ in deadline.cancel() }
            return Value(upgradeResult: result, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .notUpgraded(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http, let reason):
                metrics?.refusedUpgrade(status: reason.status)
                logger.info(
                    "Refused a charger's WebSocket upgrade",
                    metadata: ["http.status": "\(reason.status)", "reason": "\(reason.message)"]
                )
                await Self.writeRefusal(reason, to: http, logger: logger)
            case .websocket(let socket, let upgrade, let logger):
                // Returns once the socket is in service; no task waits on it afterwards.
                await session(upgrade, socket, logger)
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("Charger connection closed during the upgrade")
        } catch is ConnectionLimitReached {
            // Answered 503 and closed in its pipeline (OverCapacityHandler).
        } catch {
            logger.debug("Charger connection ended with an error", metadata: ["error": "\(error)"])
        }
    }

    static func writeRefusal(
        _ reason: ChargerHandshake.Refusal,
        to asyncChannel: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>,
        logger: Logger
    ) async {
        do {
            try await asyncChannel.executeThenClose { _, outbound in
                let body = ByteBuffer(string: reason.message + "\n")
                var fields: HTTPFields = [
                    .connection: "close",
                    .contentType: "text/plain; charset=utf-8",
                    .contentLength: "\(body.readableBytes)",
                ]
                for (name, value) in reason.headers {
                    if let field = HTTPField.Name(name) { fields[field] = value }
                }
                let head = HTTPResponse(status: .init(code: reason.status), headerFields: fields)
                try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
            }
        } catch {
            logger.trace("Could not write the refusal", metadata: ["error": "\(error)"])
        }
    }
}

/// How the charger port behaves; defaults are the documented CLI defaults.
public struct GatewayConfiguration: Sendable {
    /// The largest WebSocket message (and frame) a charger may send; larger closes with 1009.
    public var maxMessageSize: Int
    /// Server-side pings that find dead sockets; nil disables them.
    public var pingInterval: Duration?
    /// How long to wait for the charger's close frame after ours.
    public var closeTimeout: Duration
    /// How long a connection may live before it is closed (API Gateway's 2 h is too short for chargers).
    public var maximumConnectionDuration: Duration
    /// How long a new connection may take to send its upgrade request before it is closed. A
    /// charger sends it right after connecting; its admission (the database's answer) is not timed.
    public var handshakeTimeout: Duration
    public var handshake: ChargerHandshake.Configuration
    /// The most sockets open on the charger port at once, upgraded or not: past it a new
    /// connection is answered 503 (Retry-After) and closed (`ConnectionSlots`). nil: no bound of
    /// its own; `chargepath serve` sets it from the open-file limit, so that a node never runs out.
    public var maximumConnections: Int?
    /// Connections the kernel holds for the node before it accepts them (`listen(2)`'s backlog;
    /// Linux caps it at `net.core.somaxconn`, 4,096 by default). Hummingbird's default of 256
    /// overflows in a reconnect storm: each SYN dropped is sent again by its charger only after
    /// 1 s, then 3 s (BENCHMARKS.md, boot storm).
    public var listenBacklog: Int

    public init(
        maxMessageSize: Int = 65_536,
        pingInterval: Duration? = .seconds(30),
        closeTimeout: Duration = .seconds(10),
        maximumConnectionDuration: Duration = .seconds(24 * 3600),
        handshakeTimeout: Duration = .seconds(10),
        handshake: ChargerHandshake.Configuration = .init(),
        maximumConnections: Int? = nil,
        listenBacklog: Int = 4096
    ) {
        self.maxMessageSize = maxMessageSize
        self.pingInterval = pingInterval
        self.closeTimeout = closeTimeout
        self.maximumConnectionDuration = maximumConnectionDuration
        self.handshakeTimeout = handshakeTimeout
        self.handshake = handshake
        self.maximumConnections = maximumConnections
        self.listenBacklog = listenBacklog
    }
}
