import OCPP16
import OCPPCore

/// Compiled OCPP 1.6 schemas for the validation mode (compiled once per process).
enum OCPP16Validation {
    private struct Pair: Sendable {
        var request: JSONSchema?
        var response: JSONSchema?
    }

    private static let schemas: [String: Pair] = {
        var result: [String: Pair] = [:]
        for action in OCPP16Action.allCases {
            let name = action.rawValue
            result[name] = Pair(
                request: OCPP16Schemas.request(for: name).flatMap { try? JSONSchema(jsonText: $0) },
                response: OCPP16Schemas.response(for: name).flatMap { try? JSONSchema(jsonText: $0) }
            )
        }
        return result
    }()

    /// Violations of the request schema; `nil` when the action has no schema.
    static func request(_ action: String, _ payload: JSONValue) -> [SchemaViolation]? {
        schemas[action]?.request.map { $0.validate(payload) }
    }

    static func response(_ action: String, _ payload: JSONValue) -> [SchemaViolation]? {
        schemas[action]?.response.map { $0.validate(payload) }
    }
}
