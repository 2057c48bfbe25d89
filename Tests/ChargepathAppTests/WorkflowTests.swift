import ChargepathApp
import ChargepathPostgres
import ChargepathServer
import Foundation
import OCPPCore
import Testing

/// Issue 5: workflows end to end against a charger, and the operator API around them.
@Suite(.timeLimit(.minutes(3))) struct WorkflowTests {
    static func execution(_ server: TestServer, _ id: String) async throws -> JSONValue {
        try JSONValue.parse(try await server.api.request("GET", "/api/v1/executions/\(id)").body)
    }

    static func start(_ server: TestServer, _ workflow: String, _ input: String, query: String = "") async throws -> (status: Int, body: JSONValue) {
        let response = try await server.api.request("POST", "/api/v1/workflows/\(workflow)/executions\(query)", body: input)
        return (response.status, (try? JSONValue.parse(response.body)) ?? .null)
    }

    @Test func remoteStartFollowsTheSessionToItsEnd() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-WF") { charger in
                _ = try await charger.boot()
                let started = try await Self.start(server, "RemoteStart", #"{"chargePointId":"CP-WF","connectorId":1,"idTag":"TAG-WF"}"#)
                #expect(started.status == 202)
                let id = try #require(started.body["executionId"]?.stringValue)

                let (action, payload) = try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                #expect(action == "RemoteStartTransaction")
                #expect(payload["idTag"] == "TAG-WF")
                try await eventually("waiting for the car") {
                    try await Self.execution(server, id)["state"]?["waitingForStart"] != nil
                }
                let tx = try await charger.expectResult("StartTransaction", #"{"connectorId":1,"idTag":"TAG-WF","meterStart":100,"timestamp":"2026-11-25T10:00:00Z"}"#)
                let transactionID = try #require(tx["transactionId"]?.int64Value)
                try await eventually("charging") { try await Self.execution(server, id)["state"]?["charging"] != nil }
                _ = try await charger.expectResult("StopTransaction", #"{"transactionId":\#(transactionID),"meterStop":2600,"timestamp":"2026-11-25T11:00:00Z","reason":"Remote"}"#)
                try await eventually("succeeded") { try await Self.execution(server, id)["status"] == "SUCCEEDED" }
                let execution = try await Self.execution(server, id)
                #expect(execution["output"]?["energyWh"] == 2500)
                #expect(execution["output"]?["transactionId"]?.int64Value == transactionID)
                let kinds = execution["history"]?.arrayValue?.compactMap { $0["kind"]?.stringValue } ?? []
                #expect(kinds.first == "started" && kinds.last == "finished" && kinds.contains("attempt"))

                let list = try JSONValue.parse(try await server.api.request("GET", "/api/v1/executions?workflow=RemoteStart&chargePointId=CP-WF&status=SUCCEEDED").body)
                #expect(list["executions"]?.arrayValue?.count == 1)
            }
        }
    }

    @Test func syncModeReturnsTheFinishedExecution() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-SYNC") { charger in
                _ = try await charger.boot()
                async let answered = ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Rejected"}]"# }
                let result = try await Self.start(server, "RemoteStart", #"{"chargePointId":"CP-SYNC","connectorId":1,"idTag":"T"}"#, query: "?mode=sync&timeout=20")
                _ = try await answered
                #expect(result.status == 200)
                #expect(result.body["status"] == "FAILED")
                #expect(result.body["error"]?["reason"] == "Rejected")
                #expect(result.body["history"]?.arrayValue?.isEmpty == false)
            }
        }
    }

    @Test func aTimerEndsTheWaitAndCancellingAFinishedExecutionIsAConflict() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-TMO") { charger in
                _ = try await charger.boot()
                let started = try await Self.start(server, "RemoteStart", #"{"chargePointId":"CP-TMO","connectorId":2,"idTag":"T","connectionTimeout":1}"#)
                let id = try #require(started.body["executionId"]?.stringValue)
                _ = try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                // A start on another connector is not the one it waits for.
                _ = try await charger.expectResult("StartTransaction", #"{"connectorId":1,"idTag":"T","meterStart":0,"timestamp":"2026-11-25T10:00:00Z"}"#)
                try await eventually("the connection timeout fires") {
                    let execution = try await Self.execution(server, id)
                    return execution["status"] == "FAILED" && execution["error"]?["reason"] == "ConnectionTimeout"
                }
                #expect(try await server.api.request("POST", "/api/v1/executions/\(id)/cancel").status == 409)
            }
        }
    }

    @Test func aRunningExecutionCanBeCancelled() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-CAN") { charger in
                _ = try await charger.boot()
                let started = try await Self.start(server, "RemoteStart", #"{"chargePointId":"CP-CAN","connectorId":1,"idTag":"T","connectionTimeout":600}"#)
                let id = try #require(started.body["executionId"]?.stringValue)
                _ = try await ServerCallTests.answerNextCall(charger) { #"[3,"\#($0)",{"status":"Accepted"}]"# }
                try await eventually("waiting") { try await Self.execution(server, id)["state"]?["waitingForStart"] != nil }
                #expect(try await server.api.request("POST", "/api/v1/executions/\(id)/cancel").status == 202)
                try await eventually("cancelled") { try await Self.execution(server, id)["status"] == "CANCELLED" }
            }
        }
    }

    @Test func aChargerThatAnswersWithACallErrorFailsTheWorkflowVisibly() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-CE") { charger in
                _ = try await charger.boot()
                let started = try await Self.start(server, "RemoteStart", #"{"chargePointId":"CP-CE","connectorId":1,"idTag":"T"}"#)
                let id = try #require(started.body["executionId"]?.stringValue)
                _ = try await ServerCallTests.answerNextCall(charger) { #"[4,"\#($0)","InternalError","boom",{}]"# }
                try await eventually("failed") {
                    let execution = try await Self.execution(server, id)
                    return execution["status"] == "FAILED" && execution["error"]?["reason"] == "CallError"
                        && execution["error"]?["detail"]?["code"] == "InternalError"
                }
                // The CALLERROR is in the history as the event the workflow decided on.
                let history = try await Self.execution(server, id)["history"]?.arrayValue ?? []
                #expect(history.contains { $0["kind"] == "event" && $0["detail"]?["callFailed"]?["code"] == "InternalError" })
            }
        }
    }

    @Test func badWorkflowRequests() async throws {
        try await TestServer.with { server in
            #expect(try await Self.start(server, "FlyToTheMoon", "{}").status == 404)
            let missing = try await server.api.request("POST", "/api/v1/workflows/RemoteStart/executions", body: #"{"chargePointId":"CP","idTag":"T"}"#)
            #expect(missing.status == 400)
            #expect(missing.body.contains("connectorId"))
            let wrongType = try await server.api.request("POST", "/api/v1/workflows/RemoteStart/executions", body: #"{"chargePointId":"CP","connectorId":"one","idTag":"T"}"#)
            #expect(wrongType.status == 400)
            #expect(wrongType.body.contains("connectorId"))
            #expect(try await server.api.request("POST", "/api/v1/workflows/RemoteStart/executions", body: "{oops").status == 400)
            #expect(try await server.api.request("GET", "/api/v1/executions?status=DANCING").status == 400)
            #expect(try await server.api.request("GET", "/api/v1/executions/nope").status == 404)
            #expect(try await server.api.request("POST", "/api/v1/executions/nope/cancel").status == 404)
        }
    }
}
