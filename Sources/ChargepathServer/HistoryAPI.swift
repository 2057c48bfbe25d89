public import Chargepath
import Foundation
import HTTPTypes
import HummingbirdCore
public import Hummingbird
import NIOCore
import OCPP16
import OCPPCore

/// The history read API under `/api/v1`: transactions with their meter values (JSON and CSV),
/// charge points with their connectors, and status history. Read-only; every listing is
/// keyset-paged with an opaque `cursor` (see `HistoryCursor`).
///
/// Mount it behind the bearer-token middleware: `HistoryAPI(...).addRoutes(to: protected)`.
public struct HistoryAPI: Sendable {
    public struct Configuration: Sendable {
        /// The page size when `limit` is not given.
        public var defaultLimit: Int
        /// The largest `limit` a client may ask for.
        public var maximumLimit: Int

        public init(defaultLimit: Int = 50, maximumLimit: Int = 500) {
            self.defaultLimit = defaultLimit
            self.maximumLimit = maximumLimit
        }
    }

    let store: any HistoryStore
    let connections: any ConnectionRepository
    let configuration: Configuration

    public init(store: any HistoryStore, connections: any ConnectionRepository, configuration: Configuration = .init()) {
        self.store = store
        self.connections = connections
        self.configuration = configuration
    }

    public func addRoutes(to group: RouterGroup<BasicRequestContext>) {
        group.get("api/v1/transactions") { request, _ in
            let parameters = QueryParameters(request)
            var query = TransactionQuery(limit: try parameters.limit(configuration))
            query.chargePointID = try parameters.chargePointID("chargePointId")
            query.connectorID = try parameters.connectorID("connectorId")
            query.idTag = try parameters.idTag("idTag")
            if let status = try parameters.text("status") {
                guard let state = TransactionState(rawValue: status) else {
                    throw HTTPError(.badRequest, message: "status must be 'active' or 'completed'.")
                }
                query.state = state
            }
            (query.startedFrom, query.startedBefore) = try parameters.range()
            query.after = try parameters.cursor(HistoryCursor.transactions)
            let csv = try parameters.wantsCSV()
            let page = try await store.transactions(query)
            let next = page.next.map(HistoryCursor.transactions.encode)
            if csv {
                var response = HistoryCSV.response(HistoryCSV.transactions(page.items), filename: "transactions.csv")
                if let next { response.headers[HTTPField.Name("X-Next-Cursor")!] = next }
                return response
            }
            let body: JSONValue = ["transactions": .array(page.items.map(HistoryJSON.transaction)), "nextCursor": .optional(next)]
            return Response.rawJSON(body.serialized(), status: .ok)
        }
        group.get("api/v1/transactions/:transactionId") { request, context in
            let parameters = QueryParameters(request)
            let id = try Self.transactionID(context)
            let measurand = try parameters.measurand()
            guard let record = try await store.transaction(id: id) else { throw Self.noTransaction(id) }
            let values = try await store.meterValues(transactionID: id, measurand: measurand)
            guard case .object(var object) = HistoryJSON.transaction(record) else { preconditionFailure("an object") }
            object["meterValues"] = .array(values.map(HistoryJSON.meterValue))
            return Response.rawJSON(JSONValue.object(object).serialized(), status: .ok)
        }
        group.get("api/v1/transactions/:transactionId/meter-values.csv") { request, context in
            let parameters = QueryParameters(request)
            let id = try Self.transactionID(context)
            let measurand = try parameters.measurand()
            guard try await store.transaction(id: id) != nil else { throw Self.noTransaction(id) }
            let values = try await store.meterValues(transactionID: id, measurand: measurand)
            return HistoryCSV.response(HistoryCSV.meterValues(values, transactionID: id), filename: "transaction-\(id)-meter-values.csv")
        }
        group.get("api/v1/charge-points") { request, _ in
            let parameters = QueryParameters(request)
            let limit = try parameters.limit(configuration)
            let after = try parameters.cursor(HistoryCursor.chargePoints)
            let page = try await store.chargePoints(after: after, limit: limit)
            let body: JSONValue = [
                "chargePoints": .array(page.items.map { HistoryJSON.chargePoint($0) }),
                "nextCursor": .optional(page.next.map(HistoryCursor.chargePoints.encode)),
            ]
            return Response.rawJSON(body.serialized(), status: .ok)
        }
        group.get("api/v1/charge-points/:chargePointId") { _, context in
            let id = try Self.chargePointID(context)
            guard let record = try await store.chargePoint(id: id) else { throw Self.noChargePoint(id) }
            // The connection as the connection tracker has it (node, since when, from where).
            let connection = try await connections.list(chargePointID: id, limit: 1).first
            return Response.rawJSON(HistoryJSON.chargePoint(record, connection: .some(connection)).serialized(), status: .ok)
        }
        group.get("api/v1/charge-points/:chargePointId/status-history") { request, context in
            let parameters = QueryParameters(request)
            let id = try Self.chargePointID(context)
            var query = StatusHistoryQuery(chargePointID: id, limit: try parameters.limit(configuration))
            query.connectorID = try parameters.connectorID("connectorId")
            (query.from, query.before) = try parameters.range()
            query.after = try parameters.cursor(HistoryCursor.statusHistory)
            let page = try await store.statusHistory(query)
            if page.items.isEmpty, query.after == nil, try await store.chargePoint(id: id) == nil {
                throw Self.noChargePoint(id)
            }
            let body: JSONValue = [
                "chargePointId": .string(id),
                "statusHistory": .array(page.items.map(HistoryJSON.status)),
                "nextCursor": .optional(page.next.map(HistoryCursor.statusHistory.encode)),
            ]
            return Response.rawJSON(body.serialized(), status: .ok)
        }
    }

    static func transactionID(_ context: BasicRequestContext) throws -> Int {
        let text = try context.parameters.require("transactionId")
        guard text.utf8.count <= 19, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }), let id = Int(text) else {
            throw HTTPError(.badRequest, message: "'\(text.prefix(40))' is not a transaction id (a whole number).")
        }
        return id
    }

    static func chargePointID(_ context: BasicRequestContext) throws -> String {
        let text = try context.parameters.require("chargePointId")
        do {
            return try ChargePointIdentity.fromRequestPath("/" + text).id
        } catch {
            throw HTTPError(.badRequest, message: "'\(text.prefix(60))' is not a charge point id: \(error)")
        }
    }

    static func noTransaction(_ id: Int) -> HTTPError {
        HTTPError(.notFound, message: "There is no transaction \(id).")
    }

    static func noChargePoint(_ id: String) -> HTTPError {
        HTTPError(.notFound, message: "There is no charge point '\(id)'.")
    }
}

/// Reads and checks query-string values. Anything malformed, out of range or absurdly long is a
/// 400 with a reason, before it gets near the database.
struct QueryParameters {
    /// Longer than any value these endpoints take (a cursor is under 100 characters).
    static let maximumValueLength = 256

    let values: FlatDictionary<Substring, Substring>

    init(_ request: Request) {
        values = request.uri.queryParameters
    }

    /// The value of `name`, nil when absent or empty.
    func text(_ name: String) throws -> String? {
        guard let value = values[Substring(name)], !value.isEmpty else { return nil }
        guard value.utf8.count <= Self.maximumValueLength else {
            throw HTTPError(.badRequest, message: "\(name) is too long (at most \(Self.maximumValueLength) bytes).")
        }
        return String(value)
    }

    func limit(_ configuration: HistoryAPI.Configuration) throws -> Int {
        guard let text = try text("limit") else { return configuration.defaultLimit }
        guard let limit = Int(text), (1...configuration.maximumLimit).contains(limit) else {
            throw HTTPError(.badRequest, message: "limit must be a whole number from 1 to \(configuration.maximumLimit).")
        }
        return limit
    }

    func chargePointID(_ name: String) throws -> String? {
        guard let text = try text(name) else { return nil }
        do {
            return try ChargePointIdentity(validating: text).id
        } catch {
            throw HTTPError(.badRequest, message: "\(name) is not a charge point id: \(error)")
        }
    }

    func connectorID(_ name: String) throws -> Int? {
        guard let text = try text(name) else { return nil }
        guard let id = Int(text), (0...Int(Int32.max)).contains(id) else {
            throw HTTPError(.badRequest, message: "\(name) must be a connector number (0 or more).")
        }
        return id
    }

    func idTag(_ name: String) throws -> String? {
        guard let text = try text(name) else { return nil }
        // OCPP 1.6 idTags are CiString20Type.
        guard text.count <= 20 else { throw HTTPError(.badRequest, message: "\(name) is at most 20 characters.") }
        return text
    }

    func measurand() throws -> String? {
        guard let text = try text("measurand") else { return nil }
        guard text.count <= 64 else { throw HTTPError(.badRequest, message: "measurand is at most 64 characters.") }
        return text
    }

    func wantsCSV() throws -> Bool {
        switch try text("format") {
        case nil, "json"?: return false
        case "csv"?: return true
        default: throw HTTPError(.badRequest, message: "format must be 'json' or 'csv'.")
        }
    }

    /// `from` (inclusive) and `to` (exclusive), ISO 8601.
    func range() throws -> (Date?, Date?) {
        let from = try date("from")
        let to = try date("to")
        if let from, let to, from > to {
            throw HTTPError(.badRequest, message: "from must not be after to.")
        }
        return (from, to)
    }

    func date(_ name: String) throws -> Date? {
        guard let text = try text(name) else { return nil }
        guard let date = HistoryTime.parse(text) else {
            throw HTTPError(.badRequest, message: "\(name) must be an ISO 8601 time such as 2026-11-25T10:00:00Z (or a date, 2026-11-25).")
        }
        return date
    }

    func cursor<Key>(_ kind: HistoryCursor.Kind<Key>) throws -> Key? {
        guard let text = try text("cursor") else { return nil }
        guard let key = kind.decode(text) else {
            throw HTTPError(.badRequest, message: "cursor is not one this listing gave out; pass nextCursor from the previous page unchanged.")
        }
        return key
    }
}

/// Opaque, URL-safe page cursors: base64url (no padding) of a one-letter listing tag and the
/// last row's key, so a cursor from one listing is refused by another.
enum HistoryCursor {
    struct Kind<Key>: Sendable {
        let encode: @Sendable (Key) -> String
        let decode: @Sendable (String) -> Key?
    }

    /// `T<microseconds>.<transaction id>`
    static let transactions = timeKey(tag: "T")
    /// `S<microseconds>.<status history id>`
    static let statusHistory = timeKey(tag: "S")
    /// `C<charge point id>`
    static let chargePoints = Kind<String>(
        encode: { base64URL("C" + $0) },
        decode: { text in
            guard let plain = unbase64URL(text), plain.hasPrefix("C"), let id = try? ChargePointIdentity(validating: String(plain.dropFirst())) else {
                return nil
            }
            return id.id
        }
    )

    static func timeKey(tag: Character) -> Kind<TimeKey> {
        Kind(
            encode: { base64URL("\(tag)\($0.at.value).\($0.id)") },
            decode: { text in
                guard let plain = unbase64URL(text), plain.first == tag else { return nil }
                let parts = plain.dropFirst().split(separator: ".", omittingEmptySubsequences: false)
                guard parts.count == 2, let micros = Int64(parts[0]), let id = Int64(parts[1]) else { return nil }
                return TimeKey(at: Microseconds(micros), id: id)
            }
        )
    }

    static func base64URL(_ text: String) -> String {
        Data(text.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func unbase64URL(_ text: String) -> String? {
        guard text.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || (0x30...0x39).contains($0)
            || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) })
        else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.utf8.count % 4) % 4)
        guard let data = Data(base64Encoded: base64) else { return nil }
        return String(data: data, encoding: .utf8)
    }
}

/// Timestamps in and out: ISO 8601 in UTC, with as many fractional digits as the value has.
enum HistoryTime {
    /// A date (`2026-11-25`, midnight UTC) or an RFC 3339 date-time with its offset
    /// (`2026-11-25T10:00:00Z`, `…:00.25+01:00`); a time without an offset is refused, as it
    /// could mean any zone.
    ///
    /// Parsed by hand (`OCPP16DateTime.parse`, after checking the shape): `ISO8601DateFormatter`
    /// built an ICU formatter for every parse, a third of the server's CPU for a page of 50
    /// transactions in a period (perf, 2026-11-26).
    static func parse(_ text: String) -> Date? {
        // A '+' in an unencoded query string may have become a space on the way.
        let bytes = Array(text.utf8).map { $0 == 0x20 ? 0x2B : $0 }
        func isDigit(_ i: Int) -> Bool { bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        guard bytes.count >= 10, [0, 1, 2, 3, 5, 6, 8, 9].allSatisfy(isDigit), bytes[4] == 0x2D, bytes[7] == 0x2D else {
            return nil
        }
        if bytes.count == 10 { return OCPP16DateTime.parse(String(decoding: bytes, as: UTF8.self) + "T00:00:00Z") }
        // `T` and an explicit offset: `Z`, or `±hh:mm` ending the text.
        guard bytes.count >= 20, bytes[10] == 0x54 else { return nil }
        let hasOffset = bytes.last == 0x5A
            || (bytes.count >= 25 && (bytes[bytes.count - 6] == 0x2B || bytes[bytes.count - 6] == 0x2D) && bytes[bytes.count - 3] == 0x3A)
        guard hasOffset else { return nil }
        return OCPP16DateTime.parse(String(decoding: bytes, as: UTF8.self))
    }

    /// `2026-11-25T10:00:00Z`, `…:00.250Z` or `…:00.250123Z`: exact to the microsecond PostgreSQL keeps.
    static func format(_ date: Date) -> String {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {
            seconds -= 1
            fraction += 1_000_000
        }
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        // Written as bytes: a page of 50 transactions formats 100 of these.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(27)
        func put(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var value = value
            if value < 0 || value >= divisor * 10 {  // a year outside 0...9999: as it is
                bytes.append(contentsOf: String(value).utf8)
                return
            }
            while divisor > 0 {
                bytes.append(UInt8(0x30 + value / divisor))
                value %= divisor
                divisor /= 10
            }
        }
        put(Int(parts.tm_year) + 1900, 4); bytes.append(0x2D); put(Int(parts.tm_mon) + 1, 2); bytes.append(0x2D)
        put(Int(parts.tm_mday), 2); bytes.append(0x54); put(Int(parts.tm_hour), 2); bytes.append(0x3A)
        put(Int(parts.tm_min), 2); bytes.append(0x3A); put(Int(parts.tm_sec), 2)
        if fraction != 0 {
            bytes.append(0x2E)
            if fraction % 1000 == 0 { put(Int(fraction / 1000), 3) } else { put(Int(fraction), 6) }
        }
        bytes.append(0x5A)
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The JSON shapes (members in a fixed, readable order; absent values are `null`, never left out).
enum HistoryJSON {
    static func transaction(_ record: TransactionRecord) -> JSONValue {
        [
            "id": .integer(Int64(record.id)),
            "chargePointId": .string(record.chargePointID),
            "connectorId": .integer(Int64(record.connectorID)),
            "idTag": .string(record.idTag),
            "idTagStatus": .string(record.idTagStatus),
            "startedAt": .string(HistoryTime.format(record.startedAt)),
            "stoppedAt": .optional(record.stoppedAt.map(HistoryTime.format)),
            "meterStart": .integer(Int64(record.meterStart)),
            "meterStop": .optional(record.meterStop.map(Int64.init)),
            "energyWh": .number(record.energyWh),
            "durationSeconds": .optional(record.durationSeconds.map(Int64.init)),
            "stopReason": .optional(record.stopReason),
            "status": .string(record.state.rawValue),
            "anomalies": .array(record.anomalies.map(JSONValue.string)),
        ]
    }

    static func meterValue(_ value: MeterValueRecord) -> JSONValue {
        [
            "timestamp": .string(HistoryTime.format(value.sampledAt)),
            "value": .string(value.value),
            "measurand": .optional(value.measurand),
            "unit": .optional(value.unit),
            "phase": .optional(value.phase),
            "location": .optional(value.location),
            "context": .optional(value.context),
            "format": .optional(value.format),
            "source": .string(value.source),
        ]
    }

    /// `connection`: `.some` adds the `connection` member (the detail view), `.none` leaves it out.
    static func chargePoint(_ record: ChargePointRecord, connection: ConnectionRecord?? = .none) -> JSONValue {
        var online = record.online
        var connectionID = record.connectionID
        if case .some(let current) = connection {
            online = current != nil
            connectionID = current?.connectionID.rawValue
        }
        var object: JSONValue = [
            "id": .string(record.id),
            "registrationStatus": .string(record.registrationStatus),
            "vendor": .optional(record.vendor),
            "model": .optional(record.model),
            "serialNumber": .optional(record.serialNumber),
            "chargeBoxSerialNumber": .optional(record.chargeBoxSerialNumber),
            "firmwareVersion": .optional(record.firmwareVersion),
            "iccid": .optional(record.iccid),
            "imsi": .optional(record.imsi),
            "meterType": .optional(record.meterType),
            "meterSerialNumber": .optional(record.meterSerialNumber),
            "lastBootAt": .optional(record.lastBootAt.map(HistoryTime.format)),
            "lastSeenAt": .optional(record.lastSeenAt.map(HistoryTime.format)),
            "online": .bool(online),
            "connectionId": .optional(connectionID),
            "connectors": .array(record.connectors.map(connector)),
        ]
        if case .some(let current) = connection, case .object(var members) = object {
            members["connection"] = current.map { current in
                [
                    "connectionId": .string(current.connectionID.rawValue),
                    "nodeId": .string(current.nodeID.rawValue),
                    "connectedAt": .string(HistoryTime.format(current.connectedAt)),
                    "lastActiveAt": .string(HistoryTime.format(current.lastSeenAt)),
                    "subprotocol": .optional(current.subprotocol),
                    "sourceIp": .optional(current.remoteAddress),
                ]
            } ?? .null
            object = .object(members)
        }
        return object
    }

    static func connector(_ connector: ConnectorStatusRecord) -> JSONValue {
        [
            "connectorId": .integer(Int64(connector.connectorID)),
            "status": .string(connector.status),
            "errorCode": .string(connector.errorCode),
            "info": .optional(connector.info),
            "vendorId": .optional(connector.vendorID),
            "vendorErrorCode": .optional(connector.vendorErrorCode),
            "timestamp": .optional(connector.statusAt.map(HistoryTime.format)),
            "receivedAt": .string(HistoryTime.format(connector.receivedAt)),
        ]
    }

    static func status(_ status: StatusHistoryRecord) -> JSONValue {
        [
            "id": .integer(status.id),
            "connectorId": .integer(Int64(status.connectorID)),
            "status": .string(status.status),
            "errorCode": .string(status.errorCode),
            "info": .optional(status.info),
            "vendorId": .optional(status.vendorID),
            "vendorErrorCode": .optional(status.vendorErrorCode),
            "timestamp": .optional(status.statusAt.map(HistoryTime.format)),
            "receivedAt": .string(HistoryTime.format(status.receivedAt)),
        ]
    }
}

extension JSONValue {
    fileprivate static func optional(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
    fileprivate static func optional(_ value: Int64?) -> JSONValue { value.map(JSONValue.integer) ?? .null }
    /// A whole number as an integer (no `.0`), anything else as a double.
    fileprivate static func number(_ value: Double?) -> JSONValue {
        guard let value else { return .null }
        if value.rounded() == value, abs(value) < 9e15 { return .integer(Int64(value)) }
        return .double(value)
    }
}

/// RFC 4180 CSV: a header row, CRLF line ends, fields quoted when they hold a comma, a quote or a
/// line break (quotes doubled).
enum HistoryCSV {
    static func field(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func document(_ rows: [[String]]) -> String {
        rows.map { $0.map(field).joined(separator: ",") + "\r\n" }.joined()
    }

    static func meterValues(_ values: [MeterValueRecord], transactionID: Int) -> String {
        var rows = [["transactionId", "timestamp", "value", "measurand", "unit", "phase", "location", "context", "format", "source"]]
        for value in values {
            rows.append([
                String(transactionID), HistoryTime.format(value.sampledAt), value.value, value.measurand ?? "", value.unit ?? "",
                value.phase ?? "", value.location ?? "", value.context ?? "", value.format ?? "", value.source,
            ])
        }
        return document(rows)
    }

    static func transactions(_ records: [TransactionRecord]) -> String {
        var rows = [[
            "id", "chargePointId", "connectorId", "idTag", "idTagStatus", "startedAt", "stoppedAt", "meterStart", "meterStop",
            "energyWh", "durationSeconds", "stopReason", "status", "anomalies",
        ]]
        for record in records {
            rows.append([
                String(record.id), record.chargePointID, String(record.connectorID), record.idTag, record.idTagStatus,
                HistoryTime.format(record.startedAt), record.stoppedAt.map(HistoryTime.format) ?? "", String(record.meterStart),
                record.meterStop.map(String.init) ?? "", record.energyWh.map(number) ?? "",
                record.durationSeconds.map(String.init) ?? "", record.stopReason ?? "", record.state.rawValue,
                record.anomalies.joined(separator: ";"),
            ])
        }
        return document(rows)
    }

    static func number(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 9e15 ? String(Int64(value)) : String(value)
    }

    static func response(_ csv: String, filename: String) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"\(filename)\""],
            body: .init(byteBuffer: ByteBuffer(string: csv))
        )
    }
}
