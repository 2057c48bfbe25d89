import Chargepath
import ChargepathApp
import ChargepathPostgres
import ChargepathServer
import Foundation
import Logging
import ServiceLifecycle

/// A real Chargepath node on loopback ports, on its own fresh database.
struct TestServer: Sendable {
    static let token = "test-token-0123456789abcdef"

    let running: ChargepathApp.Running
    let database: DatabaseEndpoint

    var ocppURL: String { "ws://127.0.0.1:\(running.ocppPort)" }
    var api: TestHTTPClient { TestHTTPClient(port: running.apiPort, token: Self.token) }

    /// Starts a node, runs `body`, shuts the node down gracefully.
    static func with<T: Sendable>(
        database: DatabaseEndpoint? = nil,
        configure: (inout ChargepathConfiguration) -> Void = { _ in },
        logger: Logger = TestDatabase.logger,
        _ body: @Sendable (TestServer) async throws -> T
    ) async throws -> T {
        try await TestSlots.withSlot {
            try await run(database: database, configure: configure, logger: logger, body)
        }
    }

    private static func run<T: Sendable>(
        database: DatabaseEndpoint?,
        configure: (inout ChargepathConfiguration) -> Void,
        logger: Logger,
        _ body: @Sendable (TestServer) async throws -> T
    ) async throws -> T {
        let resolved: DatabaseEndpoint
        if let database {
            resolved = database
        } else {
            resolved = try await TestDatabase.shared.freshDatabase()
        }
        let database = resolved
        var configuration = ChargepathConfiguration(
            dataDirectory: URL(fileURLWithPath: NSTemporaryDirectory()),
            ocppHost: "127.0.0.1", ocppPort: 0, apiHost: "127.0.0.1", apiPort: 0,
            apiToken: token, databasePoolSize: 4
        )
        // Tests that follow a charger's frames one by one would see the provisioning calls after
        // every boot; the tests of provisioning turn it on.
        configuration.provisionOnBoot = false
        configure(&configuration)
        let (started, startedContinuation) = AsyncStream.makeStream(of: ChargepathApp.Running.self)
        let services = try ChargepathApp.makeServices(
            configuration: configuration, database: database, apiToken: configuration.apiToken ?? token, logger: logger
        ) { running in
            startedContinuation.yield(running)
            startedContinuation.finish()
        }
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: logger))
        return try await withThrowingTaskGroup(of: T?.self) { tasks in
            tasks.addTask {
                try await group.run()
                startedContinuation.finish()
                return nil
            }
            guard let running = await started.first(where: { _ in true }) else {
                try await tasks.waitForAll()
                throw TestFailure("the server stopped before it was running")
            }
            let server = TestServer(running: running, database: database)
            do {
                let result = try await body(server)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds or `timeout` passes (for effects that happen asynchronously,
/// like a row deleted after a socket closed). Fails the test with `message` on timeout.
func eventually(
    timeout: Duration = TestTiming.wait, _ message: @autoclosure () -> String, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestFailure("timed out after \(timeout): \(message())")
}

enum TestTiming {
    /// How long the test clients wait for something that should happen (an answer, a close, a
    /// condition). Not a speed check: on a machine half as fast, with the whole suite's servers
    /// and one PostgreSQL sharing 2 cores at its start, a BootNotification's answer once took
    /// more than the 10 s this used to be (2026-11-26).
    static let wait: Duration = .seconds(30)
}
