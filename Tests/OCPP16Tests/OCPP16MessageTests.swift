import Foundation
import OCPP16
import OCPPCore
import Testing

@Suite("OCPP 1.6 generated messages")
struct OCPP16MessageTests {
    @Test func actionCatalogueIsComplete() {
        #expect(OCPP16Action.allCases.count == 39)
        #expect(Set(OCPP16Action.allCases.map(\.rawValue)).count == 39)
        #expect(OCPP16Action.allCases.filter(\.isSecurityExtension).count == 11)
        #expect(OCPP16Action.dataTransfer.direction == .both)
        #expect(OCPP16Action.bootNotification.direction == .chargePointToCentralSystem)
        #expect(OCPP16Action.signCertificate.direction == .chargePointToCentralSystem)
        #expect(OCPP16Action.certificateSigned.direction == .centralSystemToChargePoint)
        #expect(OCPP16Action.remoteStartTransaction.direction == .centralSystemToChargePoint)
        let cpToCs = Set(OCPP16Action.allCases.filter { $0.direction == .chargePointToCentralSystem }.map(\.rawValue))
        #expect(cpToCs == [
            "Authorize", "BootNotification", "DiagnosticsStatusNotification",
            "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction",
            "StatusNotification", "StopTransaction", "SecurityEventNotification",
            "SignCertificate", "SignedFirmwareStatusNotification", "LogStatusNotification",
        ])
    }

    @Test(arguments: OCPP16Action.allCases)
    func actionHasSchemasAndMatchingTypes(_ action: OCPP16Action) throws {
        #expect(OCPP16Schemas.request(for: action.rawValue) != nil)
        #expect(OCPP16Schemas.response(for: action.rawValue) != nil)
        #expect(action.requestType.action == action.rawValue)
        #expect(OCPP16Action(rawValue: action.requestType.action) == action)
        #expect(ObjectIdentifier(responseType(of: action.requestType)) == ObjectIdentifier(action.responseType))
        // Schemas are valid JSON objects.
        for kind in SchemaKind.allCases {
            let text = try #require(schemaText(action, kind))
            #expect(try jsonObject(Data(text.utf8)) is [String: Any])
        }
    }

    @Test func unknownActionHasNoSchema() {
        #expect(OCPP16Schemas.request(for: "NoSuchAction") == nil)
        #expect(OCPP16Schemas.response(for: "NoSuchAction") == nil)
        #expect(OCPP16Schemas.request(for: "BootNotificationResponse") == nil)
    }

    /// Full sample (every property present) and minimal sample (required only)
    /// decode into the typed struct and re-encode to a semantically equal JSON object.
    @Test(arguments: OCPP16Action.allCases, SchemaKind.allCases)
    func sampleRoundTrip(_ action: OCPP16Action, _ kind: SchemaKind) throws {
        let sampler = try SchemaSampler(schemaText: try #require(schemaText(action, kind)))
        for includeOptional in [true, false] {
            let sample = try sampler.sample(includeOptional: includeOptional)
            for decoding in PayloadDecoding.allCases {
                let reencoded = try roundTrip(payloadType(action, kind), try jsonData(sample), decoding: decoding)
                #expect(jsonEqual(sample, reencoded),
                        "\(action.rawValue) \(kind) optional=\(includeOptional) \(decoding): \(sample) != \(reencoded)")
            }
        }
    }

    @Test(arguments: OCPP16Action.allCases, SchemaKind.allCases)
    func missingRequiredFieldThrows(_ action: OCPP16Action, _ kind: SchemaKind) throws {
        let sampler = try SchemaSampler(schemaText: try #require(schemaText(action, kind)))
        let type = payloadType(action, kind)
        for (path, payload) in try sampler.samplesMissingOneRequiredField() {
            for decoding in PayloadDecoding.allCases {
                #expect(!decodes(type, try jsonData(payload), decoding: decoding), "\(action.rawValue) \(kind) \(decoding): missing \(path) decoded")
            }
        }
    }

    @Test(arguments: PayloadDecoding.allCases)
    func missingRequiredFieldSpotChecks(_ decoder: PayloadDecoding) throws {
        #expect(throws: DecodingError.self) {
            try decoder.decode(BootNotificationRequest.self, from: Data(#"{"chargePointVendor":"V"}"#.utf8))
        }
        #expect(throws: DecodingError.self) {
            try decoder.decode(AuthorizeResponse.self, from: Data(#"{"idTagInfo":{"parentIdTag":"p"}}"#.utf8))
        }
        #expect(throws: DecodingError.self) {
            try decoder.decode(MeterValuesRequest.self, from: Data(
                #"{"connectorId":1,"meterValue":[{"timestamp":"2026-11-25T12:00:00Z","sampledValue":[{}]}]}"#.utf8))
        }
    }

    @Test(arguments: PayloadDecoding.allCases)
    func decodingIsStrictAboutTypes(_ decoder: PayloadDecoding) throws {
        // integer as string
        #expect(throws: DecodingError.self) {
            try decoder.decode(StatusNotificationRequest.self, from: Data(
                #"{"connectorId":"1","errorCode":"NoError","status":"Available"}"#.utf8))
        }
        // unknown enum value
        #expect(throws: DecodingError.self) {
            try decoder.decode(StatusNotificationRequest.self, from: Data(
                #"{"connectorId":1,"errorCode":"NoError","status":"Sleeping"}"#.utf8))
        }
        // number instead of a date-time string
        #expect(throws: DecodingError.self) {
            try decoder.decode(HeartbeatRequest.Response.self, from: Data(#"{"currentTime":1}"#.utf8))
        }
        // non-integral number for an integer field
        #expect(throws: DecodingError.self) {
            try decoder.decode(RemoteStopTransactionRequest.self, from: Data(#"{"transactionId":5.5}"#.utf8))
        }
        // invalid date-time string
        #expect(throws: DecodingError.self) {
            try decoder.decode(HeartbeatResponse.self, from: Data(#"{"currentTime":"yesterday"}"#.utf8))
        }
        // 5.0 is an acceptable JSON integer
        let stop = try decoder.decode(RemoteStopTransactionRequest.self, from: Data(#"{"transactionId":5.0}"#.utf8))
        #expect(stop.transactionId == 5)
        // integer JSON for a number field
        let period = try decoder.decode(ChargingSchedulePeriod.self, from: Data(#"{"startPeriod":0,"limit":16}"#.utf8))
        #expect(period.limit == 16)
    }

    @Test func encodingShape() throws {
        let encoder = OCPP16Coding.makeEncoder()
        encoder.outputFormatting.insert(.sortedKeys)
        let date = try #require(OCPP16DateTime.parse("2026-11-25T12:00:00Z"))

        let heartbeat = try encoder.encode(HeartbeatResponse(currentTime: date))
        #expect(String(decoding: heartbeat, as: UTF8.self) == #"{"currentTime":"2026-11-25T12:00:00.000Z"}"#)

        let empty = try encoder.encode(HeartbeatRequest())
        #expect(String(decoding: empty, as: UTF8.self) == "{}")

        let diagnostics = try encoder.encode(GetDiagnosticsRequest(location: "ftp://host/path"))
        #expect(String(decoding: diagnostics, as: UTF8.self) == #"{"location":"ftp://host/path"}"#)

        let status = StatusNotificationRequest(connectorId: 1, errorCode: .noError, status: .suspendedEVSE)
        #expect(String(decoding: try encoder.encode(status), as: UTF8.self)
            == #"{"connectorId":1,"errorCode":"NoError","status":"SuspendedEVSE"}"#)
    }

    @Test func typedConstructionRoundTrip() throws {
        let date = try #require(OCPP16DateTime.parse("2026-11-25T12:00:00.123Z"))
        let request = MeterValuesRequest(
            connectorId: 1,
            transactionId: 42,
            meterValue: [MeterValue(timestamp: date, sampledValue: [
                SampledValue(value: "1234.5", context: .samplePeriodic, measurand: .energyActiveImportRegister,
                             phase: .l1N, unit: .kWh),
                SampledValue(value: "50", unit: .hertz),
            ])]
        )
        let data = try OCPP16Coding.makeEncoder().encode(request)
        let decoded = try OCPP16Coding.makeDecoder().decode(MeterValuesRequest.self, from: data)
        #expect(decoded == request)

        let profile = SetChargingProfileRequest(connectorId: 0, csChargingProfiles: ChargingProfile(
            chargingProfileId: 1, stackLevel: 0, chargingProfilePurpose: .txDefaultProfile,
            chargingProfileKind: .recurring, recurrencyKind: .daily,
            chargingSchedule: ChargingSchedule(chargingRateUnit: .a, chargingSchedulePeriod: [
                ChargingSchedulePeriod(startPeriod: 0, limit: 16.1),
            ])))
        let profileData = try OCPP16Coding.makeEncoder().encode(profile)
        #expect(try OCPP16Coding.makeDecoder().decode(SetChargingProfileRequest.self, from: profileData) == profile)
    }

    @Test func enumCaseNaming() {
        #expect(ChargePointStatus.suspendedEVSE.rawValue == "SuspendedEVSE")
        #expect(ChargePointStatus.charging.rawValue == "Charging")
        #expect(Measurand.energyActiveImportRegister.rawValue == "Energy.Active.Import.Register")
        #expect(Phase.l1N.rawValue == "L1-N")
        #expect(UnitOfMeasure.wh.rawValue == "Wh")
        #expect(UnitOfMeasure.kWh.rawValue == "kWh")
        #expect(UnitOfMeasure.var.rawValue == "var")
        #expect(UnitOfMeasure.celsius.rawValue == "Celsius")
        #expect(UnitOfMeasure.celcius.rawValue == "Celcius")
        #expect(Reason.evDisconnected.rawValue == "EVDisconnected")
        #expect(HashAlgorithm.sha256.rawValue == "SHA256")
        #expect(UnitOfMeasure.allCases.count == 18)
        #expect(StopTransactionUnitOfMeasure.allCases.count == 17)
    }

    /// The embedded schema texts are byte-identical to the files they were generated
    /// from (skipped when the schema directory is not next to the package).
    @Test(arguments: OCPP16Action.allCases)
    func embeddedSchemasMatchFiles(_ action: OCPP16Action) throws {
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent("ocpp-schemas/v16")
        guard FileManager.default.fileExists(atPath: dir.path) else { return }
        for (kind, suffix) in [(SchemaKind.request, ""), (.response, "Response")] {
            let file = dir.appendingPathComponent("\(action.rawValue)\(suffix).json")
            let bytes = try Data(contentsOf: file)
            let text = try #require(schemaText(action, kind))
            #expect(Data(text.utf8) == bytes, "\(file.lastPathComponent) differs from embedded text")
        }
    }
}
