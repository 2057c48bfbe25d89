import Chargepath
import ChargepathPostgres
import Foundation
import OCPP16
import OCPPCore
import Testing

/// MeterValues are read straight from the payload (`OCPP16Handler.meterValues`), and Heartbeat
/// answered with a payload built directly, not through Codable: each must give exactly what
/// Codable gives (or, for an unreadable MeterValues, defer to it).
@Suite struct MeterValuesReadingTests {
    static func viaCodable(_ payload: JSONValue) throws -> (Int, Int?, [MeterSample]) {
        let request = try payload.decode(MeterValuesRequest.self, using: OCPP16Coding.valueDecoder)
        let samples = request.meterValue.flatMap { reading in
            reading.sampledValue.map {
                MeterSample(sampledAt: reading.timestamp, value: $0.value, context: $0.context?.rawValue, format: $0.format?.rawValue,
                            measurand: $0.measurand?.rawValue, phase: $0.phase?.rawValue, location: $0.location?.rawValue,
                            unit: $0.unit?.rawValue)
            }
        }
        return (request.connectorId, request.transactionId, samples)
    }

    @Test(arguments: [
        // A charger in a session (what the simulator sends).
        #"{"connectorId":1,"transactionId":4,"meterValue":[{"timestamp":"2026-11-25T21:05:43.740Z","sampledValue":[{"value":"4054865","context":"Sample.Periodic","format":"Raw","measurand":"Energy.Active.Import.Register","location":"Outlet","unit":"Wh"},{"value":"10398.5","context":"Sample.Periodic","measurand":"Power.Active.Import","unit":"W"},{"value":"34.6","measurand":"SoC","location":"EV","unit":"Percent"}]}]}"#,
        // No transaction, two readings, bare values.
        #"{"connectorId":0,"meterValue":[{"timestamp":"2026-11-25T12:00:00Z","sampledValue":[{"value":"1"}]},{"timestamp":"2026-11-25T12:15:00Z","sampledValue":[{"value":"2"},{"value":"3","phase":"L2-N"}]}]}"#,
        // An offset and fractional seconds; signed data.
        #"{"connectorId":2,"transactionId":77,"meterValue":[{"timestamp":"2026-11-25T14:00:00.123+02:00","sampledValue":[{"value":"AB12","format":"SignedData","context":"Transaction.End","measurand":"Energy.Active.Import.Register","phase":"L1","location":"Cable","unit":"kWh"}]}]}"#,
    ])
    func theSameAsCodable(_ text: String) throws {
        let payload = try JSONValue.parse(text)
        let fast = try #require(OCPP16Handler.meterValues(payload))
        let codable = try Self.viaCodable(payload)
        #expect(fast.connectorID == codable.0)
        #expect(fast.transactionID == codable.1)
        #expect(fast.samples == codable.2)
        #expect(!fast.samples.isEmpty)
    }

    @Test func theHeartbeatAnswerIsWhatCodableWrites() throws {
        for date in [Date(timeIntervalSince1970: 1_795_608_000.123), Date(timeIntervalSince1970: 0), Date()] {
            let codable = try JSONValue(encoding: HeartbeatResponse(currentTime: date), using: OCPP16Coding.valueEncoder)
            #expect(OCPP16Handler.heartbeatResponse(at: date) == codable)
            #expect(OCPP16Handler.heartbeatResponse(at: date).serialized() == codable.serialized())
        }
    }

    @Test func anUnreadableTimestampIsLeftToCodableAndItsError() throws {
        let payload = try JSONValue.parse(#"{"connectorId":1,"meterValue":[{"timestamp":"yesterday","sampledValue":[{"value":"1"}]}]}"#)
        #expect(OCPP16Handler.meterValues(payload) == nil)
        #expect(throws: (any Error).self) { try Self.viaCodable(payload) }
    }

    /// The stored JSON of a reading is written directly (`MeterReading.canonicalText`, the text
    /// PostgreSQL prints for the jsonb): it must hold exactly the `JSONValue` of each sampled
    /// value, escapes and all, and the samples must be grouped by timestamp in the order they came.
    @Test func aReadingsStoredJSONHoldsItsValues() throws {
        let t1 = Date(timeIntervalSince1970: 1_795_000_000.123)
        let t2 = t1.addingTimeInterval(60)
        let samples = [
            MeterSample(sampledAt: t1, value: "4054865", context: "Sample.Periodic", format: "Raw",
                        measurand: "Energy.Active.Import.Register", phase: "L1-N", location: "Outlet", unit: "Wh"),
            MeterSample(sampledAt: t2, value: "quote \" backslash \\ tab \t nl \n bell \u{07}"),
            MeterSample(sampledAt: t1, value: "é ✓ 𝄞 /slash", unit: "W"),
            MeterSample(sampledAt: t2, value: "", measurand: "SoC"),
        ]
        let readings = MeterReading.group(samples)
        #expect(readings.map(\.sampledAt) == [t1, t2])
        #expect(try JSONValue.parse(readings[0].samplesJSON) == .array([samples[0], samples[2]].map(MeterReading.json)))
        #expect(try JSONValue.parse(readings[1].samplesJSON) == .array([samples[1], samples[3]].map(MeterReading.json)))
        #expect(readings[1].samplesJSON.contains(#""value": "quote \" backslash \\ tab \t nl \n bell \u0007""#))
        // One timestamp (most messages): one reading, the same text.
        let single = MeterReading.group([samples[0], samples[2]])
        #expect(single == [readings[0]])
        #expect(MeterReading.group([]).isEmpty)
    }
}
