extension JSONValue {
    /// Compact JSON text (no whitespace), member order preserved.
    ///
    /// Strings escape `"`, `\` and all control characters < 0x20 (`\b \f \n \r \t`, else `\u00XX`);
    /// `/` and non-ASCII are emitted verbatim (UTF-8). Doubles use Swift's shortest round-trip
    /// representation (`5.0`, `0.1`, `1e+20`, `-0.0`); non-finite doubles (not representable in JSON)
    /// are emitted as `null`.
    public func serialized() -> String {
        String(decoding: serializedBytes(), as: UTF8.self)
    }

    public func serializedBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        JSONWriter.write(self, into: &out)
        return out
    }
}

enum JSONWriter {
    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static func write(_ v: JSONValue, into out: inout [UInt8]) {
        switch v {
        case .null: out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
        case .bool(true): out.append(contentsOf: [0x74, 0x72, 0x75, 0x65])
        case .bool(false): out.append(contentsOf: [0x66, 0x61, 0x6C, 0x73, 0x65])
        case .integer(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d):
            if d.isFinite { out.append(contentsOf: d.description.utf8) }
            else { out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C]) }
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            out.append(0x5B)
            var first = true
            for e in a {
                if !first { out.append(0x2C) }
                first = false
                write(e, into: &out)
            }
            out.append(0x5D)
        case .object(let o):
            out.append(0x7B)
            for i in 0..<o.count {
                if i > 0 { out.append(0x2C) }
                writeString(o.keys[i], into: &out)
                out.append(0x3A)
                write(o.values[i], into: &out)
            }
            out.append(0x7D)
        }
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        s.withUTF8 { buf in
            var runStart = 0
            for i in 0..<buf.count {
                let c = buf[i]
                if c >= 0x20 && c != 0x22 && c != 0x5C { continue }
                if runStart < i { out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[runStart..<i])) }
                runStart = i + 1
                out.append(0x5C)
                switch c {
                case 0x22: out.append(0x22)
                case 0x5C: out.append(0x5C)
                case 0x08: out.append(0x62)
                case 0x0C: out.append(0x66)
                case 0x0A: out.append(0x6E)
                case 0x0D: out.append(0x72)
                case 0x09: out.append(0x74)
                default:
                    out.append(contentsOf: [0x75, 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 0xF)]])
                }
            }
            if runStart < buf.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[runStart..<buf.count])) }
        }
        out.append(0x22)
    }
}

/// Pieces of JSON text for code that writes a known shape directly, without building a `JSONValue`.
public enum JSONText {
    /// Appends `s` as a JSON string (quoted and escaped as `JSONValue.serialized` does).
    public static func appendString(_ s: String, to out: inout [UInt8]) {
        JSONWriter.writeString(s, into: &out)
    }
}
