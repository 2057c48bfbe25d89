public import Foundation
public import OCPPCore

/// JSON coders configured for OCPP 1.6J payloads.
///
/// - Dates are encoded as ISO 8601 UTC with millisecond precision
///   (`2026-11-25T12:00:00.000Z`).
/// - Dates are decoded from ISO 8601 date-times with or without fractional
///   seconds (any number of digits), with `Z`, `±hh:mm`, `±hhmm` or `±hh`
///   offsets; a missing offset is treated as UTC.
/// - Slashes are not escaped. `nil` optionals are omitted (synthesized Codable).
public enum OCPP16Coding {
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(OCPP16DateTime.format(date))
        }
        return encoder
    }

    /// Decodes payloads straight from a parsed `JSONValue` (no text round trip), with the same date rules.
    public static let valueDecoder = JSONValueDecoder(parseDate: OCPP16DateTime.parse)
    /// Encodes payloads straight into a `JSONValue` (no text round trip), with the same date format.
    public static let valueEncoder = JSONValueEncoder(formatDate: OCPP16DateTime.format)

    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let string = try container.decode(String.self)
            guard let date = OCPP16DateTime.parse(string) else {
                throw DecodingError.dataCorruptedError(
                    in: container,
                    debugDescription: "Invalid ISO 8601 date-time: \(string)"
                )
            }
            return date
        }
        return decoder
    }
}

/// Allocation-light ISO 8601 date-time formatter/parser (no Calendar, no
/// DateFormatter; days-from-civil arithmetic). Pure functions, Sendable-safe.
public enum OCPP16DateTime {
    /// `yyyy-MM-ddTHH:mm:ss.SSSZ` in UTC, rounded to the nearest millisecond.
    public static func format(_ date: Date) -> String {
        let totalMillis = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let millis = Int(floorMod(totalMillis, 1000))
        let totalSeconds = floorDiv(totalMillis, 1000)
        let days = floorDiv(totalSeconds, 86_400)
        let secondOfDay = Int(floorMod(totalSeconds, 86_400))
        let (y, m, d) = civilFromDays(days)

        var out = ""
        out.reserveCapacity(24)
        appendPadded(&out, Int(y), width: 4)
        out.append("-")
        appendPadded(&out, m, width: 2)
        out.append("-")
        appendPadded(&out, d, width: 2)
        out.append("T")
        appendPadded(&out, secondOfDay / 3600, width: 2)
        out.append(":")
        appendPadded(&out, (secondOfDay / 60) % 60, width: 2)
        out.append(":")
        appendPadded(&out, secondOfDay % 60, width: 2)
        out.append(".")
        appendPadded(&out, millis, width: 3)
        out.append("Z")
        return out
    }

    /// Parses `YYYY-MM-DD[T| ]hh:mm:ss[.fraction][Z|±hh:mm|±hhmm|±hh]`.
    /// A missing offset means UTC. Returns `nil` for anything else.
    public static func parse(_ string: String) -> Date? {
        var utf8 = Array(string.utf8)
        // Tolerate surrounding whitespace.
        while let last = utf8.last, last == 0x20 || last == 0x09 { utf8.removeLast() }
        var i = 0
        while i < utf8.count, utf8[i] == 0x20 || utf8[i] == 0x09 { i += 1 }
        let b = utf8
        let n = b.count

        func digits(_ count: Int) -> Int? {
            guard i + count <= n else { return nil }
            var value = 0
            for k in i..<(i + count) {
                let c = b[k]
                guard c >= 0x30, c <= 0x39 else { return nil }
                value = value * 10 + Int(c - 0x30)
            }
            i += count
            return value
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < n, b[i] == c else { return false }
            i += 1
            return true
        }

        guard let year = digits(4), expect(0x2D),           // -
              let month = digits(2), expect(0x2D),
              let day = digits(2) else { return nil }
        guard i < n, b[i] == 0x54 || b[i] == 0x74 || b[i] == 0x20 else { return nil } // T t ' '
        i += 1
        guard let hour = digits(2), expect(0x3A),           // :
              let minute = digits(2), expect(0x3A),
              let second = digits(2) else { return nil }

        var fraction = 0.0
        if i < n, b[i] == 0x2E || b[i] == 0x2C {           // . or ,
            i += 1
            // Keep up to nanosecond precision; further digits are ignored.
            var nanos = 0
            var count = 0
            while i < n, b[i] >= 0x30, b[i] <= 0x39 {
                if count < 9 { nanos = nanos * 10 + Int(b[i] - 0x30) }
                count += 1
                i += 1
            }
            guard count > 0 else { return nil }
            for _ in min(count, 9)..<9 { nanos *= 10 }
            fraction = Double(nanos) / 1_000_000_000
        }

        var offsetSeconds = 0
        if i < n {
            let c = b[i]
            if c == 0x5A || c == 0x7A {                      // Z z
                i += 1
            } else if c == 0x2B || c == 0x2D {               // + -
                let sign = c == 0x2B ? 1 : -1
                i += 1
                guard let oh = digits(2) else { return nil }
                var om = 0
                if i < n {
                    _ = expect(0x3A)
                    guard let m = digits(2) else { return nil }
                    om = m
                }
                guard oh <= 23, om <= 59 else { return nil }
                offsetSeconds = sign * (oh * 3600 + om * 60)
            } else {
                return nil
            }
        }
        guard i == n else { return nil }

        guard (1...12).contains(month), day >= 1, day <= daysInMonth(year, month),
              hour <= 23, minute <= 59, second <= 60 else { return nil }

        let days = daysFromCivil(Int64(year), month, day)
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offsetSeconds)
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    // MARK: - Civil calendar arithmetic (H. Hinnant, proleptic Gregorian)

    static func daysFromCivil(_ year: Int64, _ month: Int, _ day: Int) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64((month + 9) % 12)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = Int(doy - (153 * mp + 2) / 5 + 1)
        let m = Int(mp < 10 ? mp + 3 : mp - 9)
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    static func daysInMonth(_ year: Int, _ month: Int) -> Int {
        switch month {
        case 2:
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
            return leap ? 29 : 28
        case 4, 6, 9, 11:
            return 30
        default:
            return 31
        }
    }

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    private static func floorMod(_ a: Int64, _ b: Int64) -> Int64 {
        a - floorDiv(a, b) * b
    }

    private static func appendPadded(_ out: inout String, _ value: Int, width: Int) {
        let s = String(value)
        if s.count < width { out.append(String(repeating: "0", count: width - s.count)) }
        out.append(s)
    }
}
