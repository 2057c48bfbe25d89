@testable import ChargePointSimulator
import Foundation
import OCPP16
import OCPPCore
import Testing

/// The simulator builds its MeterValues payloads directly (`MeterValuesRequest.payload`): they must
/// be exactly what encoding the request through Codable gives, byte for byte on the wire.
struct MeterValuesPayloadTests {
    @Test func theSameAsCodable() throws {
        let at = Date(timeIntervalSince1970: 1_795_608_000.123)
        let requests = [
            MeterValuesRequest(connectorId: 1, transactionId: 42, meterValue: [
                MeterValue(timestamp: at, sampledValue: [
                    SampledValue(value: "4054865", context: .samplePeriodic, format: .raw, measurand: .energyActiveImportRegister, location: .outlet, unit: .wh),
                    SampledValue(value: "3\"4.6\n", measurand: .soC, location: .ev, unit: .percent),
                    SampledValue(value: "15.12", measurand: .currentImport, phase: .l1, unit: .a),
                ]),
                MeterValue(timestamp: at.addingTimeInterval(60), sampledValue: [SampledValue(value: "1")]),
            ]),
            MeterValuesRequest(connectorId: 0, meterValue: [MeterValue(timestamp: at, sampledValue: [SampledValue(value: "7", format: .signedData)])]),
        ]
        for request in requests {
            let codable = try JSONValue(encoding: request, using: OCPP16Coding.valueEncoder)
            #expect(request.payload == codable)
            #expect(request.payload.serialized() == codable.serialized())
            // The frame the simulator sends, written directly, is the frame of the Codable payload.
            for id in ["17", "a\"b\\c/é"] {
                let frame = OCPPFrame.call(id: id, action: "MeterValues", payload: codable).encode()
                #expect(String(decoding: request.callFrame(id: id), as: UTF8.self) == frame)
            }
        }
    }
}
