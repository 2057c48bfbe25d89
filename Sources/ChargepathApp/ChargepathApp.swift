public import Chargepath
public import ChargepathPostgres
import ChargepathServer
import ChargepathWorkflows
import Foundation
import HTTPTypes
import Hummingbird
public import Logging
import NIOCore
import PostgresNIO
import UnixSignals
public import ServiceLifecycle
import ProcessLimits

/// The composition root: configuration in, one set of services out.
public enum ChargepathApp {
    /// Where a running server listens (the real ports, also when 0 was asked for).
    public struct Running: Sendable {
        public let ocppPort: Int
        public let apiPort: Int
        public let nodeID: NodeID
    }

    /// Runs `chargepath serve` until SIGINT or SIGTERM: starts the embedded PostgreSQL when no
    /// database is configured, runs every service, and stops the cluster on the way out.
    public static func serve(configuration: ChargepathConfiguration, logger: Logger) async throws {
        let reserved = filesBesideChargers(configuration)
        let files = raiseOpenFileLimit(logger: logger, reserved: reserved)
        let configuration = {
            var bounded = configuration
            bounded.gateway.maximumConnections = connectionBound(
                configured: configuration.gateway.maximumConnections, files: files, reserved: reserved, logger: logger
            )
            return bounded
        }()
        let (database, embedded) = try await resolveDatabase(configuration: configuration, logger: logger)
        do {
            let token = try APIToken.resolve(configured: configuration.apiToken, dataDirectory: configuration.dataDirectory)
            let services = try makeServices(
                configuration: configuration, database: database, apiToken: token.value, logger: logger
            ) { running in
                printBanner(configuration: configuration, running: running, database: database, embedded: embedded != nil, token: token, files: files)
            }
            // The embedded cluster's data files go to disk in small steps, not in 30 s bursts (WritebackPacer).
            let pacer: [any Service] = embedded.map { [WritebackPacer(directory: $0.dataFilesDirectory, logger: logger)] } ?? []
            let group = ServiceGroup(
                configuration: .init(services: (services + pacer).map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            )
            try await group.run()
        } catch let error as StartupAbandoned {
            logger.notice("\(error.description)")
        } catch {
            try? await embedded?.stop()
            throw error
        }
        try await embedded?.stop()
    }

    /// Applies the migrations and returns (`chargepath migrate`).
    public static func migrate(configuration: ChargepathConfiguration, logger: Logger) async throws {
        let (database, embedded) = try await resolveDatabase(configuration: configuration, logger: logger)
        let client = PostgresClient(configuration: database.clientConfiguration(maximumConnections: 2), backgroundLogger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            let versions = try await MigrationRunner().run(on: client, logger: logger)
            logger.notice("Database is migrated", metadata: ["db": "\(database)", "db.versions": "\(versions)"])
            group.cancelAll()
        }
        try await embedded?.stop()
    }

    static func resolveDatabase(configuration: ChargepathConfiguration, logger: Logger) async throws -> (DatabaseEndpoint, EmbeddedPostgres?) {
        if let url = configuration.databaseURL {
            return (try DatabaseEndpoint(url: url), nil)
        }
        let embedded = EmbeddedPostgres(
            configuration: .init(dataDirectory: configuration.dataDirectory, stopWhenProcessExits: getpid()),
            logger: logger
        )
        let endpoint = try await embedded.start()
        return (endpoint.databaseEndpoint, embedded)
    }

    /// Builds every long-running service for one node, in start order (shutdown runs in reverse).
    /// `onRunning` is called once both listeners are bound.
    public static func makeServices(
        configuration: ChargepathConfiguration,
        database: DatabaseEndpoint,
        apiToken: String,
        logger: Logger,
        onRunning: @escaping @Sendable (Running) async -> Void = { _ in }
    ) throws -> [any Service] {
        let client = PostgresClient(
            configuration: database.clientConfiguration(maximumConnections: configuration.databasePoolSize),
            backgroundLogger: logger
        )
        let nodeID = configuration.nodeID ?? NodeID.generate()
        let logger = {
            var logger = logger
            logger[metadataKey: "node"] = "\(nodeID)"
            return logger
        }()
        let registry = ConnectionRegistry()
        let metrics = ServerMetrics(workflows: shippedWorkflows.map(\.name))
        let migrations = MigrationRunner()
        let ports = PortCollector(nodeID: nodeID, onRunning: onRunning)

        // The statements most charger messages run, batched (`GroupCommit`), each on a
        // connection of its own outside the pool (see `PinnedConnections` for why). Each connection
        // runs one prepared statement, planned once: PostgreSQL had chosen custom plans for the
        // probe, 100 µs of planning a call at 1,000 msg/s (pg_stat_statements).
        func pinned(_ name: String, count: Int = 1) throws -> PinnedConnections {
            try PinnedConnections(
                endpoint: database, count: count,
                options: .init(startupParameters: [("plan_cache_mode", "force_generic_plan")], applicationName: "chargepath \(name)"), logger: logger,
                observer: metrics.databaseObserver(connection: name)
            )
        }
        // Four for MeterValues: under load the next batches start while the last commits
        // (`PostgresCentralSystemStore.meterValuesForAnotherSlot`).
        let meterValueConnections = try pinned("meter values", count: Self.meterValueSlots)
        let probeConnections = try pinned("workflow probes")
        let statusConnections = try pinned("status notifications")
        // Chargers connecting together (a boot storm): their admission lookups, connection rows and
        // boots, many in one statement each.
        let admissionConnections = try pinned("admission")
        let connectionConnections = try pinned("connections")
        let bootConnections = try pinned("boots")
        let repository = PostgresConnectionRepository(client: client, logger: logger, openConnections: connectionConnections)
        let store = PostgresCentralSystemStore(
            client: client, logger: logger, provisionOnBoot: configuration.provisionOnBoot,
            sessionInterruptGraceSeconds: configuration.sessionInterruptGraceSeconds,
            meterValueConnections: meterValueConnections, meterValueSlots: meterValueConnections.count,
            statusConnections: statusConnections, bootConnections: bootConnections
        )
        let schemaReady = Gate()
        let workflows = makeWorkflowEngine(
            client: client, registry: registry, configuration: configuration, logger: logger, schemaReady: schemaReady,
            probeConnections: probeConnections, observer: metrics.workflowActivity
        )
        let sessions = ChargerSessions(
            repository: repository, registry: registry, nodeID: nodeID, configuration: configuration.gateway,
            sessions: OCPP16SessionFactory(
                handler: OCPP16Handler(store: store, configuration: configuration.ocpp16),
                workflows: workflows,
                configuration: configuration.sessions,
                metrics: metrics
            ),
            workflows: workflows
        )
        let management = PostgresManagementStore(client: client, logger: logger, lookupConnections: admissionConnections)
        let admission = ChargerAdmission(store: management, unknownChargers: configuration.unknownChargers, logger: logger)
        let commands = CommandService(store: management, registry: registry, logger: logger)
        var chargerApp = Application(
            router: ChargerGateway.plainHTTPRouter(),
            server: ChargerGateway.server(configuration: configuration.gateway, admission: admission, sessions: sessions, metrics: metrics),
            configuration: .init(
                address: .hostname(configuration.ocppHost, port: configuration.ocppPort), serverName: nil,
                backlog: configuration.gateway.listenBacklog
            ),
            onServerRunning: { channel in await ports.set(ocpp: channel.localAddress?.port ?? configuration.ocppPort) },
            logger: logger
        )
        let maximumBackoff = configuration.maximumStartupBackoff
        let attemptTimeout = configuration.startupAttemptTimeout
        chargerApp.beforeServerStarts {
            // No charger is accepted before the schema is in place and this node is on record.
            try await retryingWithBackoff(maximum: maximumBackoff, logger: logger, what: "migrate the database at \(database)") {
                try await withDeadline(attemptTimeout, what: "reaching the database") {
                    try await migrations.run(on: client, logger: logger)
                    try await repository.register(nodeID, hostname: ProcessInfo.processInfo.hostName, at: Date())
                }
            }
            await meterValueConnections.open()
            await probeConnections.open()
            await statusConnections.open()
            await admissionConnections.open()
            await connectionConnections.open()
            await bootConnections.open()
            schemaReady.open()
        }

        var api = OperatorAPI(
            configuration: .init(token: apiToken, maxMessageSize: configuration.gateway.maxMessageSize),
            connections: repository, registry: registry, nodeID: nodeID,
            management: ManagementAPI(
                store: management, commands: commands, registry: registry, nodeID: nodeID,
                maxBodySize: configuration.gateway.maxMessageSize, workflows: workflows
            ),
            workflows: WorkflowAPI(engine: workflows, maxBodySize: configuration.gateway.maxMessageSize),
            readiness: {
                // Ready means a charger can connect: the charger port opens only after the
                // migrations, the node's registration and the pinned database connections, and
                // a client that starts a fleet on the first 200 must not be refused.
                guard await ports.ocpp != nil else {
                    return .failure(ReadinessError(description: "the charger port is not listening yet"))
                }
                do {
                    return try await migrations.isUpToDate(on: client, logger: logger)
                        ? .success(()) : .failure(ReadinessError(description: "migrations are not applied yet"))
                } catch {
                    return .failure(ReadinessError(description: "database unreachable: \(String(reflecting: error))"))
                }
            }
        )
        api.history = HistoryAPI(store: PostgresHistoryStore(client: client, logger: logger), connections: repository)
        api.metrics = metrics
        let apiApp = Application(
            router: api.buildRouter(),
            server: BoundedHTTPChannel.server(maximumConnections: configuration.maximumAPIConnections),
            configuration: .init(address: .hostname(configuration.apiHost, port: configuration.apiPort), serverName: nil),
            onServerRunning: { channel in await ports.set(api: channel.localAddress?.port ?? configuration.apiPort) },
            logger: logger
        )
        let nodeService = NodeService(
            nodeID: nodeID, nodes: repository, connections: repository, registry: registry, commands: management,
            configuration: configuration.node, maximumConnectionDuration: configuration.gateway.maximumConnectionDuration,
            logger: logger
        )
        // Shutdown runs in reverse: the listeners stop accepting, the chargers' sockets close (and
        // their rows go), then the workflow engine, the node's row, the pinned connections and the client stop.
        return [
            client, meterValueConnections, probeConnections, statusConnections, admissionConnections, connectionConnections, bootConnections,
            nodeService,
            workflows, ChargerSocketDrain(sessions: sessions, logger: logger),
            chargerApp, apiApp,
        ]
    }

    /// The workflows that ship.
    static var shippedWorkflows: [AnyWorkflow] {
        [AnyWorkflow(RemoteStartWorkflow()), AnyWorkflow(ChargingSessionWorkflow()), AnyWorkflow(ProvisioningWorkflow()), AnyWorkflow(ChargerCommandWorkflow())]
    }

    /// The workflow engine with the workflows that ship, calling chargers held by this node.
    static func makeWorkflowEngine(
        client: PostgresClient, registry: ConnectionRegistry, configuration: ChargepathConfiguration, logger: Logger,
        schemaReady: Gate = Gate(open: true), probeConnections: PinnedConnections? = nil,
        observer: @escaping @Sendable (WorkflowActivity) -> Void = { _ in }
    ) -> PostgresWorkflowEngine {
        let calls = LocalCallSender(registry: registry)
        return PostgresWorkflowEngine(
            client: client, workflows: shippedWorkflows, configuration: configuration.workflowEngine, logger: logger,
            schemaReady: schemaReady, probeConnections: probeConnections, observer: observer
        ) { chargePointID, action, payload in
            do {
                return .answered(try await calls.call(chargePointID: chargePointID, action: action, payload: payload))
            } catch let failure as ChargerCallFailure {
                switch failure.kind {
                case .notConnected, .connectionClosed: return .notConnected
                case .timeout: return .failed(code: "Timeout", description: failure.description)
                case .callError(let code, let description, _): return .failed(code: code, description: description)
                case .queueFull, .malformedAnswer, .invalidPayload: return .failed(code: "CallFailed", description: failure.description)
                }
            } catch {
                return .failed(code: "CallFailed", description: "\(error)")
            }
        }
    }

    /// Every route the operator listener serves, as "METHOD /path/{param}" (for checking the OpenAPI document).
    public static func operatorRoutes() -> [String] {
        // A client that is never run: building the router touches no database.
        let client = PostgresClient(
            configuration: .init(host: "127.0.0.1", port: 1, username: "none", password: nil, database: nil, tls: .disable),
            backgroundLogger: Logger(label: "routes")
        )
        let logger = Logger(label: "routes")
        let repository = PostgresConnectionRepository(client: client, logger: logger)
        let management = PostgresManagementStore(client: client, logger: logger)
        let registry = ConnectionRegistry()
        let nodeID = NodeID(rawValue: "routes")
        var api = OperatorAPI(
            configuration: .init(token: "x"), connections: repository, registry: registry, nodeID: nodeID,
            management: ManagementAPI(
                store: management, commands: CommandService(store: management, registry: registry, logger: logger),
                registry: registry, nodeID: nodeID, maxBodySize: 1
            ),
            workflows: WorkflowAPI(
                engine: makeWorkflowEngine(client: client, registry: registry, configuration: .init(), logger: logger), maxBodySize: 1
            ),
            readiness: { .success(()) }
        )
        api.history = HistoryAPI(store: PostgresHistoryStore(client: client, logger: logger), connections: repository)
        api.metrics = ServerMetrics()
        return api.buildRouter().routes.map { route in
            let path = route.path.description.split(separator: "/").map { segment in
                segment.hasPrefix(":") ? "{\(segment.dropFirst())}" : String(segment)
            }
            return "\(route.method) /" + path.joined(separator: "/")
        }
    }

    static func printBanner(
        configuration: ChargepathConfiguration, running: Running, database: DatabaseEndpoint, embedded: Bool, token: APIToken, files: OpenFileLimit?
    ) {
        let ocppHost = configuration.ocppHost == "0.0.0.0" ? "localhost" : configuration.ocppHost
        var lines = [
            "Chargepath is running (node \(running.nodeID)).",
            "  Chargers connect to:  ws://\(ocppHost):\(running.ocppPort)/<any path>/<chargePointId>  (OCPP 1.6J)",
            "  Operator API:         http://\(configuration.apiHost):\(running.apiPort)  (Authorization: Bearer <token>)",
            "  Database:             \(database)\(embedded ? " (embedded, data in \(configuration.dataDirectory.path)/postgres)" : "")",
        ]
        switch token.source {
        case .configured:
            lines.append("  API token:            as configured (--api-token / CHARGEPATH_API_TOKEN)")
        case .generated(let file):
            // Not printed: stdout often ends up in a log collector. The file is readable by this user only.
            lines.append("  API token:            generated now; read it with: cat \(file.path)")
        case .stored(let file):
            lines.append("  API token:            kept in \(file.path)")
        }
        if let files {
            let most = configuration.gateway.maximumConnections ?? chargerCapacity(files, reserved: filesBesideChargers(configuration))
            lines.append("  Connections:          up to \(most) chargers (open-file limit \(files.soft))")
        }
        // Straight to stdout, unbuffered: the banner must show even when stdout is a pipe.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}

extension ChargepathApp {
    /// Open files a node keeps besides its chargers' sockets: its operator API connections (at
    /// most `maximumAPIConnections`), its database pool and the nine pinned connections beside
    /// it, and 93 for the rest: the refused sockets each port keeps open while their 503 is read (16
    /// each, `ConnectionSlots.maximumLingering`), standard streams, the event loops' descriptors,
    /// the embedded cluster's pipes, libdispatch's reads of `/proc`. 250 by default.
    static func filesBesideChargers(_ configuration: ChargepathConfiguration) -> Int {
        configuration.maximumAPIConnections + configuration.databasePoolSize + pinnedConnections + 93
    }

    /// MeterValues' group-commit slots, each on a pinned connection.
    static let meterValueSlots = 4
    /// The database connections outside the pool: MeterValues' slots, and one each for workflow
    /// probes, StatusNotifications, admission, connection rows and boots.
    static let pinnedConnections = meterValueSlots + 5

    /// Below this many chargers the log says how to raise the limit.
    static let fewChargers = 4_000

    /// About how many chargers a node holds with `limit` (each connection is one open file).
    static func chargerCapacity(_ limit: OpenFileLimit, reserved: Int) -> Int {
        max(0, limit.soft - reserved)
    }

    /// The bound on the charger port's sockets: as configured (`--max-connections`) or what the
    /// open-file limit allows, never more than it allows (a process out of files is stopped by
    /// libdispatch, see `ConnectionSlots`).
    static func connectionBound(configured: Int?, files: OpenFileLimit?, reserved: Int, logger: Logger) -> Int? {
        guard let files else { return configured }
        let capacity = max(1, chargerCapacity(files, reserved: reserved))
        guard let configured else { return capacity }
        if configured > capacity {
            logger.warning(
                "--max-connections is more than the open-file limit allows; holding \(capacity) chargers at most",
                metadata: ["connections.asked": "\(configured)", "connections.max": "\(capacity)", "limit": "\(files.soft)"]
            )
            return capacity
        }
        return configured
    }

    /// Each charger's connection is an open file, and many systems start a process with a soft
    /// limit of 1,024 (systemd's default; the hard limit is far higher). Left there, a node stops
    /// accepting chargers at about a thousand, with nothing in its log but NIO's accept errors. The
    /// soft limit goes up to the hard one (as far as Linux allows), and a limit that still holds few
    /// chargers is logged with what to do. Returns the limit in force, nil where it cannot be read.
    @discardableResult
    static func raiseOpenFileLimit(
        logger: Logger,
        reserved: Int,
        current: () -> OpenFileLimit? = { OpenFileLimit.current() },
        raise: () -> OpenFileLimit? = { OpenFileLimit.raiseSoftLimit() }
    ) -> OpenFileLimit? {
        guard let before = current() else { return nil }
        let after = raise() ?? before
        var metadata: Logger.Metadata = [
            "limit": "\(after.soft)", "limit.hard": "\(after.hard == .max ? "unlimited" : String(after.hard))",
            "chargers.max": "\(chargerCapacity(after, reserved: reserved))",
        ]
        if after.soft != before.soft { metadata["limit.before"] = "\(before.soft)" }
        logger.info("Open-file limit: one file per charger connection", metadata: metadata)
        if chargerCapacity(after, reserved: reserved) < fewChargers {
            logger.warning(
                """
                This node can hold only about \(chargerCapacity(after, reserved: reserved)) chargers: each connection is an open file, and \
                this process may open at most \(after.hard == .max ? after.soft : after.hard). Raise the hard limit to hold more \
                (LimitNOFILE= under systemd, --ulimit nofile= for a container, `ulimit -Hn` as root).
                """,
                metadata: metadata
            )
        }
        return after
    }
}

/// Shutdown was asked for before the server could start (e.g. Ctrl-C while the database was down).
public struct StartupAbandoned: Error, CustomStringConvertible {
    public let description: String
}

struct ReadinessError: Error, CustomStringConvertible {
    let description: String
}

/// Calls `onRunning` once both listeners have reported their port.
actor PortCollector {
    let nodeID: NodeID
    let onRunning: @Sendable (ChargepathApp.Running) async -> Void
    var ocpp: Int?
    var api: Int?

    init(nodeID: NodeID, onRunning: @escaping @Sendable (ChargepathApp.Running) async -> Void) {
        self.nodeID = nodeID
        self.onRunning = onRunning
    }

    func set(ocpp: Int) async {
        self.ocpp = ocpp
        await fireIfComplete()
    }

    func set(api: Int) async {
        self.api = api
        await fireIfComplete()
    }

    private func fireIfComplete() async {
        guard let ocpp, let api else { return }
        await onRunning(.init(ocppPort: ocpp, apiPort: api, nodeID: nodeID))
    }
}

extension NodeID {
    /// `<hostname>-<8 random hex digits>`: unique per process, readable in the `nodes` table.
    static func generate() -> NodeID {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "node"
        return NodeID(rawValue: "\(host)-\(String(UInt32.random(in: .min ... .max), radix: 16))")
    }
}

/// Retries `operation` with exponential backoff (0.5 s doubling up to `maximum`) until it succeeds
/// or the task is cancelled, saying each time what failed and when it tries again.
func retryingWithBackoff(maximum: Duration, logger: Logger, what: String, _ operation: () async throws -> Void) async throws {
    var delay = Duration.milliseconds(500)
    var attempt = 1
    while true {
        do {
            try await operation()
            if attempt > 1 { logger.notice("Succeeded to \(what) after \(attempt) attempts") }
            return
        } catch {
            try Task.checkCancellation()
            logger.error(
                "Could not \(what); retrying in \(delay)",
                metadata: ["attempt": "\(attempt)", "error": "\(String(reflecting: error))"]
            )
            let wait = delay
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            } catch {
                throw StartupAbandoned(description: "Stopped while trying to \(what); the server never accepted a charger.")
            }
            delay = min(delay * 2, maximum)
            attempt += 1
        }
    }
}

/// Runs `operation` with a deadline that holds even when the operation ignores cancellation
/// (PostgresClient waits for a connection without limit while the server is down).
func withDeadline<T: Sendable>(_ timeout: Duration, what: String, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    do {
        return try await withTimeLimit(timeout, operation)
    } catch is TimeLimitExceeded {
        throw DeadlineExceeded(description: "\(what) took longer than \(timeout)")
    }
}

struct DeadlineExceeded: Error, CustomStringConvertible {
    let description: String
}
