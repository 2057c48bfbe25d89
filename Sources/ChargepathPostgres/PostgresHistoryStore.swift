public import Chargepath
import Foundation
public import Logging
public import PostgresNIO

/// The history read side over the OCPP 1.6 tables (migrations 0002 and 0003).
///
/// Every value is a bound parameter. Optional filters add a fixed SQL fragment and its binding
/// through PostgresQuery's own interpolation, so each filter combination is a plain query whose
/// plan walks one index of migration 0003 (see `EXPLAIN` notes in `Scripts/history-explain.sh`).
public struct PostgresHistoryStore: HistoryStore {
    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    // MARK: transactions

    typealias TransactionRow = (Int, String, Int, String, String, Date, Int64, Date?, Int, Int?, String?, String?, String?, [String])

    /// Columns of `TransactionRow`, from `transactions t`. The newest register reading that is a
    /// plain number (not SignedData) is looked up only for a transaction without meterStop (a
    /// one-time filter inside the lateral join).
    static let transactionSelect = """
        SELECT t.transaction_id, t.charge_point_id, t.connector_id, t.id_tag, t.id_tag_status, t.started_at,
            (extract(epoch FROM t.started_at) * 1000000)::int8, t.stopped_at, t.meter_start, t.meter_stop, t.stop_reason,
            r.value, r.unit,
            ARRAY(SELECT a.kind FROM anomalies a WHERE a.detail ->> 'transactionId' = t.transaction_id::text ORDER BY a.id)
        FROM transactions t
        LEFT JOIN LATERAL (
            SELECT m.value, m.unit FROM meter_values m
            WHERE t.meter_stop IS NULL AND m.transaction_id = t.transaction_id
                AND coalesce(m.measurand, 'Energy.Active.Import.Register') = 'Energy.Active.Import.Register'
                AND m.value ~ '^ *[0-9]+([.][0-9]+)? *$'
            ORDER BY m.sampled_at DESC, (m.phase IS NULL) DESC, m.reading_id DESC, m.sample_index DESC
            LIMIT 1
        ) r ON true
        """

    /// The SQL (with its bindings) for one page of `query`; also used to check plans.
    public static func transactionsQuery(_ query: TransactionQuery) -> PostgresQuery {
        var sql = PostgresQuery.StringInterpolation(literalCapacity: 1024, interpolationCount: 8)
        sql.appendLiteral(transactionSelect)
        sql.appendLiteral("\nWHERE true")
        if let chargePointID = query.chargePointID {
            sql.appendLiteral(" AND t.charge_point_id = ")
            sql.appendInterpolation(chargePointID)
        }
        if let connectorID = query.connectorID {
            sql.appendLiteral(" AND t.connector_id = ")
            sql.appendInterpolation(connectorID)
        }
        if let idTag = query.idTag {
            sql.appendLiteral(" AND t.id_tag = ")
            sql.appendInterpolation(idTag)
        }
        switch query.state {
        case .active?: sql.appendLiteral(" AND t.meter_stop IS NULL")
        case .completed?: sql.appendLiteral(" AND t.meter_stop IS NOT NULL")
        case nil: break
        }
        if let from = query.startedFrom {
            sql.appendLiteral(" AND t.started_at >= ")
            sql.appendInterpolation(from)
        }
        if let before = query.startedBefore {
            sql.appendLiteral(" AND t.started_at < ")
            sql.appendInterpolation(before)
        }
        if let after = query.after {
            sql.appendLiteral(" AND (t.started_at, t.transaction_id) < (")
            appendInstant(after.at, to: &sql)
            sql.appendLiteral(", ")
            sql.appendInterpolation(after.id)
            sql.appendLiteral(")")
        }
        sql.appendLiteral("\nORDER BY t.started_at DESC, t.transaction_id DESC LIMIT ")
        sql.appendInterpolation(query.limit + 1)
        return PostgresQuery(stringInterpolation: sql)
    }

    public func transactions(_ query: TransactionQuery) async throws -> HistoryPage<TransactionRecord, TimeKey> {
        let rows = try await client.query(Self.transactionsQuery(query), logger: logger)
        var records: [TransactionRecord] = []
        for try await row in rows.decode(TransactionRow.self) {
            records.append(Self.transaction(row))
        }
        return Self.page(records, limit: query.limit, key: \.key)
    }

    public func transaction(id: Int) async throws -> TransactionRecord? {
        var sql = PostgresQuery.StringInterpolation(literalCapacity: 1024, interpolationCount: 1)
        sql.appendLiteral(Self.transactionSelect)
        sql.appendLiteral("\nWHERE t.transaction_id = ")
        sql.appendInterpolation(id)
        let rows = try await client.query(PostgresQuery(stringInterpolation: sql), logger: logger)
        for try await row in rows.decode(TransactionRow.self) { return Self.transaction(row) }
        return nil
    }

    static func transaction(_ row: TransactionRow) -> TransactionRecord {
        let (id, chargePointID, connectorID, idTag, idTagStatus, startedAt, startedMicros, stoppedAt, meterStart, meterStop,
             stopReason, registerValue, registerUnit, anomalies) = row
        return TransactionRecord(
            id: id, chargePointID: chargePointID, connectorID: connectorID, idTag: idTag, idTagStatus: idTagStatus,
            startedAt: startedAt, startedAtKey: Microseconds(startedMicros), stoppedAt: stoppedAt, meterStart: meterStart,
            meterStop: meterStop, stopReason: stopReason,
            latestRegisterWh: registerValue.flatMap { TransactionRecord.registerWh(value: $0, unit: registerUnit) },
            anomalies: anomalies
        )
    }

    public func meterValues(transactionID: Int, measurand: String?) async throws -> [MeterValueRecord] {
        let rows = try await client.query(Self.meterValuesQuery(transactionID: transactionID, measurand: measurand), logger: logger)
        var values: [MeterValueRecord] = []
        for try await (sampledAt, value, measurand, unit, phase, location, context, format, source)
            in rows.decode((Date, String, String?, String?, String?, String?, String?, String?, String).self)
        {
            values.append(MeterValueRecord(sampledAt: sampledAt, value: value, measurand: measurand, unit: unit, phase: phase,
                                           location: location, context: context, format: format, source: source))
        }
        return values
    }

    public static func meterValuesQuery(transactionID: Int, measurand: String?) -> PostgresQuery {
        var sql = PostgresQuery.StringInterpolation(literalCapacity: 256, interpolationCount: 2)
        sql.appendLiteral("""
            SELECT sampled_at, value, measurand, unit, phase, location, context, format, source
            FROM meter_values WHERE transaction_id = 
            """)
        sql.appendInterpolation(transactionID)
        if let measurand {
            sql.appendLiteral(" AND coalesce(measurand, 'Energy.Active.Import.Register') = ")
            sql.appendInterpolation(measurand)
        }
        sql.appendLiteral(" ORDER BY sampled_at, reading_id, sample_index")
        return PostgresQuery(stringInterpolation: sql)
    }

    // MARK: charge points

    typealias ChargePointRow = (String, String, String?, String?, String?, String?, String?, String?, String?, String?, String?, Date?, Date?, String?)

    public static func chargePointsQuery(after: String?, id: String?, limit: Int) -> PostgresQuery {
        var sql = PostgresQuery.StringInterpolation(literalCapacity: 512, interpolationCount: 2)
        sql.appendLiteral("""
            SELECT cp.charge_point_id, cp.registration_status, cp.vendor, cp.model, cp.serial_number,
                cp.charge_box_serial_number, cp.firmware_version, cp.iccid, cp.imsi, cp.meter_type, cp.meter_serial_number,
                cp.last_boot_at, greatest(cp.last_seen_at, c.last_seen_at), c.connection_id
            FROM charge_points cp LEFT JOIN connections c ON c.charge_point_id = cp.charge_point_id
            WHERE true
            """)
        if let id {
            sql.appendLiteral(" AND cp.charge_point_id = ")
            sql.appendInterpolation(id)
        }
        if let after {
            sql.appendLiteral(" AND cp.charge_point_id > ")
            sql.appendInterpolation(after)
        }
        sql.appendLiteral(" ORDER BY cp.charge_point_id LIMIT ")
        sql.appendInterpolation(limit + 1)
        return PostgresQuery(stringInterpolation: sql)
    }

    public func chargePoints(after: String?, limit: Int) async throws -> HistoryPage<ChargePointRecord, String> {
        let records = try await chargePoints(Self.chargePointsQuery(after: after, id: nil, limit: limit))
        return Self.page(records, limit: limit, key: \.id)
    }

    public func chargePoint(id: String) async throws -> ChargePointRecord? {
        try await chargePoints(Self.chargePointsQuery(after: nil, id: id, limit: 1)).first
    }

    private func chargePoints(_ query: PostgresQuery) async throws -> [ChargePointRecord] {
        var records: [ChargePointRecord] = []
        for try await row in try await client.query(query, logger: logger).decode(ChargePointRow.self) {
            let (id, registration, vendor, model, serial, boxSerial, firmware, iccid, imsi, meterType, meterSerial, lastBoot,
                 lastSeen, connectionID) = row
            records.append(ChargePointRecord(
                id: id, registrationStatus: registration, vendor: vendor, model: model, serialNumber: serial,
                chargeBoxSerialNumber: boxSerial, firmwareVersion: firmware, iccid: iccid, imsi: imsi, meterType: meterType,
                meterSerialNumber: meterSerial, lastBootAt: lastBoot, lastSeenAt: lastSeen, connectionID: connectionID,
                connectors: []
            ))
        }
        guard !records.isEmpty else { return [] }
        // Their connectors, in one more query (primary key lookups).
        let ids = records.map(\.id)
        let rows = try await client.query(
            """
            SELECT charge_point_id, connector_id, status, error_code, info, vendor_id, vendor_error_code, status_at, received_at
            FROM connector_status WHERE charge_point_id = ANY(\(ids)::text[]) ORDER BY charge_point_id, connector_id
            """,
            logger: logger
        )
        var connectors: [String: [ConnectorStatusRecord]] = [:]
        for try await (chargePointID, connectorID, status, errorCode, info, vendorID, vendorErrorCode, statusAt, receivedAt)
            in rows.decode((String, Int, String, String, String?, String?, String?, Date?, Date).self)
        {
            connectors[chargePointID, default: []].append(ConnectorStatusRecord(
                connectorID: connectorID, status: status, errorCode: errorCode, info: info, vendorID: vendorID,
                vendorErrorCode: vendorErrorCode, statusAt: statusAt, receivedAt: receivedAt
            ))
        }
        return records.map { record in
            var record = record
            record.connectors = connectors[record.id] ?? []
            return record
        }
    }

    // MARK: status history

    public static func statusHistoryQuery(_ query: StatusHistoryQuery) -> PostgresQuery {
        var sql = PostgresQuery.StringInterpolation(literalCapacity: 512, interpolationCount: 6)
        sql.appendLiteral("""
            SELECT id, connector_id, status, error_code, info, vendor_id, vendor_error_code, status_at, received_at,
                (extract(epoch FROM coalesce(status_at, received_at)) * 1000000)::int8
            FROM status_history WHERE charge_point_id = 
            """)
        sql.appendInterpolation(query.chargePointID)
        if let connectorID = query.connectorID {
            sql.appendLiteral(" AND connector_id = ")
            sql.appendInterpolation(connectorID)
        }
        if let from = query.from {
            sql.appendLiteral(" AND coalesce(status_at, received_at) >= ")
            sql.appendInterpolation(from)
        }
        if let before = query.before {
            sql.appendLiteral(" AND coalesce(status_at, received_at) < ")
            sql.appendInterpolation(before)
        }
        if let after = query.after {
            sql.appendLiteral(" AND (coalesce(status_at, received_at), id) < (")
            appendInstant(after.at, to: &sql)
            sql.appendLiteral(", ")
            sql.appendInterpolation(after.id)
            sql.appendLiteral(")")
        }
        sql.appendLiteral(" ORDER BY coalesce(status_at, received_at) DESC, id DESC LIMIT ")
        sql.appendInterpolation(query.limit + 1)
        return PostgresQuery(stringInterpolation: sql)
    }

    public func statusHistory(_ query: StatusHistoryQuery) async throws -> HistoryPage<StatusHistoryRecord, TimeKey> {
        var records: [StatusHistoryRecord] = []
        let rows = try await client.query(Self.statusHistoryQuery(query), logger: logger)
        for try await (id, connectorID, status, errorCode, info, vendorID, vendorErrorCode, statusAt, receivedAt, atMicros)
            in rows.decode((Int64, Int, String, String, String?, String?, String?, Date?, Date, Int64).self)
        {
            records.append(StatusHistoryRecord(
                id: id, connectorID: connectorID, status: status, errorCode: errorCode, info: info, vendorID: vendorID,
                vendorErrorCode: vendorErrorCode, statusAt: statusAt, receivedAt: receivedAt, atKey: Microseconds(atMicros)
            ))
        }
        return Self.page(records, limit: query.limit, key: \.key)
    }

    // MARK: helpers

    /// An exact instant from whole microseconds (a bound `Date` would be truncated to them through a `Double`).
    static func appendInstant(_ instant: Microseconds, to sql: inout PostgresQuery.StringInterpolation) {
        sql.appendLiteral("(timestamptz 'epoch' + ")
        sql.appendInterpolation(instant.value)
        sql.appendLiteral(" * interval '1 microsecond')")
    }

    /// The queries ask for limit + 1 rows: a row past the page means there is a next page.
    static func page<Item: Sendable, Key: Sendable & Hashable>(_ records: [Item], limit: Int, key: (Item) -> Key) -> HistoryPage<Item, Key> {
        guard records.count > limit else { return HistoryPage(items: records, next: nil) }
        let items = Array(records.prefix(limit))
        return HistoryPage(items: items, next: items.last.map(key))
    }
}
