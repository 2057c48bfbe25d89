public import Chargepath
public import ChargepathServer
public import ChargepathPostgres
public import Foundation

/// Everything `chargepath serve` can be told, as data. Only the CLI reads flags and environment.
public struct ChargepathConfiguration: Sendable {
    /// Where the embedded cluster, the generated API token and other local state live.
    public var dataDirectory: URL
    /// An external PostgreSQL (`postgres://user:password@host:port/db`); nil runs the embedded one.
    public var databaseURL: String?
    public var ocppHost: String
    public var ocppPort: Int
    public var apiHost: String
    public var apiPort: Int
    /// The operator API's bearer token; nil reads or generates `<dataDirectory>/api-token`.
    public var apiToken: String?
    /// This process's name among the nodes sharing the database; nil makes `<hostname>-<random>`.
    public var nodeID: NodeID?
    public var gateway: GatewayConfiguration
    /// Whether identities no operator registered may connect (`--unknown-chargers`).
    public var unknownChargers: ChargerAdmission.UnknownChargers
    /// Heartbeat interval and the like, as BootNotification hands them out.
    public var ocpp16: OCPP16Handler.Configuration
    /// Timeouts and queue bounds of each charger session.
    public var sessions: OCPP16SessionFactory.Configuration
    public var node: NodeService.Configuration
    /// The workflow worker: poll interval, call lease, how long a call waits for a charger.
    public var workflows: PostgresWorkflowEngine.Configuration
    /// `workflows`, with the catch-up lanes capped so that, with the base lanes, they hold at most
    /// half the pool (each lane holds a pool connection through its transactions, and the charger
    /// path's statements must find connections): with the default pool of 20 and 16 cores, 8
    /// lanes and 2 catch-up lanes instead of 16. The base lanes are not capped.
    public var workflowEngine: PostgresWorkflowEngine.Configuration {
        var engine = workflows
        let budget = max(1, databasePoolSize / 2)
        engine.catchUpLanes = min(max(0, engine.catchUpLanes), max(0, budget - max(1, engine.workerConcurrency)))
        return engine
    }

    /// Connections in this process's PostgreSQL pool. The batches of the charger path hold six
    /// more, outside the pool (meter values, workflow probes, status notifications, admission,
    /// connection rows, boots: `PinnedConnections`), so a node uses up to this plus six.
    public var databasePoolSize: Int
    /// How long to wait between attempts to reach the database at start, at most.
    public var maximumStartupBackoff: Duration
    /// How long one attempt to reach and migrate the database may take before it counts as failed.
    public var startupAttemptTimeout: Duration
    /// Whether an Accepted BootNotification starts a Provisioning workflow (the configuration
    /// set for the charger, then a TriggerMessage for its statuses). `--no-provisioning` turns it off.
    public var provisionOnBoot: Bool = true
    /// How long a ChargingSession waits for a StopTransaction after its connector went Available
    /// before it closes the transaction as interrupted.
    public var sessionInterruptGraceSeconds: Int = 60
    /// The most operator API connections open at once; past it a new one is answered 503. They
    /// come from the files a node keeps besides its chargers' sockets (`ChargepathApp.filesBesideChargers`,
    /// which counts them, and the database pool, against the open-file limit).
    public var maximumAPIConnections: Int = 128

    public init(
        dataDirectory: URL = URL(fileURLWithPath: ".chargepath", isDirectory: true),
        databaseURL: String? = nil,
        ocppHost: String = "0.0.0.0",
        ocppPort: Int = 9000,
        apiHost: String = "127.0.0.1",
        apiPort: Int = 9001,
        apiToken: String? = nil,
        nodeID: NodeID? = nil,
        gateway: GatewayConfiguration = .init(),
        unknownChargers: ChargerAdmission.UnknownChargers = .accept,
        ocpp16: OCPP16Handler.Configuration = .init(),
        sessions: OCPP16SessionFactory.Configuration = .init(),
        node: NodeService.Configuration = .init(),
        workflows: PostgresWorkflowEngine.Configuration = .init(),
        databasePoolSize: Int = 20,
        maximumStartupBackoff: Duration = .seconds(10),
        startupAttemptTimeout: Duration = .seconds(15)
    ) {
        self.dataDirectory = dataDirectory
        self.databaseURL = databaseURL
        self.ocppHost = ocppHost
        self.ocppPort = ocppPort
        self.apiHost = apiHost
        self.apiPort = apiPort
        self.apiToken = apiToken
        self.nodeID = nodeID
        self.gateway = gateway
        self.unknownChargers = unknownChargers
        self.ocpp16 = ocpp16
        self.sessions = sessions
        self.node = node
        self.workflows = workflows
        self.databasePoolSize = databasePoolSize
        self.maximumStartupBackoff = maximumStartupBackoff
        self.startupAttemptTimeout = startupAttemptTimeout
    }
}
