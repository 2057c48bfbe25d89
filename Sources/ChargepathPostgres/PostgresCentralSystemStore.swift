public import Chargepath
public import Foundation
public import Logging
public import OCPP16
package import OCPPCore
public import PostgresNIO
import Crypto

/// The OCPP 1.6 tables (migration 0002). Each method is one statement or one transaction,
/// committed before it returns. MeterValues from many chargers share statements and commits
/// (`GroupCommit`); each still returns only once its own values are committed.
public struct PostgresCentralSystemStore: CentralSystemStore {
    let client: PostgresClient
    let logger: Logger
    let provisionOnBoot: Bool
    let sessionInterruptGraceSeconds: Int
    /// Copies of this store share it.
    package let meterValueWrites: GroupCommit<MeterValuesWrite, [WaitingWorkflow]>
    /// StatusNotifications of many chargers share statements and commits too: a boot storm of
    /// 10,000 chargers sent 19,000 of them, one statement and commit each, the most of
    /// PostgreSQL's work in the storm. Copies of this store share it.
    ///
    /// A batch writes on a pinned connection (`statusConnections`), never through the pool: a
    /// batch that waited for a pool connection while the database was away waited for good
    /// (PostgresNIO 1.33.2 did not answer the lease when its caller was cancelled), held the one
    /// slot, and every later StatusNotification failed after the database came back.
    package let statusWrites: GroupCommit<StatusWrite, [WaitingWorkflow]>
    /// BootNotifications of many chargers share statements and commits as well (a boot storm: one
    /// statement and one commit per charger was the last of its statements that went alone), on a
    /// pinned connection (`bootConnections`) for the same reason; without one, nobody waits for a
    /// batch. Copies of this store share it.
    package let bootWrites: GroupCommit<BootWrite, RegistrationStatus>

    /// With more than one MeterValues slot, a further one starts a batch while others write only
    /// once this many MeterValues wait. With one slot, batches of ~70 readings followed each other
    /// at 4,300 msg/s (1,000 chargers), and a reading waited for the batch being written and then
    /// for its own. With 2 and 4 slots the MeterValues' median round trip at ~5,000 msg/s went
    /// from 2.7–2.9 times Authorize's (a read, no batch) in the same run to 2.0 and 1.6 times
    /// (BENCHMARKS.md, 2026-11-27; the absolute figures drift with this machine's speed by more).
    /// Taken at once by any reading that found the first busy, a second slot wrote batches of one
    /// or two at 1,000 msg/s, a statement each, for half a core of PostgreSQL; with 16 to wait for,
    /// PostgreSQL's CPU at 1,000 msg/s is what it was with one slot.
    public static let meterValuesForAnotherSlot = 16

    /// MeterValues batches write on `meterValueConnections` (one slot per concurrent batch) when
    /// given, else through the pool; items written alone always go through the pool.
    public init(
        client: PostgresClient, logger: Logger, provisionOnBoot: Bool = true, sessionInterruptGraceSeconds: Int = 60,
        meterValueConnections: PinnedConnections? = nil, meterValueSlots: Int = 1,
        meterValuesForAnotherSlot: Int = PostgresCentralSystemStore.meterValuesForAnotherSlot, statusConnections: PinnedConnections? = nil,
        bootConnections: PinnedConnections? = nil
    ) {
        precondition(meterValueConnections.map { $0.count >= meterValueSlots } ?? true, "a pinned connection per slot")
        self.client = client
        self.logger = logger
        self.provisionOnBoot = provisionOnBoot
        self.sessionInterruptGraceSeconds = sessionInterruptGraceSeconds
        self.meterValueWrites = GroupCommit(
            configuration: .init(maximumConcurrentWrites: meterValueSlots, pendingForAnotherSlot: meterValuesForAnotherSlot)
        ) { writes, slot in
            try await Self.recordMeterValues(writes, slot: slot, pinned: meterValueConnections, client: client, logger: logger)
        }
        // Without pinned connections, no batches (no caller waits: each is written alone through the pool).
        var statusBatches = GroupCommit<StatusWrite, [WaitingWorkflow]>.Configuration()
        if statusConnections == nil { statusBatches.maximumPending = 0 }
        self.statusWrites = GroupCommit(configuration: statusBatches) { writes, slot in
            let rows = try await client.rows(of: RecordStatusesStatement(writes), slot: slot, pinned: statusConnections, logger: logger)
            return WaitingExecutionsStatement.waiting(rows, probes: writes.count)
        }
        var bootBatches = GroupCommit<BootWrite, RegistrationStatus>.Configuration()
        if bootConnections == nil { bootBatches.maximumPending = 0 }
        self.bootWrites = GroupCommit(configuration: bootBatches) { boots, slot in
            try await Self.recordBoots(boots, provisionOnBoot: provisionOnBoot, slot: slot, pinned: bootConnections, client: client, logger: logger)
        }
    }

    public func recordBoot(chargePointID: String, _ request: BootNotificationRequest, at date: Date) async throws -> RegistrationStatus {
        try await bootWrites.submit(BootWrite(chargePointID: chargePointID, request: request, bootedAt: date))
    }

    static func recordBoots(
        _ boots: [BootWrite], provisionOnBoot: Bool, slot: Int?, pinned: PinnedConnections?, client: PostgresClient, logger: Logger
    ) async throws -> [RegistrationStatus] {
        func status(_ text: String) -> RegistrationStatus { RegistrationStatus(rawValue: text) ?? .accepted }
        if boots.count == 1 {
            let (id, request, date) = (boots[0].chargePointID, boots[0].request, boots[0].bootedAt)
            let rows = try await client.rows(of: RecordBootStatement(
                chargePointID: id, vendor: request.chargePointVendor, model: request.chargePointModel,
                serialNumber: request.chargePointSerialNumber, chargeBoxSerialNumber: request.chargeBoxSerialNumber,
                firmwareVersion: request.firmwareVersion, iccid: request.iccid, imsi: request.imsi, meterType: request.meterType,
                meterSerialNumber: request.meterSerialNumber, bootedAt: date, provisionOnBoot: provisionOnBoot
            ), slot: slot, pinned: pinned, logger: logger)
            return [rows.first.map(status) ?? .accepted]
        }
        var statuses = [RegistrationStatus](repeating: .accepted, count: boots.count)
        let rows = try await client.rows(of: RecordBootsStatement(boots, provisionOnBoot: provisionOnBoot), slot: slot, pinned: pinned, logger: logger)
        for (n, text) in rows { statuses[n - 1] = status(text) }
        return statuses
    }

    public func registrationStatus(chargePointID: String) async throws -> RegistrationStatus? {
        let rows = try await client.query(
            "SELECT registration_status FROM charge_points WHERE charge_point_id = \(chargePointID)", logger: logger
        )
        for try await status in rows.decode(String.self) { return RegistrationStatus(rawValue: status) }
        return nil
    }

    @discardableResult
    public func recordStatus(chargePointID: String, _ request: StatusNotificationRequest, receivedAt: Date) async throws -> [WaitingWorkflow] {
        try await statusWrites.submit(StatusWrite(
            chargePointID: chargePointID, connectorID: request.connectorId, status: request.status.rawValue,
            errorCode: request.errorCode.rawValue, info: request.info, vendorID: request.vendorId,
            vendorErrorCode: request.vendorErrorCode, statusAt: request.timestamp, receivedAt: receivedAt
        ))
    }

    public func authorize(idTag: String, at date: Date) async throws -> IdTagInfo {
        let rows = try await client.execute(IdTagStatement(idTag: idTag), logger: logger)
        for try await (status, expiry, parent) in rows {
            return Self.idTagInfo(status: status, expiry: expiry, parent: parent, at: date)
        }
        return Self.idTagInfo(status: nil, expiry: nil, parent: nil, at: date)
    }

    /// What a charger is told of a tag: its status (an unknown tag or status is Invalid; an
    /// Accepted one past its expiry is Expired), expiry and parent.
    static func idTagInfo(status: String?, expiry: Date?, parent: String?, at date: Date) -> IdTagInfo {
        guard let status else { return IdTagInfo(status: .invalid) }
        var authorization = AuthorizationStatus(rawValue: status) ?? .invalid
        if authorization == .accepted, let expiry, expiry <= date {
            authorization = .expired
        }
        return IdTagInfo(expiryDate: expiry, parentIdTag: parent, status: authorization)
    }

    public func startTransaction(chargePointID: String, _ request: StartTransactionRequest, receivedAt: Date) async throws -> StartedTransaction {
        let info = try await authorize(idTag: request.idTag, at: receivedAt)
        // A retried start (same charger, connector, tag, meterStart, timestamp) finds its first row.
        let rows = try await client.execute(
            StartTransactionStatement(
                chargePointID: chargePointID, connectorID: request.connectorId, idTag: request.idTag,
                idTagStatus: info.status.rawValue, meterStart: request.meterStart, startedAt: request.timestamp,
                reservationID: request.reservationId, receivedAt: receivedAt, interruptGraceSeconds: sessionInterruptGraceSeconds
            ),
            logger: logger
        )
        for try await (id, retry, waiterIDs, filters) in rows {
            return StartedTransaction(transactionID: id, idTagInfo: info, wasRetry: retry,
                                      waitingWorkflows: WaitingExecutionsStatement.waiting(ids: waiterIDs, filters: filters))
        }
        throw StoreError(description: "StartTransaction for \(chargePointID) returned no transaction id")
    }

    @discardableResult
    public func recordMeterValues(chargePointID: String, connectorID: Int, transactionID: Int?, samples: [MeterSample], receivedAt: Date) async throws -> [WaitingWorkflow] {
        try await meterValueWrites.submit(
            MeterValuesWrite(chargePointID: chargePointID, connectorID: connectorID, transactionID: transactionID,
                             samples: samples, receivedAt: receivedAt)
        )
    }

    public func stopTransaction(chargePointID: String, _ request: StopTransactionRequest, samples: [MeterSample], receivedAt: Date) async throws -> StoppedTransaction {
        var statement = StopTransactionStatement(
            transactionID: request.transactionId, chargePointID: chargePointID, meterStop: request.meterStop,
            stoppedAt: request.timestamp, stopReason: request.reason?.rawValue ?? "Local", idTag: request.idTag,
            receivedAt: receivedAt, timestampText: request.timestamp.formatted(.iso8601), reasonText: request.reason?.rawValue ?? ""
        )
        for reading in MeterReading.group(samples) {
            statement.readingTimes.append(OCPP16DateTime.format(reading.sampledAt))
            statement.readingSamples.append(reading.samplesJSON)
            statement.readingHashes.append(reading.samplesHash)
        }
        for try await (kind, status, expiry, parent, waiterIDs, filters) in try await client.execute(statement, logger: logger) {
            let outcome: StopOutcome = switch kind {
            case "stopped": .stopped
            case "same": .alreadyStoppedSame
            case "unknown": .unknownTransaction
            default: .alreadyStoppedDifferently
            }
            let idTagInfo = request.idTag.map { _ in Self.idTagInfo(status: status, expiry: expiry, parent: parent, at: receivedAt) }
            // A stop that found nobody waiting may have waited for the worker starting the session
            // (the pending start's row lock): the statement's snapshot predates that start, so nil
            // has the workflow engine look again, with a snapshot of its own (`chargerMessage`).
            let waiting = WaitingExecutionsStatement.waiting(ids: waiterIDs, filters: filters)
            return StoppedTransaction(outcome: outcome, idTagInfo: idTagInfo,
                                      waitingWorkflows: outcome == .stopped && waiting.isEmpty ? nil : waiting)
        }
        throw StoreError(description: "StopTransaction for \(chargePointID) returned no outcome")
    }

    public func recordMessage(chargePointID: String, action: String, payload: String, receivedAt: Date) async throws {
        try await client.query(
            """
            INSERT INTO charger_messages (charge_point_id, action, payload, received_at)
            VALUES (\(chargePointID), \(action), \(payload)::jsonb, \(receivedAt))
            """,
            logger: logger
        )
    }


    /// Stores a batch of MeterValues messages in one statement (on `slot`'s pinned connection, or
    /// through the pool); returns each message's waiting workflow executions, in order.
    package static func recordMeterValues(
        _ writes: [MeterValuesWrite], slot: Int?, pinned: PinnedConnections?, client: PostgresClient, logger: Logger
    ) async throws -> [[WaitingWorkflow]] {
        let rows = try await client.rows(of: meterValuesStatement(writes), slot: slot, pinned: pinned, logger: logger)
        return WaitingExecutionsStatement.waiting(rows, probes: writes.count)
    }

    /// One INSERT of every reading of `writes` (arrays unnested), which also reads the executions
    /// waiting for each write's charger's MeterValues; a resent reading is ignored. Times go as
    /// text with milliseconds (`OCPP16DateTime.format`), as before migration 0009.
    static func meterValuesStatement(_ writes: [MeterValuesWrite]) -> RecordMeterValuesStatement {
        var statement = RecordMeterValuesStatement()
        statement.messages.reserveCapacity(writes.count)
        for write in writes {
            statement.messages.append(write.chargePointID)
            for reading in MeterReading.group(write.samples) {
                statement.chargePoints.append(write.chargePointID)
                statement.connectors.append(write.connectorID)
                statement.transactions.append(write.transactionID ?? 0)
                statement.hasTransaction.append(write.transactionID != nil)
                statement.received.append(write.receivedAt)
                statement.times.append(OCPP16DateTime.format(reading.sampledAt))
                statement.samples.append(reading.samplesJSON)
                statement.hashes.append(reading.samplesHash)
            }
        }
        return statement
    }

    static func json(_ dictionary: [String: String]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(dictionary), as: UTF8.self)
    }
}

/// One row of `meter_readings` (migration 0009): a timestamp and its sampled values, as JSON.
package struct MeterReading: Equatable {
    package var sampledAt: Date
    /// The samples as JSON, in the text PostgreSQL prints for them as jsonb (`canonicalText`): the
    /// column is jsonb, so any JSON text of them stores the same value, and this one is also what
    /// the hash is taken of (one text written per reading, not two: perf, 2026-11-26).
    package var samplesJSON: String { String(decoding: samplesCanonicalText, as: UTF8.self) }

    /// The reading's part of its unique key (migration 0010): the first 64 bits of the MD5 of
    /// PostgreSQL's text of the samples as jsonb, as `meter_samples_hash(samples)` computes it.
    package var samplesHash: Int64 { Self.hash(canonicalText: samplesCanonicalText) }
    private var samplesCanonicalText: [UInt8]

    package init(sampledAt: Date, samples: [MeterSample]) {
        self.sampledAt = sampledAt
        self.samplesCanonicalText = Self.canonicalText(samples)
    }

    /// The samples grouped by timestamp (in the order each timestamp first appears), each group's
    /// sampled values in the order they came.
    package static func group(_ samples: [MeterSample]) -> [MeterReading] {
        guard let first = samples.first else { return [] }
        // Most messages carry one timestamp: one reading, no grouping.
        if samples.allSatisfy({ $0.sampledAt == first.sampledAt }) {
            return [MeterReading(sampledAt: first.sampledAt, samples: samples)]
        }
        var order: [Date] = []
        var byTime: [Date: [MeterSample]] = [:]
        for sample in samples {
            if byTime[sample.sampledAt] == nil { order.append(sample.sampledAt) }
            byTime[sample.sampledAt, default: []].append(sample)
        }
        return order.map { MeterReading(sampledAt: $0, samples: byTime[$0]!) }
    }

    /// The samples as PostgreSQL prints them as jsonb (`samples::text`): each object's keys
    /// ordered by length, then bytes (jsonb's order), ", " between elements and ": " after keys,
    /// strings escaped as `escape_json` does (the same escapes as `JSONValue.serialized`).
    package static func canonicalText(_ samples: [MeterSample]) -> [UInt8] {
        write(samples, .jsonbText)
    }

    /// How `write` lays a reading's samples out: each object's members in order (a key with its
    /// quotes and colon, and the field it holds) and what separates elements and members.
    private struct Layout {
        let separator: StaticString
        let members: [(key: StaticString, field: @Sendable (MeterSample) -> String?)]

        /// jsonb's key order, by length, then bytes: unit (4), phase, value (5), format (6),
        /// context (7), location (8), measurand (9); ", " and ": " as PostgreSQL prints them.
        static let jsonbText = Layout(separator: ", ", members: [
            (#""unit": "#, { $0.unit }), (#""phase": "#, { $0.phase }), (#""value": "#, { $0.value }),
            (#""format": "#, { $0.format }), (#""context": "#, { $0.context }), (#""location": "#, { $0.location }),
            (#""measurand": "#, { $0.measurand }),
        ])
    }

    private static func write(_ samples: [MeterSample], _ layout: Layout) -> [UInt8] {
        func append(_ string: StaticString, to out: inout [UInt8]) {
            out.append(contentsOf: UnsafeBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
        }
        var out: [UInt8] = []
        out.reserveCapacity(samples.count * 128)
        out.append(UInt8(ascii: "["))
        for (index, sample) in samples.enumerated() {
            if index > 0 { append(layout.separator, to: &out) }
            out.append(UInt8(ascii: "{"))
            var first = true
            for member in layout.members {
                guard let value = member.field(sample) else { continue }
                if !first { append(layout.separator, to: &out) }
                first = false
                append(member.key, to: &out)
                JSONText.appendString(value, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    /// `('x' || substr(md5(text), 1, 16))::bit(64)::bigint`: the digest's first 8 bytes, big-endian, signed.
    static func hash(canonicalText: [UInt8]) -> Int64 {
        let digest = Insecure.MD5.hash(data: canonicalText)
        var bits: UInt64 = 0
        for byte in digest.prefix(8) { bits = bits << 8 | UInt64(byte) }
        return Int64(bitPattern: bits)
    }

    /// A sampledValue as OCPP writes it: "value" and the optional fields that are set (the value
    /// `canonicalText` writes; the tests compare the two).
    package static func json(_ sample: MeterSample) -> JSONValue {
        var members: [(String, JSONValue)] = [("value", .string(sample.value))]
        if let context = sample.context { members.append(("context", .string(context))) }
        if let format = sample.format { members.append(("format", .string(format))) }
        if let measurand = sample.measurand { members.append(("measurand", .string(measurand))) }
        if let phase = sample.phase { members.append(("phase", .string(phase))) }
        if let location = sample.location { members.append(("location", .string(location))) }
        if let unit = sample.unit { members.append(("unit", .string(unit))) }
        return .object(JSONObject(members))
    }
}

/// One message's samples (a MeterValues waiting for a group commit, or StopTransaction's transactionData).
package struct MeterValuesWrite: Sendable {
    package var chargePointID: String
    package var connectorID: Int
    package var transactionID: Int?
    package var samples: [MeterSample]
    package var receivedAt: Date

    package init(chargePointID: String, connectorID: Int, transactionID: Int?, samples: [MeterSample], receivedAt: Date) {
        self.chargePointID = chargePointID
        self.connectorID = connectorID
        self.transactionID = transactionID
        self.samples = samples
        self.receivedAt = receivedAt
    }
}

struct StoreError: Error, CustomStringConvertible {
    let description: String
}

/// One BootNotification for `PostgresCentralSystemStore.bootWrites`.
package struct BootWrite: Sendable {
    package var chargePointID: String
    package var request: BootNotificationRequest
    package var bootedAt: Date

    /// The charger's boot data as a JSON object (`RecordBootsStatement`); absent fields are left out.
    var json: String {
        var object = JSONObject()
        object["chargePointId"] = .string(chargePointID)
        object["vendor"] = .string(request.chargePointVendor)
        object["model"] = .string(request.chargePointModel)
        object["serialNumber"] = request.chargePointSerialNumber.map(JSONValue.string)
        object["chargeBoxSerialNumber"] = request.chargeBoxSerialNumber.map(JSONValue.string)
        object["firmwareVersion"] = request.firmwareVersion.map(JSONValue.string)
        object["iccid"] = request.iccid.map(JSONValue.string)
        object["imsi"] = request.imsi.map(JSONValue.string)
        object["meterType"] = request.meterType.map(JSONValue.string)
        object["meterSerialNumber"] = request.meterSerialNumber.map(JSONValue.string)
        return JSONValue.object(object).serialized()
    }
}
