import ChargepathApp
import ChargepathPostgres
import ChargepathServer
import Foundation
import OCPPCore
import PostgresNIO
import Testing

/// Issue 3: every charger-initiated action answered as the specification says and persisted first,
/// through a real socket and a real PostgreSQL.
@Suite(.timeLimit(.minutes(3))) struct OCPP16HandlerTests {
    static func scalar<T: PostgresDecodable & Sendable>(_ server: TestServer, _ type: T.Type, _ query: PostgresQuery) async throws -> T? {
        try await TestDatabase.withClient(server.database) { client in
            for try await value in try await client.query(query, logger: TestDatabase.logger).decode(T.self) { return value }
            return nil
        }
    }

    static func execute(_ server: TestServer, _ query: PostgresQuery) async throws {
        try await TestDatabase.withClient(server.database) { client in
            _ = try await client.query(query, logger: TestDatabase.logger)
        }
    }

    @Test func bootIsAcceptedAndTheChargePointRecorded() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-BOOT") { charger in
                let answer = try await charger.boot(vendor: "Acme", model: "Fast-1")
                #expect(answer["status"] == "Accepted")
                #expect(answer["interval"] == 300)
                #expect(answer["currentTime"]?.stringValue != nil)
                #expect(try await Self.scalar(server, String.self, "SELECT vendor || '/' || model || '/' || firmware_version FROM charge_points WHERE charge_point_id = 'CP-BOOT'") == "Acme/Fast-1/1.2.3")
                let heartbeat = try await charger.expectResult("Heartbeat", "{}")
                #expect(heartbeat["currentTime"]?.stringValue != nil)
            }
        }
    }

    @Test func beforeBootOtherCallsGetSecurityErrorButAKnownChargerReconnectsWithoutBooting() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-GATE") { charger in
                #expect(try await charger.expectError("Heartbeat", "{}") == "SecurityError")
                _ = try await charger.boot()
                _ = try await charger.expectResult("Heartbeat", "{}")
            }
            try await TestCharger.with(url: server.ocppURL + "/CP-GATE") { charger in
                _ = try await charger.expectResult("Heartbeat", "{}")
            }
        }
    }

    @Test func anOperatorsPendingOrRejectedDecisionIsWhatBootAnswers() async throws {
        try await TestServer.with { server in
            try await Self.execute(server, "INSERT INTO charge_points (charge_point_id, registration_status) VALUES ('CP-PEND', 'Pending'), ('CP-REJ', 'Rejected')")
            try await TestCharger.with(url: server.ocppURL + "/CP-PEND") { charger in
                let answer = try await charger.boot()
                #expect(answer["status"] == "Pending")
                #expect((answer["interval"]?.int64Value ?? 0) > 0)
                #expect(try await charger.expectError("StatusNotification", #"{"connectorId":0,"errorCode":"NoError","status":"Available"}"#) == "SecurityError")
            }
            try await TestCharger.with(url: server.ocppURL + "/CP-REJ") { charger in
                let answer = try await charger.boot()
                #expect(answer["status"] == "Rejected")
            }
        }
    }

    @Test func authorizeAnswersFromTheAuthorizationList() async throws {
        try await TestServer.with { server in
            try await Self.execute(server, """
                INSERT INTO id_tags (id_tag, status, expiry_date, parent_id_tag) VALUES
                ('GOOD', 'Accepted', now() + interval '1 day', 'PARENT'), ('BLOCKED', 'Blocked', NULL, NULL),
                ('OLD', 'Accepted', now() - interval '1 day', NULL)
                """)
            try await TestCharger.with(url: server.ocppURL + "/CP-AUTH") { charger in
                _ = try await charger.boot()
                let good = try await charger.expectResult("Authorize", #"{"idTag":"GOOD"}"#)
                #expect(good["idTagInfo"]?["status"] == "Accepted")
                #expect(good["idTagInfo"]?["parentIdTag"] == "PARENT")
                #expect(good["idTagInfo"]?["expiryDate"]?.stringValue != nil)
                #expect(try await charger.expectResult("Authorize", #"{"idTag":"BLOCKED"}"#)["idTagInfo"]?["status"] == "Blocked")
                #expect(try await charger.expectResult("Authorize", #"{"idTag":"OLD"}"#)["idTagInfo"]?["status"] == "Expired")
                #expect(try await charger.expectResult("Authorize", #"{"idTag":"WHO"}"#)["idTagInfo"]?["status"] == "Invalid")
            }
        }
    }

    @Test func aWholeSessionIsPersisted() async throws {
        try await TestServer.with { server in
            try await Self.execute(server, "INSERT INTO id_tags (id_tag, status) VALUES ('TAG-1', 'Accepted')")
            try await TestCharger.with(url: server.ocppURL + "/CP-TX") { charger in
                _ = try await charger.boot()
                let start = Date(timeIntervalSince1970: 1_790_000_000)
                _ = try await charger.expectResult("StatusNotification", #"{"connectorId":1,"errorCode":"NoError","status":"Preparing","timestamp":"\#(OCPPTime.iso(start))"}"#)
                let startPayload = #"{"connectorId":1,"idTag":"TAG-1","meterStart":1000,"timestamp":"\#(OCPPTime.iso(start))"}"#
                let started = try await charger.expectResult("StartTransaction", startPayload)
                let id = try #require(started["transactionId"]?.int64Value)
                #expect(id > 0)
                #expect(started["idTagInfo"]?["status"] == "Accepted")
                // A retried StartTransaction gets the same id, not a second transaction.
                #expect(try await charger.expectResult("StartTransaction", startPayload)["transactionId"]?.int64Value == id)

                let meter = #"{"connectorId":1,"transactionId":\#(id),"meterValue":[{"timestamp":"\#(OCPPTime.iso(start.addingTimeInterval(60)))","sampledValue":[{"value":"1500","measurand":"Energy.Active.Import.Register","unit":"Wh"},{"value":"7200","measurand":"Power.Active.Import","unit":"W","phase":"L1"}]}]}"#
                _ = try await charger.expectResult("MeterValues", meter)
                _ = try await charger.expectResult("MeterValues", meter)  // resent: not doubled
                // Values for a transaction we do not know are kept, not refused.
                _ = try await charger.expectResult("MeterValues", #"{"connectorId":2,"transactionId":99999,"meterValue":[{"timestamp":"\#(OCPPTime.iso(start))","sampledValue":[{"value":"5"}]}]}"#)

                let stopPayload = #"{"transactionId":\#(id),"idTag":"TAG-1","meterStop":4200,"timestamp":"\#(OCPPTime.iso(start.addingTimeInterval(600)))","reason":"EVDisconnected","transactionData":[{"timestamp":"\#(OCPPTime.iso(start.addingTimeInterval(600)))","sampledValue":[{"value":"4200","measurand":"Energy.Active.Import.Register","unit":"Wh","context":"Transaction.End"}]}]}"#
                let stop = try await charger.expectResult("StopTransaction", stopPayload)
                #expect(stop["idTagInfo"]?["status"] == "Accepted")
                // The same stop again (a retry under a new message id): the same answer, nothing doubled, no anomaly.
                #expect(try await charger.expectResult("StopTransaction", stopPayload)["idTagInfo"]?["status"] == "Accepted")
                #expect(try await Self.scalar(server, Int.self, "SELECT count(*)::int FROM anomalies") == 0)
                // A stop without an idTag is answered without idTagInfo.
                let untagged = try await charger.expectResult("StopTransaction", #"{"transactionId":\#(id),"meterStop":4200,"timestamp":"\#(OCPPTime.iso(start.addingTimeInterval(600)))"}"#)
                #expect(untagged["idTagInfo"] == nil)

                #expect(try await Self.scalar(server, Int.self, "SELECT count(*)::int FROM transactions") == 1)
                #expect(try await Self.scalar(server, String.self, "SELECT meter_start || '-' || meter_stop || '-' || stop_reason || '-' || connector_id FROM transactions WHERE transaction_id = \(Int(id))") == "1000-4200-EVDisconnected-1")
                #expect(try await Self.scalar(server, Int.self, "SELECT count(*)::int FROM meter_values WHERE transaction_id = \(Int(id))") == 3)
                #expect(try await Self.scalar(server, String.self, "SELECT value || unit FROM meter_values WHERE transaction_id = \(Int(id)) AND phase = 'L1'") == "7200W")
                #expect(try await Self.scalar(server, Int.self, "SELECT count(*)::int FROM meter_values WHERE transaction_id = 99999") == 1)
                #expect(try await Self.scalar(server, String.self, "SELECT status FROM connector_status WHERE charge_point_id = 'CP-TX' AND connector_id = 1") == "Preparing")
                #expect(try await Self.scalar(server, Int.self, "SELECT count(*)::int FROM status_history WHERE charge_point_id = 'CP-TX'") == 1)
            }
        }
    }

    @Test func aStopForAnUnknownTransactionIsAnsweredAndRecordedAsAnAnomaly() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-ANOM") { charger in
                _ = try await charger.boot()
                let answer = try await charger.expectResult("StopTransaction", #"{"transactionId":424242,"idTag":"NOBODY","meterStop":10,"timestamp":"2026-11-25T10:00:00Z"}"#)
                #expect(answer["idTagInfo"]?["status"] == "Invalid")
                #expect(try await Self.scalar(server, String.self, "SELECT kind FROM anomalies WHERE charge_point_id = 'CP-ANOM'") == "StopTransactionUnknown")
                #expect(try await Self.scalar(server, String.self, "SELECT detail::text FROM anomalies WHERE charge_point_id = 'CP-ANOM'")
                    == #"{"idTag": "NOBODY", "reason": "", "meterStop": "10", "timestamp": "2026-11-25T10:00:00Z", "transactionId": "424242"}"#)
            }
            // Another charger's transaction is unknown to this one: an anomaly, and the transaction is not touched.
            try await TestCharger.with(url: server.ocppURL + "/CP-OWNER") { owner in
                _ = try await owner.boot()
                let started = try await owner.expectResult("StartTransaction", #"{"connectorId":1,"idTag":"T","meterStart":0,"timestamp":"2026-11-25T10:00:00Z"}"#)
                let id = try #require(started["transactionId"]?.int64Value)
                try await TestCharger.with(url: server.ocppURL + "/CP-OTHER") { other in
                    _ = try await other.boot()
                    _ = try await other.expectResult("StopTransaction", #"{"transactionId":\#(id),"meterStop":99,"timestamp":"2026-11-25T10:05:00Z"}"#)
                }
                #expect(try await Self.scalar(server, String.self, "SELECT kind FROM anomalies WHERE charge_point_id = 'CP-OTHER'") == "StopTransactionUnknown")
                #expect(try await Self.scalar(server, Int.self, "SELECT count(*)::int FROM transactions WHERE transaction_id = \(Int(id)) AND meter_stop IS NULL") == 1)
            }
        }
    }

    @Test func dataTransferAndNotificationsAreStoredAndAnswered() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-MSG") { charger in
                _ = try await charger.boot()
                #expect(try await charger.expectResult("DataTransfer", #"{"vendorId":"com.acme","messageId":"x","data":"hello"}"#)["status"] == "UnknownVendorId")
                _ = try await charger.expectResult("FirmwareStatusNotification", #"{"status":"Installed"}"#)
                _ = try await charger.expectResult("DiagnosticsStatusNotification", #"{"status":"Uploaded"}"#)
                _ = try await charger.expectResult("SecurityEventNotification", #"{"type":"StartupOfTheDevice","timestamp":"2026-11-25T10:00:00Z"}"#)
                #expect(try await charger.expectResult("SignCertificate", #"{"csr":"-----BEGIN CERTIFICATE REQUEST-----"}"#)["status"] == "Rejected")
                #expect(try await Self.scalar(server, Int.self, "SELECT count(*)::int FROM charger_messages WHERE charge_point_id = 'CP-MSG'") == 5)
                #expect(try await Self.scalar(server, String.self, "SELECT payload->>'vendorId' FROM charger_messages WHERE action = 'DataTransfer'") == "com.acme")
            }
        }
    }

    @Test func badInputGetsTheRightErrorOrIsDropped() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-BAD") { charger in
                _ = try await charger.boot()
                // Invalid JSON with a readable id.
                try await charger.send(#"[2,"bad-json","Heartbeat",{"#)
                guard case .callError("bad-json", "FormationViolation", _, _) = try await charger.nextFrame() else { throw TestFailure("invalid JSON") }
                // Wrong array length.
                try await charger.send(#"[2,"short","Heartbeat"]"#)
                guard case .callError("short", "FormationViolation", _, _) = try await charger.nextFrame() else { throw TestFailure("short array") }
                // An id over 36 characters.
                let longID = String(repeating: "i", count: 37)
                try await charger.send(#"[2,"\#(longID)","Heartbeat",{}]"#)
                // (Our own frame decoder refuses such an id, so read the answer as text.)
                #expect(try await charger.next().hasPrefix(#"[4,"\#(longID)","FormationViolation","#))
                // Dropped without an answer: an object, a non-string id, an unknown message type, a CALLRESULT for no call.
                for frame in [#"{"not":"an array"}"#, #"[2,17,"Heartbeat",{}]"#, #"[7,"x",{}]"#, #"[3,"nobody-asked",{}]"#, #"[4,"nobody-asked","GenericError","",{}]"#] {
                    try await charger.send(frame)
                }
                // ... so the next frame is the answer to this Heartbeat.
                guard case .callResult("after-drops", _) = try await charger.call("Heartbeat", "{}", id: "after-drops") else { throw TestFailure("dropped frames were answered") }

                #expect(try await charger.expectError("FlyToTheMoon", "{}") == "NotImplemented")
                #expect(try await charger.expectError("Reset", #"{"type":"Soft"}"#) == "NotSupported")
                #expect(try await charger.expectError("Authorize", "{}") == "OccurenceConstraintViolation")
                #expect(try await charger.expectError("Authorize", #"{"idTag":42}"#) == "TypeConstraintViolation")
                #expect(try await charger.expectError("Authorize", #"{"idTag":"ABCDEFGHIJKLMNOPQRSTUVWXYZ"}"#) == "PropertyConstraintViolation")
                #expect(try await charger.expectError("StatusNotification", #"{"connectorId":1,"errorCode":"NoError","status":"Sleeping"}"#) == "PropertyConstraintViolation")
                #expect(try await charger.expectError("Authorize", #"{"idTag":"A","extra":1}"#) == "FormationViolation")
                // A null payload is read as {}.
                guard case .callResult = try await charger.call("Heartbeat", "null") else { throw TestFailure("null payload") }
            }
        }
    }

    @Test func aResentCallIsAnsweredAgainButHandledOnce() async throws {
        try await TestServer.with { server in
            try await Self.execute(server, "INSERT INTO id_tags (id_tag, status) VALUES ('DUP', 'Accepted')")
            try await TestCharger.with(url: server.ocppURL + "/CP-RESEND") { charger in
                _ = try await charger.boot()
                let start = #"[2,"same-id","StartTransaction",{"connectorId":1,"idTag":"DUP","meterStart":1,"timestamp":"2026-11-25T10:00:00Z"}]"#
                try await charger.send(start)
                try await charger.send(start)  // while the first is being handled
                let first = try await charger.nextFrame()
                let second = try await charger.nextFrame()
                #expect(first.encode() == second.encode())
                #expect(try await Self.scalar(server, Int.self, "SELECT count(*)::int FROM transactions") == 1)
            }
        }
    }

    @Test func aFloodFromOneChargerIsHandledInOrderAndOthersAreNotHeldUp() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-FLOOD") { flooder in
                _ = try await flooder.boot()
                try await TestCharger.with(url: server.ocppURL + "/CP-CALM") { calm in
                    _ = try await calm.boot()
                    let count = 10_000
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for index in 0..<count {
                                try await flooder.send(#"[2,"f\#(index)","Heartbeat",{}]"#)
                            }
                        }
                        group.addTask {
                            // Another charger keeps getting answers while the flood is on.
                            for _ in 0..<20 {
                                _ = try await calm.expectResult("Heartbeat", "{}")
                            }
                        }
                        // Every answer arrives, in order.
                        for index in 0..<count {
                            guard case .callResult(let id, _) = try await flooder.nextFrame(timeout: .seconds(60)), id == "f\(index)" else {
                                throw TestFailure("answer \(index) missing or out of order")
                            }
                        }
                        try await group.waitForAll()
                    }
                }
            }
        }
    }

    /// With the database away, a message is answered InternalError in time (to be sent again), a
    /// BootNotification Pending with an interval to boot again after; the charger's session stays
    /// accepted, and once the database is back its messages are stored again.
    @Test func anUnavailableDatabaseGetsInternalErrorQuicklyAndTheServerRecovers() async throws {
        // The limit also bounds the boot below, on a machine busy with the whole suite (2 s was
        // missed there twice in fresh-clone runs, and 4 s once): 4 s, with the InternalError still
        // due within 8; a boot answered Pending is sent again, as a charger's firmware does.
        try await TestServer.with(configure: { $0.sessions.handlerTimeout = .seconds(4) }) { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-DBDOWN") { charger in
                try await eventually(timeout: .seconds(30), "the charger is accepted") { (try? await charger.boot())?["status"] == "Accepted" }
                let admin = server.database.with(database: "postgres")
                try await TestDatabase.execute("ALTER DATABASE \(server.database.database) ALLOW_CONNECTIONS false", on: admin)
                try await TestDatabase.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(server.database.database)'", on: admin)
                let began = ContinuousClock.now
                let answer: Result<String, any Error>
                do {
                    answer = .success(try await charger.expectError("StatusNotification", #"{"connectorId":0,"errorCode":"NoError","status":"Available"}"#))
                } catch {
                    answer = .failure(error)
                }
                let waited = ContinuousClock.now - began
                let bootBegan = ContinuousClock.now
                let boot: Result<JSONValue, any Error>
                do {
                    boot = .success(try await charger.boot())
                } catch {
                    boot = .failure(error)
                }
                let bootWaited = ContinuousClock.now - bootBegan
                // The database comes back whatever happened above.
                try await TestDatabase.execute("ALTER DATABASE \(server.database.database) ALLOW_CONNECTIONS true", on: admin)
                #expect(try answer.get() == "InternalError")
                #expect(waited < .seconds(8))
                // The default retry interval is 60 s: a random point between 30 s and 60 s.
                #expect(try boot.get()["status"] == "Pending")
                let interval = try #require(try boot.get()["interval"].flatMap { if case .integer(let n) = $0 { Int(n) } else { nil } })
                #expect((30...60).contains(interval), "\(interval)")
                #expect(bootWaited < .seconds(8))
                // Counted once each, as not stored.
                let metrics = try await server.api.request("GET", "/metrics").body
                #expect(metrics.contains(#"chargepath_ocpp_calls_not_stored_total{action="StatusNotification"} 1"#))
                #expect(metrics.contains(#"chargepath_ocpp_calls_not_stored_total{action="BootNotification"} 1"#))
                try await eventually(timeout: .seconds(30), "the server recovers when the database is back") {
                    if case .callResult = try await charger.call("StatusNotification", #"{"connectorId":0,"errorCode":"NoError","status":"Available"}"#) { return true }
                    return false
                }
            }
        }
    }

    /// A CALL whose storage hangs past the time limit gets InternalError, and the charger's next
    /// messages are handled meanwhile: the socket does not wait for the abandoned work.
    @Test func aCallPastItsTimeLimitIsAnsweredAndTheChargersNextMessagesGoOn() async throws {
        // A limit that the other messages meet even on a machine busy with the rest of the suite.
        try await TestServer.with(configure: { $0.sessions.handlerTimeout = .seconds(3) }) { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-STUCK") { charger in
                // Under the whole suite's load a first boot can itself pass the short limit (it was
                // answered InternalError once): the charger boots again, as firmware does.
                try await eventually(timeout: .seconds(30), "the charger is accepted") { (try? await charger.boot())?["status"] == "Accepted" }
                try await TestDatabase.withClient(server.database) { client in
                    let lock = try await GroupCommitTests.lockMeterValues(client: client)
                    do {
                        let began = ContinuousClock.now
                        let answer = try await charger.expectError(
                            "MeterValues",
                            #"{"connectorId":1,"meterValue":[{"timestamp":"2026-11-26T03:00:00Z","sampledValue":[{"value":"10"}]}]}"#
                        )
                        let waited = ContinuousClock.now - began
                        #expect(answer == "InternalError")
                        #expect(waited >= .seconds(3) && waited < .seconds(9))
                        // The MeterValues insert still waits for the lock, which is released only after
                        // these: a socket that waited for that work would never answer them.
                        _ = try await charger.expectResult("StatusNotification", #"{"connectorId":1,"errorCode":"NoError","status":"Available"}"#)
                        _ = try await charger.expectResult("Heartbeat", "{}")
                    } catch {
                        try? await lock.release()
                        throw error
                    }
                    try await lock.release()
                }
                // Once the table is free again, MeterValues are stored as usual.
                _ = try await charger.expectResult(
                    "MeterValues",
                    #"{"connectorId":1,"meterValue":[{"timestamp":"2026-11-26T03:00:01Z","sampledValue":[{"value":"11"}]}]}"#
                )
                // A BootNotification whose storage hangs past the limit is answered Pending, to
                // boot again later (its write may still commit once the lock goes), and the
                // session stays accepted.
                try await TestDatabase.withClient(server.database) { client in
                    let lock = try await GroupCommitTests.lock(client: client, table: "charge_points")
                    do {
                        let began = ContinuousClock.now
                        let answer = try await charger.boot(vendor: "Acme", model: "Stuck-2")
                        let waited = ContinuousClock.now - began
                        #expect(answer["status"] == "Pending")
                        #expect(waited >= .seconds(3) && waited < .seconds(9))
                        _ = try await charger.expectResult("Heartbeat", "{}")
                    } catch {
                        try? await lock.release()
                        throw error
                    }
                    try await lock.release()
                }
                try await eventually(timeout: .seconds(30), "the next boot is accepted") { (try? await charger.boot())?["status"] == "Accepted" }
            }
        }
    }
}
