import Testing
@testable import OCPPCore

@Suite struct JSONParserTests {
    func kind(_ s: String, maxDepth: Int = 64) -> JSONParseError.Kind? {
        do { _ = try JSONValue.parse(s, maxDepth: maxDepth); return nil } catch { return error.kind }
    }

    @Test func basicValues() throws {
        #expect(try JSONValue.parse("null") == .null)
        #expect(try JSONValue.parse(" true ") == .bool(true))
        #expect(try JSONValue.parse("false") == .bool(false))
        #expect(try JSONValue.parse("\"x\"") == .string("x"))
        #expect(try JSONValue.parse("[]") == .array([]))
        #expect(try JSONValue.parse("{}") == .emptyObject)
        let v = try JSONValue.parse(#"{"b":1,"a":[1,2.5,"s",null,{"c":true}]}"#)
        #expect(v.objectValue?.keys == ["b", "a"])
        #expect(v["a"]?[4]?["c"] == .bool(true))
        #expect(v["missing"] == nil)
    }

    @Test func numbers() throws {
        #expect(try JSONValue.parse("0") == .integer(0))
        #expect(try JSONValue.parse("-12") == .integer(-12))
        #expect(try JSONValue.parse("9223372036854775807") == .integer(Int64.max))
        #expect(try JSONValue.parse("-9223372036854775808") == .integer(Int64.min))
        // Too big for Int64 → double
        if case .double(let d) = try JSONValue.parse("9223372036854775808") { #expect(d == 9223372036854775808.0) }
        else { Issue.record("expected double") }
        if case .double(let d) = try JSONValue.parse("123456789012345678901234567890") { #expect(d > 1.2e29) }
        else { Issue.record("expected double") }
        // -0 keeps its sign as a double
        if case .double(let d) = try JSONValue.parse("-0") { #expect(d == 0 && d.sign == .minus) }
        else { Issue.record("expected double") }
        if case .double(let d) = try JSONValue.parse("1.0") { #expect(d == 1.0) } else { Issue.record("1.0 must be double") }
        #expect(try JSONValue.parse("1e3") == .double(1000))
        #expect(try JSONValue.parse("1E+3") == .double(1000))
        #expect(try JSONValue.parse("-2.5e-3") == .double(-0.0025))
        #expect(try JSONValue.parse("0.1") == .double(0.1))
        #expect(try JSONValue.parse("1e-400") == .double(0))
        #expect(kind("1e400") == .numberOutOfRange)
        #expect(kind("01") == .invalidNumber)
        #expect(kind("-01") == .invalidNumber)
        #expect(kind("1.") == .invalidNumber)
        #expect(kind(".5") == .unexpectedCharacter)
        #expect(kind("1e") == .invalidNumber)
        #expect(kind("1e+") == .invalidNumber)
        #expect(kind("-") == .invalidNumber)
        #expect(kind("+1") == .unexpectedCharacter)
        #expect(kind("NaN") == .unexpectedCharacter)
        #expect(kind("Infinity") == .unexpectedCharacter)
        #expect(kind("-Infinity") == .invalidNumber)
        #expect(kind("0x10") == .trailingData)
    }

    @Test func strings() throws {
        #expect(try JSONValue.parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{8}\u{c}\n\r\t"))
        #expect(try JSONValue.parse(#""\u0041\u00e9\u20AC""#) == .string("Aé€"))
        #expect(try JSONValue.parse(#""\uD83D\uDE00""#) == .string("😀"))
        #expect(try JSONValue.parse("\"héllo 😀\"") == .string("héllo 😀"))
        #expect(kind(#""\uD83D""#) == .invalidUnicodeEscape)
        #expect(kind(#""\uD83Dx""#) == .invalidUnicodeEscape)
        #expect(kind(#""\uD83D\u0041""#) == .invalidUnicodeEscape)
        #expect(kind(#""\uDE00""#) == .invalidUnicodeEscape)
        #expect(kind(#""\u12G4""#) == .invalidUnicodeEscape)
        #expect(kind(#""\x""#) == .invalidEscape)
        #expect(kind(#""\'""#) == .invalidEscape)
        #expect(kind("\"a\tb\"") == .unescapedControlCharacter)
        #expect(kind("\"a\nb\"") == .unescapedControlCharacter)
        #expect(kind("\"abc") == .unexpectedEndOfInput)
        #expect(kind("'a'") == .unexpectedCharacter)
    }

    @Test func invalidUTF8() {
        func k(_ bytes: [UInt8]) -> JSONParseError.Kind? {
            do { _ = try JSONValue.parse(bytes); return nil } catch { return error.kind }
        }
        #expect(k([0x22, 0xC3, 0xA9, 0x22]) == nil)        // é
        #expect(k([0x22, 0xC0, 0xAF, 0x22]) == .invalidUTF8) // overlong
        #expect(k([0x22, 0xED, 0xA0, 0x80, 0x22]) == .invalidUTF8) // encoded surrogate
        #expect(k([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22]) == .invalidUTF8) // > U+10FFFF
        #expect(k([0x22, 0xE2, 0x82, 0x22]) == .invalidUTF8) // truncated
        #expect(k([0x22, 0xFF, 0x22]) == .invalidUTF8)
        #expect(k([0x22, 0x5C, 0x6E, 0xC3, 0x28, 0x22]) == .invalidUTF8) // in slow path
        #expect(k([0xEF, 0xBB, 0xBF, 0x31]) == .unexpectedCharacter) // BOM rejected
    }

    @Test func structureStrictness() {
        #expect(kind("[1,]") == .unexpectedCharacter)
        #expect(kind("{\"a\":1,}") == .unexpectedCharacter)
        #expect(kind("[1 2]") == .unexpectedCharacter)
        #expect(kind("{\"a\" 1}") == .unexpectedCharacter)
        #expect(kind("{a:1}") == .unexpectedCharacter)
        #expect(kind("{\"a\":1,\"a\":2}") == .duplicateKey)
        #expect(kind("[1] x") == .trailingData)
        #expect(kind("[1][2]") == .trailingData)
        #expect(kind("") == .unexpectedEndOfInput)
        #expect(kind("   ") == .unexpectedEndOfInput)
        #expect(kind("[") == .unexpectedEndOfInput)
        #expect(kind("{\"a\":") == .unexpectedEndOfInput)
        #expect(kind("tru") == .unexpectedEndOfInput)
        #expect(kind("trUe") == .invalidLiteral)
        #expect(kind("nul") == .unexpectedEndOfInput)
        #expect(kind("[1]\u{0B}") == .trailingData) // vertical tab is not JSON whitespace
        #expect(kind(" \t\r\n[1] \n") == nil)
    }

    @Test func duplicateKeysInLargeObject() {
        let members = (0..<20).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        #expect(kind("{\(members)}") == nil)
        #expect(kind("{\(members),\"k3\":1}") == .duplicateKey)
    }

    /// Containers share the parser's member stacks: a nested container's members must end up in
    /// it alone, the outer one's members after it must follow their own, and a key is a duplicate
    /// only within its own object.
    @Test func nestedContainersKeepTheirOwnMembers() throws {
        let text = #"{"a":{"a":1,"b":[2,{"a":3},[]]},"b":[{"x":{}},4,[5,[6]]],"c":{"a":{"a":{"a":7}}},"d":8}"#
        let value = try JSONValue.parse(text)
        let object = try #require(value.objectValue)
        #expect(object.keys == ["a", "b", "c", "d"])
        #expect(value["a"] == ["a": 1, "b": [2, ["a": 3], []]])
        #expect(value["b"] == [["x": .emptyObject], 4, [5, [6]]])
        #expect(value["c"]?["a"]?["a"]?["a"] == 7)
        #expect(value["d"] == 8)
        #expect(value.serialized() == text)
        // The same key in nested and outer objects is no duplicate; within one object it is, also
        // after a nested container and past the small-object threshold.
        #expect(kind(#"{"x":{"y":1},"y":2,"z":[{"y":3}]}"#) == nil)
        #expect(kind(#"{"x":{"y":1},"x":2}"#) == .duplicateKey)
        #expect(kind(#"{"x":{"y":1,"z":{"y":2},"y":3}}"#) == .duplicateKey)
        let many = (0..<10).map { "\"k\($0)\":{\"k0\":[\($0)]}" }.joined(separator: ",")
        #expect(kind("{\(many)}") == nil)
        #expect(kind("{\(many),\"k9\":0}") == .duplicateKey)
        // A document after a failed one parses afresh.
        #expect(kind(#"[{"a":[1,2,"#) == .unexpectedEndOfInput)
        #expect(try JSONValue.parse(#"[{"a":[1,2]},3]"#) == [["a": [1, 2]], 3])
    }

    @Test func depthLimit() {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(kind(ok) == nil)
        #expect(kind(tooDeep) == .depthLimitExceeded)
        #expect(kind("[[{\"a\":[1]}]]", maxDepth: 3) == .depthLimitExceeded)
        #expect(kind("[[{\"a\":1}]]", maxDepth: 3) == nil)
        // No stack overflow on hostile input
        #expect(kind(String(repeating: "[", count: 100_000)) == .depthLimitExceeded)
    }

    @Test func errorOffsetsAndMessages() {
        do {
            _ = try JSONValue.parse("[1, 2,, 3]")
            Issue.record("should fail")
        } catch {
            #expect(error.offset == 6)
            #expect(error.description.contains("byte 6"))
            #expect(error.message.contains("','"))
        }
        do {
            _ = try JSONValue.parse(#"{"a":1,"a":2}"#)
        } catch {
            #expect(error.offset == 7)
            #expect(error.message.contains("\"a\""))
        }
    }

    @Test func inputKinds() throws {
        let text = #"{"x":[1,2]}"#
        let a = try JSONValue.parse(text)
        let b = try JSONValue.parse(Array(text.utf8))
        let c = try JSONValue.parse(text.utf8)
        let d = try JSONValue.parse(text.utf8.dropFirst(0))
        #expect(a == b && b == c && c == d)
    }
}

@Suite struct JSONValueTests {
    @Test func serializerCompactAndEscaping() {
        let v: JSONValue = ["b": 1, "a": [true, false, nil, 2.5, "x\"\\\n\u{1}/é😀"], "c": [:]]
        #expect(v.serialized() == #"{"b":1,"a":[true,false,null,2.5,"x\"\\\n\u0001/é😀"],"c":{}}"#)
        #expect(JSONValue.string("\u{8}\u{c}\r\t\u{1f}").serialized() == #""\b\f\r\t\u001f""#)
    }

    @Test func doubles() {
        #expect(JSONValue.double(5.0).serialized() == "5.0")
        #expect(JSONValue.double(0.1).serialized() == "0.1")
        #expect(JSONValue.double(-0.0).serialized() == "-0.0")
        #expect(JSONValue.double(1e20).serialized() == "1e+20")
        #expect(JSONValue.double(.nan).serialized() == "null")
        #expect(JSONValue.double(.infinity).serialized() == "null")
        for d in [0.1, 1.0 / 3.0, 123456.789, Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude, -2.5e-10, 1e20, 230.4] {
            let back = try? JSONValue.parse(JSONValue.double(d).serialized())
            #expect(back?.doubleValue == d)
        }
    }

    @Test func roundTrip() throws {
        let texts = [
            #"[2,"id-1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2024-01-01T00:00:00Z","sampledValue":[{"value":"12.5","unit":"Wh"}]}]}]"#,
            #"{"z":[],"a":{"nested":[1,-2,3.25,1e-7,null,true]},"s":"\u0000\t\"\\ü"}"#,
            #"[-9223372036854775808,9223372036854775807,18446744073709551616]"#,
        ]
        for t in texts {
            let v = try JSONValue.parse(t)
            let s = v.serialized()
            let v2 = try JSONValue.parse(s)
            #expect(v2 == v)
            #expect(v2.serialized() == s)
            #expect(v.serializedBytes() == Array(s.utf8))
        }
    }

    @Test func equalitySemantics() {
        #expect(JSONValue.integer(5) == .double(5.0))
        #expect(JSONValue.integer(5) != .double(5.5))
        #expect((["a": 1, "b": 2] as JSONValue) == (["b": 2, "a": 1] as JSONValue))
        #expect((["a": 1] as JSONValue) != (["a": 1, "b": 2] as JSONValue))
        #expect(JSONValue.bool(true) != .integer(1))
    }

    @Test func objectOrderAndMutation() {
        var o = JSONObject()
        for i in 0..<30 { o["k\(i)"] = .integer(Int64(i)) }
        #expect(o.keys.first == "k0" && o.keys.last == "k29")
        #expect(o["k17"] == .integer(17))
        o["k5"] = "x"
        #expect(o.keys[5] == "k5" && o["k5"] == "x")
        o["k5"] = nil
        #expect(o.count == 29 && o["k5"] == nil && o["k6"] == .integer(6) && o.position(of: "k6") == 5)
    }

    struct Sample: Codable, Equatable { var connectorId: Int; var idTag: String?; var extra: JSONValue? }

    @Test func codableBridging() throws {
        let s = Sample(connectorId: 2, idTag: "ABC", extra: ["k": [1, "two"]])
        let v = try JSONValue(encoding: s)
        #expect(v["connectorId"] == .integer(2))
        #expect(v["extra"]?["k"]?[1] == "two")
        let back = try v.decode(Sample.self)
        #expect(back == s)
        #expect(throws: (any Error).self) { try (["connectorId": "x"] as JSONValue).decode(Sample.self) }
    }

    @Test func accessors() {
        #expect(JSONValue.double(3.0).int64Value == 3)
        #expect(JSONValue.double(3.5).int64Value == nil)
        #expect(JSONValue.integer(3).doubleValue == 3.0)
        #expect(JSONValue.string("s").stringValue == "s")
        #expect(JSONValue.null.isNull)
    }
}
