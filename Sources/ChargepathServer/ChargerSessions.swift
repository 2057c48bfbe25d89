import NIOWebSocket
import ServiceLifecycle
public import OCPPCore
public import ChargepathWorkflows
public import Chargepath
public import Foundation
public import Logging

/// What happens on one charger connection once it is recorded: the protocol layer plugs in here.
public protocol ChargerSession: AnyObject, Sendable {
    /// Called once per text message, in order; the read loop waits for it before reading the next.
    func handle(text: String) async
    /// Sends a CALL to the charger and waits for its answer.
    func call(action: String, payload: JSONValue) async throws -> JSONValue
    /// The socket closed: fail whatever still waits on it.
    func closed() async
}

/// Makes the session for each new connection.
public protocol ChargerSessionFactory: Sendable {
    func makeSession(chargePointID: ChargePointIdentity, version: OCPPVersion, socket: ChargerSocket, logger: Logger) -> any ChargerSession
}

/// The life of one charger socket: record it, register it, read it, forget it.
public struct ChargerSessions: Sendable {
    let repository: any ConnectionRepository
    let registry: ConnectionRegistry
    let nodeID: NodeID
    let configuration: GatewayConfiguration
    let sessions: any ChargerSessionFactory
    let workflows: (any WorkflowEngine)?
    let now: @Sendable () -> Date

    public init(
        repository: any ConnectionRepository, registry: ConnectionRegistry, nodeID: NodeID,
        configuration: GatewayConfiguration, sessions: any ChargerSessionFactory, workflows: (any WorkflowEngine)? = nil,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.repository = repository
        self.registry = registry
        self.nodeID = nodeID
        self.configuration = configuration
        self.sessions = sessions
        self.workflows = workflows
        self.now = now
    }

    /// Serves one upgraded socket until it closes: records it, registers it, hands its messages
    /// to its session, and forgets it. On graceful shutdown the charger gets a close frame (1001).
    func serve(upgrade: ChargerUpgrade, socket: ChargerSocket, logger: Logger) async {
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
            socket.close(.unexpectedServerError, reason: "Central system storage unavailable; reconnect later")
            await socket.closed()
            return
        }
        let session = sessions.makeSession(
            chargePointID: upgrade.accepted.identity, version: upgrade.accepted.version, socket: socket, logger: logger
        )
        let entry = ConnectionRegistry.Entry(
            connectionID: upgrade.connectionID, identity: upgrade.accepted.identity, socket: socket, session: session,
            connectedAt: connectedAt
        )
        if let previous = registry.add(entry) {
            previous.socket.close(.normalClosure, reason: "Replaced by a newer connection of this charge point")
        }
        logger.info(
            "Charger connected",
            metadata: [
                "net.peer": "\(upgrade.remoteAddress ?? "unknown")",
                "ocpp.path": "\(upgrade.accepted.path)",
                "ocpp.subprotocol": "\(upgrade.accepted.subprotocolToEcho ?? "none offered")",
            ]
        )
        let registry = self.registry
        let connectionID = upgrade.connectionID
        socket.start { text in
            registry.markActive(connectionID)
            await session.handle(text: text)
        }
        // This task only waits (a shallow stack): the messages are handled in tasks of their own.
        await withGracefulShutdownHandler {
            await socket.closed()
        } onGracefulShutdown: {
            socket.close(.goingAway, reason: "The central system is shutting down; reconnect")
        }
        await session.closed()
        await forget(upgrade.connectionID, logger: logger)
    }

    private func forget(_ id: ConnectionID, logger: Logger) async {
        let identity = registry.entry(id)?.identity
        registry.remove(id)
        // Both are bounded: a socket's end (and so a shutdown) must not wait on the database for good.
        // Workflows hear of a disconnection only when no newer socket of this charger is open.
        if let identity, registry.entry(for: identity) == nil, let workflows {
            do {
                try await withTimeLimit(.seconds(10)) { await workflows.chargerDisconnected(chargePointID: identity.id) }
            } catch {
                logger.warning("Could not tell workflows in time that a charger disconnected", metadata: ["error": "\(error)"])
            }
        }
        do {
            let repository = self.repository
            try await withTimeLimit(.seconds(10)) { try await repository.close(id) }
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
