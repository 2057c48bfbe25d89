import ChargepathApp
import ChargepathServer
import Foundation
import HTTPTypes
import OCPPCore
import PostgresNIO
import Testing

/// Issue 4: registration, Basic auth, the authorization list, and commands (sync and async).
@Suite(.timeLimit(.minutes(3))) struct ManagementAPITests {
    static func basic(_ identity: String, _ password: String) -> String {
        "Basic " + Data("\(identity):\(password)".utf8).base64EncodedString()
    }

    @Test func aChargerWithAPasswordIsRefusedWithoutItAndLetInWithIt() async throws {
        try await TestServer.with { server in
            let password = "s3cret-passw0rd-1234"
            let put = try await server.api.request("PUT", "/api/v1/charge-points/CP-SEC", body: #"{"description":"Depot 4","password":"\#(password)"}"#)
            #expect(put.status == 201)
            #expect(try JSONValue.parse(put.body)["hasPassword"] == true)

            let upgrade = { (headers: [String]) in
                try TestHTTPResponse(parsing: try await RawTCP.exchange(
                    port: server.running.ocppPort, RawTCP.upgradeRequest(path: "/ocpp/CP-SEC", extraHeaders: headers)
                ))
            }
            let none = try await upgrade([])
            #expect(none.status == 401)
            #expect(none.headers["www-authenticate"]?.hasPrefix("Basic") == true)
            #expect(try await upgrade(["Authorization: \(Self.basic("CP-SEC", "wrong-password-12345"))"]).status == 401)
            #expect(try await upgrade(["Authorization: \(Self.basic("CP-OTHER", password))"]).status == 401)

            try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-SEC", headers: [.authorization: Self.basic("CP-SEC", password)]) { charger in
                _ = try await charger.boot()
            }
            // Only a salted hash is stored.
            let stored = try await TestDatabase.withClient(server.database) { client in
                var hash = ""
                for try await value in try await client.query("SELECT password_hash FROM charge_points WHERE charge_point_id = 'CP-SEC'", logger: TestDatabase.logger).decode(String.self) {
                    hash = value
                }
                return hash
            }
            #expect(!stored.contains(password))
            #expect(ChargerPassword.verify(password, against: stored))

            // Removing the password lets the charger in without one.
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-SEC", body: #"{"password":null}"#).status == 200)
            try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-SEC") { charger in _ = try await charger.boot() }

            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-SEC", body: #"{"password":"short"}"#).status == 400)
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-SEC", body: #"{"registrationStatus":"Maybe"}"#).status == 400)
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP%3ASEC", body: "{}").status == 400)
        }
    }

    @Test func unknownChargersCanBeRefused() async throws {
        try await TestServer.with(configure: { $0.unknownChargers = .reject }) { server in
            let refused = try TestHTTPResponse(parsing: try await RawTCP.exchange(port: server.running.ocppPort, RawTCP.upgradeRequest(path: "/CP-STRANGER")))
            #expect(refused.status == 404)
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-KNOWN", body: "{}").status == 201)
            try await TestCharger.with(url: server.ocppURL + "/CP-KNOWN") { charger in _ = try await charger.boot() }
        }
    }

    @Test func theRegistrationStatusIsWhatTheNextBootGets() async throws {
        try await TestServer.with { server in
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-WAIT", body: #"{"registrationStatus":"Pending"}"#).status == 201)
            try await TestCharger.with(url: server.ocppURL + "/CP-WAIT") { charger in
                let answer = try await charger.boot()
                #expect(answer["status"] == "Pending")
            }
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-WAIT", body: #"{"registrationStatus":"Accepted"}"#).status == 200)
            try await TestCharger.with(url: server.ocppURL + "/CP-WAIT") { charger in
                let answer = try await charger.boot()
                #expect(answer["status"] == "Accepted")
            }
        }
    }

    @Test func idTagChangesApplyToTheNextAuthorize() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-TAGS") { charger in
                _ = try await charger.boot()
                #expect(try await charger.expectResult("Authorize", #"{"idTag":"CARD-1"}"#)["idTagInfo"]?["status"] == "Invalid")
                #expect(try await server.api.request("PUT", "/api/v1/id-tags/CARD-1", body: #"{"status":"Accepted","expiryDate":"2099-01-01T00:00:00Z","parentIdTag":"FLEET"}"#).status == 201)
                let accepted = try await charger.expectResult("Authorize", #"{"idTag":"CARD-1"}"#)
                #expect(accepted["idTagInfo"]?["status"] == "Accepted")
                #expect(accepted["idTagInfo"]?["parentIdTag"] == "FLEET")
                #expect(try await server.api.request("PUT", "/api/v1/id-tags/CARD-1", body: #"{"status":"Blocked"}"#).status == 200)
                #expect(try await charger.expectResult("Authorize", #"{"idTag":"CARD-1"}"#)["idTagInfo"]?["status"] == "Blocked")
                // IdToken is case-insensitive (OCPP 1.6): another spelling is the same tag.
                #expect(try await charger.expectResult("Authorize", #"{"idTag":"card-1"}"#)["idTagInfo"]?["status"] == "Blocked")
                #expect(try await server.api.request("PUT", "/api/v1/id-tags/Card-1", body: #"{"status":"Blocked"}"#).status == 200)
                let list = try await server.api.json("GET", "/api/v1/id-tags")
                #expect((list["idTags"] as? [[String: Any]])?.count == 1)
                #expect(try await server.api.request("DELETE", "/api/v1/id-tags/CARD-1").status == 204)
                #expect(try await server.api.request("DELETE", "/api/v1/id-tags/CARD-1").status == 404)
                #expect(try await charger.expectResult("Authorize", #"{"idTag":"CARD-1"}"#)["idTagInfo"]?["status"] == "Invalid")
            }
            #expect(try await server.api.request("PUT", "/api/v1/id-tags/ABCDEFGHIJKLMNOPQRSTUVWXYZ", body: #"{"status":"Accepted"}"#).status == 400)
            #expect(try await server.api.request("PUT", "/api/v1/id-tags/X", body: #"{"status":"Happy"}"#).status == 400)
            #expect(try await server.api.request("PUT", "/api/v1/id-tags/X", body: #"{"status":"Accepted","expiryDate":"tomorrow"}"#).status == 400)
            #expect(try await server.api.request("PUT", "/api/v1/id-tags/X", body: "{not json").status == 400)
            #expect(try await server.api.request("GET", "/api/v1/id-tags?limit=0").status == 400)
            #expect(try await server.api.request("GET", "/api/v1/id-tags?limit=9999").status == 400)
            #expect(try await server.api.request("GET", "/api/v1/id-tags?cursor=%27%20OR%201%3D1--").status == 200)
        }
    }

    @Test func commandsRunSynchronouslyOrAsynchronouslyAndAreAudited() async throws {
        // 3 s: long enough that a busy machine's answer is not taken for silence, short enough for the silent cases.
        try await TestServer.with(configure: { $0.sessions.callTimeout = .seconds(3) }) { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-CMD") { charger in
                _ = try await charger.boot()
                // Synchronous: the charger's answer comes back.
                async let sync = ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                let syncResponse = try await server.api.request("POST", "/api/v1/charge-points/CP-CMD/calls/RemoteStartTransaction", body: #"{"idTag":"T1"}"#)
                #expect(syncResponse.status == 200)
                #expect(try JSONValue.parse(syncResponse.body)["status"] == "Accepted")
                _ = try await sync

                // Asynchronous: 202 at once, then the execution reaches SUCCEEDED.
                let asyncResponse = try await server.api.request("POST", "/api/v1/charge-points/CP-CMD/calls/RemoteStartTransaction?mode=async", body: #"{"idTag":"T2"}"#)
                #expect(asyncResponse.status == 202)
                let location = try #require(asyncResponse.headers["location"])
                _ = try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                try await eventually("the execution succeeds") {
                    let execution = try JSONValue.parse(try await server.api.request("GET", location).body)
                    return execution["state"] == "SUCCEEDED" && execution["response"]?["status"] == "Accepted"
                }

                // A charger that never answers: 504 in sync mode, TIMED_OUT in async mode.
                async let silent1 = ServerCallTests.answerNextCall(charger) { _ in nil }
                #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-CMD/calls/ClearCache", body: "{}").status == 504)
                _ = try await silent1
                let asyncSilent = try await server.api.request("POST", "/api/v1/charge-points/CP-CMD/calls/ClearCache?mode=async", body: "{}")
                let silentLocation = try #require(asyncSilent.headers["location"])
                _ = try await ServerCallTests.answerNextCall(charger) { _ in nil }
                try await eventually("the execution times out") {
                    try JSONValue.parse(try await server.api.request("GET", silentLocation).body)["state"] == "TIMED_OUT"
                }

                // Bad commands.
                let unknown = try await server.api.request("POST", "/api/v1/charge-points/CP-CMD/calls/Teleport", body: "{}")
                #expect(unknown.status == 400)
                #expect(unknown.body.contains("RemoteStartTransaction"))
                let invalid = try await server.api.request("POST", "/api/v1/charge-points/CP-CMD/calls/Reset", body: #"{"type":"Sideways"}"#)
                #expect(invalid.status == 400)
                #expect(invalid.body.contains("type"))

                // The audit trail has every command, newest first.
                let calls = try await server.api.json("GET", "/api/v1/charge-points/CP-CMD/calls")
                let list = try #require(calls["calls"] as? [[String: Any]])
                #expect(list.count == 4)
                #expect(Set(list.compactMap { $0["state"] as? String }) == ["SUCCEEDED", "TIMED_OUT"])
                #expect(list.allSatisfy { $0["requestedBy"] as? String == "api-token" })
            }
            // Known but gone: 409. Never seen: 404.
            #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-CMD/calls/ClearCache", body: "{}").status == 409)
            #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-NEVER/calls/ClearCache", body: "{}").status == 404)
        }
    }

    @Test func pendingChargersAreNotStartedRemotelyAndRejectedOnesGetNothing() async throws {
        try await TestServer.with { server in
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-P", body: #"{"registrationStatus":"Pending"}"#).status == 201)
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-R", body: #"{"registrationStatus":"Rejected"}"#).status == 201)
            try await TestCharger.with(url: server.ocppURL + "/CP-P") { pending in
                _ = try await pending.boot()
                #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-P/calls/RemoteStartTransaction", body: #"{"idTag":"X"}"#).status == 409)
                // Configuring a Pending charger is allowed.
                async let asked = ServerCallTests.answerNextCall(pending) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-P/calls/ChangeConfiguration", body: #"{"key":"HeartbeatInterval","value":"60"}"#).status == 200)
                _ = try await asked
            }
            try await TestCharger.with(url: server.ocppURL + "/CP-R") { rejected in
                _ = try await rejected.boot()
                #expect(try await server.api.request("POST", "/api/v1/charge-points/CP-R/calls/ClearCache", body: "{}").status == 409)
            }
        }
    }

    @Test func anUnknownErrorCodeFromAChargerCountsAsGenericError() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-ODD") { charger in
                _ = try await charger.boot()
                async let asked = ServerCallTests.answerNextCall(charger) { #"[4,"\#($0)","ItsComplicated","vendor speak",{}]"# }
                let response = try await server.api.request("POST", "/api/v1/charge-points/CP-ODD/calls/ClearCache", body: "{}")
                #expect(response.status == 502)
                #expect(try JSONValue.parse(response.body)["errorCode"] == "GenericError")
                _ = try await asked
            }
        }
    }
}
