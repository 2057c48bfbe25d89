public import Foundation
public import OCPPCore
public import OCPP16

/// How the charger reacts to a central-system CALL (fault tests).
public enum CentralSystemCallBehaviour: String, Sendable, Equatable, CaseIterable {
    /// Answer like a real 1.6 charger (and act on it).
    case answer
    /// Answer with the action's negative status (`Rejected`, `UnlockFailed`, ...); actions without a
    /// status field get a CALLERROR `GenericError`. Nothing is acted on.
    case reject
    /// Never answer (the central system's call times out).
    case ignore

    /// The OCPP 1.6 actions a central system sends (and DataTransfer, which either side sends):
    /// those a behaviour can be set for.
    public static var centralSystemActions: [String] {
        OCPP16Action.allCases.filter { $0.direction != .chargePointToCentralSystem }.map(\.rawValue).sorted()
    }

    /// Throws unless `action` is one the central system sends; `context` says where it was given.
    static func checkAction(_ action: String, in context: String) throws(SimulatorError) {
        guard centralSystemActions.contains(action) else {
            throw SimulatorError(
                .invalidConfiguration,
                "\(context): '\(action)' is not an action the central system sends; use one of: \(centralSystemActions.joined(separator: ", "))"
            )
        }
    }

    /// A behaviour by name (`answer`, `reject`, `ignore`), as `option` (for the error) gave it.
    public static func parse(_ text: String, option: String) throws(SimulatorError) -> CentralSystemCallBehaviour {
        guard let behaviour = CentralSystemCallBehaviour(rawValue: text.lowercased()) else {
            throw SimulatorError(
                .invalidConfiguration,
                "\(option) '\(text)': the behaviour must be one of \(allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        return behaviour
    }

    /// Per-action behaviours from `Action=behaviour` texts. The action must be one the central
    /// system sends (`centralSystemActions`), named once.
    public static func parseOverrides(_ texts: [String], option: String) throws(SimulatorError) -> [String: CentralSystemCallBehaviour] {
        var overrides: [String: CentralSystemCallBehaviour] = [:]
        for text in texts {
            let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw SimulatorError(.invalidConfiguration, "\(option) '\(text)': write it as <Action>=<answer|reject|ignore>")
            }
            let action = parts[0]
            try checkAction(action, in: "\(option) '\(text)'")
            guard overrides[action] == nil else {
                throw SimulatorError(.invalidConfiguration, "\(option): \(action) is given twice")
            }
            overrides[action] = try parse(parts[1], option: option)
        }
        return overrides
    }
}

/// An answer a test hook chooses for one central-system CALL.
public enum CentralSystemAnswer: Sendable, Equatable {
    /// Use the configured behaviour (the default handling).
    case standard
    /// Answer CALLRESULT with this payload (nothing is acted on).
    case result(JSONValue)
    /// Answer CALLERROR.
    case callError(OCPPErrorCode, String)
    case reject
    case ignore
}

/// Lets a test override the answer to a central-system call: `(action, payload) -> answer`.
public typealias CentralSystemCallHook = @Sendable (_ action: String, _ payload: JSONValue) -> CentralSystemAnswer

/// Configuration of one simulated charger. Defaults suit a test against a local CSMS.
public struct ChargePointConfiguration: Sendable {
    /// `ws://host:port/path`; the identity is appended as the last path segment.
    public var url: String
    /// The charge point identity (`chargeBoxIdentity`).
    public var identity: String
    /// Offered `Sec-WebSocket-Protocol` values; `[]` offers none. Default `["ocpp1.6"]`.
    public var subprotocols: [String] = [OCPPVersion.ocpp16.subprotocol]
    /// HTTP Basic auth password (user = identity), as OCPP 1.6 security profile 1.
    public var basicAuthPassword: String?
    /// Extra headers for the upgrade request.
    public var additionalHeaders: [(String, String)] = []
    /// Local address to bind before connecting (load tests from many source addresses).
    public var localAddress: String?

    public var vendor: String = "Chargepath"
    public var model: String = "Simulator"
    public var serialNumber: String?
    public var firmwareVersion: String = "sim-1.0"
    /// Connectors 1...N (connector 0 is the charger itself).
    public var numberOfConnectors: Int = 2

    /// Time the central system has to answer a CALL.
    public var callTimeout: Duration = .seconds(30)
    /// The charger's timers (its next MeterValues, heartbeat, deadlines) fire on a grid of this
    /// step, the same grid for every charger (`TimerGrid`): a fleet's chargers whose timers fall
    /// due within one step wake their threads once and send together, instead of one wake-up per
    /// message. A message is timed from when it is sent, and a schedule's average rate stays the
    /// charger's own. In the sessions benchmark at 5,200 msg/s a 2 ms step cut the simulator's
    /// CPU per message from 104 µs to 82–85 (BENCHMARKS.md). `.zero`: each timer at its own instant.
    public var timerGranularity: Duration = .milliseconds(2)
    /// TCP connect timeout and WebSocket handshake timeout.
    public var connectTimeout: Duration = .seconds(10)
    /// Reconnect backoff: doubles from `initial` up to `max` (±20% jitter).
    public var reconnectInitialBackoff: Duration = .seconds(1)
    public var reconnectMaxBackoff: Duration = .seconds(60)
    /// Whether to reconnect after a lost connection.
    public var reconnect: Bool = true
    /// Start connecting as soon as `run()` starts (otherwise wait for `connect()`).
    public var autoConnect: Bool = true
    /// `run()` throws if the very first connection attempt fails (instead of retrying).
    public var failFast: Bool = false
    /// Send a BootNotification again after every reconnect (1.6 requires it only at start-up).
    public var bootOnReconnect: Bool = false
    /// Retry interval for BootNotification when the answer has `interval` 0.
    public var defaultBootRetryInterval: Duration = .seconds(10)

    /// Heartbeat interval until the central system sets one (BootNotification `interval`).
    public var heartbeatInterval: Duration = .seconds(300)
    /// MeterValues interval during a transaction (configuration key `MeterValueSampleInterval`).
    public var meterValueInterval: Duration = .seconds(60)
    /// Nominal charging power per connector, W.
    public var maxPowerW: Double = 11_000

    /// How central-system calls are answered, and per-action overrides of it.
    public var centralSystemCalls: CentralSystemCallBehaviour = .answer
    public var centralSystemCallsByAction: [String: CentralSystemCallBehaviour] = [:]
    /// Optional hook deciding the answer per call (evaluated first).
    public var centralSystemCallHook: CentralSystemCallHook?

    /// Validate every outgoing payload and every incoming payload against the OCPP 1.6 JSON schemas.
    public var validateMessages: Bool = false
    /// Raw inbound frames kept for `inbound` (newest win); 0 disables the stream.
    public var inboundBufferSize: Int = 1024
    /// Max transaction messages kept while offline (oldest MeterValues are dropped first).
    public var maxQueuedTransactionMessages: Int = 1000
    /// Largest WebSocket message accepted.
    public var maxFrameSize: Int = 1 << 20

    public init(url: String, identity: String) {
        self.url = url
        self.identity = identity
    }
}
