import Foundation
public import Logging
public import PostgresNIO

/// One SQL file from `Migrations/`.
public struct Migration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Applies the migrations in order, each once, recorded with a checksum in `schema_migrations`.
///
/// Everything pending is applied in one transaction that first takes a transaction-scoped advisory
/// lock, so two nodes starting together serialise here: the second one waits, then sees that
/// nothing is left to do. A migration that was applied with different text is reported, never re-run.
public struct MigrationRunner: Sendable {
    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    /// The advisory lock key (an arbitrary constant: "chargepath" in ASCII, folded to 63 bits).
    static let lockKey: Int64 = 0x6368_6172_6765_7061

    public let migrations: [Migration]

    public init(migrations: [Migration]? = nil) {
        self.migrations = migrations ?? Migration.embedded
    }

    /// The versions that are applied after this returns.
    @discardableResult
    public func run(on client: PostgresClient, logger: Logger) async throws -> [Int] {
        do {
            return try await apply(on: client, logger: logger)
        } catch let error as PostgresTransactionError {
            // Say what failed inside the transaction, not that a transaction failed.
            if let inner = error.closureError ?? error.beginError ?? error.commitError { throw inner }
            throw error
        }
    }

    private func apply(on client: PostgresClient, logger: Logger) async throws -> [Int] {
        try await client.withConnection { connection in
            try await connection.withTransaction(logger: logger) { connection in
                _ = try await connection.query("SELECT pg_advisory_xact_lock(\(Self.lockKey))", logger: logger)
                _ = try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    integer PRIMARY KEY,
                        name       text NOT NULL,
                        checksum   text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """,
                    logger: logger
                )
                var applied: [Int: (name: String, checksum: String)] = [:]
                let rows = try await connection.query("SELECT version, name, checksum FROM schema_migrations", logger: logger)
                for try await (version, name, checksum) in rows.decode((Int, String, String).self) {
                    applied[version] = (name, checksum)
                }
                for migration in migrations.sorted(by: { $0.version < $1.version }) {
                    let checksum = Self.checksum(migration.sql)
                    if let existing = applied[migration.version] {
                        guard existing.checksum == checksum else {
                            throw Error(description: "Migration \(migration.name) was applied with different content (checksum \(existing.checksum), now \(checksum)). Applied migrations are immutable: add a new migration instead of editing one.")
                        }
                        continue
                    }
                    logger.info("Applying migration", metadata: ["db.migration": "\(migration.name)"])
                    for statement in SQLStatementSplitter.split(migration.sql) {
                        _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    _ = try await connection.query(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (\(migration.version), \(migration.name), \(checksum))",
                        logger: logger
                    )
                    applied[migration.version] = (migration.name, checksum)
                }
                let unknown = applied.keys.filter { version in !migrations.contains { $0.version == version } }
                if !unknown.isEmpty {
                    logger.warning(
                        "The database has migrations this build does not know; it was migrated by a newer Chargepath",
                        metadata: ["db.unknown_migrations": "\(unknown.sorted())"]
                    )
                }
                return applied.keys.sorted()
            }
        }
    }

    /// Whether every migration this build knows is applied (the readiness check).
    public func isUpToDate(on client: PostgresClient, logger: Logger) async throws -> Bool {
        let rows = try await client.query("SELECT version FROM schema_migrations", logger: logger)
        var versions = Set<Int>()
        for try await version in rows.decode(Int.self) { versions.insert(version) }
        return migrations.allSatisfy { versions.contains($0.version) }
    }

    /// FNV-1a 64 of the migration text: enough to notice an edited file, no crypto dependency needed.
    static func checksum(_ sql: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in sql.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return String(hash, radix: 16)
    }
}

/// Splits a SQL script into statements, as the extended query protocol takes one at a time.
/// Knows about comments, quoted strings and identifiers, and dollar-quoted bodies.
enum SQLStatementSplitter {
    static func split(_ sql: String) -> [String] {
        let chars = Array(sql.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var index = 0
        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty, !isOnlyComments(text) { statements.append(text) }
            current = String.UnicodeScalarView()
        }
        while index < chars.count {
            let char = chars[index]
            let next: Unicode.Scalar? = index + 1 < chars.count ? chars[index + 1] : nil
            if char == "-", next == "-" {
                while index < chars.count, chars[index] != "\n" { current.append(chars[index]); index += 1 }
                continue
            }
            if char == "/", next == "*" {
                while index < chars.count, !(chars[index] == "*" && index + 1 < chars.count && chars[index + 1] == "/") {
                    current.append(chars[index]); index += 1
                }
                if index < chars.count { current.append(chars[index]); current.append(chars[index + 1]); index += 2 }
                continue
            }
            if char == "'" || char == "\"" {
                current.append(char); index += 1
                while index < chars.count {
                    current.append(chars[index])
                    if chars[index] == char {
                        if index + 1 < chars.count, chars[index + 1] == char { current.append(chars[index + 1]); index += 2; continue }
                        index += 1
                        break
                    }
                    index += 1
                }
                continue
            }
            if char == "$" {
                // A dollar-quote tag: $$ or $name$
                var end = index + 1
                while end < chars.count, chars[end] == "_" || chars[end].properties.isAlphabetic || ("0"..."9").contains(chars[end]) { end += 1 }
                if end < chars.count, chars[end] == "$" {
                    let tag = String(String.UnicodeScalarView(chars[index...end]))
                    let tagScalars = Array(tag.unicodeScalars)
                    for scalar in tagScalars { current.append(scalar) }
                    index = end + 1
                    while index < chars.count {
                        if chars[index] == "$", index + tagScalars.count <= chars.count, Array(chars[index..<(index + tagScalars.count)]) == tagScalars {
                            for scalar in tagScalars { current.append(scalar) }
                            index += tagScalars.count
                            break
                        }
                        current.append(chars[index]); index += 1
                    }
                    continue
                }
            }
            if char == ";" {
                flush(); index += 1
                continue
            }
            current.append(char); index += 1
        }
        flush()
        return statements
    }

    private static func isOnlyComments(_ text: String) -> Bool {
        text.split(separator: "\n").allSatisfy { $0.trimmingCharacters(in: .whitespaces).hasPrefix("--") || $0.trimmingCharacters(in: .whitespaces).isEmpty }
    }
}
