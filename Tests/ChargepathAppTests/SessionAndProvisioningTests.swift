import ChargePointSimulator
import ChargepathApp
import Foundation
import OCPPCore
import Testing

/// Issue 5: the ChargingSession and Provisioning workflows end to end, against a charger on a real socket.
@Suite(.timeLimit(.minutes(3))) struct SessionAndProvisioningTests {
    static func startTransaction(_ charger: TestCharger, idTag: String, meterStart: Int, connector: Int = 1) async throws -> Int64 {
        let tx = try await charger.expectResult(
            "StartTransaction", #"{"connectorId":\#(connector),"idTag":"\#(idTag)","meterStart":\#(meterStart),"timestamp":"\#(OCPPTime.iso(Date()))"}"#
        )
        return try #require(tx["transactionId"]?.int64Value)
    }

    static func meterValues(_ charger: TestCharger, transactionID: Int64, wh: Int, connector: Int = 1) async throws {
        _ = try await charger.expectResult("MeterValues", #"""
            {"connectorId":\#(connector),"transactionId":\#(transactionID),"meterValue":[{"timestamp":"\#(OCPPTime.iso(Date()))","sampledValue":[
            {"value":"\#(wh)","measurand":"Energy.Active.Import.Register","unit":"Wh","context":"Sample.Periodic"},
            {"value":"7200","measurand":"Power.Active.Import","unit":"W"}]}]}
            """#)
    }

    @Test func anEnergyLimitOnTheIdTagStopsTheChargersSession() async throws {
        try await TestServer.with { server in
            #expect(try await server.api.request("PUT", "/api/v1/id-tags/LIMITED", body: #"{"status":"Accepted","sessionLimits":{"maxEnergyWh":500}}"#).status == 201)
            let tag = try JSONValue.parse(try await server.api.request("GET", "/api/v1/id-tags/LIMITED").body)
            #expect(tag["sessionLimits"]?["maxEnergyWh"] == 500)
            try await TestCharger.with(url: server.ocppURL + "/CP-LIMIT") { charger in
                _ = try await charger.boot()
                let transactionID = try await Self.startTransaction(charger, idTag: "LIMITED", meterStart: 1_000)
                let sessionID = "session-\(transactionID)"
                try await eventually("the session follows the transaction") {
                    try await WorkflowTests.execution(server, sessionID)["status"] == "RUNNING"
                }
                try await Self.meterValues(charger, transactionID: transactionID, wh: 1_300)
                try await Self.meterValues(charger, transactionID: transactionID, wh: 1_600)
                // 600 Wh delivered, over the 500 Wh limit: the central system stops the session.
                let (action, payload) = try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                #expect(action == "RemoteStopTransaction")
                #expect(payload["transactionId"]?.int64Value == transactionID)
                _ = try await charger.expectResult(
                    "StopTransaction", #"{"transactionId":\#(transactionID),"meterStop":1620,"timestamp":"\#(OCPPTime.iso(Date()))","reason":"Remote"}"#
                )
                try await eventually("the session ends") { try await WorkflowTests.execution(server, sessionID)["status"] == "SUCCEEDED" }
                let session = try await WorkflowTests.execution(server, sessionID)
                #expect(session["output"]?["limitReached"] == "EnergyLimit")
                #expect(session["output"]?["energyWh"] == 620)
                #expect(session["history"]?.arrayValue?.contains { ($0["detail"]?["note"]?.stringValue ?? "").contains("Energy limit of 500 Wh reached") } == true)
            }
        }
    }

    @Test func aRemoteStartsDurationLimitStopsTheSessionItLeadsTo() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-DUR") { charger in
                _ = try await charger.boot()
                let started = try await WorkflowTests.start(
                    server, "RemoteStart", #"{"chargePointId":"CP-DUR","connectorId":1,"idTag":"TAG-DUR","limits":{"maxDurationSeconds":2}}"#
                )
                #expect(started.status == 202)
                _ = try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                let remoteStart = try #require(started.body["executionId"]?.stringValue)
                try await eventually("waiting for the car") {
                    try await WorkflowTests.execution(server, remoteStart)["state"]?["waitingForStart"] != nil
                }
                let transactionID = try await Self.startTransaction(charger, idTag: "TAG-DUR", meterStart: 0)
                let (action, _) = try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                #expect(action == "RemoteStopTransaction")
                _ = try await charger.expectResult(
                    "StopTransaction", #"{"transactionId":\#(transactionID),"meterStop":90,"timestamp":"\#(OCPPTime.iso(Date()))","reason":"Remote"}"#
                )
                try await eventually("both end") {
                    let session = try await WorkflowTests.execution(server, "session-\(transactionID)")
                    let start = try await WorkflowTests.execution(server, remoteStart)
                    return session["status"] == "SUCCEEDED" && start["status"] == "SUCCEEDED"
                }
                #expect(try await WorkflowTests.execution(server, "session-\(transactionID)")["output"]?["limitReached"] == "DurationLimit")
            }
            #expect(try await WorkflowTests.start(server, "RemoteStart", #"{"chargePointId":"CP-DUR","connectorId":1,"idTag":"T","limits":{"maxEnergyWh":0}}"#).status == 400)
            // Sessions follow transactions and commands have their own endpoint: neither is started by hand.
            #expect(try await WorkflowTests.start(server, "ChargingSession", #"{"chargePointId":"CP-DUR","connectorId":1,"transactionId":1,"idTag":"T","meterStart":0}"#).status == 403)
            #expect(try await WorkflowTests.start(server, "ChargerCommand", #"{"callId":"x","chargePointId":"CP-DUR","action":"Reset","payload":{"type":"Hard"}}"#).status == 403)
        }
    }

    @Test func aRebootWithNoStopTransactionClosesTheTransactionAsInterrupted() async throws {
        try await TestServer.with(configure: { $0.sessionInterruptGraceSeconds = 1 }) { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-REBOOT") { charger in
                _ = try await charger.boot()
                let transactionID = try await Self.startTransaction(charger, idTag: "TAG-R", meterStart: 2_000)
                try await Self.meterValues(charger, transactionID: transactionID, wh: 2_750)
                try await eventually("the session runs") {
                    try await WorkflowTests.execution(server, "session-\(transactionID)")["status"] == "RUNNING"
                }
                // The charger reboots and forgets its transaction: a boot, then the connector is Available.
                _ = try await charger.boot()
                _ = try await charger.expectResult("StatusNotification", #"{"connectorId":1,"errorCode":"NoError","status":"Available"}"#)
                try await eventually("the transaction is closed") {
                    let tx = try JSONValue.parse(try await server.api.request("GET", "/api/v1/transactions/\(transactionID)").body)
                    return tx["stopReason"] == "Interrupted"
                }
                let closed = try JSONValue.parse(try await server.api.request("GET", "/api/v1/transactions/\(transactionID)").body)
                #expect(closed["meterStop"] == 2_750, "closed with the last meter value: \(closed)")
                let session = try await WorkflowTests.execution(server, "session-\(transactionID)")
                #expect(session["status"] == "SUCCEEDED")
                #expect(session["output"]?["interrupted"] == true)

                // The charger's own StopTransaction, sent after all, wins: its figures are the real ones.
                _ = try await charger.expectResult(
                    "StopTransaction", #"{"transactionId":\#(transactionID),"meterStop":2790,"timestamp":"\#(OCPPTime.iso(Date()))","reason":"Reboot"}"#
                )
                let stopped = try JSONValue.parse(try await server.api.request("GET", "/api/v1/transactions/\(transactionID)").body)
                #expect(stopped["meterStop"] == 2_790)
                #expect(stopped["stopReason"] == "Reboot")
            }
        }
    }

    @Test func anAcceptedBootIsProvisionedWithTheOperatorsConfiguration() async throws {
        try await TestServer.with(configure: { $0.provisionOnBoot = true }) { server in
            #expect(try await server.api.request("PUT", "/api/v1/configuration/HeartbeatInterval", body: #"{"value":"120"}"#).status == 201)
            #expect(try await server.api.request("PUT", "/api/v1/configuration/MeterValueSampleInterval", body: #"{"value":"60"}"#).status == 201)
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-PROV/configuration/MeterValueSampleInterval", body: #"{"value":"15"}"#).status == 201)
            #expect(try await server.api.request("PUT", "/api/v1/configuration/MeterValueSampleInterval", body: #"{"value":"30"}"#).status == 200)
            let all = try JSONValue.parse(try await server.api.request("GET", "/api/v1/configuration").body)
            #expect(all["configuration"]?.arrayValue?.count == 2)
            #expect(try await server.api.request("PUT", "/api/v1/configuration/\(String(repeating: "K", count: 51))", body: #"{"value":"1"}"#).status == 400)
            #expect(try await server.api.request("PUT", "/api/v1/configuration/Key", body: #"{"value":5}"#).status == 400)
            #expect(try await server.api.request("DELETE", "/api/v1/configuration/Nope").status == 404)

            try await TestCharger.with(url: server.ocppURL + "/CP-PROV") { charger in
                _ = try await charger.boot()
                var asked: [(String, JSONValue)] = []
                // Keys in order; the charger's own value wins; it rejects one; then the statuses are asked for.
                asked.append(try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# })
                asked.append(try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Rejected"}]"# })
                asked.append(try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# })
                #expect(asked.map(\.0) == ["ChangeConfiguration", "ChangeConfiguration", "TriggerMessage"])
                #expect(asked[0].1 == ["key": "HeartbeatInterval", "value": "120"])
                #expect(asked[1].1 == ["key": "MeterValueSampleInterval", "value": "15"])
                #expect(asked[2].1 == ["requestedMessage": "StatusNotification"])
                try await eventually("provisioning ends") {
                    let list = try JSONValue.parse(try await server.api.request("GET", "/api/v1/executions?workflow=Provisioning&chargePointId=CP-PROV").body)
                    return list["executions"]?[0]?["status"] == "SUCCEEDED"
                }
                let list = try JSONValue.parse(try await server.api.request("GET", "/api/v1/executions?workflow=Provisioning&chargePointId=CP-PROV").body)
                let output = list["executions"]?[0]?["output"]
                #expect(output?["configuration"]?["MeterValueSampleInterval"] == "Rejected")
                #expect(output?["rejected"] == ["MeterValueSampleInterval"])
                #expect(output?["triggerMessage"] == "Accepted")
            }
        }
    }

    @Test func limitsCanBeSentToARunningSession() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-SIG") { charger in
                _ = try await charger.boot()
                let transactionID = try await Self.startTransaction(charger, idTag: "TAG-S", meterStart: 0)
                let sessionID = "session-\(transactionID)"
                try await eventually("the session runs") { try await WorkflowTests.execution(server, sessionID)["status"] == "RUNNING" }
                #expect(try await server.api.request("POST", "/api/v1/executions/\(sessionID)/signals/limits", body: #"{"maxEnergyWh":-1}"#).status == 400)
                #expect(try await server.api.request("POST", "/api/v1/executions/nope/signals/limits", body: #"{"maxEnergyWh":1}"#).status == 404)
                #expect(try await server.api.request("POST", "/api/v1/executions/\(sessionID)/signals/limits", body: #"{"maxEnergyWh":100}"#).status == 202)
                try await eventually("the limit applies") {
                    (try await WorkflowTests.execution(server, sessionID)["state"]?.serialized() ?? "").contains("\"maxEnergyWh\":100")
                }
                try await Self.meterValues(charger, transactionID: transactionID, wh: 150)
                let (action, _) = try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                #expect(action == "RemoteStopTransaction")
                _ = try await charger.expectResult(
                    "StopTransaction", #"{"transactionId":\#(transactionID),"meterStop":150,"timestamp":"\#(OCPPTime.iso(Date()))","reason":"Remote"}"#
                )
                try await eventually("the session ends") { try await WorkflowTests.execution(server, sessionID)["status"] == "SUCCEEDED" }
                #expect(try await server.api.request("POST", "/api/v1/executions/\(sessionID)/signals/limits", body: #"{"maxEnergyWh":1}"#).status == 409)
            }
        }
    }
}

/// The same workflows driving the project's charge-point simulator, which behaves as a 1.6 charger
/// does: it keeps the configuration it is sent, meters energy, and stops a session when told to.
@Suite(.timeLimit(.minutes(3))) struct WorkflowsWithTheSimulatorTests {
    @Test func provisioningSetsTheSampleIntervalAndAnEnergyLimitEndsTheSimulatedSession() async throws {
        try await TestServer.with(configure: { $0.provisionOnBoot = true }) { server in
            #expect(try await server.api.request("PUT", "/api/v1/configuration/MeterValueSampleInterval", body: #"{"value":"1"}"#).status == 201)
            #expect(try await server.api.request("PUT", "/api/v1/id-tags/SIM-LIMIT", body: #"{"status":"Accepted","sessionLimits":{"maxEnergyWh":5}}"#).status == 201)
            var configuration = ChargePointConfiguration(url: server.ocppURL + "/sim", identity: "SIM-WF-1")
            configuration.meterValueInterval = .seconds(60)
            configuration.maxPowerW = 11_000
            let charger = SimulatedChargePoint(configuration: configuration)
            try await charger.withRunning { charger in
                try await charger.waitUntilBooted(timeout: .seconds(20))
                // Provisioning pushed the operator's value (and the charger accepted it).
                try await charger.waitUntil(timeout: .seconds(20)) { $0.configuration["MeterValueSampleInterval"] == "1" }
                charger.startTransaction(connectorId: 1, idTag: "SIM-LIMIT")
                // 11 kW for a few one-second samples passes 5 Wh: the server sends RemoteStopTransaction.
                try await charger.waitUntil(timeout: .seconds(60)) { $0.completedTransactions == 1 }
            }
            try await eventually(timeout: .seconds(20), "the session ends with the limit") {
                let list = try JSONValue.parse(try await server.api.request("GET", "/api/v1/executions?workflow=ChargingSession&chargePointId=SIM-WF-1").body)
                return list["executions"]?[0]?["status"] == "SUCCEEDED"
            }
            let sessions = try JSONValue.parse(try await server.api.request("GET", "/api/v1/executions?workflow=ChargingSession&chargePointId=SIM-WF-1").body)
            let output = sessions["executions"]?[0]?["output"]
            #expect(output?["limitReached"] == "EnergyLimit")
            #expect(output?["stopReason"] == "Remote")
            #expect((output?["energyWh"]?.int64Value ?? 0) >= 5)
            let provisioning = try JSONValue.parse(try await server.api.request("GET", "/api/v1/executions?workflow=Provisioning&chargePointId=SIM-WF-1").body)
            #expect(provisioning["executions"]?[0]?["output"]?["configuration"]?["MeterValueSampleInterval"] == "Accepted")
            #expect(provisioning["executions"]?[0]?["output"]?["triggerMessage"] == "Accepted")
        }
    }
}
