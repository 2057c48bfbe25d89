import Foundation
public import OCPP16
import OCPPCore
public import Testing

/// Builds representative JSON instances from the embedded OCPP 1.6 JSON schemas
/// (draft-04 / draft-06 subset used by the OCA files: object, array, string,
/// integer, number, boolean, enum, format date-time, maxLength, minItems, $ref).
struct SchemaSampler {
    static let sampleDate = "2026-11-25T12:00:00.000Z"

    let root: [String: Any]
    let definitions: [String: Any]

    init(schemaText: String) throws {
        let object = try JSONSerialization.jsonObject(with: Data(schemaText.utf8))
        guard let root = object as? [String: Any] else {
            throw SamplerError.invalidSchema("top level is not an object")
        }
        self.root = root
        self.definitions = root["definitions"] as? [String: Any] ?? [:]
    }

    enum SamplerError: Error {
        case invalidSchema(String)
    }

    func resolve(_ node: [String: Any]) throws -> [String: Any] {
        guard let ref = node["$ref"] as? String else { return node }
        let prefix = "#/definitions/"
        guard ref.hasPrefix(prefix),
              let target = definitions[String(ref.dropFirst(prefix.count))] as? [String: Any]
        else { throw SamplerError.invalidSchema("unresolvable $ref \(ref)") }
        return try resolve(target)
    }

    /// A valid instance. With `includeOptional` every property is present,
    /// otherwise only the required ones.
    func sample(includeOptional: Bool = true) throws -> [String: Any] {
        guard let object = try value(for: root, includeOptional: includeOptional) as? [String: Any] else {
            throw SamplerError.invalidSchema("top level sample is not an object")
        }
        return object
    }

    func value(for rawNode: [String: Any], includeOptional: Bool) throws -> Any {
        let node = try resolve(rawNode)
        if let values = node["enum"] as? [Any] {
            guard let first = values.first else { throw SamplerError.invalidSchema("empty enum") }
            return first
        }
        switch node["type"] as? String {
        case "object":
            let properties = node["properties"] as? [String: Any] ?? [:]
            let required = Set(node["required"] as? [String] ?? [])
            var out: [String: Any] = [:]
            for (name, child) in properties where includeOptional || required.contains(name) {
                guard let child = child as? [String: Any] else {
                    throw SamplerError.invalidSchema("property \(name) is not a schema")
                }
                out[name] = try value(for: child, includeOptional: includeOptional)
            }
            return out
        case "array":
            guard let items = node["items"] as? [String: Any] else {
                throw SamplerError.invalidSchema("array without items schema")
            }
            let count = max(1, node["minItems"] as? Int ?? 1)
            return try (0..<count).map { _ in try value(for: items, includeOptional: includeOptional) }
        case "string":
            if node["format"] as? String == "date-time" { return Self.sampleDate }
            if node["format"] as? String == "uri" { return "https://example.com/x" }
            let maxLength = node["maxLength"] as? Int ?? 1
            return maxLength >= 1 ? "x" : ""
        case "integer":
            return 1
        case "number":
            return 1.5
        case "boolean":
            return true
        default:
            throw SamplerError.invalidSchema("unsupported node \(node)")
        }
    }

    /// Every valid-but-for-one-missing-required-field variant of the full sample,
    /// at any depth, labelled by a JSON-pointer-ish path.
    func samplesMissingOneRequiredField() throws -> [(path: String, payload: [String: Any])] {
        try variants(of: root, path: "").compactMap { path, payload in
            guard let object = payload as? [String: Any] else { return nil }
            return (path, object)
        }
    }

    private func variants(of rawNode: [String: Any], path: String) throws -> [(String, Any)] {
        let node = try resolve(rawNode)
        switch node["type"] as? String {
        case "object" where node["enum"] == nil:
            let properties = node["properties"] as? [String: Any] ?? [:]
            let required = Set(node["required"] as? [String] ?? [])
            guard let full = try value(for: node, includeOptional: true) as? [String: Any] else { return [] }
            var out: [(String, Any)] = []
            for name in properties.keys.sorted() {
                guard let child = properties[name] as? [String: Any] else { continue }
                if required.contains(name) {
                    var copy = full
                    copy.removeValue(forKey: name)
                    out.append(("\(path)/\(name)", copy))
                }
                for (childPath, childValue) in try variants(of: child, path: "\(path)/\(name)") {
                    var copy = full
                    copy[name] = childValue
                    out.append((childPath, copy))
                }
            }
            return out
        case "array":
            guard let items = node["items"] as? [String: Any] else { return [] }
            return try variants(of: items, path: "\(path)/0").map { ($0.0, [$0.1]) }
        default:
            return []
        }
    }
}

/// Semantic JSON equality for JSONSerialization object graphs.
func jsonEqual(_ a: Any, _ b: Any) -> Bool {
    switch (a, b) {
    case let (x as [String: Any], y as [String: Any]):
        guard x.count == y.count else { return false }
        for (key, xv) in x {
            guard let yv = y[key], jsonEqual(xv, yv) else { return false }
        }
        return true
    case let (x as [Any], y as [Any]):
        return x.count == y.count && zip(x, y).allSatisfy { jsonEqual($0, $1) }
    case let (x as String, y as String):
        return x == y
    case (is NSNull, is NSNull):
        return true
    case let (x as NSNumber, y as NSNumber):
        return x == y
    default:
        return false
    }
}

func jsonData(_ object: Any) throws -> Data {
    try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
}

func jsonObject(_ data: Data) throws -> Any {
    try JSONSerialization.jsonObject(with: data)
}

func responseType<R: OCPPRequest>(of _: R.Type) -> any OCPPPayload.Type {
    R.Response.self
}

/// The two ways payloads are decoded: Foundation's `JSONDecoder` from text (the simulator's and
/// the tests' path) and `JSONValueDecoder` from the parsed tree (the server's hot path). Both must
/// accept and refuse the same payloads and give equal values.
enum PayloadDecoding: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case jsonDecoder, jsonValueDecoder

    func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        switch self {
        case .jsonDecoder: try OCPP16Coding.makeDecoder().decode(T.self, from: data)
        case .jsonValueDecoder: try JSONValue.parse(data).decode(T.self, using: OCPP16Coding.valueDecoder)
        }
    }

    var testDescription: String { rawValue }
}

/// Decodes `data` into `T`, re-encodes it, and returns the re-encoded JSON object.
func roundTrip<T: OCPPPayload>(_ type: T.Type, _ data: Data, decoding: PayloadDecoding = .jsonDecoder) throws -> Any {
    let encoder = OCPP16Coding.makeEncoder()
    let value = try decoding.decode(T.self, from: data)
    let encoded = try encoder.encode(value)
    let again = try decoding.decode(T.self, from: encoded)
    guard again == value else { throw RoundTripError.notStable(String(describing: T.self)) }
    // Both decoders read the same value from the same text.
    for other in PayloadDecoding.allCases where other != decoding {
        guard try other.decode(T.self, from: data) == value else { throw RoundTripError.decodersDisagree(String(describing: T.self)) }
    }
    // JSONValueEncoder (the server's answers, the simulator's requests) writes the same members with
    // the same number forms as JSONEncoder read back through the frame parser (JSONEncoder's member
    // order is a hash order, so members are compared sorted).
    let direct = sortedKeys(try JSONValue(encoding: value, using: OCPP16Coding.valueEncoder)).serialized()
    guard direct == sortedKeys(try JSONValue.parse(encoded)).serialized() else {
        throw RoundTripError.encodersDisagree("\(T.self): \(direct) vs \(String(decoding: encoded, as: UTF8.self))")
    }
    return try jsonObject(encoded)
}

func decodes<T: OCPPPayload>(_ type: T.Type, _ data: Data, decoding: PayloadDecoding = .jsonDecoder) -> Bool {
    (try? decoding.decode(T.self, from: data)) != nil
}

/// `value` with every object's members in key order.
func sortedKeys(_ value: JSONValue) -> JSONValue {
    switch value {
    case .object(let object): .object(JSONObject(object.sorted { $0.key < $1.key }.map { ($0.key, sortedKeys($0.value)) }))
    case .array(let elements): .array(elements.map(sortedKeys))
    default: value
    }
}

enum RoundTripError: Error {
    case notStable(String)
    case decodersDisagree(String)
    case encodersDisagree(String)
}

enum SchemaKind: String, CaseIterable, Sendable {
    case request, response
}

func schemaText(_ action: OCPP16Action, _ kind: SchemaKind) -> String? {
    switch kind {
    case .request: OCPP16Schemas.request(for: action.rawValue)
    case .response: OCPP16Schemas.response(for: action.rawValue)
    }
}

func payloadType(_ action: OCPP16Action, _ kind: SchemaKind) -> any OCPPPayload.Type {
    switch kind {
    case .request: action.requestType
    case .response: action.responseType
    }
}

extension OCPP16Action: CustomTestStringConvertible {
    public var testDescription: String { rawValue }
}

