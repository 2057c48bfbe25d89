#if canImport(Glibc)
import Glibc
#endif
import NIOWebSocket
public import Chargepath
public import Foundation
public import Logging
public import ServiceLifecycle

/// Keeps this node's row alive and the `connections` table honest.
///
/// Every `heartbeatInterval` it refreshes the node's heartbeat and writes `last_seen_at` for the
/// sockets that saw traffic (one batched UPDATE). Every `sweepInterval` it deletes expired rows
/// and the rows of nodes whose heartbeat is older than `deadNodeAfter`, closes local sockets whose
/// row vanished (replaced on another node, or swept), and closes sockets past their maximum age.
/// On graceful shutdown it removes the node, and with it every row it recorded.
public struct NodeService: Service {
    public struct Configuration: Sendable {
        public var heartbeatInterval: Duration
        public var sweepInterval: Duration
        public var deadNodeAfter: Duration

        public init(heartbeatInterval: Duration = .seconds(10), sweepInterval: Duration = .seconds(30), deadNodeAfter: Duration = .seconds(60)) {
            self.heartbeatInterval = heartbeatInterval
            self.sweepInterval = sweepInterval
            self.deadNodeAfter = deadNodeAfter
        }
    }

    let nodeID: NodeID
    let nodes: any NodeRepository
    let connections: any ConnectionRepository
    let registry: ConnectionRegistry
    let commands: (any ManagementStore)?
    let configuration: Configuration
    let maximumConnectionDuration: Duration
    let logger: Logger
    let now: @Sendable () -> Date

    public init(
        nodeID: NodeID, nodes: any NodeRepository, connections: any ConnectionRepository, registry: ConnectionRegistry,
        commands: (any ManagementStore)? = nil, configuration: Configuration, maximumConnectionDuration: Duration, logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.nodeID = nodeID
        self.nodes = nodes
        self.connections = connections
        self.registry = registry
        self.commands = commands
        self.configuration = configuration
        self.maximumConnectionDuration = maximumConnectionDuration
        self.logger = logger
        self.now = now
    }

    /// Gives the heap's free pages back to the system. A burst (a boot storm, a flood) leaves
    /// glibc's arenas holding memory that is free but stays in the resident set; without this an
    /// idle fleet of 5,000 chargers kept ~12 KiB per connection of such memory (BENCHMARKS.md).
    /// Costs a few milliseconds every sweep.
    static func returnFreeMemory() {
        _ = mallocTrim?(0)
    }

    /// glibc's `malloc_trim` (its header is not in Swift's Glibc module), or nil on other C libraries.
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        #if canImport(Glibc)
        guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        #else
        return nil
        #endif
    }()

    public func run() async throws {
        var sinceSweep = Duration.zero
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown {
                    try await Task.sleep(for: configuration.heartbeatInterval)
                }
            } catch {
                break
            }
            // Bounded: a database round that never ends (a pool wait the driver does not end)
            // must not stop the heartbeats for good; the next beat tries again.
            await bounded("heartbeat") { await $0.beat() }
            sinceSweep += configuration.heartbeatInterval
            if sinceSweep >= configuration.sweepInterval {
                sinceSweep = .zero
                await bounded("sweep") { await $0.sweep() }
                Self.returnFreeMemory()
            }
        }
        do {
            // Bounded: with the database away, shutdown must not wait for it (the sweeper of
            // another node, or this node's next start, removes the rows instead).
            let nodes = self.nodes
            let nodeID = self.nodeID
            try await withTimeLimit(.seconds(5)) { try await nodes.deregister(nodeID) }
            logger.info("Node deregistered; its connection rows are gone")
        } catch {
            logger.warning("Could not deregister the node; other nodes will sweep it", metadata: ["error": "\(error)"])
        }
    }

    private func bounded(_ what: String, _ work: @escaping @Sendable (NodeService) async -> Void) async {
        let service = self
        do {
            try await cancelWhenGracefulShutdown {
                try await withTimeLimit(max(service.configuration.heartbeatInterval * 3, .seconds(10))) { await work(service) }
            }
        } catch {
            logger.warning("A \(what) took too long or was interrupted; trying again later", metadata: ["error": "\(error)"])
        }
    }

    /// Refreshes the heartbeat and flushes `last_seen_at`.
    public func beat() async {
        do {
            if try await !nodes.heartbeat(nodeID, at: now()) {
                logger.warning("This node's row was swept as dead; registering again and closing sockets whose rows went")
                try await nodes.register(nodeID, hostname: ProcessInfo.processInfo.hostName, at: now())
                await reconcile()
            }
            try await connections.touch(registry.drainActive(), at: now())
        } catch {
            logger.warning("Heartbeat failed; retrying on the next beat", metadata: ["error": "\(error)"])
        }
    }

    /// Deletes dead rows, then makes the local sockets agree with the table.
    public func sweep() async {
        let date = now()
        do {
            let removed = try await nodes.sweep(now: date, staleBefore: date.addingTimeInterval(-configuration.deadNodeAfter.timeInterval))
            if removed > 0 {
                logger.info("Swept connection rows of dead nodes or past their expiry", metadata: ["connections.removed": "\(removed)"])
            }
        } catch {
            logger.warning("Sweep failed; retrying on the next sweep", metadata: ["error": "\(error)"])
        }
        await reconcile()
        do {
            // A command whose node died never gets its answer: say so instead of RUNNING forever.
            // (Twice the dead-node time: a live node's command times out well before.)
            if let abandoned = try await commands?.failAbandonedCalls(
                startedBefore: date.addingTimeInterval(-2 * max(configuration.deadNodeAfter.timeInterval, 120)), at: date
            ), abandoned > 0 {
                logger.info("Marked commands whose node stopped as FAILED", metadata: ["commands.failed": "\(abandoned)"])
            }
        } catch {
            logger.warning("Could not sweep abandoned commands", metadata: ["error": "\(error)"])
        }
    }

    /// Closes local sockets whose row is gone, and sockets past the maximum connection age.
    public func reconcile() async {
        // Snapshot first: a socket is registered only after its row is written, so any socket in
        // this snapshot that has no row below really lost it.
        let local = registry.all
        guard !local.isEmpty else { return }
        let recorded: Set<ConnectionID>
        do {
            recorded = try await nodes.connectionIDs(of: nodeID)
        } catch {
            logger.warning("Could not read this node's connection rows", metadata: ["error": "\(error)"])
            return
        }
        let oldest = now().addingTimeInterval(-maximumConnectionDuration.timeInterval)
        for entry in local {
            if !recorded.contains(entry.connectionID) {
                logger.info(
                    "Closing a socket whose connection row is gone (replaced elsewhere, or swept)",
                    metadata: ["ocpp.charge_point": "\(entry.identity)", "ocpp.connection_id": "\(entry.connectionID)"]
                )
                registry.remove(entry.connectionID)
                entry.socket.close(.normalClosure, reason: "Connection superseded")
            } else if entry.connectedAt < oldest {
                logger.info(
                    "Closing a socket that reached the maximum connection duration",
                    metadata: ["ocpp.charge_point": "\(entry.identity)", "ocpp.connection_id": "\(entry.connectionID)"]
                )
                entry.socket.close(.goingAway, reason: "Maximum connection duration reached; reconnect")
            }
        }
    }
}
