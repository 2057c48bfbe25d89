public import Foundation

/// Decodes `Decodable` types straight from a parsed `JSONValue`, without serializing it to bytes
/// and parsing it again as `JSONValue.decode(_:decoder:)` with a `JSONDecoder` does.
///
/// Every CALL is parsed once into a `JSONValue` (for the frame and the schema check); decoding its
/// typed payload from that tree rather than from text took a MeterValues from ~20% of the server's
/// CPU to a few percent (BENCHMARKS.md).
///
/// It reads JSON as `JSONDecoder` does for the shapes the OCPP payload types use: integers from
/// integral numbers only, floating point from any number, strings and booleans as they are, a
/// missing key or `null` as `nil` for an optional, unknown keys ignored. Dates are read from strings
/// with `parseDate`; a string it refuses is a `DecodingError.dataCorrupted` at that key's path.
/// Errors are `DecodingError`s with the coding path, as `JSONDecoder`'s are.
public struct JSONValueDecoder: Sendable {
    public var parseDate: @Sendable (String) -> Date?

    public init(parseDate: @escaping @Sendable (String) -> Date? = { try? Date($0, strategy: .iso8601) }) {
        self.parseDate = parseDate
    }

    public func decode<T: Decodable>(_ type: T.Type = T.self, from value: JSONValue) throws -> T {
        try JSONValueDecoding(value: value, parentPath: [], key: nil, options: self).unwrap(T.self)
    }
}

extension JSONValue {
    /// Decodes `T` straight from this value (see `JSONValueDecoder`).
    public func decode<T: Decodable>(_ type: T.Type = T.self, using decoder: JSONValueDecoder) throws -> T {
        try decoder.decode(T.self, from: self)
    }
}

/// One value being decoded, at a coding path (built only when asked for: an error or a container,
/// not for every field).
private struct JSONValueDecoding: Decoder {
    let value: JSONValue
    let parentPath: [any CodingKey]
    let key: (any CodingKey)?
    let options: JSONValueDecoder
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(value: JSONValue, parentPath: [any CodingKey], key: (any CodingKey)?, options: JSONValueDecoder) {
        self.value = value
        self.parentPath = parentPath
        self.key = key
        self.options = options
    }

    var codingPath: [any CodingKey] {
        guard let key else { return parentPath }
        return parentPath + [key]
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else { throw mismatch([String: JSONValue].self, value, codingPath) }
        return KeyedDecodingContainer(KeyedContainer<Key>(object: object, codingPath: codingPath, options: options))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = value else { throw mismatch([JSONValue].self, value, codingPath) }
        return UnkeyedContainer(elements: elements, codingPath: codingPath, options: options)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleValueContainer(decoding: self) }

    /// `T` from this value: dates through `parseDate`, everything else through its `init(from:)`.
    func unwrap<T: Decodable>(_ type: T.Type) throws -> T {
        if T.self == Date.self {
            let text = try Primitive.string(value, codingPath)
            guard let date = options.parseDate(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "Invalid ISO 8601 date-time: \(text)"))
            }
            return unsafeBitCast(date, to: T.self)
        }
        if T.self == JSONValue.self { return unsafeBitCast(value, to: T.self) }
        if T.self == String.self { return unsafeBitCast(try Primitive.string(value, codingPath), to: T.self) }
        return try T(from: self)
    }
}

/// Reading JSON scalars the way `JSONDecoder` does.
private enum Primitive {
    static func string(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> String {
        guard case .string(let text) = value else { throw mismatch(String.self, value, path()) }
        return text
    }

    static func bool(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> Bool {
        guard case .bool(let flag) = value else { throw mismatch(Bool.self, value, path()) }
        return flag
    }

    static func double(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey]) throws -> Double {
        guard let number = value.doubleValue else { throw mismatch(Double.self, value, path()) }
        return number
    }

    static func integer<I: FixedWidthInteger>(_ value: JSONValue, _ path: @autoclosure () -> [any CodingKey], as type: I.Type) throws -> I {
        guard let whole = value.int64Value else { throw mismatch(I.self, value, path()) }
        guard let exact = I(exactly: whole) else {
            throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "Number \(whole) does not fit in \(I.self)."))
        }
        return exact
    }
}

private func mismatch(_ type: Any.Type, _ value: JSONValue, _ path: [any CodingKey]) -> DecodingError {
    if value.isNull {
        return .valueNotFound(type, .init(codingPath: path, debugDescription: "Expected \(type) but found null instead."))
    }
    return .typeMismatch(type, .init(codingPath: path, debugDescription: "Expected to decode \(type) but found \(value.typeName) instead."))
}

/// An array element's place in a coding path, named as `JSONDecoder` names it ("Index 3"); shared
/// with `JSONValueEncoder`.
struct IndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "Index \(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: JSONObject
    let codingPath: [any CodingKey]
    let options: JSONValueDecoder

    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { object.contains(key.stringValue) }

    private func value(for key: Key) throws -> JSONValue {
        guard let value = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "No value associated with key \(key.stringValue)."))
        }
        return value
    }

    private func path(_ key: Key) -> [any CodingKey] { codingPath + [key] }

    func decodeNil(forKey key: Key) throws -> Bool { try value(for: key).isNull }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try Primitive.bool(value(for: key), path(key)) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try Primitive.string(value(for: key), path(key)) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try Primitive.double(value(for: key), path(key)) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { Float(try Primitive.double(value(for: key), path(key))) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try Primitive.integer(value(for: key), path(key), as: Int.self) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try Primitive.integer(value(for: key), path(key), as: Int8.self) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try Primitive.integer(value(for: key), path(key), as: Int16.self) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try Primitive.integer(value(for: key), path(key), as: Int32.self) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try Primitive.integer(value(for: key), path(key), as: Int64.self) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try Primitive.integer(value(for: key), path(key), as: UInt.self) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try Primitive.integer(value(for: key), path(key), as: UInt8.self) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try Primitive.integer(value(for: key), path(key), as: UInt16.self) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try Primitive.integer(value(for: key), path(key), as: UInt32.self) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try Primitive.integer(value(for: key), path(key), as: UInt64.self) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try JSONValueDecoding(value: value(for: key), parentPath: codingPath, key: key, options: options).unwrap(T.self)
    }

    // The optionals of synthesized `Codable` (`decodeIfPresent`): one lookup instead of the default's three.
    private func present(_ key: Key) -> JSONValue? {
        guard let value = object[key.stringValue], !value.isNull else { return nil }
        return value
    }

    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        try present(key).map { try Primitive.string($0, path(key)) }
    }

    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? {
        try present(key).map { try Primitive.integer($0, path(key), as: Int.self) }
    }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? {
        try present(key).map { try Primitive.bool($0, path(key)) }
    }

    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
        try present(key).map { try Primitive.double($0, path(key)) }
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        try present(key).map { try JSONValueDecoding(value: $0, parentPath: codingPath, key: key, options: options).unwrap(T.self) }
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try JSONValueDecoding(value: value(for: key), parentPath: codingPath, key: key, options: options).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try JSONValueDecoding(value: value(for: key), parentPath: codingPath, key: key, options: options).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        JSONValueDecoding(value: object["super"] ?? .null, parentPath: codingPath, key: nil, options: options)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        JSONValueDecoding(value: object[key.stringValue] ?? .null, parentPath: codingPath, key: key, options: options)
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let elements: [JSONValue]
    let codingPath: [any CodingKey]
    let options: JSONValueDecoder
    private(set) var currentIndex = 0

    init(elements: [JSONValue], codingPath: [any CodingKey], options: JSONValueDecoder) {
        self.elements = elements
        self.codingPath = codingPath
        self.options = options
    }

    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }

    private func path() -> [any CodingKey] { codingPath + [IndexKey(currentIndex)] }

    /// The next element (consumed only when reading it succeeds).
    private mutating func next<T>(_ type: T.Type, _ read: (JSONValueDecoding) throws -> T) throws -> T {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(codingPath: path(), debugDescription: "Unkeyed container is at end."))
        }
        let result = try read(JSONValueDecoding(value: elements[currentIndex], parentPath: codingPath, key: IndexKey(currentIndex), options: options))
        currentIndex += 1
        return result
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        guard elements[currentIndex].isNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try next(type) { try Primitive.bool($0.value, $0.codingPath) } }
    mutating func decode(_ type: String.Type) throws -> String { try next(type) { try Primitive.string($0.value, $0.codingPath) } }
    mutating func decode(_ type: Double.Type) throws -> Double { try next(type) { try Primitive.double($0.value, $0.codingPath) } }
    mutating func decode(_ type: Float.Type) throws -> Float { Float(try next(Double.self) { try Primitive.double($0.value, $0.codingPath) }) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next(type) { try Primitive.integer($0.value, $0.codingPath, as: Int.self) } }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next(type) { try Primitive.integer($0.value, $0.codingPath, as: Int64.self) } }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next(type) { try $0.unwrap(T.self) } }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next(KeyedDecodingContainer<NestedKey>.self) { try $0.container(keyedBy: type) }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next((any UnkeyedDecodingContainer).self) { try $0.unkeyedContainer() }
    }

    mutating func superDecoder() throws -> any Decoder { try next((any Decoder).self) { $0 } }
}

private struct SingleValueContainer: SingleValueDecodingContainer {
    let decoding: JSONValueDecoding
    var codingPath: [any CodingKey] { decoding.codingPath }
    private var value: JSONValue { decoding.value }

    func decodeNil() -> Bool { value.isNull }
    func decode(_ type: Bool.Type) throws -> Bool { try Primitive.bool(value, codingPath) }
    func decode(_ type: String.Type) throws -> String { try Primitive.string(value, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try Primitive.double(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { Float(try Primitive.double(value, codingPath)) }
    func decode(_ type: Int.Type) throws -> Int { try Primitive.integer(value, codingPath, as: Int.self) }
    func decode(_ type: Int8.Type) throws -> Int8 { try Primitive.integer(value, codingPath, as: Int8.self) }
    func decode(_ type: Int16.Type) throws -> Int16 { try Primitive.integer(value, codingPath, as: Int16.self) }
    func decode(_ type: Int32.Type) throws -> Int32 { try Primitive.integer(value, codingPath, as: Int32.self) }
    func decode(_ type: Int64.Type) throws -> Int64 { try Primitive.integer(value, codingPath, as: Int64.self) }
    func decode(_ type: UInt.Type) throws -> UInt { try Primitive.integer(value, codingPath, as: UInt.self) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try Primitive.integer(value, codingPath, as: UInt8.self) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try Primitive.integer(value, codingPath, as: UInt16.self) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try Primitive.integer(value, codingPath, as: UInt32.self) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try Primitive.integer(value, codingPath, as: UInt64.self) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoding.unwrap(T.self) }
}
