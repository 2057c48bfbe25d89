@testable import ChargePointSimulator
import Foundation
import OCPP16
import OCPPCore
import Synchronization
import Testing

@Suite("Fleet", .timeLimit(.minutes(1)))
struct FleetTests {
    @Test func twoHundredChargersBootOnLoopback() async throws {
        try await TestCentralSystem.with { server in
            var config = FleetConfiguration(url: server.baseURL, chargers: 200)
            config.scenario = .bootStorm
            config.rampUpPerSecond = 1000
            config.duration = .seconds(30)
            config.validateMessages = true
            let lines = LineCollector()
            let report = try await Fleet(configuration: config).run(statusInterval: .milliseconds(200)) { lines.add($0) }
            #expect(report.bootAccepted == 200)
            #expect(report.peakConnected == 200)
            #expect(report.connectFailures == 0)
            #expect(report.totalErrors == 0)
            #expect(report.secondsUntilAllAccepted != nil)
            // A round trip for every BootNotification at least (StatusNotifications may still be in
            // flight when the storm is over: how many made it depends on the machine's load).
            #expect(report.latency.count >= 200)
            #expect(report.latency.p50 > 0 && report.latency.p50 <= report.latency.p99 && report.latency.p99 <= report.latency.max)
            // Per action too: every BootNotification is there, and the actions add up to the whole.
            #expect(report.latencyByAction["BootNotification"]?.count == 200)
            #expect(report.latencyByAction.values.map(\.count).reduce(0, +) == report.latency.count)
            #expect(server.received("CP-001").first?.action == "BootNotification")
            #expect(server.received("CP-200").first?.action == "BootNotification")
            let data = try JSONEncoder().encode(report)
            #expect(try JSONDecoder().decode(FleetReport.self, from: data) == report)
            #expect(report.text.contains("boot accepted   200"))
            #expect(!lines.all.isEmpty)
        }
    }

    @Test func heartbeatScenarioIsPacedByTheGlobalRate() async throws {
        try await TestCentralSystem.with { server in
            var config = FleetConfiguration(url: server.baseURL, chargers: 10)
            config.scenario = .heartbeat
            config.rampUpPerSecond = 0
            config.ratePerSecond = 100
            config.duration = .seconds(4)
            let report = try await Fleet(configuration: config).run()
            let heartbeats = (1...10).map { server.received(config.identity(at: $0 - 1)).filter { $0.action == "Heartbeat" }.count }.reduce(0, +)
            // 4 s at 100/s plus at most one second of burst; a loaded machine (the whole suite runs
            // in parallel on 2 cores) may lose a good part of the window to booting.
            #expect(heartbeats > 50)
            #expect(heartbeats <= 520)
            #expect(report.totalErrors == 0)
        }
    }

    @Test func warmupLeavesTheFirstRoundTripsOut() async throws {
        try await TestCentralSystem.with { server in
            var config = FleetConfiguration(url: server.baseURL, chargers: 10)
            config.scenario = .heartbeat
            config.rampUpPerSecond = 0
            config.ratePerSecond = 100
            config.duration = .seconds(2)
            config.warmup = .seconds(1)
            let report = try await Fleet(configuration: config).run()
            let calls = (1...10).map { server.received(config.identity(at: $0 - 1)).count }.reduce(0, +)
            // The boots, the StatusNotifications and the first second's heartbeats are not counted
            // (bounds that hold however slowly a busy machine runs the fleet).
            #expect(report.measuredSeconds > 0 && report.measuredSeconds <= report.elapsedSeconds - 1)
            #expect(report.elapsedSeconds >= 2)
            #expect(report.callsAnswered > 0 && report.callsAnswered < calls)
            #expect(report.latency.count == report.callsAnswered)
            #expect(report.bootAccepted == 10)
        }
        var bad = FleetConfiguration(url: "ws://x/y", chargers: 1)
        bad.warmup = .seconds(60)
        #expect(throws: SimulatorError.self) { try Fleet(configuration: bad).validate() }
    }

    @Test func sourceAddressesAreBoundRoundRobin() async throws {
        try await TestCentralSystem.with { server in
            var config = FleetConfiguration(url: server.baseURL, chargers: 4)
            config.scenario = .bootStorm
            config.sourceAddresses = try SourceAddresses.parse("127.0.0.2-127.0.0.3")
            config.duration = .seconds(20)
            let report = try await Fleet(configuration: config).run()
            #expect(report.bootAccepted == 4)
            #expect(server.remoteAddress("CP-1") == "127.0.0.2")
            #expect(server.remoteAddress("CP-2") == "127.0.0.3")
            #expect(server.remoteAddress("CP-3") == "127.0.0.2")
        }
    }

    @Test func sessionsScenarioRunsTransactions() async throws {
        try await TestCentralSystem.with { server in
            var config = FleetConfiguration(url: server.baseURL, chargers: 3)
            config.scenario = .sessions
            config.rampUpPerSecond = 0
            config.meterInterval = .milliseconds(200)
            config.sessionDuration = .milliseconds(700)
            config.sessionPause = .milliseconds(100)
            // Long enough for a whole session even when the machine is busy.
            config.duration = .seconds(8)
            config.validateMessages = true
            let report = try await Fleet(configuration: config).run()
            #expect(report.totalErrors == 0)
            for i in 0..<3 {
                let actions = server.received(config.identity(at: i)).map(\.action)
                #expect(actions.contains("Authorize"))
                #expect(actions.contains("StopTransaction"))
                #expect(actions.filter { $0 == "MeterValues" }.count >= 2)
            }
        }
    }

    @Test func floodScenarioSendsAMixOfCalls() async throws {
        try await TestCentralSystem.with { server in
            var config = FleetConfiguration(url: server.baseURL, chargers: 5)
            config.scenario = .flood
            config.rampUpPerSecond = 0
            // Long enough to get past booting even when the machine is busy.
            config.duration = .seconds(5)
            config.validateMessages = true
            let report = try await Fleet(configuration: config).run()
            #expect(report.totalErrors == 0)
            #expect(report.callsAnswered > 50)
            let actions = Set(server.received("CP-1").map(\.action))
            #expect(actions.isSuperset(of: ["Heartbeat", "StatusNotification", "Authorize", "MeterValues"]))
        }
    }

    @Test func fleetRejectsOrIgnoresCentralSystemCallsAsConfigured() async throws {
        try await TestCentralSystem.with { server in
            var config = FleetConfiguration(url: server.baseURL, chargers: 2)
            config.scenario = .heartbeat
            config.rampUpPerSecond = 0
            config.ratePerSecond = 2
            config.duration = .seconds(60)
            config.centralSystemCalls = .reject
            config.centralSystemCallsByAction = ["TriggerMessage": .answer, "Reset": .ignore]
            let fleet = Task { try await Fleet(configuration: config).run() }
            defer { fleet.cancel() }
            for i in 0..<2 {
                let id = config.identity(at: i)
                try await server.waitFor(id, timeout: .seconds(30), "\(id)'s boot") { $0.contains { $0.action == "BootNotification" } }
                // Rejected with the action's negative status, and not acted on (no session starts).
                #expect(try await server.call(id, RemoteStartTransactionRequest(connectorId: 1, idTag: "TAG")).status == .rejected)
                #expect(try await server.call(id, UnlockConnectorRequest(connectorId: 1)).status == .unlockFailed)
                // An action without a status field: a CALLERROR.
                let version = try await server.call(id, action: "GetLocalListVersion", payload: .emptyObject)
                #expect(version.errorCode == .genericError)
                // The override answers like a real charger: it sends what was asked.
                let before = server.received(id).count
                #expect(try await server.call(id, TriggerMessageRequest(requestedMessage: .bootNotification)).status == .accepted)
                try await server.waitFor(id, timeout: .seconds(30), "the triggered BootNotification") {
                    $0.dropFirst(before).contains { $0.action == "BootNotification" }
                }
                // Ignored: no answer at all.
                await #expect(throws: TestFailure.self) {
                    _ = try await server.call(id, action: "Reset", payload: ["type": "Soft"], timeout: .seconds(1))
                }
                #expect(!server.received(id).contains { $0.action == "StartTransaction" })
            }
        }
    }

    @Test func centralSystemCallBehavioursParseOrSayWhatIsWrong() throws {
        #expect(try CentralSystemCallBehaviour.parse("Reject", option: "--x") == .reject)
        #expect(try CentralSystemCallBehaviour.parseOverrides(["Reset=ignore", "RemoteStartTransaction=reject"], option: "--x")
            == ["Reset": .ignore, "RemoteStartTransaction": .reject])
        #expect(CentralSystemCallBehaviour.centralSystemActions.contains("DataTransfer"))
        #expect(!CentralSystemCallBehaviour.centralSystemActions.contains("Heartbeat"))
        let cases: [([String], String)] = [
            (["Reset"], "write it as <Action>=<answer|reject|ignore>"),
            (["=reject"], "write it as"),
            (["Heartbeat=reject"], "'Heartbeat' is not an action the central system sends"),
            (["Reset=maybe"], "the behaviour must be one of answer, reject, ignore"),
            (["Reset=ignore", "Reset=answer"], "Reset is given twice"),
        ]
        for (texts, message) in cases {
            #expect {
                _ = try CentralSystemCallBehaviour.parseOverrides(texts, option: "--central-system-call")
            } throws: { error in
                (error as? SimulatorError).map { $0.code == .invalidConfiguration && $0.message.contains(message) } ?? false
            }
        }
        var bad = FleetConfiguration(url: "ws://x/y", chargers: 1)
        bad.centralSystemCallsByAction = ["BootNotification": .reject]
        #expect(throws: SimulatorError.self) { try Fleet(configuration: bad).validate() }
    }

    @Test func unreachableFleetFailsFast() async throws {
        var config = FleetConfiguration(url: "ws://127.0.0.1:1/ocpp", chargers: 3)
        config.duration = .seconds(30)
        await #expect(throws: SimulatorError.self) { _ = try await Fleet(configuration: config).run() }
    }

    @Test func badConfigurationIsRejected() throws {
        #expect(throws: SimulatorError.self) { try Fleet(configuration: FleetConfiguration(url: "http://x/y", chargers: 1)).validate() }
        #expect(throws: SimulatorError.self) { try Fleet(configuration: FleetConfiguration(url: "ws://x/y", chargers: 0)).validate() }
        #expect(throws: SimulatorError.self) { try Fleet(configuration: FleetConfiguration(url: "wss://x/y", chargers: 1)).validate() }
    }
}

@Suite("Simulator units")
struct SimulatorUnitTests {
    @Test func sourceAddressRanges() throws {
        #expect(try SourceAddresses.parse("127.0.0.1-127.0.0.3") == ["127.0.0.1", "127.0.0.2", "127.0.0.3"])
        #expect(try SourceAddresses.parse("127.0.0.9, 127.0.1.1") == ["127.0.0.9", "127.0.1.1"])
        #expect(try SourceAddresses.parse("127.0.0.255-127.0.1.0") == ["127.0.0.255", "127.0.1.0"])
        #expect(throws: SimulatorError.self) { try SourceAddresses.parse("127.0.0.5-127.0.0.1") }
        #expect(throws: SimulatorError.self) { try SourceAddresses.parse("300.0.0.1") }
        #expect(throws: SimulatorError.self) { try SourceAddresses.parse("") }
    }

    @Test func endpointAppendsTheIdentity() throws {
        let e = try WebSocketEndpoint.parse(base: "ws://127.0.0.1:9000/some/path", identity: "CP 1/x")
        #expect(e.host == "127.0.0.1" && e.port == 9000)
        #expect(e.requestPath == "/some/path/CP%201%2Fx")
        let root = try WebSocketEndpoint.parse(base: "ws://localhost", identity: "A")
        #expect(root.requestPath == "/A" && root.port == 80)
    }

    @Test func identitiesAreZeroPadded() {
        let c = FleetConfiguration(url: "ws://x", chargers: 200)
        #expect(c.identity(at: 0) == "CP-001")
        #expect(c.identity(at: 199) == "CP-200")
    }

    @Test func configurationStoreRules() {
        var store = ConfigurationStore(heartbeat: 300, meterInterval: 60, connectors: 2)
        #expect(store.change("HeartbeatInterval", to: "30") == .accepted)
        #expect(store["HeartbeatInterval"] == "30")
        #expect(store.change("HeartbeatInterval", to: "soon") == .rejected)
        #expect(store.change("NumberOfConnectors", to: "4") == .rejected)
        #expect(store.change("Unknown", to: "1") == .notSupported)
        #expect(store.change("AuthorizeRemoteTxRequests", to: "TRUE") == .accepted)
        #expect(store.bool("AuthorizeRemoteTxRequests"))
    }

    /// Timers fire on the grid of `timerGranularity`: deadlines within one step become one point
    /// (at or after each, less than a step later), the same for every charger; no grid, no change.
    @Test func timerDeadlinesMoveUpToTheGrid() {
        let step = Duration.milliseconds(2)
        let deadlines: [UInt64] = [5_000_000_001, 5_000_900_000, 5_001_999_999, 5_002_000_000]
        let points = deadlines.map { TimerGrid.point(atOrAfter: $0, step: step) }
        #expect(points == [5_002_000_000, 5_002_000_000, 5_002_000_000, 5_002_000_000])
        for (deadline, point) in zip(deadlines, points) {
            #expect(point >= deadline && point - deadline < 2_000_000 && point % 2_000_000 == 0)
        }
        #expect(TimerGrid.point(atOrAfter: 5_002_000_001, step: step) == 5_004_000_000)
        #expect(TimerGrid.point(atOrAfter: 5_000_000_001, step: .zero) == 5_000_000_001)
        #expect(TimerGrid.point(atOrAfter: UInt64.max - 5, step: step) == UInt64.max - 5)
    }

    /// A storm's failures are counted by kind: each message names its charger, and counted as
    /// they came, the summary listed the first ten chargers once each and dropped the rest.
    @Test func theSummaryCountsConnectFailuresByKindNotByCharger() {
        let stats = FleetStats(expectedChargers: 31)
        for i in 0..<25 {
            stats.connectFailed(SimulatorError(.upgradeRefused, "server at ws://127.0.0.1:9000/ocpp/cp-\(i) refused the WebSocket upgrade: HTTP 503 Service Unavailable"), identity: "cp-\(i)")
        }
        for i in 25..<30 {
            stats.connectFailed(SimulatorError(.unreachable, "WebSocket handshake with ws://127.0.0.1:9000/ocpp/cp-\(i) failed (Connection reset by peer)"), identity: "cp-\(i)")
        }
        // An identity as it appears in a URL, percent-encoded.
        stats.connectFailed(SimulatorError(.unreachable, "WebSocket handshake with ws://127.0.0.1:9000/ocpp/CP%201 failed (Connection reset by peer)"), identity: "CP 1")
        #expect(stats.report(scenario: "boot-storm").errors == [
            "server at ws://127.0.0.1:9000/ocpp/<id> refused the WebSocket upgrade: HTTP 503 Service Unavailable": 25,
            "WebSocket handshake with ws://127.0.0.1:9000/ocpp/<id> failed (Connection reset by peer)": 6,
        ])
    }

    /// The live line gives the run's percentiles and, apart, the last window's: a stall shows in
    /// the second it happened, and the window starts empty again after each line.
    @Test func theLiveLineShowsTheLastWindowApartFromTheRun() throws {
        let stats = FleetStats(expectedChargers: 1)
        stats.callCompleted(action: "MeterValues", roundTrip: .milliseconds(120), isError: false)
        for _ in 0..<9 { stats.callCompleted(action: "MeterValues", roundTrip: .milliseconds(2), isError: false) }
        let first = stats.statusLine()
        #expect(first.contains("max 120."))
        #expect(first.contains("(this second: p99 120."))
        for _ in 0..<10 { stats.callCompleted(action: "MeterValues", roundTrip: .milliseconds(3), isError: false) }
        let second = stats.statusLine()
        #expect(second.contains("max 120."), "the run's max keeps the slow call")
        #expect(second.contains("(this second: p99 3.00 ms  max 3.00 ms)"), "\(second)")
        let third = stats.statusLine()
        #expect(third.contains("(this second: p99 0.00 ms  max 0.00 ms)"), "\(third)")
    }

    @Test func rateLimiterSpacesSlots() {
        let limiter = RateLimiter(ratePerSecond: 10)
        let slots = (0..<30).map { _ in limiter.reserve() }
        // One second of burst, then 100 ms apart.
        #expect(slots[29] - slots[0] >= .milliseconds(2_800))
        #expect(slots[29] - slots[28] == .milliseconds(100))
    }
}

final class LineCollector: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}
