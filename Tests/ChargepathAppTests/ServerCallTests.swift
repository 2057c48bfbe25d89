import ChargepathApp
import ChargepathServer
import Foundation
import OCPPCore
import Testing

/// Calls from the central system to a charger, through the operator API.
@Suite(.timeLimit(.minutes(3))) struct ServerCallTests {
    /// Answers the next CALL the charger receives with `answer(id)`, and returns what was asked.
    static func answerNextCall(_ charger: TestCharger, _ answer: @escaping @Sendable (String) -> String?) async throws -> (action: String, payload: JSONValue) {
        guard case .call(let id, let action, let payload) = try await charger.nextFrame() else { throw TestFailure("expected a CALL") }
        if let text = answer(id) { try await charger.send(text) }
        return (action, payload)
    }

    @Test func aCallReachesTheChargerAndItsAnswerComesBack() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-CALLS") { charger in
                _ = try await charger.boot()
                async let asked = Self.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                let response = try await server.api.request("POST", "/api/v1/charge-points/CP-CALLS/calls/RemoteStartTransaction", body: #"{"idTag":"TAG","connectorId":1}"#)
                #expect(response.status == 200)
                #expect(try JSONValue.parse(response.body)["status"] == "Accepted")
                let (action, payload) = try await asked
                #expect(action == "RemoteStartTransaction")
                #expect(payload["idTag"] == "TAG")
            }
        }
    }

    @Test func callErrorsTimeoutsAndBadRequestsAreReportedAsSuch() async throws {
        // The timeout is short for the 504 below, yet long enough for the answers that must arrive in
        // time while a full test run keeps both cores busy (1 s was not).
        try await TestServer.with(configure: { $0.sessions.callTimeout = .seconds(3) }) { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-ERR") { charger in
                _ = try await charger.boot()
                // The charger refuses with a CALLERROR: 502 with its code.
                async let refused = Self.answerNextCall(charger) { #"[4,"\#($0)","NotSupported","no resets here",{}]"# }
                let error = try await server.api.request("POST", "/api/v1/charge-points/CP-ERR/calls/Reset", body: #"{"type":"Hard"}"#)
                #expect(error.status == 502)
                #expect(try JSONValue.parse(error.body)["errorCode"] == "NotSupported")
                _ = try await refused

                // The charger says nothing: 504, and its late answer is ignored.
                async let ignored = Self.answerNextCall(charger) { _ in nil }
                let timeout = try await server.api.request("POST", "/api/v1/charge-points/CP-ERR/calls/ClearCache", body: "{}")
                #expect(timeout.status == 504)
                let (_, _) = try await ignored

                // The next call still works (the slot was freed).
                async let next = Self.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-ERR/calls/ClearCache", body: "{}").status == 200)
                _ = try await next

                #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-ERR/calls/Reset", body: #"{"type":"Sideways"}"#).status == 400)
                #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-ERR/calls/Reset", body: "not json").status == 400)
                #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-ERR/calls/Teleport", body: "{}").status == 400)
                #expect(try await server.api.request("POST", "/api/v1/charge-points/NOBODY/calls/Reset", body: #"{"type":"Hard"}"#).status == 404)
            }
        }
    }

    @Test func callsToOneChargerGoOutOneAtATime() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-SERIAL") { charger in
                _ = try await charger.boot()
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for index in 0..<3 {
                        group.addTask {
                            try await server.api.request("POST", "/api/v1/charge-points/CP-SERIAL/calls/DataTransfer", body: #"{"vendorId":"v\#(index)"}"#).status
                        }
                    }
                    // Each CALL arrives only after the previous one was answered.
                    for _ in 0..<3 {
                        guard case .call(let id, _, _) = try await charger.nextFrame() else { throw TestFailure("expected a CALL") }
                        try await Task.sleep(for: .milliseconds(100))
                        try await charger.send(#"[3,"\#(id)",{"status":"Accepted"}]"#)
                    }
                    for try await status in group { #expect(status == 200) }
                }
            }
        }
    }
}
