public import Foundation

/// OCPP protocol version, identified by its WebSocket subprotocol.
public enum OCPPVersion: String, Sendable, CaseIterable, Codable, Hashable {
    case ocpp16 = "ocpp1.6"
    case ocpp201 = "ocpp2.0.1"
    case ocpp21 = "ocpp2.1"

    /// The `Sec-WebSocket-Protocol` token.
    public var subprotocol: String { rawValue }

    public init?(subprotocol: String) { self.init(rawValue: subprotocol) }

    /// Picks the first server-preferred version offered by the client (subprotocol tokens, any case).
    public static func negotiate(offered: [String], supported: [OCPPVersion] = [.ocpp16]) -> OCPPVersion? {
        let lowered = Set(offered.map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
        return supported.first { lowered.contains($0.subprotocol) }
    }

    /// Whether this is an OCPP 2.x version (different error code spellings and RPC rules).
    public var is2x: Bool { self != .ocpp16 }
}

/// RPC framework error codes (CALLERROR `errorCode`) for OCPP 1.6 and 2.0.1/2.1.
///
/// Codes with the same meaning but different spelling share one case:
/// `formationViolation` is "FormationViolation" (1.6) / "FormatViolation" (2.x);
/// `occurrenceConstraintViolation` is "OccurenceConstraintViolation" (1.6, sic) / "OccurrenceConstraintViolation" (2.x).
public enum OCPPErrorCode: String, Sendable, CaseIterable, Codable, Hashable {
    case notImplemented
    case notSupported
    case internalError
    case protocolError
    case securityError
    case formationViolation
    case propertyConstraintViolation
    case occurrenceConstraintViolation
    case typeConstraintViolation
    case genericError
    // 2.0.1+ only
    case messageTypeNotSupported
    case rpcFrameworkError

    /// Wire spelling for the given version. 2.x-only codes are mapped for 1.6:
    /// `messageTypeNotSupported` → "GenericError", `rpcFrameworkError` → "FormationViolation".
    public func wireName(for version: OCPPVersion) -> String {
        switch self {
        case .notImplemented: return "NotImplemented"
        case .notSupported: return "NotSupported"
        case .internalError: return "InternalError"
        case .protocolError: return "ProtocolError"
        case .securityError: return "SecurityError"
        case .formationViolation: return version == .ocpp16 ? "FormationViolation" : "FormatViolation"
        case .propertyConstraintViolation: return "PropertyConstraintViolation"
        case .occurrenceConstraintViolation:
            return version == .ocpp16 ? "OccurenceConstraintViolation" : "OccurrenceConstraintViolation"
        case .typeConstraintViolation: return "TypeConstraintViolation"
        case .genericError: return "GenericError"
        case .messageTypeNotSupported: return version == .ocpp16 ? "GenericError" : "MessageTypeNotSupported"
        case .rpcFrameworkError: return version == .ocpp16 ? "FormationViolation" : "RpcFrameworkError"
        }
    }

    /// Parses any known spelling of any version (both typo variants accepted). `nil` if unknown.
    public init?(wireName: String) {
        switch wireName {
        case "NotImplemented": self = .notImplemented
        case "NotSupported": self = .notSupported
        case "InternalError": self = .internalError
        case "ProtocolError": self = .protocolError
        case "SecurityError": self = .securityError
        case "FormationViolation", "FormatViolation", "FormatationViolation": self = .formationViolation
        case "PropertyConstraintViolation": self = .propertyConstraintViolation
        case "OccurenceConstraintViolation", "OccurrenceConstraintViolation": self = .occurrenceConstraintViolation
        case "TypeConstraintViolation": self = .typeConstraintViolation
        case "GenericError": self = .genericError
        case "MessageTypeNotSupported": self = .messageTypeNotSupported
        case "RpcFrameworkError": self = .rpcFrameworkError
        default: return nil
        }
    }

    /// Like `init(wireName:)` but maps unknown codes to `.genericError`.
    public static func resolving(_ wireName: String) -> OCPPErrorCode {
        OCPPErrorCode(wireName: wireName) ?? .genericError
    }
}
