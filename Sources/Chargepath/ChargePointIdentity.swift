/// Where a charger said it is: the identity it claims and the URL it connected to.
///
/// OCPP-J makes the last path segment of the WebSocket URL the charge point's identity
/// (`ws://host:9000/<any path>/<chargePointId>`). The whole path is kept as well, because
/// operators route and debug by it.
public struct ChargePointIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The charge point id, percent-decoded once.
    public let id: String

    public var description: String { id }

    /// The longest identity we accept (OCPP 2.0.1 caps it at 48 characters; 1.6 chargers stay well under).
    public static let maximumLength = 48

    public init(validating raw: String) throws(IdentityError) {
        guard !raw.isEmpty else { throw IdentityError(.empty) }
        guard raw.count <= Self.maximumLength else { throw IdentityError(.tooLong(raw.count)) }
        for scalar in raw.unicodeScalars {
            // Printable ASCII only: 0x21...0x7E. Space is not printable enough for an id.
            guard scalar.value >= 0x21, scalar.value <= 0x7E else { throw IdentityError(.nonPrintable) }
            guard scalar != ":" else { throw IdentityError(.containsColon) }
        }
        self.id = raw
    }

    /// Trusted constructor for values that were validated before (read back from the database).
    public init(unchecked id: String) {
        self.id = id
    }

    /// Parses the request path of a charger's WebSocket upgrade (without the query string).
    /// - Returns: the identity, percent-decoded once, from the last path segment.
    public static func fromRequestPath(_ path: String) throws(IdentityError) -> ChargePointIdentity {
        let pathOnly = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard let lastSlash = pathOnly.lastIndex(of: "/") else { throw IdentityError(.empty) }
        let segment = pathOnly[pathOnly.index(after: lastSlash)...]
        guard !segment.isEmpty else { throw IdentityError(.empty) }
        guard let decoded = percentDecode(segment) else { throw IdentityError(.badPercentEncoding) }
        return try ChargePointIdentity(validating: decoded)
    }

    static func percentDecode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    return nil
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Why an upgrade's path does not name a usable charge point identity.
public struct IdentityError: Error, Sendable, Equatable, CustomStringConvertible {
    package enum Code: Sendable, Equatable {
        case empty
        case tooLong(Int)
        case nonPrintable
        case containsColon
        case badPercentEncoding
    }

    package let code: Code

    package init(_ code: Code) { self.code = code }

    public var description: String {
        switch code {
        case .empty:
            "The URL has no charge point identity: connect to ws://host:port/<path>/<chargePointId>."
        case .tooLong(let count):
            "The charge point identity is \(count) characters long; at most \(ChargePointIdentity.maximumLength) are allowed."
        case .nonPrintable:
            "The charge point identity may contain printable ASCII characters only (no spaces or control characters)."
        case .containsColon:
            "The charge point identity may not contain ':' (it separates user and password in HTTP Basic authentication)."
        case .badPercentEncoding:
            "The charge point identity is not valid percent-encoded UTF-8."
        }
    }
}
