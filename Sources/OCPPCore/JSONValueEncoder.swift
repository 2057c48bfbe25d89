public import Foundation

/// Encodes `Encodable` values straight into a `JSONValue`, without writing text with a
/// `JSONEncoder` and parsing it back as `JSONValue(encoding:encoder:)` does.
///
/// The server answers every CALL with a typed response and the simulator sends typed requests;
/// both are framed as `JSONValue`, so the text round trip was pure overhead on each message.
///
/// It writes what `JSONEncoder` writes for the shapes the OCPP payload types use: members in the
/// order the type encodes them, `nil` optionals omitted (synthesized `Codable` uses
/// `encodeIfPresent`), whole floating-point numbers without a fraction, dates as strings from
/// `formatDate`. A non-finite floating-point value is an
/// `EncodingError.invalidValue`, as with `JSONEncoder`.
public struct JSONValueEncoder: Sendable {
    public var formatDate: @Sendable (Date) -> String

    public init(formatDate: @escaping @Sendable (Date) -> String = { $0.formatted(.iso8601) }) {
        self.formatDate = formatDate
    }

    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let root = Node()
        try Encoding(node: root, codingPath: [], options: self).box(value)
        return root.value
    }
}

extension JSONValue {
    /// Encodes `value` straight into a `JSONValue` (see `JSONValueEncoder`).
    public init(encoding value: some Encodable, using encoder: JSONValueEncoder) throws {
        self = try encoder.encode(value)
    }
}

/// One slot of the tree being built. Containers hold their children by reference, so a nested
/// container handed out earlier still writes into its parent (as the `Encoder` protocol requires).
private final class Node {
    enum Content {
        case empty
        case scalar(JSONValue)
        case object(keys: [String], values: [Node])
        case array([Node])
    }

    var content: Content = .empty

    var value: JSONValue {
        switch content {
        case .empty: .emptyObject
        case .scalar(let value): value
        case .object(let keys, let values): .object(JSONObject(keys.indices.map { (keys[$0], values[$0].value) }))
        case .array(let elements): .array(elements.map(\.value))
        }
    }

    /// The child under `key` in this object (made an object first if it was empty); a key written
    /// twice keeps its first position and its last value.
    func child(forKey key: String) -> Node {
        let node = Node()
        switch content {
        case .object(var keys, var values):
            content = .empty  // drops the enum's references, so the arrays grow in place
            if let index = keys.firstIndex(of: key) {
                values[index] = node
            } else {
                keys.append(key)
                values.append(node)
            }
            content = .object(keys: keys, values: values)
        default:
            content = .object(keys: [key], values: [node])
        }
        return node
    }

    func appendChild() -> Node {
        let node = Node()
        if case .array(var elements) = content {
            content = .empty
            elements.append(node)
            content = .array(elements)
        } else {
            content = .array([node])
        }
        return node
    }

    func makeObject() {
        if case .object = content { return }
        content = .object(keys: [], values: [])
    }

    func makeArray() {
        if case .array = content { return }
        content = .array([])
    }
}

private struct Encoding: Encoder {
    let node: Node
    let codingPath: [any CodingKey]
    let options: JSONValueEncoder
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        node.makeObject()
        return KeyedEncodingContainer(KeyedContainer<Key>(node: node, codingPath: codingPath, options: options))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        node.makeArray()
        return UnkeyedContainer(node: node, codingPath: codingPath, options: options)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueContainer(encoding: self)
    }

    /// Writes `value` into this node: dates and `JSONValue`s directly, anything else by its `encode(to:)`.
    func box<T: Encodable>(_ value: T) throws {
        // Metatype comparisons, not `as?` casts: a dynamic cast per field was the encoder's largest cost.
        if T.self == Date.self {
            node.content = .scalar(.string(options.formatDate(unsafeBitCast(value, to: Date.self))))
        } else if T.self == JSONValue.self {
            node.content = .scalar(unsafeBitCast(value, to: JSONValue.self))
        } else if T.self == String.self {
            node.content = .scalar(.string(unsafeBitCast(value, to: String.self)))
        } else {
            try value.encode(to: self)
        }
    }

    func scalar(_ value: JSONValue) { node.content = .scalar(value) }

    func number(_ value: Double) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "Unable to encode \(value) directly in JSON."))
        }
        // A whole number is written without a fraction, as JSONEncoder writes it (16, not 16.0).
        if value.rounded(.towardZero) == value, abs(value) < 9_007_199_254_740_992, !(value == 0 && value.sign == .minus) {
            node.content = .scalar(.integer(Int64(value)))
        } else {
            node.content = .scalar(.double(value))
        }
    }

    func integer<I: BinaryInteger>(_ value: I) throws {
        guard let whole = Int64(exactly: value) else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "\(value) does not fit in a 64-bit JSON integer."))
        }
        node.content = .scalar(.integer(whole))
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    let codingPath: [any CodingKey]
    let options: JSONValueEncoder

    private func child(_ key: Key) -> Encoding {
        Encoding(node: node.child(forKey: key.stringValue), codingPath: codingPath + [key], options: options)
    }

    mutating func encodeNil(forKey key: Key) throws { child(key).scalar(.null) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { child(key).scalar(.bool(value)) }
    mutating func encode(_ value: String, forKey key: Key) throws { child(key).scalar(.string(value)) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try child(key).number(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try child(key).number(Double(value)) }
    mutating func encode(_ value: Int, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try child(key).integer(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try child(key).box(value) }

    // The optionals of synthesized `Codable` (`encodeIfPresent`), without the generic default's detour.
    mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { if let value { child(key).scalar(.string(value)) } }
    mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { if let value { try child(key).integer(value) } }
    mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { if let value { child(key).scalar(.bool(value)) } }
    mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { if let value { try child(key).number(value) } }
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws { if let value { try child(key).box(value) } }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        child(key).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        child(key).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        Encoding(node: node.child(forKey: "super"), codingPath: codingPath, options: options)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder { child(key) }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let node: Node
    let codingPath: [any CodingKey]
    let options: JSONValueEncoder
    private(set) var count = 0

    init(node: Node, codingPath: [any CodingKey], options: JSONValueEncoder) {
        self.node = node
        self.codingPath = codingPath
        self.options = options
    }

    private mutating func next() -> Encoding {
        defer { count += 1 }
        return Encoding(node: node.appendChild(), codingPath: codingPath + [IndexKey(count)], options: options)
    }

    mutating func encodeNil() throws { next().scalar(.null) }
    mutating func encode(_ value: Bool) throws { next().scalar(.bool(value)) }
    mutating func encode(_ value: String) throws { next().scalar(.string(value)) }
    mutating func encode(_ value: Double) throws { try next().number(value) }
    mutating func encode(_ value: Float) throws { try next().number(Double(value)) }
    mutating func encode(_ value: Int) throws { try next().integer(value) }
    mutating func encode(_ value: Int64) throws { try next().integer(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try next().box(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        next().container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { next().unkeyedContainer() }

    mutating func superEncoder() -> any Encoder { next() }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let encoding: Encoding
    var codingPath: [any CodingKey] { encoding.codingPath }

    mutating func encodeNil() throws { encoding.scalar(.null) }
    mutating func encode(_ value: Bool) throws { encoding.scalar(.bool(value)) }
    mutating func encode(_ value: String) throws { encoding.scalar(.string(value)) }
    mutating func encode(_ value: Double) throws { try encoding.number(value) }
    mutating func encode(_ value: Float) throws { try encoding.number(Double(value)) }
    mutating func encode(_ value: Int) throws { try encoding.integer(value) }
    mutating func encode(_ value: Int8) throws { try encoding.integer(value) }
    mutating func encode(_ value: Int16) throws { try encoding.integer(value) }
    mutating func encode(_ value: Int32) throws { try encoding.integer(value) }
    mutating func encode(_ value: Int64) throws { try encoding.integer(value) }
    mutating func encode(_ value: UInt) throws { try encoding.integer(value) }
    mutating func encode(_ value: UInt8) throws { try encoding.integer(value) }
    mutating func encode(_ value: UInt16) throws { try encoding.integer(value) }
    mutating func encode(_ value: UInt32) throws { try encoding.integer(value) }
    mutating func encode(_ value: UInt64) throws { try encoding.integer(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try encoding.box(value) }
}
