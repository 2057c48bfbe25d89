public import Foundation

/// The opaque, URL-safe id of one WebSocket connection (like API Gateway's `connectionId`).
public struct ConnectionID: Sendable, Hashable, Codable, CustomStringConvertible, RawRepresentable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// A new random id: 16 random bytes in URL-safe base64 without padding (22 characters).
    public static func random() -> ConnectionID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    public static func random(using generator: inout some RandomNumberGenerator) -> ConnectionID {
        let bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let text = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return ConnectionID(rawValue: text)
    }

    /// Whether a string could be a connection id at all (guards the operator API against junk).
    public static func isPlausible(_ text: String) -> Bool {
        (1...64).contains(text.utf8.count) && text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                true
            default: false
            }
        }
    }
}

/// The name of one server process (node) in a deployment that shares one PostgreSQL.
public struct NodeID: Sendable, Hashable, Codable, CustomStringConvertible, RawRepresentable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
}

/// One open charger connection, as recorded in the `connections` table.
public struct ConnectionRecord: Sendable, Equatable {
    public var connectionID: ConnectionID
    public var chargePointID: String
    /// The request path as the charger sent it (not decoded), without the query string.
    public var path: String
    /// The query-string parameters; a repeated name keeps its last value.
    public var query: [String: String]
    /// The upgrade request's headers (lower-cased names), with `Authorization` redacted.
    public var headers: [String: String]
    public var subprotocol: String?
    public var remoteAddress: String?
    public var nodeID: NodeID
    public var connectedAt: Date
    public var lastSeenAt: Date
    public var expiresAt: Date

    public init(
        connectionID: ConnectionID, chargePointID: String, path: String, query: [String: String],
        headers: [String: String], subprotocol: String?, remoteAddress: String?, nodeID: NodeID,
        connectedAt: Date, lastSeenAt: Date, expiresAt: Date
    ) {
        self.connectionID = connectionID
        self.chargePointID = chargePointID
        self.path = path
        self.query = query
        self.headers = headers
        self.subprotocol = subprotocol
        self.remoteAddress = remoteAddress
        self.nodeID = nodeID
        self.connectedAt = connectedAt
        self.lastSeenAt = lastSeenAt
        self.expiresAt = expiresAt
    }

    /// The value that replaces a secret header in stored and logged records.
    public static let redacted = "[redacted]"

    /// Headers as they are stored: names lower-cased, secrets redacted, repeated names joined with ", ".
    public static func storableHeaders(_ fields: some Sequence<(name: String, value: String)>) -> [String: String] {
        var result: [String: String] = [:]
        for (name, value) in fields {
            let key = name.lowercased()
            let stored = (key == "authorization" || key == "proxy-authorization" || key == "cookie") ? redacted : value
            if let existing = result[key], stored != redacted {
                result[key] = existing + ", " + stored
            } else {
                result[key] = stored
            }
        }
        return result
    }

    /// Parses a URL query string (`a=1&b=x%20y`) into a dictionary; `+` is a space, as browsers send it.
    public static func parseQuery(_ query: String?) -> [String: String] {
        guard let query, !query.isEmpty else { return [:] }
        var result: [String: String] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                let spaced = text.replacingOccurrences(of: "+", with: " ")
                return ChargePointIdentity.percentDecode(Substring(spaced)) ?? String(text)
            }
            let name = decode(parts[0])
            let value = parts.count > 1 ? decode(parts[1]) : ""
            result[name] = value
        }
        return result
    }
}

/// The port through which the domain records and forgets connections (Postgres in production).
public protocol ConnectionRepository: Sendable {
    /// Records a new connection. Any earlier record for the same charge point is replaced, on any node:
    /// the newest connection wins. Returns the id of the connection it replaced, if there was one.
    @discardableResult
    func open(_ record: ConnectionRecord) async throws -> ConnectionID?
    /// Forgets one connection. It never touches a newer connection of the same charge point.
    func close(_ id: ConnectionID) async throws
    func find(_ id: ConnectionID) async throws -> ConnectionRecord?
    func list(chargePointID: String?, limit: Int) async throws -> [ConnectionRecord]
    /// Marks the given connections as active now (batched sign-of-life writes).
    func touch(_ ids: [ConnectionID], at date: Date) async throws
}
