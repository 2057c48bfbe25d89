public import Chargepath
public import ChargepathWorkflows
public import Logging
public import OCPPCore

/// Makes an `OCPP16Session` for each charger connection.
public struct OCPP16SessionFactory: ChargerSessionFactory {
    public struct Configuration: Sendable {
        /// How long the server waits for a charger to answer its CALL (`--call-timeout`).
        public var callTimeout: Duration
        /// Calls that may wait behind the one in flight, per charger.
        public var callQueueCapacity: Int
        /// How long handling one charger CALL may take before it is answered InternalError.
        public var handlerTimeout: Duration

        public init(callTimeout: Duration = .seconds(30), callQueueCapacity: Int = 32, handlerTimeout: Duration = .seconds(10)) {
            self.callTimeout = callTimeout
            self.callQueueCapacity = callQueueCapacity
            self.handlerTimeout = handlerTimeout
        }
    }

    let handler: OCPP16Handler
    let workflows: (any WorkflowEngine)?
    let configuration: Configuration
    /// Where answered CALLs are counted and timed (`GET /metrics`); nil: nowhere.
    let metrics: ServerMetrics?

    public init(handler: OCPP16Handler, workflows: (any WorkflowEngine)? = nil, configuration: Configuration, metrics: ServerMetrics? = nil) {
        self.handler = handler
        self.workflows = workflows
        self.configuration = configuration
        self.metrics = metrics
    }

    public func makeSession(chargePointID: ChargePointIdentity, version: OCPPVersion, socket: ChargerSocket, logger: Logger) -> any ChargerSession {
        OCPP16Session(
            chargePointID: chargePointID.id, socket: socket, handler: handler, workflows: workflows,
            configuration: .init(
                callTimeout: configuration.callTimeout, callQueueCapacity: configuration.callQueueCapacity,
                handlerTimeout: configuration.handlerTimeout, metrics: metrics
            ),
            logger: logger
        )
    }
}

/// Sends calls to chargers connected to this node.
public struct LocalCallSender: Sendable {
    let registry: ConnectionRegistry

    public init(registry: ConnectionRegistry) {
        self.registry = registry
    }

    public func call(chargePointID: String, action: String, payload: JSONValue) async throws -> JSONValue {
        guard let entry = registry.entry(for: ChargePointIdentity(unchecked: chargePointID)) else {
            throw ChargerCallFailure(.notConnected)
        }
        return try await entry.session.call(action: action, payload: payload)
    }
}
