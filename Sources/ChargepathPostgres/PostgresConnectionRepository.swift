public import Chargepath
public import Foundation
public import Logging
public import PostgresNIO
import OCPPCore

/// The `connections` and `nodes` tables.
public struct PostgresConnectionRepository: ConnectionRepository, NodeRepository {
    let client: PostgresClient
    let logger: Logger
    /// New connections, many in one statement while chargers connect faster than one at a time
    /// keeps up (a boot storm: one upsert and one commit per charger was a third of PostgreSQL's
    /// statements, each with its own WAL flush). Copies of this repository share it.
    ///
    /// A batch writes on a pinned connection (`openConnections`), never through the pool, for the
    /// reason `PostgresCentralSystemStore.statusWrites` gives; without one, nobody waits for a
    /// batch (each connection is written alone through the pool).
    package let opens: GroupCommit<ConnectionRecord, ConnectionID?>

    public init(client: PostgresClient, logger: Logger, openConnections: PinnedConnections? = nil) {
        self.client = client
        self.logger = logger
        var batches = GroupCommit<ConnectionRecord, ConnectionID?>.Configuration()
        if openConnections == nil { batches.maximumPending = 0 }
        self.opens = GroupCommit(configuration: batches) { records, slot in
            if records.count == 1 {
                let rows = try await client.rows(of: Self.openStatement(records[0]), slot: slot, pinned: openConnections, logger: logger)
                return [rows.first { $0 != records[0].connectionID.rawValue }.map(ConnectionID.init(rawValue:))]
            }
            let statement = OpenConnectionsStatement(records.map { ($0, Self.json($0.query), Self.json($0.headers)) })
            var replaced = [ConnectionID?](repeating: nil, count: records.count)
            for (n, previous) in try await client.rows(of: statement, slot: slot, pinned: openConnections, logger: logger)
            where previous != records[n - 1].connectionID.rawValue {
                replaced[n - 1] = ConnectionID(rawValue: previous)
            }
            return replaced
        }
    }

    // MARK: ConnectionRepository

    @discardableResult
    public func open(_ record: ConnectionRecord) async throws -> ConnectionID? {
        try await opens.submit(record)
    }

    /// One connection's row, replacing its charger's previous one (the statement returns that one's id).
    /// The newest connection wins on any node; the old socket's later `close` names its own
    /// connection_id and so can never delete this row.
    private static func openStatement(_ record: ConnectionRecord) -> OpenConnectionStatement {
        OpenConnectionStatement(
            connectionID: record.connectionID.rawValue, chargePointID: record.chargePointID, path: record.path,
            query: json(record.query), headers: json(record.headers), subprotocol: record.subprotocol,
            remoteAddress: record.remoteAddress, nodeID: record.nodeID.rawValue, connectedAt: record.connectedAt,
            lastSeenAt: record.lastSeenAt, expiresAt: record.expiresAt
        )
    }

    public func close(_ id: ConnectionID) async throws {
        try await client.run(CloseConnectionStatement(connectionID: id.rawValue), logger: logger)
    }

    public func find(_ id: ConnectionID) async throws -> ConnectionRecord? {
        let rows = try await client.query(
            "SELECT \(unescaped: Self.columns) FROM connections WHERE connection_id = \(id.rawValue)",
            logger: logger
        )
        for try await row in rows { return try Self.record(row) }
        return nil
    }

    public func list(chargePointID: String?, limit: Int) async throws -> [ConnectionRecord] {
        let rows = try await client.query(
            """
            SELECT \(unescaped: Self.columns) FROM connections
            WHERE (\(chargePointID)::text IS NULL OR charge_point_id = \(chargePointID))
            ORDER BY connected_at DESC LIMIT \(limit)
            """,
            logger: logger
        )
        var result: [ConnectionRecord] = []
        for try await row in rows { result.append(try Self.record(row)) }
        return result
    }

    public func touch(_ ids: [ConnectionID], at date: Date) async throws {
        guard !ids.isEmpty else { return }
        // Any message counts as a sign of life, for the connection and for its charge point.
        try await client.query(
            """
            WITH touched AS (
                UPDATE connections SET last_seen_at = \(date) WHERE connection_id = ANY(\(ids.map(\.rawValue)))
                RETURNING charge_point_id
            )
            UPDATE charge_points SET last_seen_at = \(date) WHERE charge_point_id IN (SELECT charge_point_id FROM touched)
            """,
            logger: logger
        )
    }

    // MARK: NodeRepository

    public func register(_ node: NodeID, hostname: String, at date: Date) async throws {
        try await client.query(
            """
            WITH leftovers AS (
                -- Rows from an earlier process that used this node id: it held sockets we do not.
                DELETE FROM connections WHERE node_id = \(node.rawValue)
            )
            INSERT INTO nodes (node_id, hostname, started_at, heartbeat_at) VALUES (\(node.rawValue), \(hostname), \(date), \(date))
            ON CONFLICT (node_id) DO UPDATE SET hostname = EXCLUDED.hostname, heartbeat_at = EXCLUDED.heartbeat_at
            """,
            logger: logger
        )
    }

    public func heartbeat(_ node: NodeID, at date: Date) async throws -> Bool {
        let rows = try await client.query(
            "UPDATE nodes SET heartbeat_at = \(date) WHERE node_id = \(node.rawValue) RETURNING node_id",
            logger: logger
        )
        for try await _ in rows.decode(String.self) { return true }
        return false
    }

    public func deregister(_ node: NodeID) async throws {
        try await client.query("DELETE FROM nodes WHERE node_id = \(node.rawValue)", logger: logger)
    }

    public func sweep(now: Date, staleBefore: Date) async throws -> Int {
        let rows = try await client.query(
            """
            WITH expired AS (
                DELETE FROM connections WHERE expires_at < \(now) RETURNING 1
            ), dead_nodes AS (
                DELETE FROM nodes WHERE heartbeat_at < \(staleBefore) RETURNING node_id
            ), orphaned AS (
                DELETE FROM connections WHERE node_id IN (SELECT node_id FROM dead_nodes) RETURNING 1
            )
            SELECT (SELECT count(*) FROM expired) + (SELECT count(*) FROM orphaned)
            """,
            logger: logger
        )
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    public func connectionIDs(of node: NodeID) async throws -> Set<ConnectionID> {
        let rows = try await client.query(
            "SELECT connection_id FROM connections WHERE node_id = \(node.rawValue)",
            logger: logger
        )
        var ids = Set<ConnectionID>()
        for try await id in rows.decode(String.self) { ids.insert(ConnectionID(rawValue: id)) }
        return ids
    }

    // MARK: Mapping

    static let columns =
        "connection_id, charge_point_id, path, query::text, headers::text, subprotocol, remote_address, node_id, connected_at, last_seen_at, expires_at"

    static func record(_ row: PostgresRow) throws -> ConnectionRecord {
        let (id, chargePoint, path, query, headers, subprotocol, remote, node, connected, lastSeen, expires) = try row.decode(
            (String, String, String, String, String, String?, String?, String, Date, Date, Date).self
        )
        return ConnectionRecord(
            connectionID: ConnectionID(rawValue: id), chargePointID: chargePoint, path: path,
            query: try JSONDecoder().decode([String: String].self, from: Data(query.utf8)),
            headers: try JSONDecoder().decode([String: String].self, from: Data(headers.utf8)),
            subprotocol: subprotocol, remoteAddress: remote, nodeID: NodeID(rawValue: node),
            connectedAt: connected, lastSeenAt: lastSeen, expiresAt: expires
        )
    }

    /// A query's or headers' JSON text, keys sorted (stored as jsonb), without a `JSONEncoder` per call.
    static func json(_ dictionary: [String: String]) -> String {
        JSONValue.object(JSONObject(dictionary.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string($0.value)) })).serialized()
    }
}
