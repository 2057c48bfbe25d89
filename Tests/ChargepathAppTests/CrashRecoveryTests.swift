import ChargepathPostgres
import PostgresNIO
import Foundation
import OCPPCore
import Testing

/// A `chargepath serve` process of its own, to be killed with SIGKILL. Spawned without
/// inheriting this test process's sockets (see `ChildProcess`), or other tests' connections
/// would stay open while it runs.
final class ServerProcess: Sendable {
    let child: ChildProcess
    let ocppPort: Int
    let apiPort: Int

    init(database: DatabaseEndpoint, ocppPort: Int, apiPort: Int, extraArguments: [String] = []) throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("chargepath")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw TestFailure("\(binary.path) is missing: `swift build` builds it (swift test does too)")
        }
        let url = "postgres://\(database.username):\(database.password ?? "")@\(database.host):\(database.port)/\(database.database)"
        child = try ChildProcess.spawn(binary.path, [
            "serve", "--database-url", url, "--ocpp-host", "127.0.0.1", "--ocpp-port", "\(ocppPort)", "--api-port", "\(apiPort)",
            "--api-token", TestServer.token, "--log-level", "warning", "--no-provisioning",
        ] + extraArguments)
        self.ocppPort = ocppPort
        self.apiPort = apiPort
    }

    var api: TestHTTPClient { TestHTTPClient(port: apiPort, token: TestServer.token) }

    func waitUntilReady() async throws {
        do {
            try await waitForReadiness()
        } catch {
            // Whether it exited (a port taken meanwhile, a failed migration) and what it said.
            throw TestFailure("\(error); the server process (API port \(apiPort), charger port \(ocppPort)): \(child.progress)")
        }
    }

    private func waitForReadiness() async throws {
        // 200 only once the charger port listens too (ReadinessTests).
        try await eventually(timeout: .seconds(30), "the server process answers /ready") {
            (try? await self.api.request("GET", "/ready").status) == 200
        }
    }

    /// SIGKILL, no chance to clean up (safe to call twice).
    func kill() {
        child.kill()
    }
}

@Suite(.timeLimit(.minutes(3))) struct CrashRecoveryTests {
    static func execution(_ api: TestHTTPClient, _ id: String) async throws -> JSONValue {
        try JSONValue.parse(try await api.request("GET", "/api/v1/executions/\(id)").body)
    }

    @Test func killedMidWorkflowAndStartedAgainEveryExecutionContinues() async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        let ocppPort = try FreePort.find()
        let apiPort = try FreePort.find()
        let arguments = ["--call-timeout", "2", "--workflow-call-lease", "3"]

        let first = try ServerProcess(database: database, ocppPort: ocppPort, apiPort: apiPort, extraArguments: arguments)
        defer { first.kill() }
        try await first.waitUntilReady()
        let url = "ws://127.0.0.1:\(ocppPort)/CP-CRASH"

        // Before the crash: one execution waits on a timer, another on the charger's answer.
        let (waitingOnTimer, waitingOnAnswer) = try await TestCharger.with(url: url) { charger in
            _ = try await charger.boot()
            let timerStart = try await first.api.request(
                "POST", "/api/v1/workflows/RemoteStart/executions", body: #"{"chargePointId":"CP-CRASH","connectorId":1,"idTag":"T","connectionTimeout":3}"#
            )
            let timerID = try #require(try JSONValue.parse(timerStart.body)["executionId"]?.stringValue)
            _ = try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
            try await eventually("waiting for the car") { try await Self.execution(first.api, timerID)["state"]?["waitingForStart"] != nil }

            let answerStart = try await first.api.request(
                "POST", "/api/v1/workflows/RemoteStart/executions", body: #"{"chargePointId":"CP-CRASH","connectorId":2,"idTag":"T"}"#
            )
            let answerID = try #require(try JSONValue.parse(answerStart.body)["executionId"]?.stringValue)
            // The call reaches the charger, which says nothing before the server dies.
            let (action, _) = try await ServerCallTests.answerNextCall(charger) { _ in nil }
            #expect(action == "RemoteStartTransaction")
            first.kill()
            _ = try? await charger.waitUntilClosed()
            return (timerID, answerID)
        }

        // The timer falls due while nothing runs.
        try await Task.sleep(for: .seconds(4))

        let second = try ServerProcess(database: database, ocppPort: ocppPort, apiPort: apiPort, extraArguments: arguments)
        defer { second.kill() }
        try await second.waitUntilReady()

        // The overdue timer fires at once.
        try await eventually(timeout: .seconds(15), "the overdue timer fires after the restart") {
            let execution = try await Self.execution(second.api, waitingOnTimer)
            return execution["status"] == "FAILED" && execution["error"]?["reason"] == "ConnectionTimeout"
        }
        // The call whose answer never came is sent again, under the same key, when the charger is back.
        try await TestCharger.with(url: url) { charger in
            // The resent call goes out as soon as the charger is connected: it may come before or
            // after the answer to the BootNotification (a charger that reconnects without
            // rebooting sends none), and a charger takes a CALL while it waits for an answer.
            try await charger.send(#"[2,"boot-2","BootNotification",{"chargePointVendor":"Acme","chargePointModel":"Fast-1"}]"#)
            var booted = false
            var asked: (action: String, payload: JSONValue)?
            while !booted || asked == nil {
                switch try await charger.nextFrame() {
                case .callResult(let id, _) where id == "boot-2":
                    booted = true
                case .call(let id, let action, let payload) where asked == nil:
                    asked = (action, payload)
                    try await charger.send(#"[3,"\#(id)",{"status":"Rejected"}]"#)
                case let other:
                    throw TestFailure("unexpected frame after the restart: \(other)")
                }
            }
            #expect(asked?.action == "RemoteStartTransaction")
            #expect(asked?.payload["connectorId"] == 2)
            try await eventually(timeout: .seconds(15), "the resent call's answer is applied") {
                let execution = try await Self.execution(second.api, waitingOnAnswer)
                return execution["status"] == "FAILED" && execution["error"]?["reason"] == "Rejected"
            }
        }
        let history = try await Self.execution(second.api, waitingOnAnswer)["history"]?.arrayValue ?? []
        let attempts = history.filter { $0["kind"] == "attempt" }
        #expect(attempts.count >= 2, "the history shows each attempt")
        // Nothing was done twice that the history says was done: one start, one finish.
        #expect(history.filter { $0["kind"] == "started" }.count == 1)
        #expect(history.filter { $0["kind"] == "finished" }.count == 1)
    }

    @Test func twoServerProcessesStartingTogetherApplyEachMigrationOnce() async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        let servers = try (0..<2).map { _ in
            try ServerProcess(database: database, ocppPort: try FreePort.find(), apiPort: try FreePort.find())
        }
        defer { servers.forEach { $0.kill() } }
        for server in servers { try await server.waitUntilReady() }
        let counts = try await TestDatabase.withClient(database) { client in
            var counts: [Int: Int] = [:]
            for try await (version, count) in try await client.query(
                "SELECT version, count(*)::int FROM schema_migrations GROUP BY version", logger: TestDatabase.logger
            ).decode((Int, Int).self) {
                counts[version] = count
            }
            return counts
        }
        #expect(counts.keys.sorted() == Migration.embedded.map(\.version))
        #expect(counts.values.allSatisfy { $0 == 1 })
    }
}
