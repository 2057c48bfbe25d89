public import Logging
public import NIOCore
import NIOPosix
import NIOSSL
public import PostgresNIO
public import ServiceLifecycle
import Synchronization

/// PostgreSQL connections kept outside the pool, one per group-commit slot (`GroupCommit` numbers
/// its slots; no two writes hold one slot at once, so a slot needs a connection, not a pool).
///
/// Why not the pool: each time a connection goes back to PostgresNIO's pool (1.33.2) above its
/// minimum, the pool arms an idle timer (a child task, a dispatch timer, a wake-up of a thread of
/// the cooperative pool) and cancels it at the next lease; a lease is a round through the pool's
/// state machine. On the charger path that is every statement: with 1,000 chargers sending a
/// MeterValues a second, the pool's timer tasks were ~18% of the server's CPU and most of its
/// thread switches (perf, BENCHMARKS.md). The pool's minimum cannot cover the connections in use
/// instead: 1.33.2 traps on a precondition when a lease comes while the database is away and the
/// minimum is above zero.
///
/// A slot's connection opens at `open()` (the server calls it before it accepts chargers) or at its
/// first use, and again after it closes (the server restarted, the network dropped) or a statement
/// on it fails. After a failed connect, uses fail at once with that error for `retryDelay` (group
/// commit then writes each item alone, through the pool, which has its own backoff), so a database
/// that is away is not asked for a connection by every batch. On graceful shutdown the connections
/// close; a use after that throws.
public final class PinnedConnections: Service, Sendable {
    public struct Options: Sendable {
        /// How long uses fail at once after a failed connect.
        public var retryDelay: Duration
        /// Settings sent when connecting (e.g. `plan_cache_mode`), for the one statement a slot runs.
        public var startupParameters: [(String, String)]
        /// The connections' `application_name` (in `pg_stat_activity`).
        public var applicationName: String

        public init(retryDelay: Duration = .seconds(1), startupParameters: [(String, String)] = [], applicationName: String = "chargepath pinned") {
            self.retryDelay = retryDelay
            self.startupParameters = startupParameters
            self.applicationName = applicationName
        }
    }

    public struct ShutDown: Error, CustomStringConvertible {
        public var description: String { "The node is shutting down: its database connections are closed." }
    }

    private enum Slot {
        case idle
        /// Opening: later users wait for the same connect.
        case connecting(Task<PostgresConnection, any Error>)
        case connected(PostgresConnection)
        case failed(at: ContinuousClock.Instant, any Error)
    }

    private struct State {
        var slots: [Slot]
        var closed = false
        var nextID = 0
    }

    /// The number of slots.
    public let count: Int
    private let configuration: PostgresConnection.Configuration
    private let options: Options
    private let eventLoops: [any EventLoop]
    private let logger: Logger
    private let state: Mutex<State>
    /// Told how long each `withConnection` body took (a batch's statement, from its start to its
    /// rows back in the caller's task) and whether it failed.
    private let observer: (@Sendable (_ duration: Duration, _ failed: Bool) -> Void)?

    /// `count` connections to `endpoint`, each on its own event loop of `eventLoopGroup` (round robin).
    public init(
        endpoint: DatabaseEndpoint, count: Int, options: Options = .init(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger,
        observer: (@Sendable (_ duration: Duration, _ failed: Bool) -> Void)? = nil
    ) throws {
        precondition(count >= 1)
        var configuration = try endpoint.connectionConfiguration()
        configuration.options.additionalStartupParameters = [("application_name", options.applicationName)] + options.startupParameters
        self.count = count
        self.configuration = configuration
        self.options = options
        self.eventLoops = (0..<count).map { _ in eventLoopGroup.next() }
        self.logger = logger
        self.observer = observer
        self.state = Mutex(State(slots: Array(repeating: .idle, count: count)))
    }

    /// Runs `body` on slot `slot`'s connection (opening it first when needed). The caller holds the
    /// slot: two bodies never run on one slot at once.
    ///
    /// When `body` throws, the connection is closed and the slot's next use opens a new one: a
    /// prepared statement whose preparation failed once stays failed on its connection
    /// (PostgresNIO 1.33.2 keeps the error), and a slot runs one statement.
    public func withConnection<Result>(slot: Int, _ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        let connection = try await connection(slot)
        let started = ContinuousClock.now
        do {
            let result = try await body(connection)
            observer?(started.duration(to: .now), false)
            return result
        } catch {
            observer?(started.duration(to: .now), true)
            let dropped = state.withLock { state in
                guard case .connected(let current) = state.slots[slot], current === connection else { return false }
                state.slots[slot] = .idle
                return true
            }
            if dropped { try? await connection.close() }
            throw error
        }
    }

    private func connection(_ slot: Int) async throws -> PostgresConnection {
        enum Next {
            case ready(PostgresConnection)
            case wait(Task<PostgresConnection, any Error>)
        }
        let now = ContinuousClock.now
        let next: Next = try state.withLock { state in
            if state.closed { throw ShutDown() }
            switch state.slots[slot] {
            case .connected(let connection) where !connection.isClosed:
                return .ready(connection)
            case .connecting(let task):
                return .wait(task)
            case .failed(let at, let error) where now < at + options.retryDelay:
                throw error
            default:
                state.nextID += 1
                let id = state.nextID
                let task = Task { try await self.connect(slot, id: id) }
                state.slots[slot] = .connecting(task)
                return .wait(task)
            }
        }
        switch next {
        case .ready(let connection): return connection
        case .wait(let task): return try await task.value
        }
    }

    private func connect(_ slot: Int, id: Int) async throws -> PostgresConnection {
        do {
            let connection = try await PostgresConnection.connect(
                on: eventLoops[slot], configuration: configuration, id: id, logger: logger
            )
            let kept = state.withLock { state in
                guard !state.closed else { return false }
                state.slots[slot] = .connected(connection)
                return true
            }
            guard kept else {
                try? await connection.close()
                throw ShutDown()
            }
            return connection
        } catch let error as ShutDown {
            throw error
        } catch {
            state.withLock { $0.slots[slot] = .failed(at: .now, error) }
            logger.warning("Could not open a pinned database connection; trying again on a later use", metadata: [
                "db.slot": "\(slot)", "error": "\(String(reflecting: error))",
            ])
            throw error
        }
    }

    /// Opens every slot's connection now, so that no charger's first message waits for a connect
    /// within its time limit; a failure is logged and left to a later use to retry.
    public func open() async {
        for slot in 0..<count { _ = try? await connection(slot) }
    }

    /// Waits for the graceful shutdown, then closes the connections.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    /// Closes the connections (one being opened closes when it opens); uses after this throw `ShutDown`.
    public func close() async {
        let open: [PostgresConnection] = state.withLock { state in
            state.closed = true
            defer { state.slots = Array(repeating: .idle, count: count) }
            return state.slots.compactMap { slot in
                if case .connected(let connection) = slot { return connection }
                return nil
            }
        }
        for connection in open { try? await connection.close() }
    }
}
