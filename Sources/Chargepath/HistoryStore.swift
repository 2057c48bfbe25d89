public import Foundation

/// An instant as PostgreSQL keeps it: whole microseconds since 1970-01-01T00:00:00Z.
///
/// Page cursors carry this, not a `Date`: a `Date` is a `Double`, and a round trip through it can
/// move a timestamp by a microsecond, which would skip or repeat a row at a page boundary.
public struct Microseconds: Sendable, Hashable, Comparable {
    public var value: Int64
    public init(_ value: Int64) { self.value = value }
    public var date: Date { Date(timeIntervalSince1970: Double(value) / 1_000_000) }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }
}

/// Where a newest-first page of rows ordered by (time DESC, id DESC) stopped: the last row's key.
public struct TimeKey: Sendable, Hashable {
    public var at: Microseconds
    public var id: Int64
    public init(at: Microseconds, id: Int64) {
        self.at = at
        self.id = id
    }
}

/// One page of a keyset-paged listing. `next` is the key to continue after, nil on the last page.
public struct HistoryPage<Item: Sendable, Key: Sendable & Hashable>: Sendable {
    public var items: [Item]
    public var next: Key?
    public init(items: [Item], next: Key?) {
        self.items = items
        self.next = next
    }
}

/// Whether a transaction has been stopped.
public enum TransactionState: String, Sendable, CaseIterable {
    case active
    case completed
}

/// A filter over transactions, newest first by (started_at, transaction_id).
public struct TransactionQuery: Sendable, Equatable {
    public var chargePointID: String?
    public var connectorID: Int?
    public var idTag: String?
    public var state: TransactionState?
    /// Start time bounds: `startedFrom <= started_at < startedBefore`.
    public var startedFrom: Date?
    public var startedBefore: Date?
    /// Continue after this key (exclusive).
    public var after: TimeKey?
    public var limit: Int

    public init(chargePointID: String? = nil, connectorID: Int? = nil, idTag: String? = nil, state: TransactionState? = nil,
                startedFrom: Date? = nil, startedBefore: Date? = nil, after: TimeKey? = nil, limit: Int = 50) {
        self.chargePointID = chargePointID
        self.connectorID = connectorID
        self.idTag = idTag
        self.state = state
        self.startedFrom = startedFrom
        self.startedBefore = startedBefore
        self.after = after
        self.limit = limit
    }
}

/// The measurand OCPP 1.6 means when a sampled value names none.
public let defaultMeasurand = "Energy.Active.Import.Register"

/// One transaction as history shows it.
public struct TransactionRecord: Sendable, Equatable {
    public var id: Int
    public var chargePointID: String
    public var connectorID: Int
    public var idTag: String
    public var idTagStatus: String
    public var startedAt: Date
    public var startedAtKey: Microseconds
    public var stoppedAt: Date?
    public var meterStart: Int
    public var meterStop: Int?
    public var stopReason: String?
    /// For a transaction without a meterStop: the newest Energy.Active.Import.Register sample, in Wh
    /// (a kWh value converted), or nil when there is none or it is not a number.
    public var latestRegisterWh: Double?
    /// Kinds of the anomalies that name this transaction, oldest first.
    public var anomalies: [String]

    public init(id: Int, chargePointID: String, connectorID: Int, idTag: String, idTagStatus: String, startedAt: Date,
                startedAtKey: Microseconds, stoppedAt: Date?, meterStart: Int, meterStop: Int?, stopReason: String?,
                latestRegisterWh: Double?, anomalies: [String]) {
        self.id = id
        self.chargePointID = chargePointID
        self.connectorID = connectorID
        self.idTag = idTag
        self.idTagStatus = idTagStatus
        self.startedAt = startedAt
        self.startedAtKey = startedAtKey
        self.stoppedAt = stoppedAt
        self.meterStart = meterStart
        self.meterStop = meterStop
        self.stopReason = stopReason
        self.latestRegisterWh = latestRegisterWh
        self.anomalies = anomalies
    }

    public var key: TimeKey { TimeKey(at: startedAtKey, id: Int64(id)) }

    public var state: TransactionState { meterStop == nil ? .active : .completed }

    /// meterStop - meterStart once stopped; else the latest register reading minus meterStart; else nil.
    public var energyWh: Double? {
        if let meterStop { return Double(meterStop - meterStart) }
        return latestRegisterWh.map { $0 - Double(meterStart) }
    }

    /// Whole seconds from start to stop; nil while active.
    public var durationSeconds: Int? {
        stoppedAt.map { Int(($0.timeIntervalSince(startedAt)).rounded()) }
    }

    /// The register value in Wh of one sample, when it is a number (`kWh` values are converted).
    public static func registerWh(value: String, unit: String?) -> Double? {
        guard let number = Double(value.trimmingCharacters(in: .whitespaces)), number.isFinite else { return nil }
        return unit == "kWh" ? number * 1000 : number
    }
}

/// One sampled value of a transaction, as the charger sent it.
public struct MeterValueRecord: Sendable, Equatable {
    public var sampledAt: Date
    public var value: String
    public var measurand: String?
    public var unit: String?
    public var phase: String?
    public var location: String?
    public var context: String?
    public var format: String?
    /// `MeterValues` or `StopTransaction` (its transactionData).
    public var source: String

    public init(sampledAt: Date, value: String, measurand: String?, unit: String?, phase: String?, location: String?,
                context: String?, format: String?, source: String) {
        self.sampledAt = sampledAt
        self.value = value
        self.measurand = measurand
        self.unit = unit
        self.phase = phase
        self.location = location
        self.context = context
        self.format = format
        self.source = source
    }
}

/// The current status of one connector (connector 0 is the charge point itself).
public struct ConnectorStatusRecord: Sendable, Equatable {
    public var connectorID: Int
    public var status: String
    public var errorCode: String
    public var info: String?
    public var vendorID: String?
    public var vendorErrorCode: String?
    public var statusAt: Date?
    public var receivedAt: Date

    public init(connectorID: Int, status: String, errorCode: String, info: String?, vendorID: String?, vendorErrorCode: String?,
                statusAt: Date?, receivedAt: Date) {
        self.connectorID = connectorID
        self.status = status
        self.errorCode = errorCode
        self.info = info
        self.vendorID = vendorID
        self.vendorErrorCode = vendorErrorCode
        self.statusAt = statusAt
        self.receivedAt = receivedAt
    }
}

/// A charge point: the operator's registration decision, what its last boot said, whether it is connected.
public struct ChargePointRecord: Sendable, Equatable {
    public var id: String
    public var registrationStatus: String
    public var vendor: String?
    public var model: String?
    public var serialNumber: String?
    public var chargeBoxSerialNumber: String?
    public var firmwareVersion: String?
    public var iccid: String?
    public var imsi: String?
    public var meterType: String?
    public var meterSerialNumber: String?
    public var lastBootAt: Date?
    /// The later of the last boot and the last sign of life of its open connection.
    public var lastSeenAt: Date?
    /// The open connection (a row in `connections`), if any.
    public var connectionID: String?
    public var connectors: [ConnectorStatusRecord]

    public init(id: String, registrationStatus: String, vendor: String?, model: String?, serialNumber: String?,
                chargeBoxSerialNumber: String?, firmwareVersion: String?, iccid: String?, imsi: String?, meterType: String?,
                meterSerialNumber: String?, lastBootAt: Date?, lastSeenAt: Date?, connectionID: String?,
                connectors: [ConnectorStatusRecord]) {
        self.id = id
        self.registrationStatus = registrationStatus
        self.vendor = vendor
        self.model = model
        self.serialNumber = serialNumber
        self.chargeBoxSerialNumber = chargeBoxSerialNumber
        self.firmwareVersion = firmwareVersion
        self.iccid = iccid
        self.imsi = imsi
        self.meterType = meterType
        self.meterSerialNumber = meterSerialNumber
        self.lastBootAt = lastBootAt
        self.lastSeenAt = lastSeenAt
        self.connectionID = connectionID
        self.connectors = connectors
    }

    public var online: Bool { connectionID != nil }
}

/// A filter over one charge point's StatusNotifications, newest first by (at, id), where `at` is the
/// charger's timestamp or, when it sent none, the time we received it.
public struct StatusHistoryQuery: Sendable, Equatable {
    public var chargePointID: String
    public var connectorID: Int?
    /// `from <= at < before`.
    public var from: Date?
    public var before: Date?
    public var after: TimeKey?
    public var limit: Int

    public init(chargePointID: String, connectorID: Int? = nil, from: Date? = nil, before: Date? = nil, after: TimeKey? = nil, limit: Int = 50) {
        self.chargePointID = chargePointID
        self.connectorID = connectorID
        self.from = from
        self.before = before
        self.after = after
        self.limit = limit
    }
}

/// One StatusNotification as received.
public struct StatusHistoryRecord: Sendable, Equatable {
    public var id: Int64
    public var connectorID: Int
    public var status: String
    public var errorCode: String
    public var info: String?
    public var vendorID: String?
    public var vendorErrorCode: String?
    public var statusAt: Date?
    public var receivedAt: Date
    /// `statusAt`, or `receivedAt` when the charger sent no timestamp: what the history is ordered by.
    public var atKey: Microseconds

    public init(id: Int64, connectorID: Int, status: String, errorCode: String, info: String?, vendorID: String?,
                vendorErrorCode: String?, statusAt: Date?, receivedAt: Date, atKey: Microseconds) {
        self.id = id
        self.connectorID = connectorID
        self.status = status
        self.errorCode = errorCode
        self.info = info
        self.vendorID = vendorID
        self.vendorErrorCode = vendorErrorCode
        self.statusAt = statusAt
        self.receivedAt = receivedAt
        self.atKey = atKey
    }

    public var key: TimeKey { TimeKey(at: atKey, id: id) }
}

/// The read side of the central system's history: transactions with their meter values, charge
/// points with their connectors, status history. Every listing is keyset-paged (no OFFSET), so a
/// page costs the same on the first and the thousandth page.
public protocol HistoryStore: Sendable {
    func transactions(_ query: TransactionQuery) async throws -> HistoryPage<TransactionRecord, TimeKey>
    func transaction(id: Int) async throws -> TransactionRecord?
    /// A transaction's samples ordered by (sampled_at, id); `measurand` filters, and a sample that
    /// names no measurand counts as `Energy.Active.Import.Register` (OCPP 1.6's default).
    func meterValues(transactionID: Int, measurand: String?) async throws -> [MeterValueRecord]
    /// Charge points ordered by id, after `after` (exclusive).
    func chargePoints(after: String?, limit: Int) async throws -> HistoryPage<ChargePointRecord, String>
    func chargePoint(id: String) async throws -> ChargePointRecord?
    func statusHistory(_ query: StatusHistoryQuery) async throws -> HistoryPage<StatusHistoryRecord, TimeKey>
}
