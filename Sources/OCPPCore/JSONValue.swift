public import Foundation

/// A JSON value. Objects keep member order (see `JSONObject`).
///
/// Equality is JSON-semantic: numbers compare numerically (`.integer(5) == .double(5.0)`),
/// objects compare independent of member order.
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case integer(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The empty object `{}`.
    public static let emptyObject: JSONValue = .object(JSONObject())
}

// MARK: - Accessors

extension JSONValue {
    /// Member lookup; `nil` if not an object or the key is absent.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// Element lookup; `nil` if not an array or out of range.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }

    public var isNull: Bool { if case .null = self { return true } else { return false } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }

    /// `.integer`, or a `.double` with an integral value representable as Int64.
    public var int64Value: Int64? {
        switch self {
        case .integer(let i): return i
        case .double(let d):
            guard d.isFinite, d.rounded(.towardZero) == d, d >= -9.223372036854775808e18, d < 9.223372036854775808e18 else { return nil }
            return Int64(d)
        default: return nil
        }
    }

    /// Any number as Double.
    public var doubleValue: Double? {
        switch self {
        case .integer(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    public var isNumber: Bool {
        switch self { case .integer, .double: return true; default: return false }
    }

    /// Human readable JSON type name ("null", "boolean", "integer", "number", "string", "array", "object").
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .integer: return "integer"
        case .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

// MARK: - Equatable (JSON semantics)

extension JSONValue: Equatable {
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.integer(let a), .integer(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.integer(let a), .double(let b)), (.double(let b), .integer(let a)):
            guard let bi = JSONValue.double(b).int64Value else { return false }
            return a == bi
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        default: return false
        }
    }
}

// MARK: - Literals

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    /// Keeps literal order. Duplicate keys: the last one wins (at the first key's position).
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var o = JSONObject()
        for (k, v) in elements { o[k] = v }
        self = .object(o)
    }
}

extension JSONValue: CustomStringConvertible {
    public var description: String { serialized() }
}

// MARK: - Codable bridging

extension JSONValue {
    /// Encodes `value` with `encoder` (JSONEncoder) and parses the result.
    public init(encoding value: some Encodable, encoder: JSONEncoder = JSONEncoder()) throws {
        let data = try encoder.encode(value)
        self = try JSONValue.parse(data)
    }

    /// Serializes this value and decodes it with `decoder` (JSONDecoder).
    public func decode<T: Decodable>(_ type: T.Type = T.self, decoder: JSONDecoder = JSONDecoder()) throws -> T {
        try decoder.decode(T.self, from: Data(serializedBytes()))
    }
}

struct JSONDynamicKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

/// `JSONValue` can be embedded in Codable payload types (e.g. DataTransfer `data`, free-form fields).
/// Note: decoding an object through a generic `Decoder` cannot preserve member order.
extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        if let c = try? decoder.container(keyedBy: JSONDynamicKey.self) {
            var o = JSONObject()
            for key in c.allKeys { o[key.stringValue] = try c.decode(JSONValue.self, forKey: key) }
            self = .object(o)
            return
        }
        if var c = try? decoder.unkeyedContainer() {
            var a: [JSONValue] = []
            while !c.isAtEnd { a.append(try c.decode(JSONValue.self)) }
            self = .array(a)
            return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .integer(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "Unsupported JSON value")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .null: var c = encoder.singleValueContainer(); try c.encodeNil()
        case .bool(let b): var c = encoder.singleValueContainer(); try c.encode(b)
        case .integer(let i): var c = encoder.singleValueContainer(); try c.encode(i)
        case .double(let d): var c = encoder.singleValueContainer(); try c.encode(d)
        case .string(let s): var c = encoder.singleValueContainer(); try c.encode(s)
        case .array(let a):
            var c = encoder.unkeyedContainer()
            for v in a { try c.encode(v) }
        case .object(let o):
            var c = encoder.container(keyedBy: JSONDynamicKey.self)
            for (k, v) in o { try c.encode(v, forKey: JSONDynamicKey(k)) }
        }
    }
}

// MARK: - JSONObject

/// An insertion-ordered JSON object with fast key lookup.
///
/// Small objects (the common OCPP case) use a linear scan; objects with more than
/// `indexThreshold` members maintain a hash index.
public struct JSONObject: Sendable, Sequence, Equatable {
    public typealias Member = (key: String, value: JSONValue)

    public private(set) var keys: [String]
    public private(set) var values: [JSONValue]
    private var index: [String: Int]?

    static let indexThreshold = 12

    public init() { keys = []; values = []; index = nil }

    /// Builds from ordered members. Duplicate keys: last value wins at first position.
    public init(_ members: some Sequence<(String, JSONValue)>) {
        self.init()
        for (k, v) in members { self[k] = v }
    }

    /// Internal fast path: keys known to be unique.
    init(uniqueKeys keys: [String], values: [JSONValue]) {
        self.keys = keys
        self.values = values
        self.index = nil
        if keys.count > Self.indexThreshold { rebuildIndex() }
    }

    private mutating func rebuildIndex() {
        var idx = [String: Int](minimumCapacity: keys.count)
        for (i, k) in keys.enumerated() { idx[k] = i }
        index = idx
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    public func position(of key: String) -> Int? {
        if let index { return index[key] }
        for i in keys.indices where keys[i] == key { return i }
        return nil
    }

    public func contains(_ key: String) -> Bool { position(of: key) != nil }

    /// Get / set / remove (assign nil). Setting an existing key keeps its position.
    public subscript(key: String) -> JSONValue? {
        get {
            guard let i = position(of: key) else { return nil }
            return values[i]
        }
        set {
            if let i = position(of: key) {
                if let newValue {
                    values[i] = newValue
                } else {
                    keys.remove(at: i)
                    values.remove(at: i)
                    if index != nil { rebuildIndex() }
                }
            } else if let newValue {
                keys.append(key)
                values.append(newValue)
                if index != nil { index![key] = keys.count - 1 }
                else if keys.count > Self.indexThreshold { rebuildIndex() }
            }
        }
    }

    public struct Iterator: IteratorProtocol {
        let object: JSONObject
        var i = 0
        public mutating func next() -> Member? {
            guard i < object.keys.count else { return nil }
            defer { i += 1 }
            return (object.keys[i], object.values[i])
        }
    }

    public func makeIterator() -> Iterator { Iterator(object: self) }

    /// Order-insensitive equality.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        if lhs.keys == rhs.keys { return lhs.values == rhs.values }
        for (k, v) in lhs {
            guard let o = rhs[k], o == v else { return false }
        }
        return true
    }
}
