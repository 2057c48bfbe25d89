import ChargepathPostgres
import Foundation
import Testing

/// `/ready` is what scripts, orchestrators and load balancers wait for before they send chargers.
@Suite(.timeLimit(.minutes(2))) struct ReadinessTests {
    /// A `chargepath serve` process starting on a fresh database, its `/ready` polled as fast as it
    /// answers: the moment it first says 200, a charger's socket must reach the charger port (which
    /// answers a plain HTTP request 426). Before the fix `/ready` said 200 as soon as the migrations
    /// were applied, while the charger port opened later (after the node's registration and the
    /// pinned database connections): a 10,000-charger boot storm started on the first 200 failed
    /// with "Connection refused" in one run of three.
    @Test func readyOnlyOnceTheChargerPortListens() async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        let server = try ServerProcess(database: database, ocppPort: try FreePort.find(), apiPort: try FreePort.find())
        defer { server.kill() }
        let deadline = ContinuousClock.now + .seconds(60)
        var notReadyAnswers = 0
        while true {
            if let response = try? await server.api.request("GET", "/ready") {
                if response.status == 200 { break }
                #expect(response.status == 503, "\(response.body)")
                notReadyAnswers += 1
            }
            guard ContinuousClock.now < deadline else {
                throw TestFailure("/ready never answered 200 within 60 s: \(server.child.progress)")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        let plain = try await RawTCP.exchange(
            port: server.ocppPort, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: .seconds(5)
        )
        #expect(plain.hasPrefix("HTTP/1.1 426"), "the charger port, right after the first 200 from /ready: \(String(plain.prefix(80)))")
        // Only meaningful if startup was caught before it was ready.
        print("ReadinessTests: /ready said 503 \(notReadyAnswers) times before its first 200")
    }
}
