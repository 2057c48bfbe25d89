public import OCPPCore

/// A CALLERROR the central system answered to one of the charger's CALLs.
public struct CallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The error code as it was on the wire (unknown codes kept verbatim).
    public let wireCode: String
    public let errorDescription: String
    public let details: JSONValue

    public init(wireCode: String, errorDescription: String, details: JSONValue = .emptyObject) {
        self.wireCode = wireCode
        self.errorDescription = errorDescription
        self.details = details
    }

    /// The parsed code; unknown codes are `.genericError`.
    public var code: OCPPErrorCode { OCPPErrorCode.resolving(wireCode) }

    public var description: String {
        "CALLERROR \(wireCode): \(errorDescription)" + (details == .emptyObject ? "" : " \(details.serialized())")
    }
}

/// Everything else that can go wrong for a simulated charger: connection, timeouts, validation.
///
/// A struct with a code (ARCHITECTURE.md convention 6); match on `code`, read `httpStatus`/`body` for
/// refused upgrades.
public struct SimulatorError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// A CALL or raw frame was requested while no WebSocket is open.
        case notConnected
        /// The central system did not answer a CALL within the call timeout.
        case timeout
        /// TCP connect failed (refused, unreachable, DNS, connect timeout).
        case unreachable
        /// The server answered the WebSocket upgrade with something other than 101.
        case upgradeRefused
        /// The upgrade succeeded but the server picked a subprotocol that was not offered.
        case subprotocolMismatch
        /// The connection closed while a CALL was outstanding (or during the handshake).
        case connectionClosed
        /// Outgoing or incoming payload does not match the OCPP 1.6 JSON schema (validation mode).
        case schemaViolation
        /// A response payload could not be decoded into the typed response.
        case decodingFailed
        /// Bad configuration (URL, addresses, ...).
        case invalidConfiguration
        /// The charger's `run()` is not running (or has stopped).
        case notRunning
        /// The charger was stopped or the waiting task was cancelled.
        case cancelled
    }

    public let code: Code
    public let message: String
    /// For `.upgradeRefused`: the HTTP status the server answered.
    public let httpStatus: Int?
    /// For `.upgradeRefused`: the start of the response body (at most 2 KiB).
    public let body: String?

    public init(_ code: Code, _ message: String, httpStatus: Int? = nil, body: String? = nil) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.body = body
    }

    public var description: String { message }

    static func notConnected(_ what: String) -> SimulatorError {
        SimulatorError(.notConnected, "not connected: cannot send \(what)")
    }
}
