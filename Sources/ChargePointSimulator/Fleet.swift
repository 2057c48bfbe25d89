public import Foundation
public import Logging
import ProcessLimits

/// What every charger of a fleet does.
public enum FleetScenario: String, Sendable, CaseIterable, Codable {
    /// Connect and boot all; the run ends when all are Accepted (or at the duration).
    case bootStorm = "boot-storm"
    /// Heartbeat back-to-back (unthrottled unless a rate is set).
    case heartbeat
    /// Authorize, StartTransaction, MeterValues, StopTransaction, repeated.
    case sessions
    /// A mix of CALLs back-to-back (Heartbeat, StatusNotification, Authorize, MeterValues).
    case flood
}

/// Configuration of a fleet run.
public struct FleetConfiguration: Sendable {
    public var url: String
    public var chargers: Int
    /// Identities are `<prefix><number>`, numbers from 1, zero-padded to the width of `chargers`.
    public var idPrefix: String = "CP-"
    /// New connections per second (0: all at once).
    public var rampUpPerSecond: Double = 500
    public var duration: Duration = .seconds(60)
    /// Round trips in the first `warmup` of the run (connecting, booting) are left out of the
    /// latency percentiles and of calls answered and calls/s (0: everything counts).
    public var warmup: Duration = .zero
    public var scenario: FleetScenario = .heartbeat
    /// Global CALL rate for the fleet, per second (0: unthrottled). Applies to heartbeat and flood.
    public var ratePerSecond: Double = 0
    /// Local addresses bound round-robin (empty: the system picks).
    public var sourceAddresses: [String] = []
    public var basicAuthPassword: String?
    public var subprotocols: [String] = ["ocpp1.6"]
    public var connectorsPerCharger: Int = 1
    public var callTimeout: Duration = .seconds(30)
    /// Each charger's `ChargePointConfiguration.timerGranularity`.
    public var timerGranularity: Duration = .milliseconds(2)
    public var connectTimeout: Duration = .seconds(10)
    public var heartbeatInterval: Duration = .seconds(300)
    /// sessions: MeterValues interval, session length and pause between sessions.
    public var meterInterval: Duration = .seconds(10)
    public var sessionDuration: Duration = .seconds(30)
    public var sessionPause: Duration = .seconds(5)
    public var reconnectInitialBackoff: Duration = .seconds(1)
    public var reconnectMaxBackoff: Duration = .seconds(30)
    public var validateMessages: Bool = false
    /// How every charger reacts to the central system's CALLs: `.answer` like a real charger, or
    /// `.reject`/`.ignore` for fault tests; `centralSystemCallsByAction` overrides it per action
    /// (e.g. only RemoteStartTransaction rejected). Keys are central-system actions (`validate`).
    public var centralSystemCalls: CentralSystemCallBehaviour = .answer
    public var centralSystemCallsByAction: [String: CentralSystemCallBehaviour] = [:]

    public init(url: String, chargers: Int) {
        self.url = url
        self.chargers = chargers
    }

    public func identity(at index: Int) -> String {
        let width = String(chargers).count
        let number = String(index + 1)
        return idPrefix + String(repeating: "0", count: max(0, width - number.count)) + number
    }
}

/// Runs N simulated chargers from one process: one task per charger, nothing else per charger.
public struct Fleet: Sendable {
    public let configuration: FleetConfiguration
    public let logger: Logger

    public init(configuration: FleetConfiguration, logger: Logger = Logger(label: "chargepath.simulator.fleet")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Checks the configuration without connecting.
    public func validate() throws(SimulatorError) {
        let c = configuration
        guard c.chargers >= 1 else { throw SimulatorError(.invalidConfiguration, "--chargers must be at least 1") }
        guard c.rampUpPerSecond >= 0, c.ratePerSecond >= 0 else {
            throw SimulatorError(.invalidConfiguration, "--ramp-up and --rate must not be negative")
        }
        guard c.duration > .zero else { throw SimulatorError(.invalidConfiguration, "--duration must be positive") }
        guard c.warmup >= .zero, c.warmup < c.duration else {
            throw SimulatorError(.invalidConfiguration, "--warmup must be at least 0 and less than --duration")
        }
        guard c.connectorsPerCharger >= 1 else { throw SimulatorError(.invalidConfiguration, "connectors must be at least 1") }
        _ = try WebSocketEndpoint.parse(base: c.url, identity: c.identity(at: 0))
        for a in c.sourceAddresses where !SourceAddresses.isIPAddress(a) {
            throw SimulatorError(.invalidConfiguration, "invalid source address '\(a)'")
        }
        for action in c.centralSystemCallsByAction.keys.sorted() {
            try CentralSystemCallBehaviour.checkAction(action, in: "centralSystemCallsByAction")
        }
        if let limit = OpenFileLimit.current() { _ = try Self.softLimitNeeded(chargers: c.chargers, limit: limit) }
    }

    /// Open files the process keeps besides the chargers' sockets (standard streams, event loops'
    /// epoll and wake-up descriptors, a charger's old socket closing while it reconnects).
    static let filesBesideSockets = 64

    /// The soft open-file limit a fleet of `chargers` needs (one socket each), or nil when `limit`
    /// is enough already; throws, saying what to do, when even the hard limit is too low.
    static func softLimitNeeded(chargers: Int, limit: OpenFileLimit) throws(SimulatorError) -> Int? {
        let needed = chargers + filesBesideSockets
        switch limit.plan(needed: needed) {
        case .enough:
            return nil
        case .raise(let target):
            return target
        case .tooFew(let available):
            let perProcess = max(1, available - filesBesideSockets)
            throw SimulatorError(.invalidConfiguration, """
                --chargers \(chargers) needs about \(needed) open files (one socket per charger), but this process \
                may open at most \(available) (its hard limit, see `ulimit -Hn`). Run several simulators side by side, \
                each with its own --id-prefix and at most --chargers \(perProcess), or raise the hard limit \
                (LimitNOFILE= under systemd; `ulimit -Hn` as root).
                """)
        }
    }

    /// Raises the soft open-file limit for the fleet's sockets when it must (a process may, up to its
    /// hard limit): with the usual soft limit of 1,024, a fleet of 2,000 would otherwise fail half its
    /// connections with "Too many open files".
    private func makeRoomForSockets() throws(SimulatorError) {
        guard let limit = OpenFileLimit.current(), let target = try Self.softLimitNeeded(chargers: configuration.chargers, limit: limit) else {
            return
        }
        let after = OpenFileLimit.raiseSoftLimit(to: target)
        guard let after, after.soft >= target else {
            throw SimulatorError(.invalidConfiguration, """
                --chargers \(configuration.chargers) needs about \(target) open files, and the limit of \(limit.soft) \
                could not be raised (hard limit \(limit.hard)). Raise it before the run (`ulimit -n \(target)`).
                """)
        }
        logger.info("Raised the open-file limit for the fleet's sockets", metadata: [
            "limit.before": "\(limit.soft)", "limit.after": "\(after.soft)", "limit.hard": "\(after.hard)",
        ])
    }

    /// Runs the scenario for `duration` (boot-storm: until all are Accepted) and returns the summary.
    /// `status` receives a live line every `statusInterval`. Throws if the configuration is bad or
    /// the first charger's first connection fails (unreachable server, refused upgrade).
    public func run(
        statusInterval: Duration = .seconds(1),
        status: (@Sendable (String) -> Void)? = nil
    ) async throws -> FleetReport {
        try validate()
        try makeRoomForSockets()
        let c = configuration
        let start = ContinuousClock.now
        let end = start + c.duration
        let stats = FleetStats(expectedChargers: c.chargers, startedAt: start)
        let limiter = c.ratePerSecond > 0 ? RateLimiter(ratePerSecond: c.ratePerSecond) : nil
        let scenario: ChargerScenario = switch c.scenario {
        case .bootStorm: .idle
        case .heartbeat: .heartbeat
        case .flood: .flood
        case .sessions: .sessions(sessionDuration: c.sessionDuration, pause: c.sessionPause)
        }
        let logger = self.logger

        try await withThrowingTaskGroup(of: Void.self) { group in
            // The clock: live status, and the end of the run (the first child to finish).
            group.addTask {
                var warmupEnd: ContinuousClock.Instant? = c.warmup > .zero ? start + c.warmup : nil
                while ContinuousClock.now < end {
                    var next = min(end, ContinuousClock.now + statusInterval)
                    if let w = warmupEnd { next = min(next, w) }
                    try await Task.sleep(until: next, clock: .continuous)
                    if let w = warmupEnd, ContinuousClock.now >= w {
                        stats.startMeasuring()
                        warmupEnd = nil
                        if next == w { continue }
                    }
                    status?(stats.statusLine())
                    if c.scenario == .bootStorm, stats.allAccepted { return }
                }
            }
            for i in 0..<c.chargers {
                let startAt = c.rampUpPerSecond > 0 ? start + .seconds(Double(i) / c.rampUpPerSecond) : start
                var cp = ChargePointConfiguration(url: c.url, identity: c.identity(at: i))
                cp.subprotocols = c.subprotocols
                cp.basicAuthPassword = c.basicAuthPassword
                cp.localAddress = c.sourceAddresses.isEmpty ? nil : c.sourceAddresses[i % c.sourceAddresses.count]
                cp.numberOfConnectors = c.connectorsPerCharger
                cp.callTimeout = c.callTimeout
                cp.timerGranularity = c.timerGranularity
                cp.connectTimeout = c.connectTimeout
                cp.heartbeatInterval = c.heartbeatInterval
                cp.meterValueInterval = c.meterInterval
                cp.reconnectInitialBackoff = c.reconnectInitialBackoff
                cp.reconnectMaxBackoff = c.reconnectMaxBackoff
                cp.validateMessages = c.validateMessages
                cp.centralSystemCalls = c.centralSystemCalls
                cp.centralSystemCallsByAction = c.centralSystemCallsByAction
                cp.inboundBufferSize = 0
                cp.failFast = i == 0
                cp.serialNumber = String(cp.identity.suffix(25))
                let configuration = cp
                group.addTask {
                    if startAt > ContinuousClock.now { try await Task.sleep(until: startAt, clock: .continuous) }
                    let charger = SimulatedChargePoint(
                        configuration: configuration, scenario: scenario, rateLimiter: limiter, stats: stats, logger: logger
                    )
                    try await charger.run()
                }
            }
            // Ends at the first finished child: the clock, or a failing first charger.
            try await group.next()
            group.cancelAll()
            while !group.isEmpty {
                _ = try? await group.next()
            }
        }
        return stats.report(scenario: c.scenario.rawValue)
    }
}

/// `--source-addresses`: `127.0.0.1-127.0.0.50`, `127.0.0.1,127.0.0.2`, or a mix.
public enum SourceAddresses {
    public static func parse(_ text: String) throws(SimulatorError) -> [String] {
        var result: [String] = []
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            let bounds = part.split(separator: "-", maxSplits: 1).map(String.init)
            if bounds.count == 2 {
                guard let lo = ipv4(bounds[0]), let hi = ipv4(bounds[1]), lo <= hi else {
                    throw SimulatorError(.invalidConfiguration, "invalid IPv4 range '\(part)' (expected e.g. 127.0.0.1-127.0.0.50)")
                }
                guard hi - lo < 65_536 else { throw SimulatorError(.invalidConfiguration, "range '\(part)' is too large") }
                for v in lo...hi { result.append(format(v)) }
            } else {
                guard isIPAddress(part) else { throw SimulatorError(.invalidConfiguration, "invalid source address '\(part)'") }
                result.append(part)
            }
        }
        guard !result.isEmpty else { throw SimulatorError(.invalidConfiguration, "no source addresses in '\(text)'") }
        return result
    }

    static func isIPAddress(_ s: String) -> Bool {
        if ipv4(s) != nil { return true }
        var addr = in6_addr()
        return s.contains(":") && inet_pton(AF_INET6, s, &addr) == 1
    }

    static func ipv4(_ s: String) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard let n = UInt32(p), n <= 255, !p.isEmpty, p.count <= 3 else { return nil }
            v = v << 8 | n
        }
        return v
    }

    static func format(_ v: UInt32) -> String {
        "\(v >> 24).\(v >> 16 & 255).\(v >> 8 & 255).\(v & 255)"
    }
}
