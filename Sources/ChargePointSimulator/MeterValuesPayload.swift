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

extension MeterValuesRequest {
    /// The whole CALL frame, `[2,"<id>","MeterValues",<payload>]`, written straight to bytes: the
    /// same bytes as `OCPPFrame.call(id:action:payload:).encode()` with `payload`, without building
    /// the `JSONValue` tree (that tree and its serialization were a seventh of the simulator's CPU
    /// under a fleet's sessions, perf 2026-11-26). MeterValuesPayloadTests compares the two.
    func callFrame(id: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96 + meterValue.reduce(0) { $0 + 48 + $1.sampledValue.count * 96 })
        out.append(contentsOf: #"[2,"#.utf8)
        JSONText.appendString(id, to: &out)
        out.append(contentsOf: #","MeterValues",{"connectorId":"#.utf8)
        out.append(contentsOf: String(connectorId).utf8)
        if let transactionId {
            out.append(contentsOf: #","transactionId":"#.utf8)
            out.append(contentsOf: String(transactionId).utf8)
        }
        out.append(contentsOf: #","meterValue":["#.utf8)
        for (index, value) in meterValue.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"timestamp":"#.utf8)
            JSONText.appendString(OCPP16DateTime.format(value.timestamp), to: &out)
            out.append(contentsOf: #","sampledValue":["#.utf8)
            for (index, sample) in value.sampledValue.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                sample.append(to: &out)
            }
            out.append(contentsOf: "]}".utf8)
        }
        out.append(contentsOf: "]}]".utf8)
        return out
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

    /// `payload`, serialized, appended to `out`.
    func append(to out: inout [UInt8]) {
        out.append(contentsOf: #"{"value":"#.utf8)
        JSONText.appendString(value, to: &out)
        func member(_ key: StaticString, _ text: String?) {
            guard let text else { return }
            out.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            JSONText.appendString(text, to: &out)
        }
        member(#","context":"#, context?.rawValue)
        member(#","format":"#, format?.rawValue)
        member(#","measurand":"#, measurand?.rawValue)
        member(#","phase":"#, phase?.rawValue)
        member(#","location":"#, location?.rawValue)
        member(#","unit":"#, unit?.rawValue)
        out.append(UInt8(ascii: "}"))
    }
}
