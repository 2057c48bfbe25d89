public import Foundation
public import OCPP16
public import OCPPCore

/// An OCPP error to answer a CALL with (a CALLERROR), spelled per version on the wire.
public struct OCPPCallError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: OCPPErrorCode
    public var message: String
    public init(_ code: OCPPErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code): \(message)" }
}

/// What one charger connection knows about itself while it is open.
public struct OCPP16SessionState: Sendable {
    public let chargePointID: String
    /// Whether this charger may send more than BootNotification (Accepted now or before).
    public var isAccepted: Bool = false
    /// Whether the stored registration decision has been read for this connection.
    public var knowsRegistration: Bool = false

    public init(chargePointID: String) {
        self.chargePointID = chargePointID
    }
}

/// The default handler: answers every charger-initiated OCPP 1.6 action as the specification says,
/// after persisting what matters through the `CentralSystemStore`.
public struct OCPP16Handler: Sendable {
    public struct Configuration: Sendable {
        /// The heartbeat interval BootNotification hands out (`--heartbeat-interval`).
        public var heartbeatInterval: Int
        /// The interval a Pending or Rejected charger waits before booting again.
        public var retryInterval: Int

        public init(heartbeatInterval: Int = 300, retryInterval: Int = 60) {
            self.heartbeatInterval = heartbeatInterval
            self.retryInterval = retryInterval
        }
    }

    let store: any CentralSystemStore
    let configuration: Configuration
    let now: @Sendable () -> Date

    public init(store: any CentralSystemStore, configuration: Configuration = .init(), now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.configuration = configuration
        self.now = now
    }

    /// Whether answering `action` in `state` is computation only, with no storage to wait for: a
    /// Heartbeat of an accepted charger (its sign of life is written in batches elsewhere). Such a
    /// CALL cannot hang, so the session answers it without a deadline around it.
    public static func answersWithoutStorage(_ action: String, state: OCPP16SessionState) -> Bool {
        action == OCPP16Action.heartbeat.rawValue && state.isAccepted
    }

    /// The answer to one CALL, and what storing it learnt on the way.
    public struct Answer: Sendable {
        /// The CALLRESULT's payload.
        public var payload: JSONValue
        /// The workflow executions waiting for this message, when the statement that stored it
        /// read them too (MeterValues, StatusNotification, Start- and StopTransaction); nil when
        /// nobody looked.
        public var waitingWorkflows: [WaitingWorkflow]?
    }

    /// Answers one CALL whose payload already passed schema validation.
    public func handle(action: OCPP16Action, payload: JSONValue, state: inout OCPP16SessionState) async throws -> Answer {
        var waiting: [WaitingWorkflow]?
        let result = try await answer(action: action, payload: payload, state: &state, waiting: &waiting)
        return Answer(payload: result, waitingWorkflows: waiting)
    }

    private func answer(action: OCPP16Action, payload: JSONValue, state: inout OCPP16SessionState, waiting: inout [WaitingWorkflow]?) async throws -> JSONValue {
        let chargePoint = state.chargePointID
        if action != .bootNotification, !state.isAccepted {
            if !state.knowsRegistration {
                // A charger that reconnects without booting again is accepted as it was.
                state.isAccepted = try await store.registrationStatus(chargePointID: chargePoint) == .accepted
                state.knowsRegistration = true
            }
            guard state.isAccepted else {
                throw OCPPCallError(.securityError, "This charge point is not accepted: send BootNotification first and wait for Accepted.")
            }
        }
        let received = now()
        switch action {
        case .bootNotification:
            let request = try decode(BootNotificationRequest.self, payload)
            let status = try await store.recordBoot(chargePointID: chargePoint, request, at: received)
            state.isAccepted = status == .accepted
            state.knowsRegistration = true
            let interval = status == .accepted ? configuration.heartbeatInterval : configuration.retryInterval
            return try encode(BootNotificationResponse(status: status, currentTime: received, interval: interval))

        case .heartbeat:
            // last_seen_at is written in batches for every message (ConnectionRegistry.markActive).
            return Self.heartbeatResponse(at: received)

        case .statusNotification:
            let request = try decode(StatusNotificationRequest.self, payload)
            waiting = try await store.recordStatus(chargePointID: chargePoint, request, receivedAt: received)
            return try encode(StatusNotificationResponse())

        case .authorize:
            let request = try decode(AuthorizeRequest.self, payload)
            return try encode(AuthorizeResponse(idTagInfo: try await store.authorize(idTag: request.idTag, at: received)))

        case .startTransaction:
            let request = try decode(StartTransactionRequest.self, payload)
            let started = try await store.startTransaction(chargePointID: chargePoint, request, receivedAt: received)
            waiting = started.waitingWorkflows
            return try encode(StartTransactionResponse(idTagInfo: started.idTagInfo, transactionId: started.transactionID))

        case .meterValues:
            let request = try Self.meterValues(payload) ?? {
                let request = try decode(MeterValuesRequest.self, payload)
                return (request.connectorId, request.transactionId, request.meterValue.flatMap { MeterSample.all(at: $0.timestamp, $0.sampledValue) })
            }()
            waiting = try await store.recordMeterValues(
                chargePointID: chargePoint, connectorID: request.connectorID, transactionID: request.transactionID,
                samples: request.samples, receivedAt: received
            )
            return try encode(MeterValuesResponse())

        case .stopTransaction:
            let request = try decode(StopTransactionRequest.self, payload)
            let samples = (request.transactionData ?? []).flatMap { MeterSample.all(at: $0.timestamp, $0.sampledValue) }
            // Whatever we knew of the transaction, the charger gets an answer it will not retry.
            let stopped = try await store.stopTransaction(chargePointID: chargePoint, request, samples: samples, receivedAt: received)
            waiting = stopped.waitingWorkflows
            return try encode(StopTransactionResponse(idTagInfo: stopped.idTagInfo))

        case .dataTransfer:
            let request = try decode(DataTransferRequest.self, payload)
            try await store.recordMessage(chargePointID: chargePoint, action: action.rawValue, payload: payload.serialized(), receivedAt: received)
            _ = request
            // No vendor-specific handler is registered yet.
            return try encode(DataTransferResponse(status: .unknownVendorId))

        case .diagnosticsStatusNotification:
            try await record(action, payload, chargePoint, received)
            return try encode(DiagnosticsStatusNotificationResponse())
        case .firmwareStatusNotification:
            try await record(action, payload, chargePoint, received)
            return try encode(FirmwareStatusNotificationResponse())
        case .securityEventNotification:
            try await record(action, payload, chargePoint, received)
            return try encode(SecurityEventNotificationResponse())
        case .signedFirmwareStatusNotification:
            try await record(action, payload, chargePoint, received)
            return try encode(SignedFirmwareStatusNotificationResponse())
        case .logStatusNotification:
            try await record(action, payload, chargePoint, received)
            return try encode(LogStatusNotificationResponse())
        case .signCertificate:
            // Recorded; certificate management (and so Accepted) comes with a later issue.
            try await record(action, payload, chargePoint, received)
            return try encode(SignCertificateResponse(status: .rejected))

        default:
            throw OCPPCallError(.notSupported, "\(action.rawValue) is sent by a central system, not by a charge point.")
        }
    }

    private func record(_ action: OCPP16Action, _ payload: JSONValue, _ chargePoint: String, _ at: Date) async throws {
        try await store.recordMessage(chargePointID: chargePoint, action: action.rawValue, payload: payload.serialized(), receivedAt: at)
    }

    /// The answer to a BootNotification that could not be stored (the database failed, or did
    /// not answer within the CALL's time limit): Pending, the status OCPP 1.6 gives for "not yet
    /// ready to accept the charge point", instead of an error. The charger boots again after the
    /// interval, where what firmware does after a CALLERROR varies (some retry at once, some give
    /// up). The charger's session stays as it was (one that was accepted before is still accepted
    /// for its other messages). A boot past the time limit may still be stored once the database
    /// answers (its write is not withdrawn), with the Provisioning it asks for: the charger, told
    /// Pending, may then get that Provisioning's calls, which OCPP 1.6 allows in Pending, and
    /// another one after it boots again. The interval is a random point
    /// (`jitter`, 0 to 1) between half the retry interval and all of it, so that chargers a
    /// stalled database answered together do not all come back in the same second.
    /// Its `currentTime` comes from the handler's clock, as every other answer's does.
    public func bootPendingWhileUnavailable(jitter: Double) -> JSONValue {
        let retry = Double(max(1, configuration.retryInterval))
        let interval = max(1, Int((retry / 2 + retry / 2 * min(max(jitter, 0), 1)).rounded()))
        return .object(JSONObject([
            ("status", .string(RegistrationStatus.pending.rawValue)),
            ("currentTime", .string(OCPP16DateTime.format(now()))),
            ("interval", .integer(Int64(interval))),
        ]))
    }

    /// `HeartbeatResponse(currentTime:)` as its encoding gives it, built directly: the most frequent
    /// answer of all, and Codable's generic machinery was 5% of the server's CPU in the heartbeat
    /// benchmark (MeterValuesReadingTests checks both give the same payload).
    package static func heartbeatResponse(at date: Date) -> JSONValue {
        .object(JSONObject([("currentTime", .string(OCPP16DateTime.format(date)))]))
    }

    /// A MeterValues request read straight from its payload (already valid against the schema):
    /// what decoding `MeterValuesRequest` gives, without Codable's generic machinery, which took 9%
    /// of the server's CPU under a fleet's MeterValues. nil for anything it does not expect (a
    /// timestamp it cannot read, say): the caller decodes with Codable then, for the same error.
    package static func meterValues(_ payload: JSONValue) -> (connectorID: Int, transactionID: Int?, samples: [MeterSample])? {
        guard let connector = payload["connectorId"]?.int64Value, let readings = payload["meterValue"]?.arrayValue else { return nil }
        var transactionID: Int?
        if let transaction = payload["transactionId"], !transaction.isNull {
            guard let id = transaction.int64Value else { return nil }
            transactionID = Int(id)
        }
        var samples: [MeterSample] = []
        samples.reserveCapacity(readings.count * 4)
        for reading in readings {
            guard let text = reading["timestamp"]?.stringValue, let timestamp = OCPP16DateTime.parse(text),
                let values = reading["sampledValue"]?.arrayValue
            else { return nil }
            for value in values {
                guard let object = value.objectValue, let number = object["value"]?.stringValue else { return nil }
                func field(_ key: String) -> String?? {
                    guard let member = object[key], !member.isNull else { return .some(nil) }
                    return member.stringValue.map { .some($0) } ?? nil
                }
                guard let context = field("context"), let format = field("format"), let measurand = field("measurand"),
                    let phase = field("phase"), let location = field("location"), let unit = field("unit")
                else { return nil }
                samples.append(MeterSample(
                    sampledAt: timestamp, value: number, context: context, format: format, measurand: measurand,
                    phase: phase, location: location, unit: unit
                ))
            }
        }
        return (Int(connector), transactionID, samples)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ payload: JSONValue) throws -> T {
        do {
            return try payload.decode(type, using: OCPP16Coding.valueDecoder)
        } catch {
            // The schema accepted it, so this is a shape Codable is stricter about (e.g. a date).
            throw OCPPCallError(.formationViolation, "The payload could not be read: \(error)")
        }
    }

    private func encode(_ value: some Encodable) throws -> JSONValue {
        try JSONValue(encoding: value, using: OCPP16Coding.valueEncoder)
    }

}

/// The fields MeterValues' and StopTransaction's sampled values share (the schemas differ only in
/// the unit enum, so the generator made two types).
protocol SampledValueFields {
    associatedtype Unit: RawRepresentable<String>
    var value: String { get }
    var context: ReadingContext? { get }
    var format: ValueFormat? { get }
    var measurand: Measurand? { get }
    var phase: Phase? { get }
    var location: Location? { get }
    var unit: Unit? { get }
}

extension SampledValue: SampledValueFields {}
extension StopTransactionSampledValue: SampledValueFields {}

extension MeterSample {
    static func all(at timestamp: Date, _ values: [some SampledValueFields]) -> [MeterSample] {
        values.map { sample in
            MeterSample(
                sampledAt: timestamp, value: sample.value, context: sample.context?.rawValue, format: sample.format?.rawValue,
                measurand: sample.measurand?.rawValue, phase: sample.phase?.rawValue, location: sample.location?.rawValue,
                unit: sample.unit?.rawValue
            )
        }
    }
}
