/// Error thrown by `JSONValue.parse`. `offset` is the byte offset (0-based) into the UTF-8 input.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case unexpectedEndOfInput
        case unexpectedCharacter
        case invalidLiteral
        case invalidNumber
        case numberOutOfRange
        case invalidEscape
        case invalidUnicodeEscape
        case unescapedControlCharacter
        case invalidUTF8
        case duplicateKey
        case depthLimitExceeded
        case trailingData
    }

    public let kind: Kind
    public let offset: Int
    public let message: String

    public init(kind: Kind, offset: Int, message: String) {
        self.kind = kind
        self.offset = offset
        self.message = message
    }

    public var description: String { "JSON parse error at byte \(offset): \(message)" }
}

extension JSONValue {
    /// Strict RFC 8259 parser.
    ///
    /// - Whitespace: only space, tab, LF, CR. A leading BOM is rejected.
    /// - Numbers: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`. Integers without fraction/exponent
    ///   that fit Int64 become `.integer`, otherwise `.double`. `-0` becomes `.double(-0.0)` (sign preserved).
    ///   Numbers overflowing Double (e.g. `1e400`) are rejected (`numberOutOfRange`).
    /// - Strings: escapes `\" \\ \/ \b \f \n \r \t \uXXXX`; surrogate pairs combined; lone surrogates rejected;
    ///   raw control characters (< 0x20) rejected; UTF-8 validated strictly (no overlongs, no surrogates).
    /// - Objects: duplicate keys are rejected (`duplicateKey`) so that validation and decoding can never
    ///   disagree about which value counts.
    /// - Nesting deeper than `maxDepth` arrays/objects is rejected (top-level container = depth 1).
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 64) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { buf in
            Result<JSONValue, JSONParseError> { () throws(JSONParseError) -> JSONValue in
                var p = JSONParser(buf, maxDepth: maxDepth)
                return try p.parseDocument()
            }
        }.get()
    }

    public static func parse(_ string: String, maxDepth: Int = 64) throws(JSONParseError) -> JSONValue {
        var s = string
        return try s.withUTF8 { buf in
            Result<JSONValue, JSONParseError> { () throws(JSONParseError) -> JSONValue in
                var p = JSONParser(buf, maxDepth: maxDepth)
                return try p.parseDocument()
            }
        }.get()
    }

    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int = 64) throws(JSONParseError) -> JSONValue {
        let r: Result<JSONValue, JSONParseError>? = bytes.withContiguousStorageIfAvailable { buf in
            Result<JSONValue, JSONParseError> { () throws(JSONParseError) -> JSONValue in
                var p = JSONParser(buf, maxDepth: maxDepth)
                return try p.parseDocument()
            }
        }
        if let r { return try r.get() }
        return try parse(Array(bytes), maxDepth: maxDepth)
    }
}

// MARK: - Implementation

private enum B {
    static let quote: UInt8 = 0x22, backslash: UInt8 = 0x5C, slash: UInt8 = 0x2F
    static let comma: UInt8 = 0x2C, colon: UInt8 = 0x3A
    static let lbracket: UInt8 = 0x5B, rbracket: UInt8 = 0x5D, lbrace: UInt8 = 0x7B, rbrace: UInt8 = 0x7D
    static let minus: UInt8 = 0x2D, plus: UInt8 = 0x2B, dot: UInt8 = 0x2E
    static let zero: UInt8 = 0x30, nine: UInt8 = 0x39
    static let e: UInt8 = 0x65, E: UInt8 = 0x45
}

struct JSONParser: ~Copyable {
    let buf: UnsafeBufferPointer<UInt8>
    let end: Int
    var pos: Int = 0
    var depth: Int = 0
    let maxDepth: Int
    var scratch: [UInt8] = []
    /// The members of the arrays and objects being parsed, innermost last. Each container pushes
    /// its members here and, once closed, copies them out into arrays of the exact size: one
    /// allocation per array (two per object), where appending to its own arrays would grow them
    /// by doubling (three or four allocations for a five-member object; the JSON parser was 44%
    /// of the server's allocations per MeterValues message). Room for 16 members is reserved at
    /// the first container (a MeterValues holds fewer at any one time), so the stacks rarely grow;
    /// 16 values are 544 bytes with the header, within glibc's per-thread cache (1,032), where 32
    /// were not.
    var valueStack: [JSONValue] = []
    var keyStack: [String] = []

    init(_ buf: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buf = buf
        self.end = buf.count
        self.maxDepth = maxDepth
    }

    @inline(__always)
    func fail(_ kind: JSONParseError.Kind, _ message: String, at offset: Int? = nil) -> JSONParseError {
        JSONParseError(kind: kind, offset: offset ?? pos, message: message)
    }

    static func describe(_ byte: UInt8) -> String {
        if byte >= 0x20 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(String(byte, radix: 16, uppercase: true))"
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while pos < end {
            let c = buf[pos]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { return }
        }
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        if pos >= end { throw fail(.unexpectedEndOfInput, "empty input, expected a JSON value") }
        let v = try parseValue()
        skipWhitespace()
        if pos < end {
            throw fail(.trailingData, "unexpected \(Self.describe(buf[pos])) after the end of the JSON value")
        }
        return v
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard pos < end else { throw fail(.unexpectedEndOfInput, "unexpected end of input, expected a value") }
        switch buf[pos] {
        case B.quote: return .string(try parseString())
        case B.lbrace: return try parseObject()
        case B.lbracket: return try parseArray()
        case 0x74: try expectLiteral("true"); return .bool(true)
        case 0x66: try expectLiteral("false"); return .bool(false)
        case 0x6E: try expectLiteral("null"); return .null
        case B.minus, B.zero...B.nine: return try parseNumber()
        default:
            throw fail(.unexpectedCharacter, "unexpected \(Self.describe(buf[pos])), expected a value")
        }
    }

    mutating func expectLiteral(_ lit: StaticString) throws(JSONParseError) {
        let start = pos
        let n = lit.utf8CodeUnitCount
        let p = lit.utf8Start
        for i in 0..<n {
            guard pos < end else { throw fail(.unexpectedEndOfInput, "unexpected end of input in literal '\(lit)'", at: start) }
            guard buf[pos] == p[i] else { throw fail(.invalidLiteral, "invalid literal, expected '\(lit)'", at: start) }
            pos += 1
        }
    }

    mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > maxDepth {
            throw fail(.depthLimitExceeded, "nesting depth exceeds the limit of \(maxDepth)")
        }
    }

    mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        pos += 1  // [
        skipWhitespace()
        if pos < end && buf[pos] == B.rbracket {
            pos += 1
            depth -= 1
            return .array([])
        }
        if valueStack.capacity == 0 { valueStack.reserveCapacity(16) }
        let base = valueStack.count
        while true {
            skipWhitespace()
            let element = try parseValue()  // not inside `append(_:)`: parseValue uses the stack too
            valueStack.append(element)
            skipWhitespace()
            guard pos < end else { throw fail(.unexpectedEndOfInput, "unexpected end of input in array, expected ',' or ']'") }
            let c = buf[pos]
            if c == B.comma {
                pos += 1
                skipWhitespace()
                if pos < end && buf[pos] == B.rbracket {
                    throw fail(.unexpectedCharacter, "trailing comma in array")
                }
            } else if c == B.rbracket {
                pos += 1
                break
            } else {
                throw fail(.unexpectedCharacter, "unexpected \(Self.describe(c)) in array, expected ',' or ']'")
            }
        }
        depth -= 1
        let elements = Array(valueStack[base...])
        valueStack.removeSubrange(base...)
        return .array(elements)
    }

    mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        pos += 1  // {
        var seen: Set<String>? = nil
        skipWhitespace()
        if pos < end && buf[pos] == B.rbrace {
            pos += 1
            depth -= 1
            return .object(JSONObject())
        }
        if keyStack.capacity == 0 {
            keyStack.reserveCapacity(16)
            valueStack.reserveCapacity(16)
        }
        let base = keyStack.count, valueBase = valueStack.count
        while true {
            skipWhitespace()
            guard pos < end else { throw fail(.unexpectedEndOfInput, "unexpected end of input in object, expected a key") }
            guard buf[pos] == B.quote else {
                if buf[pos] == B.rbrace { throw fail(.unexpectedCharacter, "trailing comma in object") }
                throw fail(.unexpectedCharacter, "unexpected \(Self.describe(buf[pos])) in object, expected a string key")
            }
            let keyStart = pos
            let key = try parseString()
            // Duplicate detection: linear for small objects, set for larger ones.
            if keyStack.count - base < 8 && seen == nil {
                if keyStack[base...].contains(key) { throw fail(.duplicateKey, "duplicate object key \"\(key)\"", at: keyStart) }
            } else {
                if seen == nil { seen = Set(keyStack[base...]) }
                if !seen!.insert(key).inserted { throw fail(.duplicateKey, "duplicate object key \"\(key)\"", at: keyStart) }
            }
            skipWhitespace()
            guard pos < end else { throw fail(.unexpectedEndOfInput, "unexpected end of input in object, expected ':'") }
            guard buf[pos] == B.colon else {
                throw fail(.unexpectedCharacter, "unexpected \(Self.describe(buf[pos])) after object key, expected ':'")
            }
            pos += 1
            skipWhitespace()
            let value = try parseValue()
            keyStack.append(key)
            valueStack.append(value)
            skipWhitespace()
            guard pos < end else { throw fail(.unexpectedEndOfInput, "unexpected end of input in object, expected ',' or '}'") }
            let c = buf[pos]
            if c == B.comma {
                pos += 1
            } else if c == B.rbrace {
                pos += 1
                break
            } else {
                throw fail(.unexpectedCharacter, "unexpected \(Self.describe(c)) in object, expected ',' or '}'")
            }
        }
        depth -= 1
        let object = JSONObject(uniqueKeys: Array(keyStack[base...]), values: Array(valueStack[valueBase...]))
        keyStack.removeSubrange(base...)
        valueStack.removeSubrange(valueBase...)
        return .object(object)
    }

    // MARK: Strings

    mutating func parseString() throws(JSONParseError) -> String {
        let open = pos
        pos += 1  // opening quote
        let start = pos
        // Fast path: no escapes.
        while pos < end {
            let c = buf[pos]
            if c == B.quote {
                let s = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self)
                pos += 1
                return s
            } else if c == B.backslash {
                break
            } else if c < 0x20 {
                throw fail(.unescapedControlCharacter, "unescaped control character 0x\(String(c, radix: 16, uppercase: true)) in string")
            } else if c < 0x80 {
                pos += 1
            } else {
                try validateUTF8Sequence()
            }
        }
        guard pos < end else { throw fail(.unexpectedEndOfInput, "unterminated string", at: open) }
        // Slow path with escapes.
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: buf[start..<pos]))
        while pos < end {
            let c = buf[pos]
            if c == B.quote {
                pos += 1
                return String(decoding: scratch, as: UTF8.self)
            } else if c == B.backslash {
                try parseEscape()
            } else if c < 0x20 {
                throw fail(.unescapedControlCharacter, "unescaped control character 0x\(String(c, radix: 16, uppercase: true)) in string")
            } else if c < 0x80 {
                scratch.append(c)
                pos += 1
            } else {
                let s = pos
                try validateUTF8Sequence()
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: buf[s..<pos]))
            }
        }
        throw fail(.unexpectedEndOfInput, "unterminated string", at: open)
    }

    /// Validates one multi-byte UTF-8 sequence at `pos` (first byte >= 0x80) and advances past it.
    @inline(__always)
    mutating func validateUTF8Sequence() throws(JSONParseError) {
        let b0 = buf[pos]
        let len: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF  // allowed range for the second byte
        switch b0 {
        case 0xC2...0xDF: len = 2
        case 0xE0: len = 3; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: len = 3
        case 0xED: len = 3; hi = 0x9F  // no UTF-16 surrogates
        case 0xF0: len = 4; lo = 0x90
        case 0xF1...0xF3: len = 4
        case 0xF4: len = 4; hi = 0x8F  // <= U+10FFFF
        default: throw fail(.invalidUTF8, "invalid UTF-8 lead byte 0x\(String(b0, radix: 16, uppercase: true))")
        }
        guard pos + len <= end else { throw fail(.invalidUTF8, "truncated UTF-8 sequence") }
        let b1 = buf[pos + 1]
        guard b1 >= lo && b1 <= hi else { throw fail(.invalidUTF8, "invalid UTF-8 continuation byte", at: pos + 1) }
        var i = 2
        while i < len {
            guard buf[pos + i] & 0xC0 == 0x80 else { throw fail(.invalidUTF8, "invalid UTF-8 continuation byte", at: pos + i) }
            i += 1
        }
        pos += len
    }

    mutating func parseEscape() throws(JSONParseError) {
        let escStart = pos
        pos += 1  // backslash
        guard pos < end else { throw fail(.unexpectedEndOfInput, "unterminated escape sequence", at: escStart) }
        let c = buf[pos]
        pos += 1
        switch c {
        case B.quote: scratch.append(B.quote)
        case B.backslash: scratch.append(B.backslash)
        case B.slash: scratch.append(B.slash)
        case 0x62: scratch.append(0x08)  // b
        case 0x66: scratch.append(0x0C)  // f
        case 0x6E: scratch.append(0x0A)  // n
        case 0x72: scratch.append(0x0D)  // r
        case 0x74: scratch.append(0x09)  // t
        case 0x75:  // u
            var scalar = UInt32(try readHex4(escStart: escStart))
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                // High surrogate: must be followed by \uDC00-\uDFFF.
                guard pos + 1 < end, buf[pos] == B.backslash, buf[pos + 1] == 0x75 else {
                    throw fail(.invalidUnicodeEscape, "unpaired high surrogate \\u\(String(scalar, radix: 16, uppercase: true))", at: escStart)
                }
                let lowStart = pos
                pos += 2
                let low = UInt32(try readHex4(escStart: lowStart))
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw fail(.invalidUnicodeEscape, "high surrogate not followed by a low surrogate", at: lowStart)
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                throw fail(.invalidUnicodeEscape, "unpaired low surrogate \\u\(String(scalar, radix: 16, uppercase: true))", at: escStart)
            }
            appendUTF8(scalar)
        default:
            throw fail(.invalidEscape, "invalid escape sequence '\\\(Character(Unicode.Scalar(c)))'", at: escStart)
        }
    }

    mutating func readHex4(escStart: Int) throws(JSONParseError) -> UInt16 {
        guard pos + 4 <= end else { throw fail(.unexpectedEndOfInput, "truncated \\u escape", at: escStart) }
        var v: UInt16 = 0
        for _ in 0..<4 {
            let c = buf[pos]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: throw fail(.invalidUnicodeEscape, "invalid hex digit in \\u escape", at: pos)
            }
            v = v << 4 | UInt16(d)
            pos += 1
        }
        return v
    }

    mutating func appendUTF8(_ s: UInt32) {
        switch s {
        case 0..<0x80:
            scratch.append(UInt8(s))
        case 0x80..<0x800:
            scratch.append(UInt8(0xC0 | (s >> 6)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        case 0x800..<0x10000:
            scratch.append(UInt8(0xE0 | (s >> 12)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        default:
            scratch.append(UInt8(0xF0 | (s >> 18)))
            scratch.append(UInt8(0x80 | ((s >> 12) & 0x3F)))
            scratch.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (s & 0x3F)))
        }
    }

    // MARK: Numbers

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = pos
        var negative = false
        if buf[pos] == B.minus {
            negative = true
            pos += 1
        }
        guard pos < end else { throw fail(.invalidNumber, "incomplete number: expected a digit after '-'", at: start) }
        var c = buf[pos]
        guard c >= B.zero && c <= B.nine else {
            throw fail(.invalidNumber, "invalid number: expected a digit after '-'", at: start)
        }
        // Accumulate magnitude as negative value to cover Int64.min.
        var acc: Int64 = 0
        var overflow = false
        if c == B.zero {
            pos += 1
            if pos < end && buf[pos] >= B.zero && buf[pos] <= B.nine {
                throw fail(.invalidNumber, "invalid number: leading zeros are not allowed", at: start)
            }
        } else {
            while pos < end {
                c = buf[pos]
                guard c >= B.zero && c <= B.nine else { break }
                if !overflow {
                    let (m, o1) = acc.multipliedReportingOverflow(by: 10)
                    let (s, o2) = m.subtractingReportingOverflow(Int64(c - B.zero))
                    if o1 || o2 { overflow = true } else { acc = s }
                }
                pos += 1
            }
        }
        var isInteger = true
        if pos < end && buf[pos] == B.dot {
            isInteger = false
            pos += 1
            let fracStart = pos
            while pos < end && buf[pos] >= B.zero && buf[pos] <= B.nine { pos += 1 }
            if pos == fracStart { throw fail(.invalidNumber, "invalid number: expected digits after '.'", at: start) }
        }
        if pos < end && (buf[pos] == B.e || buf[pos] == B.E) {
            isInteger = false
            pos += 1
            if pos < end && (buf[pos] == B.plus || buf[pos] == B.minus) { pos += 1 }
            let expStart = pos
            while pos < end && buf[pos] >= B.zero && buf[pos] <= B.nine { pos += 1 }
            if pos == expStart { throw fail(.invalidNumber, "invalid number: expected digits in exponent", at: start) }
        }
        if isInteger && !overflow {
            if negative {
                if acc == 0 { return .double(-0.0) }
                return .integer(acc)
            }
            if acc != Int64.min { return .integer(-acc) }
            // 9223372036854775808 does not fit: fall through to double.
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self)
        guard let d = Double(text), d.isFinite else {
            throw fail(.numberOutOfRange, "number \(text) is out of range for a double", at: start)
        }
        return .double(d)
    }
}
