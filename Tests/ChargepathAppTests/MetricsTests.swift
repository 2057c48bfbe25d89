import ChargePointSimulator
import ChargepathApp
import ChargepathPostgres
import ChargepathServer
import Chargepath
import ChargepathWorkflows
import Foundation
import PostgresNIO
import Synchronization
import Testing

/// `GET /metrics`: what an operator's Prometheus scrapes from a node.
@Suite(.timeLimit(.minutes(3))) struct MetricsTests {
    /// The samples of a Prometheus text exposition: `name{labels}` → value.
    static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    @Test func metricsCountEachActionsAnswersAndTimesThemBehindTheToken() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            #expect(try await server.api.request("GET", "/metrics", authorization: "").status == 401)
            try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-METRICS") { charger in
                _ = try await charger.boot()
                _ = try await charger.expectResult("Heartbeat", "{}")
                _ = try await charger.expectResult("Heartbeat", "{}")
                #expect(try await charger.expectError("Authorize", "{}") == "OccurenceConstraintViolation")
                #expect(try await charger.expectError("MadeUpAction", "{}") == "NotImplemented")
                _ = try await charger.expectResult("StatusNotification", #"{"connectorId":1,"errorCode":"NoError","status":"Available"}"#)
                _ = try await charger.expectResult("MeterValues",
                    #"{"connectorId":1,"meterValue":[{"timestamp":"\#(OCPPTime.iso(Date()))","sampledValue":[{"value":"5"}]}]}"#)

                let response = try await server.api.request("GET", "/metrics")
                #expect(response.status == 200)
                let samples = Self.samples(response.body)
                #expect(samples[#"chargepath_ocpp_calls_total{action="BootNotification",outcome="result"}"#] == 1)
                #expect(samples[#"chargepath_ocpp_calls_total{action="Heartbeat",outcome="result"}"#] == 2)
                #expect(samples[#"chargepath_ocpp_calls_total{action="Heartbeat",outcome="error"}"#] == 0)
                #expect(samples[#"chargepath_ocpp_calls_total{action="Authorize",outcome="error"}"#] == 1)
                // A charger's own action names never become label values.
                #expect(samples[#"chargepath_ocpp_calls_total{action="other",outcome="error"}"#] == 1)
                #expect(!response.body.contains("MadeUpAction"))
                #expect(samples[#"chargepath_ocpp_call_duration_seconds_count{action="Heartbeat"}"#] == 2)
                // Every answer took more than nothing and less than the 10 s time limit.
                let heartbeatSeconds = try #require(samples[#"chargepath_ocpp_call_duration_seconds_sum{action="Heartbeat"}"#])
                #expect(heartbeatSeconds > 0 && heartbeatSeconds < 20)
                #expect(samples[#"chargepath_ocpp_call_duration_seconds_bucket{action="Heartbeat",le="10.0"}"#] == 2)
                #expect(samples["chargepath_chargers_connected"] == 1)
                // The batches of the connections that carry charger messages, timed and counted.
                for connection in ["meter_values", "status_notifications", "boots"] {
                    let statements = samples[#"chargepath_database_statement_duration_seconds_count{connection="\#(connection)"}"#]
                    #expect((statements ?? 0) >= 1, "\(connection)")
                    #expect(samples[#"chargepath_database_statement_failures_total{connection="\#(connection)"}"#] == 0)
                }
            }
            try await eventually(timeout: .seconds(10), "the closed socket leaves the gauge") {
                let body = (try? await server.api.request("GET", "/metrics").body) ?? ""
                return Self.samples(body)["chargepath_chargers_connected"] == 0
            }
        }
    }

    /// Chargers turned away before the upgrade are counted by HTTP status: a bad subprotocol or
    /// identity (400), an unknown charger (404), a full port (503).
    @Test func refusedUpgradesAreCountedByStatus() async throws {
        try await TestServer.with(configure: { $0.unknownChargers = .reject; $0.gateway.maximumConnections = 1 }) { server in
            let port = server.running.ocppPort
            let unknown = try TestHTTPResponse(parsing: try await RawTCP.exchange(port: port, RawTCP.upgradeRequest(path: "/CP-STRANGER")))
            #expect(unknown.status == 404)
            for _ in 0..<2 {
                let badProtocol = try TestHTTPResponse(parsing: try await RawTCP.exchange(
                    port: port, RawTCP.upgradeRequest(path: "/CP-SP", subprotocols: ["ocpp0.9"])))
                #expect(badProtocol.status == 400)
            }
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-KNOWN", body: "{}").status == 201)
            // A refused socket's slot is freed once the node has finished closing it, which can
            // come a moment after the client read its answer: a charger that connects at once may
            // read 503 then. Such attempts are retried here, and counted in the 503s expected.
            let upgraded = Counter()
            var earlyAttempts = 0
            while true {
                do {
                    let early = earlyAttempts
                    try await TestCharger.with(url: server.ocppURL + "/CP-KNOWN") { charger in
                        _ = upgraded.increment()
                        // Answered, so its session is in service (the upgrade's end does not wait for that).
                        _ = try await charger.boot()
                        // The one socket the port may hold is taken: the next charger reads 503.
                        let full = try TestHTTPResponse(parsing: try await RawTCP.exchange(port: port, RawTCP.upgradeRequest(path: "/CP-KNOWN-2")))
                        #expect(full.status == 503)
                        let samples = Self.samples(try await server.api.request("GET", "/metrics").body)
                        #expect(samples[#"chargepath_charger_upgrades_refused_total{status="400"}"#] == 2)
                        #expect(samples[#"chargepath_charger_upgrades_refused_total{status="401"}"#] == 0)
                        #expect(samples[#"chargepath_charger_upgrades_refused_total{status="404"}"#] == 1)
                        #expect(samples[#"chargepath_charger_upgrades_refused_total{status="503"}"#] == Double(1 + early))
                        #expect(samples["chargepath_chargers_connected"] == 1)
                    }
                    break
                } catch where upgraded.value == 0 && earlyAttempts < 5 {
                    earlyAttempts += 1
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    /// The workflow engine's work and backlog: a charger's provisioning after its boot is counted
    /// (the start, the steps, the calls and how they ended), the backlog reads 0 once it is done,
    /// and a scrape while the database cannot answer says so (database_up 0) instead of hanging.
    @Test func workflowsAreCountedAndTheirBacklogIsReadAtEachScrape() async throws {
        try await TestServer.with(configure: { $0.provisionOnBoot = true }) { server in
            #expect(try await server.api.request("PUT", "/api/v1/configuration/MeterValueSampleInterval", body: #"{"value":"30"}"#).status == 201)
            let charger = SimulatedChargePoint(configuration: ChargePointConfiguration(url: server.ocppURL + "/sim", identity: "SIM-METRICS-1"))
            try await charger.withRunning { charger in
                try await charger.waitUntilBooted(timeout: .seconds(20))
                try await charger.waitUntil(timeout: .seconds(20)) { $0.configuration["MeterValueSampleInterval"] == "30" }
                // Provisioning ends with the statuses the charger sends when asked (TriggerMessage).
                try await eventually(timeout: .seconds(20), "the provisioning is counted as ended") {
                    let samples = Self.samples(try await server.api.request("GET", "/metrics").body)
                    return samples[#"chargepath_workflow_executions_finished_total{workflow="Provisioning",status="SUCCEEDED"}"#] == 1
                }
            }
            let samples = Self.samples(try await server.api.request("GET", "/metrics").body)
            #expect(samples[#"chargepath_workflow_executions_started_total{workflow="Provisioning"}"#] == 1)
            #expect(samples[#"chargepath_workflow_executions_started_total{workflow="RemoteStart"}"#] == 0)
            // The ChangeConfiguration's and the TriggerMessage's answers: one step each.
            #expect((samples[#"chargepath_workflow_steps_total{workflow="Provisioning"}"#] ?? 0) >= 2)
            #expect(samples[#"chargepath_workflow_charger_calls_total{action="ChangeConfiguration",outcome="answered"}"#] == 1)
            #expect(samples[#"chargepath_workflow_charger_calls_total{action="TriggerMessage",outcome="answered"}"#] == 1)
            #expect(samples[#"chargepath_workflow_charger_calls_total{action="ChangeConfiguration",outcome="failed"}"#] == 0)
            #expect(samples["chargepath_workflow_failed_rounds_total"] == 0)
            // The base lanes (the default: half the cores, at least one); nothing was late.
            #expect(samples["chargepath_workflow_lanes_working"] == Double(PostgresWorkflowEngine.Configuration.defaultWorkerConcurrency))
            #expect(samples["chargepath_workflow_catch_up_active"] == 0)
            #expect(samples["chargepath_database_up"] == 1)
            for queue in ["starts", "events", "calls"] {
                #expect(samples[#"chargepath_workflow_backlog{queue="\#(queue)"}"#] == 0, "\(queue)")
                #expect(samples[#"chargepath_workflow_backlog_oldest_seconds{queue="\#(queue)"}"#] == 0, "\(queue)")
            }
            for workflow in ["Provisioning", "ChargingSession", "RemoteStart", "ChargerCommand"] {
                #expect(samples[#"chargepath_workflow_executions_running{workflow="\#(workflow)"}"#] == 0, "\(workflow)")
            }

            // A table the backlog reads, locked by another session: the read waits, the scrape does not.
            try await WorkflowFaultTests.withConnection(server.database) { connection in
                try await connection.query("BEGIN", logger: TestDatabase.logger)
                try await connection.query("LOCK TABLE workflow_starts IN ACCESS EXCLUSIVE MODE", logger: TestDatabase.logger)
                let started = ContinuousClock.now
                let response = try await server.api.request("GET", "/metrics")
                #expect(response.status == 200)
                #expect(ContinuousClock.now - started < .seconds(10))
                let locked = Self.samples(response.body)
                #expect(locked["chargepath_database_up"] == 0)
                #expect(locked[#"chargepath_workflow_backlog{queue="starts"}"#]?.isNaN == true)
                #expect(locked[#"chargepath_workflow_executions_running{workflow="Provisioning"}"#]?.isNaN == true)
                // What the node counted itself is still there.
                #expect(locked[#"chargepath_workflow_executions_started_total{workflow="Provisioning"}"#] == 1)
                try await connection.query("ROLLBACK", logger: TestDatabase.logger)
            }
            try await eventually(timeout: .seconds(20), "the backlog is read again") {
                Self.samples(try await server.api.request("GET", "/metrics").body)["chargepath_database_up"] == 1
            }
        }
    }

    /// Scrapes that come while a backlog read runs wait for that read instead of starting one:
    /// a read that outlives its limit (a database away) is left to finish, the scrapes meanwhile
    /// say database_up 0 at their own limit without a read of their own, and scrapes that overlap
    /// a healthy read (two Prometheus servers) both get its values.
    @Test func scrapesShareOneBacklogReadAndNoneStartsAnotherWhileItWaits() async throws {
        let metrics = ServerMetrics(workflows: ["Tally"])
        let release = Latch()
        let reads = Counter()
        let backlog = WorkflowBacklog(
            starts: .init(count: 2, oldestAgeSeconds: 1.5), events: .init(count: 0, oldestAgeSeconds: 0),
            calls: .init(count: 1, oldestAgeSeconds: 0.25), running: ["Tally": 3]
        )
        let read: @Sendable () async throws -> WorkflowBacklog = {
            let n = reads.increment()
            if n == 1 {
                await release.wait()  // the first read hangs until released, whatever its task's cancellation
            } else {
                try await Task.sleep(for: .milliseconds(200))  // a healthy read that takes a moment
            }
            return backlog
        }
        func samples() -> [String: Double] { Self.samples(String(decoding: metrics.exposition(connectedChargers: 0), as: UTF8.self)) }

        await #expect(throws: TimeLimitExceeded.self) { try await metrics.refreshWorkflowBacklog(within: .milliseconds(100), read) }
        #expect(samples()["chargepath_database_up"] == 0)
        #expect(samples()[#"chargepath_workflow_backlog{queue="starts"}"#]?.isNaN == true)
        // The first read still waits: the next scrape waits for it too, and no second read starts.
        await #expect(throws: TimeLimitExceeded.self) { try await metrics.refreshWorkflowBacklog(within: .milliseconds(100), read) }
        #expect(reads.value == 1)
        release.open()
        try await eventually(timeout: .seconds(10), "the released read is recorded") {
            (try? await metrics.refreshWorkflowBacklog(within: .seconds(5), read)) != nil
        }
        let readsBefore = reads.value
        // Two scrapes at once while the database answers: both succeed, on one read.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<2 {
                group.addTask { try await metrics.refreshWorkflowBacklog(within: .seconds(5), read) }
            }
            try await group.waitForAll()
        }
        #expect(reads.value - readsBefore <= 1)
        let after = samples()
        #expect(after["chargepath_database_up"] == 1)
        #expect(after[#"chargepath_workflow_backlog{queue="starts"}"#] == 2)
        #expect(after[#"chargepath_workflow_backlog_oldest_seconds{queue="starts"}"#] == 1.5)
        #expect(after[#"chargepath_workflow_backlog{queue="calls"}"#] == 1)
        #expect(after[#"chargepath_workflow_executions_running{workflow="Tally"}"#] == 3)
    }

    /// A wait that only `open` ends (not cancellation), like a driver's wait for a connection.
    final class Latch: Sendable {
        private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
        func wait() async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.open { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        func open() {
            let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.open = true
                defer { state.waiters = [] }
                return state.waiters
            }
            waiters.forEach { $0.resume() }
        }
    }

    /// A count shared by concurrent closures.
    final class Counter: Sendable {
        private let count = Mutex(0)
        /// Adds one; returns the new count.
        func increment() -> Int { count.withLock { $0 += 1; return $0 } }
        var value: Int { count.withLock { $0 } }
    }
}
