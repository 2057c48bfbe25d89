public import Foundation

/// An OCPP-J RPC frame.
///
/// - CALL:      `[2, "<id>", "<action>", {payload}]`
/// - CALLRESULT:`[3, "<id>", {payload}]`
/// - CALLERROR: `[4, "<id>", "<errorCode>", "<errorDescription>", {errorDetails}]`
public enum OCPPFrame: Sendable, Equatable {
    case call(id: String, action: String, payload: JSONValue)
    case callResult(id: String, payload: JSONValue)
    /// `code` is the wire string as received/sent (unknown codes are kept verbatim; see `errorCode`).
    case callError(id: String, code: String, description: String, details: JSONValue)

    public static let maxMessageIDLength = 36

    public enum MessageType: Int64, Sendable {
        case call = 2, callResult = 3, callError = 4
    }

    public var id: String {
        switch self {
        case .call(let id, _, _), .callResult(let id, _), .callError(let id, _, _, _): return id
        }
    }

    public var messageType: MessageType {
        switch self {
        case .call: return .call
        case .callResult: return .callResult
        case .callError: return .callError
        }
    }

    /// For `.callError`: the parsed code, unknown codes mapped to `.genericError`. `nil` for other frames.
    public var errorCode: OCPPErrorCode? {
        if case .callError(_, let code, _, _) = self { return OCPPErrorCode.resolving(code) }
        return nil
    }

    /// Builds a CALLERROR using the version-specific spelling of `code`.
    public static func callError(
        id: String, code: OCPPErrorCode, description: String, details: JSONValue = .emptyObject, version: OCPPVersion
    ) -> OCPPFrame {
        .callError(id: id, code: code.wireName(for: version), description: description, details: details)
    }

    // MARK: Encoding

    public var jsonValue: JSONValue {
        switch self {
        case .call(let id, let action, let payload):
            return .array([.integer(2), .string(id), .string(action), payload])
        case .callResult(let id, let payload):
            return .array([.integer(3), .string(id), payload])
        case .callError(let id, let code, let description, let details):
            return .array([.integer(4), .string(id), .string(code), .string(description), details])
        }
    }

    /// Compact JSON text for the WebSocket text frame.
    public func encode() -> String { jsonValue.serialized() }
    public func encodeBytes() -> [UInt8] { jsonValue.serializedBytes() }

    // MARK: Typed helpers

    /// CALL frame for a typed request (payload encoded with `encoder`).
    public static func call<R: OCPPRequest>(id: String, request: R, encoder: JSONEncoder = JSONEncoder()) throws -> OCPPFrame {
        .call(id: id, action: R.action, payload: try JSONValue(encoding: request, encoder: encoder))
    }

    /// CALLRESULT frame for a typed response.
    public static func callResult(id: String, response: some OCPPPayload, encoder: JSONEncoder = JSONEncoder()) throws -> OCPPFrame {
        .callResult(id: id, payload: try JSONValue(encoding: response, encoder: encoder))
    }

    /// Payload of CALL / CALLRESULT (details for CALLERROR).
    public var payload: JSONValue {
        switch self {
        case .call(_, _, let p), .callResult(_, let p): return p
        case .callError(_, _, _, let d): return d
        }
    }
}

// MARK: - Decoding

/// Why a text frame could not be decoded, classified by what the receiver should do.
public enum FrameDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No usable message id (not JSON and no id recoverable, not an array, id missing / not a string).
    /// → log and drop; nothing can be answered.
    case unreadable(reason: String)
    /// Integer message type other than 2/3/4 with a readable id.
    /// → 1.6: log and ignore. 2.x: answer CALLERROR `MessageTypeNotSupported` (OCPP 2.0.1 RPC rules).
    case unknownMessageType(id: String, messageTypeId: Int64)
    /// Readable id but invalid frame. `messageTypeId` is nil when the type element was missing/not an integer.
    /// `errorCode` is already chosen for the decode version (see `OCPPFrame.decode(text:version:)`).
    case malformed(id: String, messageTypeId: Int64?, errorCode: OCPPErrorCode, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let r): return "unreadable frame: \(r)"
        case .unknownMessageType(let id, let t): return "unknown message type \(t) (id \"\(id)\")"
        case .malformed(let id, let t, let code, let r):
            return "malformed frame (id \"\(id)\", type \(t.map(String.init) ?? "?"), \(code.rawValue)): \(r)"
        }
    }

    /// What the connection handler should do.
    public enum Disposition: Sendable, Equatable {
        /// Log `reason` and drop the frame.
        case drop(reason: String)
        /// Send this CALLERROR frame back.
        case reply(OCPPFrame)
        /// A CALLRESULT/CALLERROR for our outstanding call `id` was malformed: fail that call
        /// (e.g. `CallCorrelator.receiveError(id:)`) and log. Never answer a response with a CALLERROR.
        case failPendingCall(id: String, reason: String)
    }

    public func disposition(for version: OCPPVersion) -> Disposition {
        switch self {
        case .unreadable(let r):
            return .drop(reason: r)
        case .unknownMessageType(let id, let t):
            if version == .ocpp16 { return .drop(reason: "unknown message type \(t) for id \"\(id)\"") }
            return .reply(.callError(id: id, code: .messageTypeNotSupported,
                                     description: "Message type \(t) is not supported", version: version))
        case .malformed(let id, let t, let code, let r):
            if t == 3 || t == 4 { return .failPendingCall(id: id, reason: r) }
            return .reply(.callError(id: id, code: code, description: Self.truncate(r), version: version))
        }
    }

    static func truncate(_ s: String) -> String {
        // Keep error descriptions reasonably short (2.x limits errorDescription to 255 chars).
        s.unicodeScalars.count <= 255 ? s : String(String.UnicodeScalarView(s.unicodeScalars.prefix(252))) + "..."
    }
}

extension OCPPFrame {
    /// Decodes a WebSocket text message.
    ///
    /// Rules (see `FrameDecodingError` for what to do with each error):
    /// - Not JSON: if a `[<2|3|4>, "<id>"` prefix can be recovered by a lenient scan → `.malformed`
    ///   with `formationViolation` (1.6 "FormationViolation" / 2.x "FormatViolation"); otherwise `.unreadable`.
    /// - JSON but not a non-empty array, or element 1 missing / not a string → `.unreadable`.
    /// - Element 0 an integer not in 2...4 → `.unknownMessageType`.
    /// - Readable id but wrong shape (element count, action not a string or empty, payload not an object,
    ///   type not an integer, id empty or longer than 36 chars) → `.malformed` with `formationViolation` for 1.6,
    ///   `rpcFrameworkError` for 2.x. `protocolError` is never produced here (it is reserved for the
    ///   dispatcher: "payload for action is incomplete" in a semantic sense).
    /// - Leniency: `null` payload in CALL/CALLRESULT → `{}`; CALLERROR with 4 elements (no details) or `null`
    ///   details → `{}`; details of another JSON type kept as is. Unknown error codes are kept verbatim.
    public static func decode(text: String, version: OCPPVersion = .ocpp16, maxDepth: Int = 64) -> Result<OCPPFrame, FrameDecodingError> {
        let parsed: Result<JSONValue, JSONParseError> = Result { () throws(JSONParseError) -> JSONValue in
            try JSONValue.parse(text, maxDepth: maxDepth)
        }
        return finish(parsed, header: { recoverHeader(text.utf8.prefix(256)) }, version: version)
    }

    /// Same as `decode(text:)` for raw UTF-8 bytes (invalid UTF-8 is a JSON error, not replaced).
    public static func decode(bytes: some Collection<UInt8>, version: OCPPVersion = .ocpp16, maxDepth: Int = 64) -> Result<OCPPFrame, FrameDecodingError> {
        let parsed: Result<JSONValue, JSONParseError> = Result { () throws(JSONParseError) -> JSONValue in
            try JSONValue.parse(bytes, maxDepth: maxDepth)
        }
        return finish(parsed, header: { recoverHeader(bytes.prefix(256)) }, version: version)
    }

    private static func finish(
        _ parsed: Result<JSONValue, JSONParseError>, header: () -> (Int64, String)?, version: OCPPVersion
    ) -> Result<OCPPFrame, FrameDecodingError> {
        switch parsed {
        case .success(let value):
            return decode(json: value, version: version)
        case .failure(let error):
            if let (type, id) = header(), (2...4).contains(type) {
                return .failure(.malformed(id: id, messageTypeId: type, errorCode: .formationViolation,
                                           reason: "invalid JSON: \(error.description)"))
            }
            return .failure(.unreadable(reason: "invalid JSON: \(error.description)"))
        }
    }

    /// Decodes an already parsed JSON value.
    public static func decode(json value: JSONValue, version: OCPPVersion = .ocpp16) -> Result<OCPPFrame, FrameDecodingError> {
        guard case .array(let a) = value else {
            return .failure(.unreadable(reason: "frame is a JSON \(value.typeName), expected an array"))
        }
        guard a.count >= 2 else {
            return .failure(.unreadable(reason: "frame array has \(a.count) element(s); message id missing"))
        }
        guard case .string(let id) = a[1] else {
            return .failure(.unreadable(reason: "message id (element 1) is a \(a[1].typeName), expected a string"))
        }
        let shapeCode: OCPPErrorCode = version == .ocpp16 ? .formationViolation : .rpcFrameworkError
        func malformed(_ t: Int64?, _ reason: String) -> Result<OCPPFrame, FrameDecodingError> {
            .failure(.malformed(id: id, messageTypeId: t, errorCode: shapeCode, reason: reason))
        }
        guard case .integer(let type) = a[0] else {
            return malformed(nil, "message type (element 0) is a \(a[0].typeName), expected an integer")
        }
        guard let mt = MessageType(rawValue: type) else {
            return .failure(.unknownMessageType(id: id, messageTypeId: type))
        }
        if id.isEmpty { return malformed(type, "message id is empty") }
        if id.utf8.count > maxMessageIDLength, id.count > maxMessageIDLength {
            return malformed(type, "message id is longer than \(maxMessageIDLength) characters")
        }
        switch mt {
        case .call:
            guard a.count == 4 else { return malformed(type, "CALL must have 4 elements, got \(a.count)") }
            guard case .string(let action) = a[2] else {
                return malformed(type, "action (element 2) is a \(a[2].typeName), expected a string")
            }
            if action.isEmpty { return malformed(type, "action is empty") }
            guard let payload = normalizedPayload(a[3]) else {
                return malformed(type, "payload (element 3) is a \(a[3].typeName), expected an object")
            }
            return .success(.call(id: id, action: action, payload: payload))
        case .callResult:
            guard a.count == 3 else { return malformed(type, "CALLRESULT must have 3 elements, got \(a.count)") }
            guard let payload = normalizedPayload(a[2]) else {
                return malformed(type, "payload (element 2) is a \(a[2].typeName), expected an object")
            }
            return .success(.callResult(id: id, payload: payload))
        case .callError:
            guard a.count == 5 || a.count == 4 else {
                return malformed(type, "CALLERROR must have 5 elements, got \(a.count)")
            }
            guard case .string(let code) = a[2] else {
                return malformed(type, "error code (element 2) is a \(a[2].typeName), expected a string")
            }
            guard case .string(let description) = a[3] else {
                return malformed(type, "error description (element 3) is a \(a[3].typeName), expected a string")
            }
            var details: JSONValue = .emptyObject
            if a.count == 5, !a[4].isNull { details = a[4] }
            return .success(.callError(id: id, code: code, description: description, details: details))
        }
    }

    private static func normalizedPayload(_ v: JSONValue) -> JSONValue? {
        switch v {
        case .object: return v
        case .null: return .emptyObject
        default: return nil
        }
    }

    /// Lenient scan of `ws [ ws <digits> ws , ws "<id>"` on raw text (id without escapes, 1...36 chars,
    /// no control characters).
    static func recoverHeader(_ bytes: some Sequence<UInt8>) -> (Int64, String)? {
        let u = Array(bytes)
        var i = 0
        func ws() { while i < u.count, u[i] == 0x20 || u[i] == 0x09 || u[i] == 0x0A || u[i] == 0x0D { i += 1 } }
        ws()
        guard i < u.count, u[i] == 0x5B else { return nil }
        i += 1; ws()
        var type: Int64 = 0
        let dStart = i
        while i < u.count, u[i] >= 0x30, u[i] <= 0x39, i - dStart < 3 {
            type = type * 10 + Int64(u[i] - 0x30)
            i += 1
        }
        guard i > dStart else { return nil }
        ws()
        guard i < u.count, u[i] == 0x2C else { return nil }
        i += 1; ws()
        guard i < u.count, u[i] == 0x22 else { return nil }
        i += 1
        let idStart = i
        while i < u.count, u[i] != 0x22 {
            if u[i] == 0x5C || u[i] < 0x20 { return nil }
            i += 1
        }
        guard i < u.count else { return nil }
        guard let id = String(bytes: u[idStart..<i], encoding: .utf8), !id.isEmpty, id.count <= maxMessageIDLength else { return nil }
        return (type, id)
    }
}
