import ArgumentParser
import ChargePointSimulator
import Foundation
import Logging

/// `chargepath simulate`: a fleet of simulated OCPP 1.6J chargers against a central system.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run simulated OCPP 1.6J charge points against a central system (load and behaviour tests).",
        discussion: """
            Each charger connects to <url>/<id-prefix><n> and boots. Scenarios: boot-storm (report the time until \
            all are Accepted), heartbeat (Heartbeat back-to-back), sessions (Authorize, StartTransaction, MeterValues, \
            StopTransaction), flood (a mix of CALLs back-to-back). A status line goes to stderr every second; the \
            summary to stdout. Exits non-zero on bad input, an unreachable server or a refused WebSocket upgrade.
            """
    )

    @Option(help: "Central system URL; the charger id is appended as the last path segment.")
    var url: String = "ws://127.0.0.1:9000/ocpp"
    @Option(help: "Number of chargers.")
    var chargers: Int = 1
    @Option(help: "Charger id prefix; ids are <prefix><n>, zero-padded.")
    var idPrefix: String = "CP-"
    @Option(help: "New connections per second (0: all at once).")
    var rampUp: Double = 500
    @Option(help: "Run time in seconds (boot-storm: the most to wait for all Accepted).")
    var duration: Double = 60
    @Option(help: "Seconds at the start (connecting, booting) left out of the latency percentiles and calls/s.")
    var warmup: Double = 0
    @Option(help: "boot-storm, heartbeat, sessions or flood.")
    var scenario: String = FleetScenario.heartbeat.rawValue
    @Option(help: "Global CALL rate per second for the fleet (0: unthrottled).")
    var rate: Double = 0
    @Option(help: "HTTP Basic auth password (user = charger id).")
    var basicAuthPassword: String?
    @Option(help: "Local source addresses, round-robin: 127.0.0.1-127.0.0.50 or a comma list.")
    var sourceAddresses: String?
    @Option(help: "Connectors per charger.")
    var connectors: Int = 1
    @Option(help: "sessions: seconds between MeterValues.")
    var meterInterval: Double = 10
    @Option(help: "sessions: seconds a session lasts.")
    var sessionDuration: Double = 30
    @Option(help: "Seconds the central system has to answer a CALL.")
    var callTimeout: Double = 30
    @Option(help: "Milliseconds: chargers' timers fire on a grid of this step, so chargers due together wake their thread once (0: each timer at its own instant).")
    var timerGranularityMs: Double = 2
    @Option(help: "How the chargers react to the central system's CALLs: answer (like a real charger), reject (the action's negative status, or a CALLERROR where it has none) or ignore (never answer; the call times out).")
    var centralSystemCalls: String = CentralSystemCallBehaviour.answer.rawValue
    @Option(help: ArgumentHelp(
        "Per action, overrides --central-system-calls; repeatable (e.g. RemoteStartTransaction=reject).",
        valueName: "action=answer|reject|ignore"
    ))
    var centralSystemCall: [String] = []
    @Flag(help: "Offer no WebSocket subprotocol (default: ocpp1.6).")
    var noSubprotocol = false
    @Flag(name: .customLong("validate"), help: "Validate every payload against the OCPP 1.6 JSON schemas.")
    var validateMessages = false
    @Flag(help: "Print the summary as JSON.")
    var json = false
    @Flag(help: "No live status line.")
    var quiet = false
    @Option(help: "Log level for the simulator: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .warning

    func validate() throws {
        guard chargers >= 1 else { throw ValidationError("--chargers must be at least 1") }
        guard FleetScenario(rawValue: scenario) != nil else {
            throw ValidationError("--scenario must be one of: \(FleetScenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard duration > 0 else { throw ValidationError("--duration must be positive") }
        guard warmup >= 0, warmup < duration else { throw ValidationError("--warmup must be at least 0 and less than --duration") }
        guard rampUp >= 0, rate >= 0 else { throw ValidationError("--ramp-up and --rate must not be negative") }
        guard connectors >= 1 else { throw ValidationError("--connectors must be at least 1") }
        guard meterInterval > 0, sessionDuration > 0, callTimeout > 0 else {
            throw ValidationError("--meter-interval, --session-duration and --call-timeout must be positive")
        }
        guard timerGranularityMs >= 0, timerGranularityMs <= 1000 else {
            throw ValidationError("--timer-granularity-ms must be between 0 and 1000")
        }
        do {
            _ = try CentralSystemCallBehaviour.parse(centralSystemCalls, option: "--central-system-calls")
            _ = try CentralSystemCallBehaviour.parseOverrides(centralSystemCall, option: "--central-system-call")
        } catch {
            throw ValidationError(error.message)
        }
    }

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var configuration = FleetConfiguration(url: url, chargers: chargers)
        configuration.idPrefix = idPrefix
        configuration.rampUpPerSecond = rampUp
        configuration.duration = .seconds(duration)
        configuration.warmup = .seconds(warmup)
        configuration.scenario = FleetScenario(rawValue: scenario) ?? .heartbeat
        configuration.ratePerSecond = rate
        configuration.basicAuthPassword = basicAuthPassword
        configuration.subprotocols = noSubprotocol ? [] : ["ocpp1.6"]
        configuration.connectorsPerCharger = connectors
        configuration.meterInterval = .seconds(meterInterval)
        configuration.sessionDuration = .seconds(sessionDuration)
        configuration.callTimeout = .seconds(callTimeout)
        configuration.timerGranularity = .milliseconds(timerGranularityMs)
        configuration.validateMessages = validateMessages
        do {
            configuration.centralSystemCalls = try CentralSystemCallBehaviour.parse(centralSystemCalls, option: "--central-system-calls")
            configuration.centralSystemCallsByAction = try CentralSystemCallBehaviour.parseOverrides(centralSystemCall, option: "--central-system-call")
            if let sourceAddresses {
                configuration.sourceAddresses = try SourceAddresses.parse(sourceAddresses)
            }
            let fleet = Fleet(configuration: configuration, logger: Logger(label: "chargepath.simulator"))
            try fleet.validate()
            let printStatus = !quiet
            let report = try await fleet.run { line in
                if printStatus { FileHandle.standardError.write(Data((line + "\n").utf8)) }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(report.text)
            }
            if report.bootAccepted == 0 {
                FileHandle.standardError.write(Data("error: no charger was accepted by the central system\n".utf8))
                throw ExitCode(1)
            }
        } catch let error as SimulatorError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(error.code == .invalidConfiguration ? 64 : 1)
        }
    }
}
