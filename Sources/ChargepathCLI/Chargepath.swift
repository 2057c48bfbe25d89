public import ArgumentParser
import Chargepath
import ChargepathApp
import ChargepathPostgres
import ChargepathServer
import Foundation
public import Logging

@main
struct ChargepathCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chargepath",
        abstract: "An OCPP 1.6J central system (CSMS) on PostgreSQL.",
        subcommands: [Serve.self, Migrate.self, Simulate.self],
        defaultSubcommand: Serve.self
    )
}

/// Options shared by every command that touches the database.
struct DatabaseOptions: ParsableArguments {
    @Option(help: "Data directory for the embedded PostgreSQL and the generated API token.")
    var dataDir: String = ".chargepath"

    @Option(help: "External PostgreSQL URL (postgres://user:password@host:5432/db); also DATABASE_URL. Unset: an embedded cluster under --data-dir.")
    var databaseURL: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    var resolvedDatabaseURL: String? {
        databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension ChargerAdmission.UnknownChargers: ExpressibleByArgument {}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the central system (charger endpoint and operator API).")

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Address chargers connect to.")
    var ocppHost: String = "0.0.0.0"
    @Option(help: "Port chargers connect to: ws://HOST:PORT/<any path>/<chargePointId>.")
    var ocppPort: Int = 9000
    @Option(help: "Address of the operator API (keep it private).")
    var apiHost: String = "127.0.0.1"
    @Option(help: "Port of the operator API.")
    var apiPort: Int = 9001
    @Option(help: "Bearer token for the operator API; also CHARGEPATH_API_TOKEN. Unset: generated once into the data directory.")
    var apiToken: String?
    @Option(help: "Largest WebSocket message a charger may send, in bytes; larger closes with 1009.")
    var maxMessageSize: Int = 65_536
    @Option(help: "Seconds between server WebSocket pings that find dead chargers (0 disables). A socket's first ping comes at a random point of its first period's second half, so chargers that connect together are not pinged together.")
    var pingInterval: Int = 30
    @Option(help: "Seconds a new connection has to send its WebSocket upgrade request (1-300); then it is closed.")
    var handshakeTimeout: Int = 10
    @Flag(help: "Refuse chargers that offer no WebSocket subprotocol (default: accept them as OCPP 1.6).")
    var requireSubprotocol = false
    @Option(help: "This process's node id among nodes sharing the database (default: <hostname>-<random>).")
    var nodeID: String?
    @Option(help: "Whether charge points no operator registered may connect: accept (the development default) or reject (404 before the upgrade).")
    var unknownChargers: ChargerAdmission.UnknownChargers = .accept
    @Option(help: "Heartbeat interval, in seconds, that BootNotification gives accepted chargers.")
    var heartbeatInterval: Int = 300
    @Option(help: "Seconds a charger whose BootNotification was answered Pending or Rejected waits before booting again. A boot the database could not store in time is answered Pending with a random interval between half of this and all of it.")
    var bootRetryInterval: Int = 60
    @Option(help: "Seconds the server waits for a charger to answer one of its calls.")
    var callTimeout: Int = 30
    @Option(help: "Seconds a workflow's call to a charger is leased to one worker; after a crash it is sent again once the lease runs out.")
    var workflowCallLease: Int = 60
    @Option(help: "Workflow worker lanes: starts and steps run this many at a time, each on a pool connection of its own. Default: half the cores, at least one.")
    var workflowLanes: Int?
    @Option(help: "Workflow lanes that join the others only while the worker is behind (the starts and events it takes waited --workflow-catch-up-after or longer), until it catches up. 0: none. Default: as many as the cores, capped so that with the base lanes they hold at most half of the database pool (20).")
    var workflowCatchUpLanes: Int?
    @Option(help: "Seconds the workflow work taken must have waited for the catch-up lanes to join; they stop once it waited less than half of that.")
    var workflowCatchUpAfter: Double = 5
    @Option(help: "The most workflow starts (asked for by charger messages) one transaction claims.")
    var workflowStartBatch: Int = 16
    @Flag(help: "Do not start a Provisioning workflow (configuration push and TriggerMessage) after each Accepted boot.")
    var noProvisioning = false
    @Option(help: "Seconds a charging session waits for a StopTransaction after its connector went Available, before it closes the transaction as interrupted.")
    var interruptGrace: Int = 60
    @Option(help: "The most charger connections this node holds at once; past it a charger is answered 503 and connects again later. Default: what the open-file limit allows (raised to the hard limit at start), less 250 files for the database and the operator API.")
    var maxConnections: Int?
    @Option(help: "Charger connections the kernel queues before the node accepts them (capped by net.core.somaxconn). Large enough for a reconnect storm: a dropped connection attempt is retried only after 1 s, then 3 s.")
    var listenBacklog: Int = 4096

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = database.logLevel
            return handler
        }
        let logger = Logger(label: "chargepath")
        var configuration = ChargepathConfiguration(
            dataDirectory: URL(fileURLWithPath: database.dataDir, isDirectory: true),
            databaseURL: database.resolvedDatabaseURL,
            ocppHost: ocppHost,
            ocppPort: ocppPort,
            apiHost: apiHost,
            apiPort: apiPort,
            apiToken: apiToken ?? ProcessInfo.processInfo.environment["CHARGEPATH_API_TOKEN"].flatMap { $0.isEmpty ? nil : $0 },
            nodeID: nodeID.map(NodeID.init(rawValue:))
        )
        configuration.gateway.maxMessageSize = maxMessageSize
        configuration.gateway.pingInterval = pingInterval > 0 ? .seconds(pingInterval) : nil
        guard (1...300).contains(handshakeTimeout) else {
            throw ValidationError("--handshake-timeout must be 1 to 300 seconds (a charger sends its upgrade request right after it connects).")
        }
        configuration.gateway.handshakeTimeout = .seconds(handshakeTimeout)
        guard heartbeatInterval > 0, callTimeout > 0 else {
            throw ValidationError("--heartbeat-interval and --call-timeout must be positive numbers of seconds.")
        }
        configuration.ocpp16.heartbeatInterval = heartbeatInterval
        guard bootRetryInterval > 0 else { throw ValidationError("--boot-retry-interval must be a positive number of seconds.") }
        configuration.ocpp16.retryInterval = bootRetryInterval
        configuration.unknownChargers = unknownChargers
        configuration.sessions.callTimeout = .seconds(callTimeout)
        guard workflowCallLease > callTimeout else {
            throw ValidationError("--workflow-call-lease must be longer than --call-timeout, or a slow answer would be sent twice.")
        }
        configuration.workflows.callLease = .seconds(workflowCallLease)
        guard workflowLanes ?? 1 > 0, workflowStartBatch > 0 else {
            throw ValidationError("--workflow-lanes and --workflow-start-batch must be positive.")
        }
        if let workflowLanes { configuration.workflows.workerConcurrency = workflowLanes }
        guard workflowCatchUpLanes ?? 0 >= 0, (0.001...86_400).contains(workflowCatchUpAfter) else {
            throw ValidationError("--workflow-catch-up-lanes must be 0 or more, and --workflow-catch-up-after 0.001 to 86400 seconds.")
        }
        if let workflowCatchUpLanes { configuration.workflows.catchUpLanes = workflowCatchUpLanes }
        configuration.workflows.catchUpAfter = .milliseconds(Int64(workflowCatchUpAfter * 1000))
        configuration.workflows.startBatchSize = workflowStartBatch
        configuration.provisionOnBoot = !noProvisioning
        guard interruptGrace >= 0 else { throw ValidationError("--interrupt-grace must be 0 or more seconds.") }
        configuration.sessionInterruptGraceSeconds = interruptGrace
        if requireSubprotocol {
            configuration.gateway.handshake.versionWhenNoneOffered = nil
        }
        guard maxConnections ?? 1 > 0 else { throw ValidationError("--max-connections must be at least 1.") }
        configuration.gateway.maximumConnections = maxConnections
        guard listenBacklog > 0 else { throw ValidationError("--listen-backlog must be at least 1.") }
        configuration.gateway.listenBacklog = listenBacklog
        try await ChargepathApp.serve(configuration: configuration, logger: logger)
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the database migrations and exit.")

    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = database.logLevel
            return handler
        }
        let configuration = ChargepathConfiguration(
            dataDirectory: URL(fileURLWithPath: database.dataDir, isDirectory: true),
            databaseURL: database.resolvedDatabaseURL
        )
        try await ChargepathApp.migrate(configuration: configuration, logger: Logger(label: "chargepath"))
    }
}
