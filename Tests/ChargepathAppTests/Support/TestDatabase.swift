import ChargepathPostgres
import Foundation
import Logging
import NIOPosix
import PostgresNIO

/// One throwaway PostgreSQL per test process (or `TEST_DATABASE_URL`), and a fresh database per test.
actor TestDatabase {
    static let shared = TestDatabase()

    private var server: Task<DatabaseEndpoint, any Error>?

    static let logger: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
        return logger
    }()

    /// The server, started on first use. The cluster stops by itself when the test process exits.
    func serverEndpoint() async throws -> DatabaseEndpoint {
        if let server { return try await server.value }
        // One start for every concurrent caller (the actor is reentrant across the await).
        let task = Task { try await Self.startServer() }
        server = task
        return try await task.value
    }

    private static func startServer() async throws -> DatabaseEndpoint {
        let endpoint: DatabaseEndpoint
        if let url = ProcessInfo.processInfo.environment["TEST_DATABASE_URL"], !url.isEmpty {
            endpoint = try DatabaseEndpoint(url: url)
        } else {
            let directory = URL(fileURLWithPath: NSTemporaryDirectory())
                .appendingPathComponent("chargepath-tests-\(getpid())-\(UInt32.random(in: 0 ... .max))", isDirectory: true)
            // Every test runs a node with its own pool, all at once: room for all of them. The
            // cluster (a few GB after a full run) is deleted when the test process exits.
            var configuration = EmbeddedPostgres.Configuration(dataDirectory: directory, stopWhenProcessExits: getpid(), maxConnections: 800)
            configuration.removeWhenProcessExits = true
            let embedded = EmbeddedPostgres(configuration: configuration, logger: Self.logger)
            endpoint = try await embedded.start().databaseEndpoint
        }
        return endpoint
    }

    /// A new, empty database on the test server.
    func freshDatabase() async throws -> DatabaseEndpoint {
        let server = try await serverEndpoint()
        let name = "test_\(UInt64.random(in: 0 ... .max).description)"
        try await Self.execute("CREATE DATABASE \(name)", on: server.with(database: "postgres"))
        return server.with(database: name)
    }

    /// Runs one statement over a short-lived connection.
    static func execute(_ sql: String, on endpoint: DatabaseEndpoint) async throws {
        let configuration = PostgresConnection.Configuration(
            host: endpoint.host, port: endpoint.port, username: endpoint.username, password: endpoint.password,
            database: endpoint.database, tls: .disable
        )
        let connection = try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: 1, logger: logger
        )
        do {
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }

    /// Runs `body` with a client on `endpoint`.
    static func withClient<T: Sendable>(_ endpoint: DatabaseEndpoint, _ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        let client = PostgresClient(configuration: endpoint.clientConfiguration(maximumConnections: 2), backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }
}
