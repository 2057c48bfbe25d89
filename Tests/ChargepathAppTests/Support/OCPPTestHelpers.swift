import Foundation
import OCPP16
import OCPPCore
import Testing

extension TestCharger {
    /// Sends a CALL and returns the frame that answers it (any other frame in between is a failure).
    func call(_ action: String, _ payload: String, id: String = UUID().uuidString) async throws -> OCPPFrame {
        try await send(#"[2,"\#(id)","\#(action)",\#(payload)]"#)
        return try await nextFrame()
    }

    func nextFrame(timeout: Duration = TestTiming.wait) async throws -> OCPPFrame {
        let text = try await next(timeout: timeout)
        switch OCPPFrame.decode(text: text) {
        case .success(let frame): return frame
        case .failure(let error): throw TestFailure("the server sent an unreadable frame \(text): \(error)")
        }
    }

    /// A CALL that must be answered with a CALLRESULT whose payload matches the official response schema.
    func expectResult(_ action: String, _ payload: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> JSONValue {
        let frame = try await call(action, payload)
        guard case .callResult(_, let result) = frame else {
            throw TestFailure("\(action) was answered \(frame.encode()), not a CALLRESULT")
        }
        let schema = try JSONSchema(jsonText: try #require(OCPP16Schemas.response(for: action)))
        let violations = schema.validate(result)
        #expect(violations.isEmpty, "our \(action) answer violates its schema: \(violations.summary())", sourceLocation: sourceLocation)
        return result
    }

    /// A CALL that must be answered with a CALLERROR; returns its error code.
    func expectError(_ action: String, _ payload: String, id: String = UUID().uuidString) async throws -> String {
        let frame = try await call(action, payload, id: id)
        guard case .callError(let answeredID, let code, _, _) = frame else {
            throw TestFailure("\(action) was answered \(frame.encode()), not a CALLERROR")
        }
        #expect(answeredID == id)
        return code
    }

    func boot(vendor: String = "Acme", model: String = "Fast-1") async throws -> JSONValue {
        try await expectResult("BootNotification", #"{"chargePointVendor":"\#(vendor)","chargePointModel":"\#(model)","chargePointSerialNumber":"SN-1","firmwareVersion":"1.2.3"}"#)
    }
}

enum OCPPTime {
    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}
