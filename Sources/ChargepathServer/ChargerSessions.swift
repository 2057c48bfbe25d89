import NIOWebSocket
public import ServiceLifecycle
import Synchronization
public import OCPPCore
public import ChargepathWorkflows
public import Chargepath
public import Foundation
public import Logging

/// What happens on one charger connection once it is recorded: the protocol layer plugs in here.
public protocol ChargerSession: AnyObject, Sendable {
    /// Called once per text message, in order; the next message waits until this returns or lets
    /// `turn` go.
    func handle(text: String, turn: MessageTurn) async
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
    /// Every socket from its upgrade until it is forgotten, for the drain at shutdown.
    let live = LiveSockets()

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

    /// Takes one upgraded socket into service: records it, registers it and starts handing its
    /// messages to its session; returns then. When the socket closes, its session hears of it and
    /// its row goes (in a task of that moment). No task waits on an open socket: an idle charger
    /// costs no task stack (BENCHMARKS.md, idle fleet).
    func serve(upgrade: ChargerUpgrade, socket: ChargerSocket, logger: Logger) async {
        guard live.insert(upgrade.connectionID, socket) else {
            socket.close(.goingAway, reason: Self.shutdownReason)
            return
        }
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
            socket.whenClosed { _ in live.remove(upgrade.connectionID) }
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
        socket.start { text, turn in
            registry.markActive(connectionID)
            await session.handle(text: text, turn: turn)
        }
        socket.whenClosed { closeCode in
            Task {
                await session.closed()
                await self.forget(upgrade.connectionID, logger: logger)
                logger.info(
                    "Charger disconnected",
                    metadata: [
                        "ws.close_code": "\(closeCode.map { "\($0)" } ?? "none (no close frame)")",
                        "net.peer": "\(upgrade.remoteAddress ?? "unknown")",
                    ]
                )
                self.live.remove(upgrade.connectionID)
            }
        }
    }

    static let shutdownReason = "The central system is shutting down; reconnect"

    /// Graceful shutdown: every socket gets a close frame (1001), and this returns once each has
    /// closed and been forgotten (its row deleted), or after the close timeout and the bounded
    /// database work that follows it.
    public func drain(logger: Logger) async {
        let sockets = live.startDraining()
        guard !sockets.isEmpty else { return }
        logger.info("Closing the chargers' sockets for shutdown", metadata: ["count": "\(sockets.count)"])
        for socket in sockets { socket.close(.goingAway, reason: Self.shutdownReason) }
        let deadline = ContinuousClock.now + configuration.closeTimeout + .seconds(20)
        while live.count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if live.count > 0 {
            logger.warning("Some charger sockets were still closing at shutdown", metadata: ["count": "\(live.count)"])
        }
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

/// The sockets a node holds, from the upgrade until each is forgotten (a superset of the
/// registry, which holds them only once recorded).
final class LiveSockets: Sendable {
    private struct State {
        var sockets: [ConnectionID: ChargerSocket] = [:]
        var draining = false
    }

    private let state = Mutex(State())

    /// Adds a socket; false once draining has begun (the socket is refused).
    func insert(_ id: ConnectionID, _ socket: ChargerSocket) -> Bool {
        state.withLock { state in
            guard !state.draining else { return false }
            state.sockets[id] = socket
            return true
        }
    }

    func remove(_ id: ConnectionID) {
        _ = state.withLock { $0.sockets.removeValue(forKey: id) }
    }

    var count: Int { state.withLock { $0.sockets.count } }

    /// Refuses new sockets from now on; returns the open ones.
    func startDraining() -> [ChargerSocket] {
        state.withLock { state in
            state.draining = true
            return Array(state.sockets.values)
        }
    }
}

/// Closes the chargers' sockets at graceful shutdown, after the charger listener stopped accepting
/// and before the workflow engine and the database client stop (services shut down in reverse order).
public struct ChargerSocketDrain: Service {
    let sessions: ChargerSessions
    let logger: Logger

    public init(sessions: ChargerSessions, logger: Logger) {
        self.sessions = sessions
        self.logger = logger
    }

    public func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled: the process is going down without a graceful shutdown
        }
        await sessions.drain(logger: logger)
    }
}

extension Duration {
    /// Seconds as a `TimeInterval`, for `Date` arithmetic.
    public var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
