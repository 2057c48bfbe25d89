import OCPP16
import OCPPCore

extension MeterValuesRequest {
    /// The payload as `JSONValue(encoding:using: OCPP16Coding.valueEncoder)` writes it, built
    /// directly: encoding the fleet's MeterValues through Codable was a fifth of the simulator's
    /// CPU, and the simulator shares the machine with the system it measures.
    /// (MeterValuesPayloadTests checks that both give the same payload.)
    var payload: JSONValue {
        var members: [(String, JSONValue)] = [("connectorId", .integer(Int64(connectorId)))]
        if let transactionId { members.append(("transactionId", .integer(Int64(transactionId)))) }
        members.append(("meterValue", .array(meterValue.map(\.payload))))
        return .object(JSONObject(members))
    }
}

extension MeterValue {
    var payload: JSONValue {
        .object(JSONObject([
            ("timestamp", .string(OCPP16DateTime.format(timestamp))),
            ("sampledValue", .array(sampledValue.map(\.payload))),
        ]))
    }
}

extension SampledValue {
    var payload: JSONValue {
        var members: [(String, JSONValue)] = [("value", .string(value))]
        if let context { members.append(("context", .string(context.rawValue))) }
        if let format { members.append(("format", .string(format.rawValue))) }
        if let measurand { members.append(("measurand", .string(measurand.rawValue))) }
        if let phase { members.append(("phase", .string(phase.rawValue))) }
        if let location { members.append(("location", .string(location.rawValue))) }
        if let unit { members.append(("unit", .string(unit.rawValue))) }
        return .object(JSONObject(members))
    }
}
