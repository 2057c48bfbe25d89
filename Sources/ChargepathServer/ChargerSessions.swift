import NIOWebSocket
import WSCore
public import Chargepath
public import Foundation
public import Logging

/// What a charger session does with each text message (the OCPP layer plugs in here).
public protocol ChargerMessageHandler: Sendable {
    /// Called once per text message, in order; the session waits for it before reading the next.
    func handle(text: String, from connection: ConnectionRegistry.Entry, logger: Logger) async
}

/// Ignores messages: the connection layer on its own (used by tests of that layer).
public struct IgnoringMessageHandler: ChargerMessageHandler {
    public init() {}
    public func handle(text: String, from connection: ConnectionRegistry.Entry, logger: Logger) async {
        logger.trace("Ignoring a charger message", metadata: ["ws.message_bytes": "\(text.utf8.count)"])
    }
}

/// The life of one charger socket: record it, register it, read it, forget it.
public struct ChargerSessions: Sendable {
    let repository: any ConnectionRepository
    let registry: ConnectionRegistry
    let nodeID: NodeID
    let configuration: GatewayConfiguration
    let handler: any ChargerMessageHandler
    let now: @Sendable () -> Date

    public init(
        repository: any ConnectionRepository, registry: ConnectionRegistry, nodeID: NodeID,
        configuration: GatewayConfiguration, handler: any ChargerMessageHandler,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.repository = repository
        self.registry = registry
        self.nodeID = nodeID
        self.configuration = configuration
        self.handler = handler
        self.now = now
    }

    func run(upgrade: ChargerUpgrade, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, logger: Logger) async throws {
        let connectedAt = now()
        let record = ConnectionRecord(
            connectionID: upgrade.connectionID,
            chargePointID: upgrade.accepted.identity.id,
            path: upgrade.accepted.path,
            query: upgrade.accepted.query,
            headers: upgrade.headers,
            subprotocol: upgrade.accepted.subprotocolToEcho,
            remoteAddress: upgrade.remoteAddress,
            nodeID: nodeID,
            connectedAt: connectedAt,
            lastSeenAt: connectedAt,
            expiresAt: connectedAt.addingTimeInterval(configuration.maximumConnectionDuration.timeInterval)
        )
        do {
            if let replaced = try await repository.open(record) {
                logger.info("Replaced an older connection of this charge point", metadata: ["ocpp.replaced_connection_id": "\(replaced)"])
            }
        } catch {
            // A charger we cannot record is not accepted: it will retry, as chargers do.
            logger.error("Could not record a charger connection; closing it", metadata: ["error": "\(error)"])
            try? await outbound.close(.unexpectedServerError, reason: "Central system storage unavailable; reconnect later")
            return
        }
        let entry = ConnectionRegistry.Entry(
            connectionID: upgrade.connectionID, identity: upgrade.accepted.identity, writer: outbound, connectedAt: connectedAt
        )
        if let previous = registry.add(entry) {
            try? await previous.writer.close(.normalClosure, reason: "Replaced by a newer connection of this charge point")
        }
        logger.info(
            "Charger connected",
            metadata: [
                "net.peer": "\(upgrade.remoteAddress ?? "unknown")",
                "ocpp.path": "\(upgrade.accepted.path)",
                "ocpp.subprotocol": "\(upgrade.accepted.subprotocolToEcho ?? "none offered")",
            ]
        )
        do {
            try await readMessages(entry: entry, inbound: inbound, outbound: outbound, logger: logger)
        } catch {
            await forget(upgrade.connectionID, logger: logger)
            throw error
        }
        await forget(upgrade.connectionID, logger: logger)
    }

    private func readMessages(
        entry: ConnectionRegistry.Entry, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, logger: Logger
    ) async throws {
        // `messages(maxSize:)` throws a close with 1009 (message too big) when a charger exceeds the limit.
        for try await message in inbound.messages(maxSize: configuration.maxMessageSize) {
            registry.markActive(entry.connectionID)
            switch message {
            case .text(let text):
                await handler.handle(text: text, from: entry, logger: logger)
            case .binary:
                logger.warning("A charger sent a binary frame; OCPP-J uses text frames only. Closing the connection.")
                try await outbound.close(.unacceptableData, reason: "OCPP-J messages are text frames")
                return
            }
        }
    }

    private func forget(_ id: ConnectionID, logger: Logger) async {
        registry.remove(id)
        do {
            try await repository.close(id)
        } catch {
            // The sweeper removes the row once this node's heartbeat or the row's expiry lapses.
            logger.warning("Could not delete a closed connection's row; the sweeper will", metadata: ["error": "\(error)"])
        }
    }
}

extension Duration {
    /// Seconds as a `TimeInterval`, for `Date` arithmetic.
    public var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
