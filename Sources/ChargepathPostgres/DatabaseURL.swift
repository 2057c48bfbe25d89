import Foundation
public import PostgresNIO
import NIOSSL

/// Where the database is: parsed from a `postgres://user:password@host:port/database` URL,
/// or the endpoint of the embedded cluster. Its `description` never shows the password.
public struct DatabaseEndpoint: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    /// Whether TLS is required (`sslmode=require`/`verify-full`); loopback default is plain.
    public var requireTLS: Bool

    public init(host: String, port: Int, username: String, password: String?, database: String, requireTLS: Bool = false) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.requireTLS = requireTLS
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Parses `postgres://` or `postgresql://` URLs; user, password and database are percent-decoded.
    public init(url text: String) throws {
        guard let components = URLComponents(string: text),
            let scheme = components.scheme, scheme == "postgres" || scheme == "postgresql"
        else {
            throw ParseError(description: "The database URL must look like postgres://user:password@host:5432/database (got a value that does not; its text is not shown because it may hold a password).")
        }
        guard let host = components.host, !host.isEmpty else {
            throw ParseError(description: "The database URL has no host: use postgres://user:password@host:5432/database.")
        }
        let database = String(components.percentEncodedPath.drop(while: { $0 == "/" })).removingPercentEncoding ?? ""
        let sslmode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "disable"
        self.init(
            host: host,
            port: components.port ?? 5432,
            username: components.user ?? "postgres",
            password: components.password,
            database: database.isEmpty ? (components.user ?? "postgres") : database,
            requireTLS: ["require", "verify-ca", "verify-full"].contains(sslmode)
        )
    }

    /// The URL without the password, for logs and the startup banner.
    public var description: String {
        "postgres://\(username)@\(host):\(port)/\(database)"
    }

    /// The same server with another database (tests make one per suite).
    public func with(database: String) -> DatabaseEndpoint {
        var copy = self
        copy.database = database
        return copy
    }

    /// Whether the server is on this machine (the embedded cluster always is).
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.") || host.hasPrefix("/")
    }

    /// The configuration of a single connection (`PinnedConnections`).
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password, database: database,
            tls: requireTLS ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable
        )
    }

    public func clientConfiguration(maximumConnections: Int) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database,
            tls: requireTLS ? .require(.makeClientConfiguration()) : .disable
        )
        configuration.options.maximumConnections = maximumConnections
        // The pool arms timers each time a connection goes back to it: a keep-alive ping and an
        // idle timeout. On the charger path that is every statement, and each timer is a task and
        // a dispatch timer that lingers until its deadline even when cancelled (12 MiB after a boot
        // storm of 5,000 chargers, heaptrack). A database on this machine needs no keep-alive
        // (nothing between the two drops an idle connection), so that timer goes. The idle timer
        // stays: it is armed only above `minimumConnections`, but PostgresNIO 1.33.2 traps on a
        // precondition (`minimumConcurrentConnections <= stats.active`) when a lease comes while
        // the database is away and the minimum is above zero, so the minimum stays 0.
        if isLoopback {
            configuration.options.keepAliveBehavior = nil
        }
        return configuration
    }
}

extension EmbeddedPostgres.Endpoint {
    public var databaseEndpoint: DatabaseEndpoint {
        DatabaseEndpoint(host: host, port: port, username: username, password: password, database: database)
    }
}
