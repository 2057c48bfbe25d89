import ChargepathApp
import ChargepathServer
import Foundation
import Testing

/// `GET /metrics`: what an operator's Prometheus scrapes from a node.
@Suite(.timeLimit(.minutes(3))) struct MetricsTests {
    /// The samples of a Prometheus text exposition: `name{labels}` → value.
    static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    @Test func metricsCountEachActionsAnswersAndTimesThemBehindTheToken() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            #expect(try await server.api.request("GET", "/metrics", authorization: "").status == 401)
            try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-METRICS") { charger in
                _ = try await charger.boot()
                _ = try await charger.expectResult("Heartbeat", "{}")
                _ = try await charger.expectResult("Heartbeat", "{}")
                #expect(try await charger.expectError("Authorize", "{}") == "OccurenceConstraintViolation")
                #expect(try await charger.expectError("MadeUpAction", "{}") == "NotImplemented")
                _ = try await charger.expectResult("StatusNotification", #"{"connectorId":1,"errorCode":"NoError","status":"Available"}"#)
                _ = try await charger.expectResult("MeterValues",
                    #"{"connectorId":1,"meterValue":[{"timestamp":"\#(OCPPTime.iso(Date()))","sampledValue":[{"value":"5"}]}]}"#)

                let response = try await server.api.request("GET", "/metrics")
                #expect(response.status == 200)
                let samples = Self.samples(response.body)
                #expect(samples[#"chargepath_ocpp_calls_total{action="BootNotification",outcome="result"}"#] == 1)
                #expect(samples[#"chargepath_ocpp_calls_total{action="Heartbeat",outcome="result"}"#] == 2)
                #expect(samples[#"chargepath_ocpp_calls_total{action="Heartbeat",outcome="error"}"#] == 0)
                #expect(samples[#"chargepath_ocpp_calls_total{action="Authorize",outcome="error"}"#] == 1)
                // A charger's own action names never become label values.
                #expect(samples[#"chargepath_ocpp_calls_total{action="other",outcome="error"}"#] == 1)
                #expect(!response.body.contains("MadeUpAction"))
                #expect(samples[#"chargepath_ocpp_call_duration_seconds_count{action="Heartbeat"}"#] == 2)
                // Every answer took more than nothing and less than the 10 s time limit.
                let heartbeatSeconds = try #require(samples[#"chargepath_ocpp_call_duration_seconds_sum{action="Heartbeat"}"#])
                #expect(heartbeatSeconds > 0 && heartbeatSeconds < 20)
                #expect(samples[#"chargepath_ocpp_call_duration_seconds_bucket{action="Heartbeat",le="10.0"}"#] == 2)
                #expect(samples["chargepath_chargers_connected"] == 1)
                // The batches of the connections that carry charger messages, timed and counted.
                for connection in ["meter_values", "status_notifications", "boots"] {
                    let statements = samples[#"chargepath_database_statement_duration_seconds_count{connection="\#(connection)"}"#]
                    #expect((statements ?? 0) >= 1, "\(connection)")
                    #expect(samples[#"chargepath_database_statement_failures_total{connection="\#(connection)"}"#] == 0)
                }
            }
            try await eventually(timeout: .seconds(10), "the closed socket leaves the gauge") {
                let body = (try? await server.api.request("GET", "/metrics").body) ?? ""
                return Self.samples(body)["chargepath_chargers_connected"] == 0
            }
        }
    }

    /// Chargers turned away before the upgrade are counted by HTTP status: a bad subprotocol or
    /// identity (400), an unknown charger (404), a full port (503).
    @Test func refusedUpgradesAreCountedByStatus() async throws {
        try await TestServer.with(configure: { $0.unknownChargers = .reject; $0.gateway.maximumConnections = 1 }) { server in
            let port = server.running.ocppPort
            let unknown = try TestHTTPResponse(parsing: try await RawTCP.exchange(port: port, RawTCP.upgradeRequest(path: "/CP-STRANGER")))
            #expect(unknown.status == 404)
            for _ in 0..<2 {
                let badProtocol = try TestHTTPResponse(parsing: try await RawTCP.exchange(
                    port: port, RawTCP.upgradeRequest(path: "/CP-SP", subprotocols: ["ocpp0.9"])))
                #expect(badProtocol.status == 400)
            }
            #expect(try await server.api.request("PUT", "/api/v1/charge-points/CP-KNOWN", body: "{}").status == 201)
            try await TestCharger.with(url: server.ocppURL + "/CP-KNOWN") { charger in
                // Answered, so its session is in service (the upgrade's end does not wait for that).
                _ = try await charger.boot()
                // The one socket the port may hold is taken: the next charger reads 503.
                let full = try TestHTTPResponse(parsing: try await RawTCP.exchange(port: port, RawTCP.upgradeRequest(path: "/CP-KNOWN-2")))
                #expect(full.status == 503)
                let samples = Self.samples(try await server.api.request("GET", "/metrics").body)
                #expect(samples[#"chargepath_charger_upgrades_refused_total{status="400"}"#] == 2)
                #expect(samples[#"chargepath_charger_upgrades_refused_total{status="401"}"#] == 0)
                #expect(samples[#"chargepath_charger_upgrades_refused_total{status="404"}"#] == 1)
                #expect(samples[#"chargepath_charger_upgrades_refused_total{status="503"}"#] == 1)
                #expect(samples["chargepath_chargers_connected"] == 1)
            }
        }
    }
}
