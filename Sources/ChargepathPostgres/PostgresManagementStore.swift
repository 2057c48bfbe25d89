public import Chargepath
public import Foundation
public import Logging
public import OCPP16
public import OCPPCore
public import PostgresNIO

/// Registration, id tags and the command audit trail (migrations 0002 and 0004).
public struct PostgresManagementStore: ManagementStore {
    let client: PostgresClient
    let logger: Logger
    /// Admission's lookups, many in one statement while chargers connect faster than one at a
    /// time keeps up (a boot storm: one lookup per charger). Copies of this store share it. A batch
    /// reads on a pinned connection (`lookupConnections`), as `PostgresConnectionRepository.opens`
    /// writes; without one, nobody waits for a batch.
    package let credentialLookups: GroupCommit<String, ChargePointCredentials?>

    public init(client: PostgresClient, logger: Logger, lookupConnections: PinnedConnections? = nil) {
        self.client = client
        self.logger = logger
        var batches = GroupCommit<String, ChargePointCredentials?>.Configuration()
        if lookupConnections == nil { batches.maximumPending = 0 }
        self.credentialLookups = GroupCommit(configuration: batches) { ids, slot in
            if ids.count == 1 {
                let rows = try await client.rows(of: ChargePointCredentialsStatement(chargePointID: ids[0]), slot: slot, pinned: lookupConnections, logger: logger)
                return [rows.first.map { Self.credentials(registered: $0.0, hash: $0.1, status: $0.2) }]
            }
            var found = [ChargePointCredentials?](repeating: nil, count: ids.count)
            let rows = try await client.rows(of: ManyChargePointCredentialsStatement(chargePointIDs: ids), slot: slot, pinned: lookupConnections, logger: logger)
            for (n, registered, hash, status) in rows {
                found[n - 1] = Self.credentials(registered: registered, hash: hash, status: status)
            }
            return found
        }
    }

    public func putChargePoint(_ id: String, _ registration: ChargePointRegistration, at date: Date) async throws -> Bool {
        let keepPassword: Bool
        let hash: String?
        switch registration.password {
        case .keep: (keepPassword, hash) = (true, nil)
        case .set(let value): (keepPassword, hash) = (false, value)
        case .remove: (keepPassword, hash) = (false, nil)
        }
        let rows = try await client.query(
            """
            INSERT INTO charge_points (charge_point_id, registration_status, description, password_hash, registered, updated_at)
            VALUES (\(id), \(registration.registrationStatus.rawValue), \(registration.description), \(hash), true, \(date))
            ON CONFLICT (charge_point_id) DO UPDATE SET
                registration_status = EXCLUDED.registration_status, description = EXCLUDED.description,
                password_hash = CASE WHEN \(keepPassword) THEN charge_points.password_hash ELSE EXCLUDED.password_hash END,
                registered = true, updated_at = EXCLUDED.updated_at
            RETURNING (xmax = 0)
            """,
            logger: logger
        )
        for try await created in rows.decode(Bool.self) { return created }
        return false
    }

    public func credentials(of chargePointID: String) async throws -> ChargePointCredentials? {
        try await credentialLookups.submit(chargePointID)
    }

    private static func credentials(registered: Bool, hash: String?, status: String) -> ChargePointCredentials {
        ChargePointCredentials(registered: registered, passwordHash: hash, registrationStatus: RegistrationStatus(rawValue: status) ?? .accepted)
    }

    public func chargePointExists(_ id: String) async throws -> Bool {
        try await credentials(of: id) != nil
    }

    public func putIdTag(_ record: IdTagRecord, at date: Date) async throws -> Bool {
        let rows = try await client.query(
            """
            INSERT INTO id_tags (id_tag, status, expiry_date, parent_id_tag, session_limits, updated_at)
            VALUES (\(record.idTag), \(record.status.rawValue), \(record.expiryDate), \(record.parentIdTag),
                \(try record.sessionLimits.map { try JSONValue(encoding: $0).serialized() })::jsonb, \(date))
            ON CONFLICT ((lower(id_tag))) DO UPDATE SET id_tag = EXCLUDED.id_tag, status = EXCLUDED.status, expiry_date = EXCLUDED.expiry_date,
                parent_id_tag = EXCLUDED.parent_id_tag, session_limits = EXCLUDED.session_limits, updated_at = EXCLUDED.updated_at
            RETURNING (xmax = 0)
            """,
            logger: logger
        )
        for try await created in rows.decode(Bool.self) { return created }
        return false
    }

    public func idTag(_ idTag: String) async throws -> IdTagRecord? {
        let rows = try await client.query(
            "SELECT id_tag, status, expiry_date, parent_id_tag, session_limits::text FROM id_tags WHERE lower(id_tag) = lower(\(idTag))", logger: logger
        )
        for try await row in rows.decode((String, String, Date?, String?, String?).self) { return Self.idTagRecord(row) }
        return nil
    }

    public func idTags(after: String?, limit: Int) async throws -> [IdTagRecord] {
        let rows = try await client.query(
            """
            SELECT id_tag, status, expiry_date, parent_id_tag, session_limits::text FROM id_tags
            WHERE \(after)::text IS NULL OR id_tag > \(after) ORDER BY id_tag LIMIT \(limit)
            """,
            logger: logger
        )
        var result: [IdTagRecord] = []
        for try await row in rows.decode((String, String, Date?, String?, String?).self) { result.append(Self.idTagRecord(row)) }
        return result
    }

    public func putConfiguration(scope: String, key: String, value: String, at date: Date) async throws -> Bool {
        let rows = try await client.query(
            """
            INSERT INTO charger_configuration (scope, key, value, updated_at) VALUES (\(scope), \(key), \(value), \(date))
            ON CONFLICT (scope, key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
            RETURNING (xmax = 0)
            """,
            logger: logger
        )
        for try await created in rows.decode(Bool.self) { return created }
        return false
    }

    public func deleteConfiguration(scope: String, key: String) async throws -> Bool {
        let rows = try await client.query(
            "DELETE FROM charger_configuration WHERE scope = \(scope) AND key = \(key) RETURNING key", logger: logger
        )
        for try await _ in rows.decode(String.self) { return true }
        return false
    }

    public func configuration(scope: String) async throws -> [ConfigurationSetting] {
        let rows = try await client.query(
            "SELECT key, value, updated_at FROM charger_configuration WHERE scope = \(scope) ORDER BY key", logger: logger
        )
        var result: [ConfigurationSetting] = []
        for try await (key, value, at) in rows.decode((String, String, Date).self) {
            result.append(ConfigurationSetting(key: key, value: value, updatedAt: at))
        }
        return result
    }

    public func deleteIdTag(_ idTag: String) async throws -> Bool {
        let rows = try await client.query("DELETE FROM id_tags WHERE lower(id_tag) = lower(\(idTag)) RETURNING id_tag", logger: logger)
        for try await _ in rows.decode(String.self) { return true }
        return false
    }

    static func idTagRecord(_ row: (String, String, Date?, String?, String?)) -> IdTagRecord {
        IdTagRecord(
            idTag: row.0, status: AuthorizationStatus(rawValue: row.1) ?? .invalid, expiryDate: row.2, parentIdTag: row.3,
            sessionLimits: row.4.flatMap { try? JSONValue.parse($0).decode(SessionLimits.self) }
        )
    }

    // MARK: Command audit trail

    public func recordCall(_ record: ChargerCallRecord) async throws {
        try await client.query(
            """
            INSERT INTO charger_calls (id, charge_point_id, action, payload, mode, requested_by, state, response, error,
                node_id, created_at, finished_at)
            VALUES (\(record.id), \(record.chargePointID), \(record.action), \(record.payload.serialized())::jsonb, \(record.mode),
                \(record.requestedBy), \(record.state.rawValue), \(record.response?.serialized())::jsonb,
                \(record.error?.serialized())::jsonb, \(record.nodeID), \(record.createdAt), \(record.finishedAt))
            """,
            logger: logger
        )
    }

    public func finishCall(id: String, state: ChargerCallRecord.State, response: JSONValue?, error: JSONValue?, at date: Date) async throws {
        try await client.query(
            """
            UPDATE charger_calls SET state = \(state.rawValue), response = \(response?.serialized())::jsonb,
                error = \(error?.serialized())::jsonb, finished_at = \(date)
            WHERE id = \(id) AND state = 'RUNNING'
            """,
            logger: logger
        )
    }

    static let callColumns =
        "id, charge_point_id, action, payload::text, mode, requested_by, state, response::text, error::text, node_id, created_at, finished_at"

    public func call(id: String) async throws -> ChargerCallRecord? {
        let rows = try await client.query("SELECT \(unescaped: Self.callColumns) FROM charger_calls WHERE id = \(id)", logger: logger)
        for try await row in rows { return try Self.callRecord(row) }
        return nil
    }

    public func calls(chargePointID: String, limit: Int) async throws -> [ChargerCallRecord] {
        let rows = try await client.query(
            """
            SELECT \(unescaped: Self.callColumns) FROM charger_calls WHERE charge_point_id = \(chargePointID)
            ORDER BY created_at DESC, id DESC LIMIT \(limit)
            """,
            logger: logger
        )
        var result: [ChargerCallRecord] = []
        for try await row in rows { result.append(try Self.callRecord(row)) }
        return result
    }

    /// Only synchronous calls: an asynchronous one is a workflow execution, which another node
    /// carries on when this one dies.
    public func failAbandonedCalls(startedBefore before: Date, at date: Date) async throws -> Int {
        let error = #"{"reason":"The server that sent this call stopped before the charger answered."}"#
        let rows = try await client.query(
            """
            UPDATE charger_calls SET state = 'FAILED', error = \(error)::jsonb, finished_at = \(date)
            WHERE state = 'RUNNING' AND mode = 'sync' AND created_at < \(before) RETURNING id
            """,
            logger: logger
        )
        var count = 0
        for try await _ in rows.decode(String.self) { count += 1 }
        return count
    }

    static func callRecord(_ row: PostgresRow) throws -> ChargerCallRecord {
        let (id, chargePoint, action, payload, mode, requestedBy, state, response, error, node, created, finished) = try row.decode(
            (String, String, String, String, String, String, String, String?, String?, String?, Date, Date?).self
        )
        return ChargerCallRecord(
            id: id, chargePointID: chargePoint, action: action, payload: (try? JSONValue.parse(payload)) ?? .emptyObject,
            mode: mode, requestedBy: requestedBy, state: ChargerCallRecord.State(rawValue: state) ?? .failed,
            response: response.flatMap { try? JSONValue.parse($0) }, error: error.flatMap { try? JSONValue.parse($0) },
            nodeID: node, createdAt: created, finishedAt: finished
        )
    }
}
