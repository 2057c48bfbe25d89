import Foundation
import OCPPCore
import Testing

/// `JSONValueDecoder` reads payloads straight from the parsed tree; it must read what `JSONDecoder`
/// reads from the same text, refuse what it refuses, and say where the problem is.
struct JSONValueDecoderTests {
    struct Reading: Codable, Equatable {
        enum Unit: String, Codable { case wh = "Wh", kwh = "kWh" }
        var value: String
        var unit: Unit?
        var phase: String?
    }

    struct Sample: Codable, Equatable {
        var connectorId: Int
        var transactionId: Int?
        var at: Date
        var ratio: Double
        var flags: [Bool]
        var readings: [Reading]
        var nested: [[Int]]
        var extra: JSONValue?
    }

    let decoder = JSONValueDecoder(parseDate: { text in text == "2026-11-25T12:00:00Z" ? Date(timeIntervalSince1970: 1_795_608_000) : nil })

    private func foundation() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { d in
            let text = try d.singleValueContainer().decode(String.self)
            guard text == "2026-11-25T12:00:00Z" else {
                throw DecodingError.dataCorrupted(.init(codingPath: d.codingPath, debugDescription: "bad date"))
            }
            return Date(timeIntervalSince1970: 1_795_608_000)
        }
        return decoder
    }

    private func both(_ text: String) throws -> (Sample?, Sample?) {
        let tree = try JSONValue.parse(Data(text.utf8))
        return (try? tree.decode(Sample.self, using: decoder), try? foundation().decode(Sample.self, from: Data(text.utf8)))
    }

    @Test func readsWhatJSONDecoderReads() throws {
        let text = #"""
            {"connectorId": 2, "at": "2026-11-25T12:00:00Z", "ratio": 3, "flags": [true, false],
             "readings": [{"value": "12.5", "unit": "kWh"}, {"value": "7", "phase": null, "ignored": 1}],
             "nested": [[1, 2], [], [3.0]], "transactionId": null, "unknown": {"a": [1]},
             "extra": {"z": 1, "a": [true, null, "s"]}}
            """#
        let (ours, theirs) = try both(text)
        let sample = try #require(ours)
        #expect(sample == theirs)
        #expect(sample.connectorId == 2 && sample.transactionId == nil && sample.ratio == 3)
        #expect(sample.readings == [Reading(value: "12.5", unit: .kwh), Reading(value: "7")])
        #expect(sample.nested == [[1, 2], [], [3]])
        // An embedded free-form value keeps its members' order.
        #expect(sample.extra?.objectValue?.keys == ["z", "a"])
    }

    @Test(arguments: [
        (#""connectorId": "2""#, "connectorId", "a string for an integer"),
        (#""connectorId": 2.5"#, "connectorId", "a fraction for an integer"),
        (#""connectorId": 1e30"#, "connectorId", "an integer too large"),
        (#""connectorId": null"#, "connectorId", "null for a required integer"),
        (#""ratio": "1""#, "ratio", "a string for a number"),
        (#""flags": [true, 1]"#, "flags.Index 1", "a number in an array of booleans"),
        (#""readings": [{"value": "1", "unit": "MWh"}]"#, "readings.Index 0.unit", "an enum value the type lacks"),
        (#""readings": {"value": "1"}"#, "readings", "an object for an array"),
        (#""at": "yesterday""#, "at", "a date the parser refuses"),
        (#""nested": [[1], ["x"]]"#, "nested.Index 1.Index 0", "a string deep in nested arrays"),
    ])
    func refusesWhatJSONDecoderRefusesAndSaysWhere(_ change: String, _ path: String, _ why: String) throws {
        var members = [
            "connectorId": #""connectorId": 2"#, "at": #""at": "2026-11-25T12:00:00Z""#, "ratio": #""ratio": 1"#,
            "flags": #""flags": []"#, "readings": #""readings": []"#, "nested": #""nested": []"#,
        ]
        let key = String(change.dropFirst().prefix { $0 != "\"" })
        members[key] = change
        let text = "{" + members.values.sorted().joined(separator: ", ") + "}"
        let (ours, theirs) = try both(text)
        #expect(ours == nil && theirs == nil, "\(why): \(text)")
        do {
            _ = try JSONValue.parse(Data(text.utf8)).decode(Sample.self, using: decoder)
        } catch let error as DecodingError {
            let context: DecodingError.Context? = switch error {
            case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): c
            case .keyNotFound: nil
            @unknown default: nil
            }
            #expect(context?.codingPath.map(\.stringValue).joined(separator: ".") == path, "\(why): \(error)")
        }
    }

    @Test func aMissingRequiredKeyIsKeyNotFound() throws {
        let tree = try JSONValue.parse(Data(#"{"value": "1", "unit": "Wh"}"#.utf8))
        #expect(throws: Never.self) { try tree.decode(Reading.self, using: decoder) }
        do {
            _ = try JSONValue.parse(Data(#"{"unit": "Wh"}"#.utf8)).decode(Reading.self, using: decoder)
            Issue.record("decoded without its required key")
        } catch DecodingError.keyNotFound(let key, _) {
            #expect(key.stringValue == "value")
        }
    }
}

/// `JSONValueEncoder` builds the tree `JSONEncoder` would write, without the text in between.
struct JSONValueEncoderTests {
    struct Limits: Codable, Equatable {
        var maxEnergyWh: Int?
        var ratio: Double
        var at: Date
        var tags: [String]
        var extra: JSONValue
    }

    /// Writes through nested containers obtained before their contents are written.
    struct Custom: Encodable {
        enum Keys: String, CodingKey { case outer, list, last }
        func encode(to encoder: any Encoder) throws {
            var root = encoder.container(keyedBy: Keys.self)
            var outer = root.nestedContainer(keyedBy: Keys.self, forKey: .outer)
            var list = root.nestedUnkeyedContainer(forKey: .list)
            try root.encode(1, forKey: .last)
            try outer.encode("x", forKey: .last)
            try list.encode(true)
            var inner = list.nestedUnkeyedContainer()
            try inner.encode(2.5)
            try list.encodeNil()
        }
    }

    let encoder = JSONValueEncoder(formatDate: { _ in "2026-11-25T12:00:00.000Z" })

    @Test func writesWhatJSONEncoderWrites() throws {
        let value = Limits(maxEnergyWh: nil, ratio: 16, at: Date(timeIntervalSince1970: 0), tags: ["a", "b"], extra: ["z": 1, "a": [true, nil]])
        let tree = try encoder.encode(value)
        // nil omitted, members in declaration order, 16.0 written as 16, the date through formatDate,
        // an embedded JSONValue as it is.
        #expect(tree.serialized() == #"{"ratio":16,"at":"2026-11-25T12:00:00.000Z","tags":["a","b"],"extra":{"z":1,"a":[true,null]}}"#)
        let foundation = JSONEncoder()
        foundation.dateEncodingStrategy = .custom { _, e in var c = e.singleValueContainer(); try c.encode("2026-11-25T12:00:00.000Z") }
        #expect(try JSONValue.parse(foundation.encode(value)) == tree)
        #expect(try encoder.encode(Limits(maxEnergyWh: 7, ratio: 0.25, at: .now, tags: [], extra: nil))["maxEnergyWh"] == 7)
        #expect(try encoder.encode(Limits(maxEnergyWh: 7, ratio: 0.25, at: .now, tags: [], extra: nil))["ratio"] == .double(0.25))
    }

    @Test func nestedContainersWriteIntoTheirParent() throws {
        #expect(try encoder.encode(Custom()).serialized() == #"{"outer":{"last":"x"},"list":[true,[2.5],null],"last":1}"#)
    }

    @Test func aNonFiniteNumberIsAnErrorAtItsPath() throws {
        do {
            _ = try encoder.encode(["ok": 1.0, "bad": Double.nan].sorted { $0.key < $1.key }.map { [$0.key: $0.value] })
            Issue.record("encoded NaN")
        } catch EncodingError.invalidValue(_, let context) {
            #expect(context.codingPath.map(\.stringValue) == ["Index 0", "bad"])
        }
    }
}
