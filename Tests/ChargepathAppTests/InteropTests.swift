import ChargepathApp
import ChargepathServer
import Foundation
import PostgresNIO
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Interoperability: the independent `ocpp` Python library (mobilityhouse, 2.1.0) plays a real
/// OCPP 1.6J charger against a real node (`Interop/ocpp16_charger.py`). The library validates
/// every answer of ours against the official 1.6 schemas, so a schema error in an answer fails
/// here. Each test checks what the library received and what the node stored.
///
/// Needs `python3` with `ocpp` and `websockets` (`.ci/run` installs them); without them the tests
/// fail, they do not skip.
@Suite struct InteropTests {
    // Tags seeded in every test: (idTag, status, expiry_date, parent_id_tag).
    static let seededTags: [(String, String, String?, String?)] = [
        ("PY-PARENT", "Accepted", nil, nil),
        ("PY-ACCEPTED", "Accepted", nil, nil),
        ("PY-CHILD", "Accepted", "2099-12-31T23:59:59Z", "PY-PARENT"),
        ("PY-BLOCKED", "Blocked", nil, nil),
        ("PY-EXPIRED", "Accepted", "2020-01-01T00:00:00Z", nil),
        ("PY-INVALID", "Invalid", nil, nil),
        ("PY-REMOTE", "Accepted", nil, nil),
    ]

    /// What each tag must get in idTagInfo.status (PY-UNKNOWN is not in id_tags).
    static let expectedStatus: KeyValuePairs<String, String> = [
        "PY-ACCEPTED": "Accepted",
        "PY-CHILD": "Accepted",
        "PY-BLOCKED": "Blocked",
        "PY-EXPIRED": "Expired",
        "PY-INVALID": "Invalid",
        "PY-UNKNOWN": "Invalid",
    ]

    static func seedTags(_ server: TestServer) async throws {
        try await TestDatabase.withClient(server.database) { client in
            for (tag, status, expiry, parent) in seededTags {
                let expiryDate = try expiry.map { try parseDate($0) }
                try await client.query(
                    "INSERT INTO id_tags (id_tag, status, expiry_date, parent_id_tag) VALUES (\(tag), \(status), \(expiryDate), \(parent))",
                    logger: TestDatabase.logger
                )
            }
        }
    }

    // MARK: - A whole charging session

    @Test func aFullSessionFromThePythonChargerIsAnsweredAndStored() async throws {
        try await PythonCharger.requireLibrary()
        try await TestServer.with { server in
            try await Self.seedTags(server)
            let id = "PY-FULL-1"
            let output = try await PythonCharger.run(
                server: server, id: id, scenario: "full-session",
                arguments: Self.expectedStatus.flatMap { ["--authorize", $0.key] } + ["--start-tag", "PY-ACCEPTED"]
            )
            try output.requireNoErrors()
            #expect(output.document["subprotocol"] as? String == "ocpp1.6")

            // What the library received.
            let boot = try output.response("BootNotification")
            #expect(boot["status"] as? String == "Accepted")
            #expect(boot["interval"] as? Int == 300)
            let bootTime = try parseDate(try #require(boot["currentTime"] as? String, "BootNotification.currentTime"))
            #expect(abs(bootTime.timeIntervalSinceNow) < 300, "currentTime \(bootTime) is close to now")
            let heartbeat = try output.response("Heartbeat")
            _ = try parseDate(try #require(heartbeat["currentTime"] as? String, "Heartbeat.currentTime"))

            for (tag, status) in Self.expectedStatus {
                let info = try #require(try output.response("Authorize:\(tag)")["idTagInfo"] as? [String: Any])
                #expect(info["status"] as? String == status, "Authorize \(tag): \(info)")
            }
            let child = try #require(try output.response("Authorize:PY-CHILD")["idTagInfo"] as? [String: Any])
            #expect(child["parentIdTag"] as? String == "PY-PARENT")
            let expiry = try #require(child["expiryDate"] as? String, "Authorize PY-CHILD has expiryDate: \(child)")
            #expect(try parseDate(expiry) == parseDate("2099-12-31T23:59:59Z"))
            let plain = try #require(try output.response("Authorize:PY-ACCEPTED")["idTagInfo"] as? [String: Any])
            #expect(plain["expiryDate"] == nil && plain["parentIdTag"] == nil, "nothing set, nothing sent: \(plain)")

            let start = try output.response("StartTransaction")
            let transactionID = try #require(start["transactionId"] as? Int, "StartTransaction.transactionId: \(start)")
            #expect(transactionID > 0)
            #expect((start["idTagInfo"] as? [String: Any])?["status"] as? String == "Accepted")
            #expect(try output.response("MeterValues").isEmpty)
            let stop = try output.response("StopTransaction")
            #expect((stop["idTagInfo"] as? [String: Any])?["status"] as? String == "Accepted")
            #expect(try output.response("DataTransfer")["status"] as? String == "UnknownVendorId")
            for step in output.steps where (step["action"] as? String) == "StatusNotification" {
                #expect((step["response"] as? [String: Any])?.isEmpty == true, "StatusNotification.conf is empty: \(step)")
            }

            // What the node stored.
            try await TestDatabase.withClient(server.database) { client in
                try await Self.checkChargePoint(client, id: id, boot: try output.request("BootNotification"))
                try await Self.checkConnectors(client, id: id, output: output)
                try await Self.checkTransaction(client, id: id, transactionID: transactionID, output: output)
                try await Self.checkMeterValues(client, id: id, transactionID: transactionID, output: output)
                try await Self.checkDataTransfer(client, id: id, output: output)
            }
        }
    }

    static func checkChargePoint(_ client: PostgresClient, id: String, boot: [String: Any]) async throws {
        let rows = try await client.query("""
            SELECT registration_status::text, vendor, model, serial_number, charge_box_serial_number, firmware_version,
                   iccid, imsi, meter_type, meter_serial_number, last_boot_at, last_seen_at
            FROM charge_points WHERE charge_point_id = \(id)
            """, logger: TestDatabase.logger)
        var found = 0
        for try await (registration, vendor, model, serial, box, firmware, iccid, imsi, meterType, meterSerial, lastBoot, lastSeen) in rows.decode(
            (String?, String?, String?, String?, String?, String?, String?, String?, String?, String?, Date?, Date?).self
        ) {
            found += 1
            #expect(registration == "Accepted")
            #expect(vendor == boot["chargePointVendor"] as? String)
            #expect(model == boot["chargePointModel"] as? String)
            #expect(serial == boot["chargePointSerialNumber"] as? String)
            #expect(box == boot["chargeBoxSerialNumber"] as? String)
            #expect(firmware == boot["firmwareVersion"] as? String)
            #expect(iccid == boot["iccid"] as? String)
            #expect(imsi == boot["imsi"] as? String)
            #expect(meterType == boot["meterType"] as? String)
            #expect(meterSerial == boot["meterSerialNumber"] as? String)
            #expect(lastBoot.map { abs($0.timeIntervalSinceNow) < 120 } == true, "last_boot_at \(String(describing: lastBoot))")
            #expect(lastSeen.map { abs($0.timeIntervalSinceNow) < 120 } == true, "last_seen_at \(String(describing: lastSeen))")
        }
        #expect(found == 1, "one charge_points row for \(id)")
    }

    static func checkConnectors(_ client: PostgresClient, id: String, output: ChargerOutput) async throws {
        var current: [Int: (status: String, errorCode: String?, info: String?, vendorID: String?, vendorError: String?, at: Date?)] = [:]
        for try await (connector, status, errorCode, info, vendorID, vendorError, at) in try await client.query("""
            SELECT connector_id::int8, status::text, error_code::text, info, vendor_id, vendor_error_code, status_at
            FROM connector_status WHERE charge_point_id = \(id)
            """, logger: TestDatabase.logger
        ).decode((Int, String, String?, String?, String?, String?, Date?).self) {
            current[connector] = (status, errorCode, info, vendorID, vendorError, at)
        }
        #expect(current.keys.sorted() == [0, 1, 2], "connector_status rows: \(current)")
        #expect(current[0]?.status == "Available" && current[0]?.errorCode == "NoError")
        #expect(current[1]?.status == "Available" && current[1]?.errorCode == "NoError")
        let last = try output.request("StatusNotification:1:Available:again")
        let lastAt = try parseDate(try #require(last["timestamp"] as? String))
        #expect(current[1]?.at.map { abs($0.timeIntervalSince(lastAt)) < 0.002 } == true, "status_at of connector 1 is the last timestamp sent, \(lastAt)")
        #expect(current[2]?.status == "Faulted")
        #expect(current[2]?.errorCode == "GroundFailure")
        #expect(current[2]?.info == "ground fault test")
        #expect(current[2]?.vendorID == "com.example.interop")
        #expect(current[2]?.vendorError == "GF-42")

        var history: [Int: [String]] = [:]
        for try await (connector, status) in try await client.query(
            "SELECT connector_id::int8, status::text FROM status_history WHERE charge_point_id = \(id) ORDER BY id",
            logger: TestDatabase.logger
        ).decode((Int, String).self) {
            history[connector, default: []].append(status)
        }
        #expect(history[0] == ["Available"])
        #expect(history[1] == ["Available", "Preparing", "Charging", "Finishing", "Available"], "status_history of connector 1")
        #expect(history[2] == ["Faulted"])
    }

    static func checkTransaction(_ client: PostgresClient, id: String, transactionID: Int, output: ChargerOutput) async throws {
        let startedAt = try parseDate(try #require(try output.request("StartTransaction")["timestamp"] as? String))
        let stoppedAt = try parseDate(try #require(try output.request("StopTransaction")["timestamp"] as? String))
        var found = 0
        for try await (chargePoint, connector, tag, tagStatus, meterStart, started, meterStop, stopped, reason, stopTag) in try await client.query("""
            SELECT charge_point_id, connector_id::int8, id_tag, id_tag_status::text, meter_start::int8, started_at,
                   meter_stop::int8, stopped_at, stop_reason::text, stop_id_tag
            FROM transactions WHERE transaction_id = \(transactionID)
            """, logger: TestDatabase.logger
        ).decode((String, Int, String, String?, Int, Date, Int?, Date?, String?, String?).self) {
            found += 1
            #expect(chargePoint == id)
            #expect(connector == 1)
            #expect(tag == "PY-ACCEPTED")
            #expect(tagStatus == "Accepted")
            #expect(meterStart == 1000)
            #expect(abs(started.timeIntervalSince(startedAt)) < 0.002, "started_at \(started) vs \(startedAt)")
            #expect(meterStop == 2500)
            #expect(stopped.map { abs($0.timeIntervalSince(stoppedAt)) < 0.002 } == true, "stopped_at \(String(describing: stopped)) vs \(stoppedAt)")
            #expect(reason == "Local")
            #expect(stopTag == "PY-ACCEPTED")
        }
        #expect(found == 1, "one transactions row with transaction_id \(transactionID)")
    }

    static func checkMeterValues(_ client: PostgresClient, id: String, transactionID: Int, output: ChargerOutput) async throws {
        struct Row: Equatable, CustomStringConvertible {
            var source, value: String, measurand, unit, context, format, phase, location: String?, connector: Int
            var description: String { "\(source) \(measurand ?? "-")=\(value) \(unit ?? "-") ctx=\(context ?? "-") fmt=\(format ?? "-") ph=\(phase ?? "-") loc=\(location ?? "-") c=\(connector)" }
        }
        var rows: [Row] = []
        var sampledAts: [Date] = []
        for try await (source, value, measurand, unit, context, format, phase, location, connector, sampledAt) in try await client.query("""
            SELECT source::text, value, measurand::text, unit::text, context::text, format::text, phase::text, location::text,
                   connector_id::int8, sampled_at
            FROM meter_values WHERE charge_point_id = \(id) AND transaction_id = \(transactionID) ORDER BY reading_id, sample_index
            """, logger: TestDatabase.logger
        ).decode((String, String, String?, String?, String?, String?, String?, String?, Int, Date).self) {
            rows.append(Row(source: source, value: value, measurand: measurand, unit: unit, context: context, format: format, phase: phase, location: location, connector: connector))
            sampledAts.append(sampledAt)
        }
        #expect(rows.count == 4, "3 sampled values from MeterValues and 1 from StopTransaction.transactionData: \(rows)")
        guard rows.count == 4 else { return }
        // Only what the charger sent is compared (the server may store the spec's defaults for the rest).
        #expect(rows[0].source == "MeterValues" && rows[0].value == "1500" && rows[0].measurand == "Energy.Active.Import.Register")
        #expect(rows[0].unit == "Wh" && rows[0].context == "Sample.Periodic" && rows[0].format == "Raw" && rows[0].location == "Outlet")
        #expect(rows[1].source == "MeterValues" && rows[1].value == "7200.5" && rows[1].measurand == "Power.Active.Import" && rows[1].unit == "W")
        #expect(rows[2].source == "MeterValues" && rows[2].value == "230.1" && rows[2].measurand == "Voltage" && rows[2].unit == "V" && rows[2].phase == "L1-N")
        #expect(rows[3].source == "StopTransaction" && rows[3].value == "2500" && rows[3].measurand == "Energy.Active.Import.Register")
        #expect(rows[3].unit == "Wh" && rows[3].context == "Transaction.End")
        #expect(rows.allSatisfy { $0.connector == 1 }, "connector_id 1 everywhere: \(rows)")
        let meterValue = try #require((try output.request("MeterValues")["meterValue"] as? [[String: Any]])?.first)
        let sampled = try parseDate(try #require(meterValue["timestamp"] as? String))
        #expect(sampledAts.prefix(3).allSatisfy { abs($0.timeIntervalSince(sampled)) < 0.002 }, "sampled_at is the meterValue timestamp")
    }

    static func checkDataTransfer(_ client: PostgresClient, id: String, output: ChargerOutput) async throws {
        let sent = try output.request("DataTransfer")
        var payloads: [String] = []
        for try await payload in try await client.query(
            "SELECT payload::text FROM charger_messages WHERE charge_point_id = \(id) AND action = 'DataTransfer'",
            logger: TestDatabase.logger
        ).decode(String.self) {
            payloads.append(payload)
        }
        #expect(payloads.count == 1, "one DataTransfer in charger_messages: \(payloads)")
        if let stored = payloads.first {
            #expect(jsonEqual(try jsonObject(stored), sent), "stored \(stored), sent \(sent)")
        }
    }

    // MARK: - Every kind of tag, in Authorize, StartTransaction and StopTransaction

    @Test func eachKindOfTagGetsItsStatusInAuthorizeStartAndStop() async throws {
        try await PythonCharger.requireLibrary()
        try await TestServer.with { server in
            try await Self.seedTags(server)
            let id = "PY-TAGS-1"
            let output = try await PythonCharger.run(
                server: server, id: id, scenario: "tags", arguments: Self.expectedStatus.flatMap { ["--authorize", $0.key] }
            )
            try output.requireNoErrors()
            var transactionIDs: [String: Int] = [:]
            for (tag, status) in Self.expectedStatus {
                let authorize = try output.response("Authorize:\(tag)")
                #expect((authorize["idTagInfo"] as? [String: Any])?["status"] as? String == status, "Authorize \(tag): \(authorize)")
                let start = try output.response("StartTransaction:\(tag)")
                let transactionID = try #require(start["transactionId"] as? Int, "StartTransaction \(tag) has a transactionId: \(start)")
                #expect(transactionID > 0, "StartTransaction \(tag): a positive transactionId, whatever the tag")
                #expect((start["idTagInfo"] as? [String: Any])?["status"] as? String == status, "StartTransaction \(tag): \(start)")
                let stop = try output.response("StopTransaction:\(tag)")
                #expect((stop["idTagInfo"] as? [String: Any])?["status"] as? String == status, "StopTransaction \(tag): \(stop)")
                transactionIDs[tag] = transactionID
            }
            #expect(Set(transactionIDs.values).count == transactionIDs.count, "distinct transaction ids: \(transactionIDs)")

            let stored = try await TestDatabase.withClient(server.database) { client in
                var stored: [String: (status: String?, transactionID: Int, stopped: Bool)] = [:]
                for try await (tag, status, transactionID, stopped) in try await client.query(
                    "SELECT id_tag, id_tag_status::text, transaction_id::int8, stopped_at IS NOT NULL FROM transactions WHERE charge_point_id = \(id)",
                    logger: TestDatabase.logger
                ).decode((String, String?, Int, Bool).self) {
                    stored[tag] = (status, transactionID, stopped)
                }
                return stored
            }
            #expect(stored.count == Self.expectedStatus.count, "one transaction per tag: \(stored)")
            for (tag, status) in Self.expectedStatus {
                #expect(stored[tag]?.status == status, "transactions.id_tag_status of \(tag)")
                #expect(stored[tag]?.transactionID == transactionIDs[tag])
                #expect(stored[tag]?.stopped == true)
            }
        }
    }

    // MARK: - The operator's registration decision

    @Test(arguments: ["Pending", "Rejected"])
    func bootNotificationAnswersTheOperatorsRegistrationDecision(decision: String) async throws {
        try await PythonCharger.requireLibrary()
        try await TestServer.with { server in
            let id = "PY-\(decision.uppercased())-1"
            try await TestDatabase.withClient(server.database) { client in
                try await client.query(
                    "INSERT INTO charge_points (charge_point_id, registration_status) VALUES (\(id), \(decision))", logger: TestDatabase.logger
                )
            }
            let output = try await PythonCharger.run(server: server, id: id, scenario: "boot")
            try output.requireNoErrors()
            let boot = try output.response("BootNotification")
            #expect(boot["status"] as? String == decision, "\(boot)")
            #expect((boot["interval"] as? Int).map { $0 > 0 } == true, "a retry interval: \(boot)")
            _ = try parseDate(try #require(boot["currentTime"] as? String, "BootNotification.currentTime"))
            // The boot is recorded, and does not overturn the operator's decision.
            let stored = try await TestDatabase.withClient(server.database) { client in
                var stored: [(String, String?)] = []
                for try await row in try await client.query(
                    "SELECT registration_status, vendor FROM charge_points WHERE charge_point_id = \(id)", logger: TestDatabase.logger
                ).decode((String, String?).self) {
                    stored.append(row)
                }
                return stored
            }
            #expect(stored.count == 1 && stored.first?.0 == decision && stored.first?.1 == "PyInterop", "\(stored)")
        }
    }

    // MARK: - Calls from the central system, answered by the Python charger

    @Test func operatorCallsReachThePythonChargerAndItsAnswersComeBack() async throws {
        try await PythonCharger.requireLibrary()
        try await TestServer.with { server in
            try await Self.seedTags(server)
            let id = "PY-CALLS-1"
            let charger = try PythonCharger.start(server: server, id: id, scenario: "answer-calls", timeout: .seconds(100))
            defer { charger.kill() }

            try await eventually(timeout: .seconds(20), "the Python charger \(id) is connected (\(charger.progress))") {
                try charger.requireRunning()
                let list = try await server.api.json("GET", "/api/v1/connections?chargePointId=\(id)")
                return !((list["connections"] as? [Any]) ?? []).isEmpty
            }
            // The boot went through before the calls start (nothing below depends on it, but it is the charger's order).
            try await eventually("BootNotification stored for \(id) (\(charger.progress))") {
                try charger.requireRunning()
                return try await Self.count(server, "SELECT count(*)::int8 FROM charge_points WHERE charge_point_id = \(id) AND last_boot_at IS NOT NULL") == 1
            }

            // Every call that must reach the charger, in order, with the API's body when it was 200
            // (compared with what the script says it answered, below).
            var reachedCharger: [(action: String, body: [String: Any]?)] = []
            func call(_ action: String, _ payload: String, status: Int = 200, charger chargePointID: String = id) async throws -> [String: Any] {
                try charger.requireRunning()
                let response = try await Self.post(server, "/api/v1/charge-points/\(chargePointID)/calls/\(action)", body: payload)
                try #require(response.status == status, "POST …/calls/\(action) \(payload) answered \(response.status) \(response.body), expected \(status)")
                let body = response.body.isEmpty ? [:] : try jsonObject(response.body)
                if status == 200 || status == 502 { reachedCharger.append((action, status == 200 ? body : nil)) }
                return body
            }

            let all = try await call("GetConfiguration", "{}")
            let keys = ((all["configurationKey"] as? [[String: Any]]) ?? []).compactMap { $0["key"] as? String }
            #expect(Set(keys) == ["HeartbeatInterval", "MeterValueSampleInterval", "MeterValuesSampledData", "AuthorizeRemoteTxRequests", "NumberOfConnectors", "SupportedFeatureProfiles"], "\(all)")

            #expect(try await call("ChangeConfiguration", #"{"key":"HeartbeatInterval","value":"60"}"#)["status"] as? String == "Accepted")
            #expect(try await call("ChangeConfiguration", #"{"key":"NumberOfConnectors","value":"4"}"#)["status"] as? String == "Rejected")
            #expect(try await call("ChangeConfiguration", #"{"key":"NoSuchKey","value":"1"}"#)["status"] as? String == "NotSupported")
            let some = try await call("GetConfiguration", #"{"key":["HeartbeatInterval","NoSuchKey"]}"#)
            let heartbeatKey = (some["configurationKey"] as? [[String: Any]])?.first
            #expect(heartbeatKey?["key"] as? String == "HeartbeatInterval" && heartbeatKey?["value"] as? String == "60" && heartbeatKey?["readonly"] as? Bool == false, "\(some)")
            #expect(some["unknownKey"] as? [String] == ["NoSuchKey"], "\(some)")

            // Remote start: the charger accepts, then starts a transaction with that tag.
            #expect(try await call("RemoteStartTransaction", #"{"idTag":"PY-REMOTE","connectorId":1}"#)["status"] as? String == "Accepted")
            var remoteTransaction = 0
            try await eventually("the remotely started transaction is stored (\(charger.progress))") {
                try charger.requireRunning()
                remoteTransaction = try await Self.count(server, "SELECT coalesce(max(transaction_id), 0)::int8 FROM transactions WHERE charge_point_id = \(id) AND id_tag = 'PY-REMOTE' AND stopped_at IS NULL")
                return remoteTransaction > 0
            }
            // The charger is busy on connector 1 now.
            #expect(try await call("RemoteStartTransaction", #"{"idTag":"PY-REMOTE","connectorId":1}"#)["status"] as? String == "Rejected")

            #expect(try await call("TriggerMessage", #"{"requestedMessage":"MeterValues","connectorId":1}"#)["status"] as? String == "Accepted")
            try await eventually("the triggered MeterValues is stored (\(charger.progress))") {
                try await Self.count(server, "SELECT count(*)::int8 FROM meter_values WHERE charge_point_id = \(id) AND transaction_id = \(remoteTransaction) AND context = 'Trigger'") == 1
            }
            #expect(try await call("TriggerMessage", #"{"requestedMessage":"DiagnosticsStatusNotification"}"#)["status"] as? String == "Accepted")
            try await eventually("the triggered DiagnosticsStatusNotification is stored (\(charger.progress))") {
                try await Self.count(server, "SELECT count(*)::int8 FROM charger_messages WHERE charge_point_id = \(id) AND action = 'DiagnosticsStatusNotification' AND payload->>'status' = 'Idle'") == 1
            }
            #expect(try await call("TriggerMessage", #"{"requestedMessage":"Heartbeat"}"#)["status"] as? String == "Accepted")

            #expect(try await call("RemoteStopTransaction", "{\"transactionId\":\(remoteTransaction)}")["status"] as? String == "Accepted")
            try await eventually("the remotely stopped transaction is stored (\(charger.progress))") {
                try await Self.count(server, "SELECT count(*)::int8 FROM transactions WHERE transaction_id = \(remoteTransaction) AND stop_reason = 'Remote' AND meter_stop = 11234") == 1
            }
            #expect(try await call("RemoteStopTransaction", "{\"transactionId\":\(remoteTransaction)}")["status"] as? String == "Rejected")

            #expect(try await call("ChangeAvailability", #"{"connectorId":2,"type":"Inoperative"}"#)["status"] as? String == "Accepted")
            try await eventually("connector 2 becomes Unavailable (\(charger.progress))") {
                try await Self.count(server, "SELECT count(*)::int8 FROM connector_status WHERE charge_point_id = \(id) AND connector_id = 2 AND status = 'Unavailable'") == 1
            }
            #expect(try await call("UnlockConnector", #"{"connectorId":1}"#)["status"] as? String == "Unlocked")
            #expect(try await call("ClearCache", "{}")["status"] as? String == "Accepted")
            #expect(try await call("GetLocalListVersion", "{}")["listVersion"] as? Int == 0)
            let echoed = try await call("DataTransfer", #"{"vendorId":"com.example.interop","messageId":"Echo","data":"ping"}"#)
            #expect(echoed["status"] as? String == "Accepted" && echoed["data"] as? String == "ping", "\(echoed)")
            #expect(try await call("DataTransfer", #"{"vendorId":"com.example.other"}"#)["status"] as? String == "UnknownVendorId")
            #expect(try await call("Reset", #"{"type":"Soft"}"#)["status"] as? String == "Accepted")

            // A CALLERROR from the charger: 502 with its code and description.
            let callError = try await call("CancelReservation", #"{"reservationId":1}"#, status: 502)
            #expect(callError["errorCode"] as? String == "NotImplemented", "\(callError)")
            #expect((callError["errorDescription"] as? String)?.isEmpty == false, "\(callError)")

            // Payloads that break the action's schema never reach the charger: 400.
            for (action, payload) in [
                ("RemoteStartTransaction", "{}"),
                ("RemoteStartTransaction", #"{"idTag":"THIS-TAG-IS-LONGER-THAN-20"}"#),
                ("Reset", #"{"type":"Sideways"}"#),
                ("ChangeConfiguration", #"{"key":42,"value":"1"}"#),
                ("GetConfiguration", #"{"unexpected":true}"#),
                ("Reset", "not json"),
                // Not something a central system may send (charger-initiated, or no 1.6 action at all).
                ("Heartbeat", "{}"),
                ("BootNotification", #"{"chargePointVendor":"x","chargePointModel":"y"}"#),
                ("NotAnAction", "{}"),
            ] {
                _ = try await call(action, payload, status: 400)
            }
            // Nobody connected under that identity: 404.
            _ = try await call("Reset", #"{"type":"Soft"}"#, status: 404, charger: "PY-NOBODY")

            // Let the charger go, and read what it saw.
            #expect(try await call("ChangeConfiguration", #"{"key":"Chargepath.Exit","value":"true"}"#)["status"] as? String == "Accepted")
            let output = try await charger.finish(timeout: .seconds(30))
            try output.requireNoErrors()
            #expect(output.document["exitReason"] as? String == "exit-key")

            // The charger got exactly the valid calls, in order, and answered what the API returned.
            let received = output.centralSystemCalls
            #expect(received.compactMap { $0["action"] as? String } == reachedCharger.map(\.action), "calls the charger received")
            for (index, (action, body)) in reachedCharger.enumerated() where index < received.count {
                let answer = received[index]["answer"] as? [String: Any]
                guard let body else {
                    #expect(answer?["type"] as? String == "CallError", "\(action): \(String(describing: answer))")
                    #expect(answer?["errorCode"] as? String == "NotImplemented")
                    continue
                }
                #expect(answer?["type"] as? String == "CallResult", "\(action): \(String(describing: answer))")
                #expect(jsonEqual(answer?["payload"] ?? NSNull(), body), "\(action): the API returned \(body), the charger answered \(String(describing: answer))")
            }
            #expect(output.configuration["HeartbeatInterval"] as? String == "60")
            #expect(Set(output.configuration.keys) == Set(keys), "GetConfiguration listed the charger's keys")
            // Its follow-up messages were all answered without errors (requireNoErrors), and stored.
            let remoteStart = try output.response("RemoteStart:StartTransaction")
            #expect(remoteStart["transactionId"] as? Int == remoteTransaction)
            #expect((remoteStart["idTagInfo"] as? [String: Any])?["status"] as? String == "Accepted")
            _ = try output.response("Triggered:Heartbeat")

            // Once it has gone, calls to it are refused with 409: a charge point we know (it booted)
            // that is not connected. (404 is for identities never seen; checked above.)
            var last: TestHTTPResponse?
            try await eventually("calls to \(id) are refused once it disconnected (last: \(last.map { "\($0.status) \($0.body)" } ?? "none"))") {
                let response = try await Self.post(server, "/api/v1/charge-points/\(id)/calls/Reset", body: #"{"type":"Soft"}"#)
                last = response
                return response.status == 409
            }
        }
    }

    @Test func aChargerThatAnswersTooLateGets504AndItsSessionGoesOn() async throws {
        try await PythonCharger.requireLibrary()
        try await TestServer.with(configure: { $0.sessions.callTimeout = .seconds(2) }) { server in
            let id = "PY-SLOW-1"
            let charger = try PythonCharger.start(server: server, id: id, scenario: "answer-calls", timeout: .seconds(60))
            defer { charger.kill() }
            try await eventually(timeout: .seconds(20), "the Python charger \(id) is connected (\(charger.progress))") {
                try charger.requireRunning()
                let list = try await server.api.json("GET", "/api/v1/connections?chargePointId=\(id)")
                return !((list["connections"] as? [Any]) ?? []).isEmpty
            }
            let path = "/api/v1/charge-points/\(id)/calls/"
            // It answers after 3 s; the server waits 2 s.
            let slow = try await Self.post(server, path + "DataTransfer", body: #"{"vendorId":"com.example.interop","messageId":"Sleep","data":"3"}"#)
            #expect(slow.status == 504, "a late answer: \(slow.status) \(slow.body)")
            // Its late answer arrives and is dropped; the next call works.
            try await Task.sleep(for: .milliseconds(1500))
            let next = try await Self.post(server, path + "GetLocalListVersion", body: "{}")
            #expect(next.status == 200 && (try? jsonObject(next.body))?["listVersion"] as? Int == 0, "after a timeout: \(next.status) \(next.body)")
            let exit = try await Self.post(server, path + "ChangeConfiguration", body: #"{"key":"Chargepath.Exit","value":"true"}"#)
            #expect(exit.status == 200, "\(exit.status) \(exit.body)")
            let output = try await charger.finish(timeout: .seconds(30))
            try output.requireNoErrors()
            #expect(output.centralSystemCalls.compactMap { $0["action"] as? String } == ["DataTransfer", "GetLocalListVersion", "ChangeConfiguration"])
        }
    }

    // MARK: - Helpers

    static func count(_ server: TestServer, _ query: PostgresQuery) async throws -> Int {
        try await TestDatabase.withClient(server.database) { client in
            var values: [Int] = []
            for try await value in try await client.query(query, logger: TestDatabase.logger).decode(Int.self) {
                values.append(value)
            }
            return values.first ?? 0
        }
    }

    /// POST with a JSON body, as an operator's client sends it.
    static func post(_ server: TestServer, _ path: String, body: String) async throws -> TestHTTPResponse {
        let request = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer \(TestServer.token)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        return try TestHTTPResponse(parsing: try await RawTCP.exchange(port: server.running.apiPort, request, timeout: .seconds(60)))
    }
}

// MARK: - The Python charger

/// Runs `Interop/ocpp16_charger.py` with `python3` from PATH.
enum PythonCharger {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Interop/ocpp16_charger.py").path
    static let installHint = "run .ci/run, or `python3 -m pip install 'ocpp==2.1.0' websockets`"

    /// python3 from PATH.
    static func python3() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/python3"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw TestFailure("python3 is not on PATH (\(path)); the interop tests need it with the `ocpp` library: \(installHint)")
    }

    /// Fails (never skips) when python3 cannot import the library; returns its version.
    @discardableResult
    static func requireLibrary() async throws -> String {
        let python = try python3()
        let child = try ChildProcess.spawn(python, ["-c", "import ocpp, websockets, importlib.metadata as m; print(m.version('ocpp'))"])
        let result = try await child.wait(timeout: .seconds(60))
        guard result.status == 0 else {
            let reason = result.stderr.split(separator: "\n").last(where: { !$0.allSatisfy(\.isWhitespace) }) ?? "exit status \(result.status)"
            throw TestFailure("\(python) cannot import the OCPP library the interop tests use as a charger (\(reason)). To install it, \(installHint).")
        }
        let version = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard version.hasPrefix("2.") else {
            throw TestFailure("the interop tests need the `ocpp` library 2.x (2.1.0), \(python) has \(version): \(installHint)")
        }
        return version
    }

    /// Starts the script; `timeout` bounds the script's own run (it gives up a little before it).
    static func start(server: TestServer, id: String, scenario: String, arguments: [String] = [], timeout: Duration = .seconds(60)) throws -> ChildProcess {
        let seconds = Double(timeout.components.seconds)
        return try ChildProcess.spawn(try python3(), [
            script, "--url", server.ocppURL + "/ocpp", "--id", id, "--scenario", scenario,
            "--timeout", String(max(5, seconds - 5)), "--call-timeout", "10",
        ] + arguments)
    }

    /// Runs a scenario to its end.
    static func run(server: TestServer, id: String, scenario: String, arguments: [String] = [], timeout: Duration = .seconds(60)) async throws -> ChargerOutput {
        let child = try start(server: server, id: id, scenario: scenario, arguments: arguments, timeout: timeout)
        defer { child.kill() }
        return try await child.finish(timeout: timeout)
    }
}

/// The script's JSON document.
struct ChargerOutput: @unchecked Sendable {  // immutable JSON from JSONSerialization
    let document: [String: Any]
    let stderr: String

    var steps: [[String: Any]] { document["steps"] as? [[String: Any]] ?? [] }
    var centralSystemCalls: [[String: Any]] { document["centralSystemCalls"] as? [[String: Any]] ?? [] }
    var configuration: [String: Any] { document["configuration"] as? [String: Any] ?? [:] }

    func step(_ name: String) throws -> [String: Any] {
        guard let step = steps.first(where: { $0["name"] as? String == name }) else {
            throw TestFailure("the Python charger has no step \(name); it ran: \(steps.compactMap { $0["name"] as? String })")
        }
        return step
    }

    /// The request payload the charger sent.
    func request(_ name: String) throws -> [String: Any] {
        guard let request = try step(name)["request"] as? [String: Any] else { throw TestFailure("step \(name) sent nothing: \(try step(name))") }
        return request
    }

    /// The central system's answer, which the library accepted.
    func response(_ name: String) throws -> [String: Any] {
        let step = try step(name)
        if let error = step["error"] { throw TestFailure("\(name) failed in the Python charger: \(error); answer: \(step["callError"] ?? step["response"] ?? "none")") }
        guard let response = step["response"] as? [String: Any] else { throw TestFailure("\(name) got no CALLRESULT: \(step)") }
        return response
    }

    /// Every step that failed (a CALLERROR, a schema-invalid answer, a timeout), described in one failure.
    func requireNoErrors() throws {
        let failed = steps.filter { $0["error"] != nil }
        guard failed.isEmpty else {
            let lines = failed.map { step in
                "- \(step["name"] ?? "?"): \(step["error"] ?? ""); request \(step["request"] ?? "none"); answer \(step["callError"] ?? step["response"] ?? "none")"
            }
            throw TestFailure("the Python charger found \(failed.count) bad answer(s):\n" + lines.joined(separator: "\n"))
        }
    }
}

/// A subprocess with its output in temporary files (not pipes), reaped by polling `waitpid`
/// (see `Subprocess` in ChargepathPostgres for why not Foundation's `Process`).
final class ChildProcess: Sendable {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    let pid: pid_t
    let command: String
    private let stdoutPath: String
    private let stderrPath: String
    private let exitStatus = Mutex<Int32?>(nil)

    private init(pid: pid_t, command: String, stdoutPath: String, stderrPath: String) {
        self.pid = pid
        self.command = command
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
    }

    deinit {
        kill()
        unlink(stdoutPath)
        unlink(stderrPath)
    }

    static func spawn(_ executable: String, _ arguments: [String]) throws -> ChildProcess {
        let base = NSTemporaryDirectory() + "chargepath-interop-\(UInt64.random(in: 0 ... .max))"
        let stdoutPath = base + ".out", stderrPath = base + ".err"
        let command = ([executable] + arguments).joined(separator: " ")

        #if canImport(Darwin)
        var actions: posix_spawn_file_actions_t? = nil
        var attributes: posix_spawnattr_t? = nil
        #else
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        // The child must not inherit this process's sockets (another test's half-closed
        // connection would stay open while it runs).
        #if canImport(Darwin)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_CLOEXEC_DEFAULT))
        #else
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        } else {
            for fd in 3 ..< min(Int32(getdtablesize()), 4096) where fcntl(fd, F_GETFD) != -1 {
                posix_spawn_file_actions_addclose(&actions, fd)
            }
        }
        #endif

        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONUNBUFFERED"] = "1"
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }

        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw TestFailure("could not start `\(command)`: \(String(cString: strerror(result)))")
        }
        return ChildProcess(pid: pid, command: command, stdoutPath: stdoutPath, stderrPath: stderrPath)
    }

    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// The exit status once it has exited (reaping it), nil while it runs.
    func poll() -> Int32? {
        exitStatus.withLock { status in
            if status == nil {
                var raw: Int32 = 0
                let result = waitpid(pid, &raw, WNOHANG)
                if result == pid {
                    status = Self.decode(raw)
                } else if result < 0 {
                    status = -1
                }
            }
            return status
        }
    }

    /// Kills it if it still runs (SIGKILL) and reaps it.
    func kill() {
        exitStatus.withLock { status in
            guard status == nil else { return }
            #if canImport(Darwin)
            _ = Darwin.kill(pid, SIGKILL)
            #else
            _ = Glibc.kill(pid, SIGKILL)
            #endif
            var raw: Int32 = 0
            status = waitpid(pid, &raw, 0) == pid ? Self.decode(raw) : -1
        }
    }

    /// Waits for it to exit; kills it and fails after `timeout`.
    func wait(timeout: Duration) async throws -> Result {
        let deadline = ContinuousClock.now + timeout
        while poll() == nil {
            if ContinuousClock.now >= deadline {
                kill()
                throw TestFailure("`\(command)` did not finish within \(timeout) and was killed.\nstderr: \(stderr)\nstdout: \(stdout.prefix(4000))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return Result(status: poll() ?? -1, stdout: stdout, stderr: stderr)
    }

    /// Fails when it has already exited (for waits that depend on it running).
    func requireRunning() throws {
        if let status = poll() {
            throw TestFailure("the Python charger exited early with status \(status).\nstderr: \(stderr)\nstdout: \(stdout.prefix(4000))")
        }
    }

    /// What it printed so far, for messages while it runs.
    var progress: String {
        let text = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        return poll().map { "exited with \($0): \(text)" } ?? (text.isEmpty ? "running" : "running, stderr: \(text)")
    }

    /// Waits for the charger script and parses its JSON; fails with its stderr when it failed.
    func finish(timeout: Duration) async throws -> ChargerOutput {
        let result = try await wait(timeout: timeout)
        let lines = result.stdout.split(separator: "\n")
        guard result.status == 0 else {
            throw TestFailure("the Python charger failed (status \(result.status)): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))\nits JSON: \(result.stdout.prefix(8000))")
        }
        guard lines.count == 1, let document = try? jsonObject(String(lines[0])) else {
            throw TestFailure("the Python charger did not print one JSON document: \(result.stdout.prefix(2000))\nstderr: \(result.stderr)")
        }
        return ChargerOutput(document: document, stderr: result.stderr)
    }

    private static func decode(_ raw: Int32) -> Int32 {
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (they are macros in C).
        raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
    }
}

// MARK: - JSON and dates

func jsonObject(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw TestFailure("not a JSON object: \(text.prefix(500))")
    }
    return object
}

func jsonEqual(_ a: Any, _ b: Any) -> Bool {
    guard JSONSerialization.isValidJSONObject([a]), JSONSerialization.isValidJSONObject([b]),
          let left = try? JSONSerialization.data(withJSONObject: [a], options: [.sortedKeys]),
          let right = try? JSONSerialization.data(withJSONObject: [b], options: [.sortedKeys])
    else { return false }
    return left == right
}

/// ISO 8601 with or without fractional seconds.
func parseDate(_ text: String) throws -> Date {
    for strategy in [Date.ISO8601FormatStyle(includingFractionalSeconds: true), Date.ISO8601FormatStyle()] {
        if let date = try? strategy.parse(text) { return date }
    }
    throw TestFailure("not an ISO 8601 date-time: \(text)")
}
