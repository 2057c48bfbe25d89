import ChargepathApp
import ChargepathPostgres
import ChargepathServer
import Foundation
import OCPPCore
import PostgresNIO
import Testing

/// The history read API: a charger runs sessions through a real socket, then the operator reads
/// back exactly what it sent.
@Suite(.timeLimit(.minutes(3))) struct HistoryAPITests {
    static func execute(_ server: TestServer, _ query: PostgresQuery) async throws {
        try await TestDatabase.withClient(server.database) { client in
            _ = try await client.query(query, logger: TestDatabase.logger)
        }
    }

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }

    static func items(_ object: [String: Any], _ key: String) throws -> [[String: Any]] {
        try #require(object[key] as? [[String: Any]], "no \(key) array in \(object)")
    }

    static func ids(_ items: [[String: Any]]) -> [Int] {
        items.compactMap { $0["id"] as? Int }
    }

    @Test func sessionsChargePointAndStatusHistoryAreWhatTheChargerSent() async throws {
        try await TestServer.with { server in
            try await Self.execute(server, "INSERT INTO id_tags (id_tag, status) VALUES ('TAG-1', 'Accepted')")
            let api = server.api
            let (connectionID, completed, active) = try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-H1") { charger in
                _ = try await charger.boot()
                _ = try await charger.expectResult("StatusNotification", #"{"connectorId":0,"errorCode":"NoError","status":"Available","timestamp":"2026-11-25T09:59:00Z"}"#)
                _ = try await charger.expectResult("StatusNotification", #"{"connectorId":1,"errorCode":"NoError","status":"Preparing","timestamp":"2026-11-25T10:00:00Z"}"#)
                _ = try await charger.expectResult("StatusNotification", #"{"connectorId":1,"errorCode":"NoError","status":"Charging","timestamp":"2026-11-25T10:00:05.250Z"}"#)

                // A completed session on connector 1.
                let first = try await charger.expectResult("StartTransaction", #"{"connectorId":1,"idTag":"TAG-1","meterStart":1000,"timestamp":"2026-11-25T10:00:00Z"}"#)
                let firstID = Int(try #require(first["transactionId"]?.int64Value))
                _ = try await charger.expectResult("MeterValues", #"{"connectorId":1,"transactionId":\#(firstID),"meterValue":[{"timestamp":"2026-11-25T10:01:00Z","sampledValue":[{"value":"1500","measurand":"Energy.Active.Import.Register","unit":"Wh"},{"value":"7200","measurand":"Power.Active.Import","unit":"W","phase":"L1","location":"Outlet","context":"Sample.Periodic","format":"Raw"}]}]}"#)
                _ = try await charger.expectResult("StopTransaction", #"{"transactionId":\#(firstID),"idTag":"TAG-1","meterStop":4200,"timestamp":"2026-11-25T10:10:00Z","reason":"EVDisconnected","transactionData":[{"timestamp":"2026-11-25T10:10:00Z","sampledValue":[{"value":"4200","measurand":"Energy.Active.Import.Register","unit":"Wh","context":"Transaction.End"}]}]}"#)
                // A second, different stop for it: answered, and kept as an anomaly of that transaction.
                _ = try await charger.expectResult("StopTransaction", #"{"transactionId":\#(firstID),"meterStop":9999,"timestamp":"2026-11-25T10:11:00Z"}"#)

                // An active session on connector 2 by an unknown tag, metered in kWh, plus a sample without measurand.
                let second = try await charger.expectResult("StartTransaction", #"{"connectorId":2,"idTag":"WHO","meterStart":5000,"timestamp":"2026-11-25T11:00:00Z"}"#)
                let secondID = Int(try #require(second["transactionId"]?.int64Value))
                _ = try await charger.expectResult("MeterValues", #"{"connectorId":2,"transactionId":\#(secondID),"meterValue":[{"timestamp":"2026-11-25T11:05:00Z","sampledValue":[{"value":"5.75","measurand":"Energy.Active.Import.Register","unit":"kWh"}]},{"timestamp":"2026-11-25T11:06:00Z","sampledValue":[{"value":"6, \"quoted\""}]}]}"#)

                // The list, newest first.
                let list = try await api.json("GET", "/api/v1/transactions?chargePointId=CP-H1")
                let transactions = try Self.items(list, "transactions")
                #expect(Self.ids(transactions) == [secondID, firstID])
                #expect(list["nextCursor"] is NSNull)
                let done = transactions[1]
                #expect(done["chargePointId"] as? String == "CP-H1")
                #expect(done["connectorId"] as? Int == 1)
                #expect(done["idTag"] as? String == "TAG-1")
                #expect(done["idTagStatus"] as? String == "Accepted")
                #expect(done["startedAt"] as? String == "2026-11-25T10:00:00Z")
                #expect(done["stoppedAt"] as? String == "2026-11-25T10:10:00Z")
                #expect(done["meterStart"] as? Int == 1000)
                #expect(done["meterStop"] as? Int == 4200)
                #expect(done["energyWh"] as? Int == 3200)
                #expect(done["durationSeconds"] as? Int == 600)
                #expect(done["stopReason"] as? String == "EVDisconnected")
                #expect(done["status"] as? String == "completed")
                #expect(done["anomalies"] as? [String] == ["StopTransactionAlreadyStopped"])
                let open = transactions[0]
                #expect(open["idTag"] as? String == "WHO")
                #expect(open["idTagStatus"] as? String == "Invalid")
                #expect(open["status"] as? String == "active")
                #expect(open["stoppedAt"] is NSNull)
                #expect(open["meterStop"] is NSNull)
                #expect(open["durationSeconds"] is NSNull)
                #expect(open["stopReason"] is NSNull)
                // The newest register reading (the sample without measurand counts as one, but "6, ..." is no number): 5750 - 5000.
                #expect(open["energyWh"] as? Int == 750)
                #expect(open["anomalies"] as? [String] == [])

                // Filters.
                #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions?status=active&chargePointId=CP-H1"), "transactions")) == [secondID])
                #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions?status=completed"), "transactions")) == [firstID])
                #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions?idTag=TAG-1"), "transactions")) == [firstID])
                #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions?chargePointId=CP-H1&connectorId=2"), "transactions")) == [secondID])
                #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions?connectorId=1"), "transactions")) == [firstID])
                #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions?from=2026-11-25T10:30:00Z"), "transactions")) == [secondID])
                #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions?to=2026-11-25T10:30:00Z"), "transactions")) == [firstID])
                #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions?from=2026-11-25T10:00:00Z&to=2026-11-25T11:00:00Z"), "transactions")) == [firstID])
                #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions?from=2026-11-25T10:00:00%2B01:00"), "transactions")) == [secondID, firstID])
                #expect(try Self.items(try await api.json("GET", "/api/v1/transactions?chargePointId=CP-OTHER"), "transactions").isEmpty)

                // One transaction with its meter values, in sampling order.
                let detail = try await api.json("GET", "/api/v1/transactions/\(firstID)")
                #expect(detail["id"] as? Int == firstID)
                #expect(detail["energyWh"] as? Int == 3200)
                let values = try Self.items(detail, "meterValues")
                #expect(values.map { $0["value"] as? String } == ["1500", "7200", "4200"])
                #expect(values.map { $0["timestamp"] as? String } == ["2026-11-25T10:01:00Z", "2026-11-25T10:01:00Z", "2026-11-25T10:10:00Z"])
                #expect(values.map { $0["source"] as? String } == ["MeterValues", "MeterValues", "StopTransaction"])
                let power = values[1]
                #expect(power["measurand"] as? String == "Power.Active.Import")
                #expect(power["unit"] as? String == "W")
                #expect(power["phase"] as? String == "L1")
                #expect(power["location"] as? String == "Outlet")
                #expect(power["context"] as? String == "Sample.Periodic")
                #expect(power["format"] as? String == "Raw")
                #expect(values[0]["phase"] is NSNull)
                #expect(values[2]["context"] as? String == "Transaction.End")
                let energyOnly = try Self.items(try await api.json("GET", "/api/v1/transactions/\(firstID)?measurand=Energy.Active.Import.Register"), "meterValues")
                #expect(energyOnly.map { $0["value"] as? String } == ["1500", "4200"])
                let powerOnly = try Self.items(try await api.json("GET", "/api/v1/transactions/\(firstID)?measurand=Power.Active.Import"), "meterValues")
                #expect(powerOnly.map { $0["value"] as? String } == ["7200"])
                #expect(try Self.items(try await api.json("GET", "/api/v1/transactions/\(firstID)?measurand=Voltage"), "meterValues").isEmpty)
                // A sample without measurand is Energy.Active.Import.Register (OCPP 1.6's default) but shown as sent.
                let activeEnergy = try Self.items(try await api.json("GET", "/api/v1/transactions/\(secondID)?measurand=Energy.Active.Import.Register"), "meterValues")
                #expect(activeEnergy.map { $0["value"] as? String } == ["5.75", "6, \"quoted\""])
                #expect(activeEnergy[1]["measurand"] is NSNull)

                // CSV for billing.
                let csv = try await api.request("GET", "/api/v1/transactions/\(firstID)/meter-values.csv")
                #expect(csv.status == 200)
                #expect(csv.headers["content-type"] == "text/csv; charset=utf-8")
                #expect(csv.body == """
                    transactionId,timestamp,value,measurand,unit,phase,location,context,format,source\r
                    \(firstID),2026-11-25T10:01:00Z,1500,Energy.Active.Import.Register,Wh,,,,,MeterValues\r
                    \(firstID),2026-11-25T10:01:00Z,7200,Power.Active.Import,W,L1,Outlet,Sample.Periodic,Raw,MeterValues\r
                    \(firstID),2026-11-25T10:10:00Z,4200,Energy.Active.Import.Register,Wh,,,Transaction.End,,StopTransaction\r

                    """)
                let quoted = try await api.request("GET", "/api/v1/transactions/\(secondID)/meter-values.csv?measurand=Energy.Active.Import.Register")
                #expect(quoted.body.hasSuffix("\r\n\(secondID),2026-11-25T11:06:00Z,\"6, \"\"quoted\"\"\",,,,,,,MeterValues\r\n"))
                let listCSV = try await api.request("GET", "/api/v1/transactions?chargePointId=CP-H1&format=csv")
                #expect(listCSV.status == 200)
                #expect(listCSV.headers["content-type"] == "text/csv; charset=utf-8")
                #expect(listCSV.body == """
                    id,chargePointId,connectorId,idTag,idTagStatus,startedAt,stoppedAt,meterStart,meterStop,energyWh,durationSeconds,stopReason,status,anomalies\r
                    \(secondID),CP-H1,2,WHO,Invalid,2026-11-25T11:00:00Z,,5000,,750,,,active,\r
                    \(firstID),CP-H1,1,TAG-1,Accepted,2026-11-25T10:00:00Z,2026-11-25T10:10:00Z,1000,4200,3200,600,EVDisconnected,completed,StopTransactionAlreadyStopped\r

                    """)

                // The charge point: boot data, online with its connection, connectors' current status.
                let connections = try await api.json("GET", "/api/v1/connections?chargePointId=CP-H1")
                let connectionID = try #require((try Self.items(connections, "connections")).first?["connectionId"] as? String)
                let chargePoint = try await api.json("GET", "/api/v1/charge-points/CP-H1")
                #expect(chargePoint["id"] as? String == "CP-H1")
                #expect(chargePoint["registrationStatus"] as? String == "Accepted")
                #expect(chargePoint["vendor"] as? String == "Acme")
                #expect(chargePoint["model"] as? String == "Fast-1")
                #expect(chargePoint["serialNumber"] as? String == "SN-1")
                #expect(chargePoint["firmwareVersion"] as? String == "1.2.3")
                #expect(chargePoint["iccid"] is NSNull)
                #expect(chargePoint["meterType"] is NSNull)
                #expect(chargePoint["lastBootAt"] is String)
                #expect(chargePoint["lastSeenAt"] is String)
                #expect(chargePoint["online"] as? Bool == true)
                #expect(chargePoint["connectionId"] as? String == connectionID)
                #expect((chargePoint["connection"] as? [String: Any])?["connectionId"] as? String == connectionID)
                let connectors = try Self.items(chargePoint, "connectors")
                #expect(connectors.map { $0["connectorId"] as? Int } == [0, 1])
                #expect(connectors.map { $0["status"] as? String } == ["Available", "Charging"])
                #expect(connectors[1]["timestamp"] as? String == "2026-11-25T10:00:05.250Z")
                #expect(connectors[1]["errorCode"] as? String == "NoError")
                let listed = try Self.items(try await api.json("GET", "/api/v1/charge-points"), "chargePoints")
                #expect(listed.count == 1)
                #expect(listed.first?["online"] as? Bool == true)
                #expect(listed.first?["connectionId"] as? String == connectionID)
                #expect((listed.first.flatMap { $0["connectors"] as? [[String: Any]] })?.count == 2)

                // Status history, newest first (by the charger's timestamps).
                let history = try Self.items(try await api.json("GET", "/api/v1/charge-points/CP-H1/status-history"), "statusHistory")
                #expect(history.map { $0["status"] as? String } == ["Charging", "Preparing", "Available"])
                #expect(history.map { $0["connectorId"] as? Int } == [1, 1, 0])
                #expect(history.first?["timestamp"] as? String == "2026-11-25T10:00:05.250Z")
                let windowed = try Self.items(try await api.json("GET", "/api/v1/charge-points/CP-H1/status-history?from=2026-11-25T10:00:00Z&to=2026-11-25T10:00:05Z"), "statusHistory")
                #expect(windowed.map { $0["status"] as? String } == ["Preparing"])
                let connectorZero = try Self.items(try await api.json("GET", "/api/v1/charge-points/CP-H1/status-history?connectorId=0"), "statusHistory")
                #expect(connectorZero.map { $0["status"] as? String } == ["Available"])
                return (connectionID, firstID, secondID)
            }
            // Once the charger is gone it is offline; its history stays.
            try await eventually("the charge point shows offline") {
                let chargePoint = try await api.json("GET", "/api/v1/charge-points/CP-H1")
                return chargePoint["online"] as? Bool == false && chargePoint["connectionId"] is NSNull && chargePoint["connection"] is NSNull
            }
            #expect(Self.ids(try Self.items(try await api.json("GET", "/api/v1/transactions"), "transactions")) == [active, completed])
            #expect(!connectionID.isEmpty)
        }
    }

    @Test func pagesReturnEveryRowExactlyOnceInOrder() async throws {
        try await TestServer.with { server in
            try await Self.execute(server, "INSERT INTO id_tags (id_tag, status) VALUES ('PAGE', 'Accepted')")
            try await TestCharger.with(url: server.ocppURL + "/CP-PAGE") { charger in
                _ = try await charger.boot()
                // 23 sessions; several share a start time, so the id breaks ties across page boundaries.
                var started: [(at: String, id: Int)] = []
                for index in 0..<23 {
                    let at = "2026-11-25T10:\(String(format: "%02d", index / 3)):00.123456Z"
                    let answer = try await charger.expectResult("StartTransaction", #"{"connectorId":\#(index % 2 + 1),"idTag":"PAGE","meterStart":\#(index),"timestamp":"\#(at)"}"#)
                    started.append((at, Int(try #require(answer["transactionId"]?.int64Value))))
                    _ = try await charger.expectResult("StatusNotification", #"{"connectorId":1,"errorCode":"NoError","status":"Charging","timestamp":"2026-11-25T10:00:\#(String(format: "%02d", index / 2))Z"}"#)
                }
                let expected = started.sorted { ($0.at, $0.id) > ($1.at, $1.id) }.map(\.id)

                for limit in [1, 5, 23, 50] {
                    var seen: [Int] = []
                    var cursor: String?
                    var pages = 0
                    repeat {
                        let path = "/api/v1/transactions?chargePointId=CP-PAGE&limit=\(limit)" + (cursor.map { "&cursor=\($0)" } ?? "")
                        let page = try await server.api.json("GET", path)
                        let items = try Self.items(page, "transactions")
                        #expect(items.count <= limit)
                        seen += Self.ids(items)
                        cursor = page["nextCursor"] as? String
                        pages += 1
                    } while cursor != nil && pages < 100
                    #expect(seen == expected, "limit \(limit)")
                    #expect(pages == max(1, (23 + limit - 1) / limit), "limit \(limit)")
                }
                // The CSV listing pages the same way, with the cursor in a header.
                let csv = try await server.api.request("GET", "/api/v1/transactions?limit=20&format=csv")
                #expect(csv.body.components(separatedBy: "\r\n").filter { !$0.isEmpty }.count == 21)
                let next = try #require(csv.headers["x-next-cursor"])
                let rest = try Self.items(try await server.api.json("GET", "/api/v1/transactions?limit=20&cursor=\(next)"), "transactions")
                #expect(Self.ids(rest) == Array(expected.suffix(3)))

                // Status history pages too.
                var statuses = 0
                var cursor: String?
                var stamps: [String] = []
                repeat {
                    let page = try await server.api.json("GET", "/api/v1/charge-points/CP-PAGE/status-history?limit=4" + (cursor.map { "&cursor=\($0)" } ?? ""))
                    let items = try Self.items(page, "statusHistory")
                    statuses += items.count
                    stamps += items.compactMap { $0["timestamp"] as? String }
                    cursor = page["nextCursor"] as? String
                } while cursor != nil
                #expect(statuses == 23)
                #expect(stamps == stamps.sorted(by: >))
            }
            // Charge points page by id.
            try await Self.execute(server, "INSERT INTO charge_points (charge_point_id) SELECT 'CP-' || lpad(n::text, 3, '0') FROM generate_series(1, 7) AS n")
            var ids: [String] = []
            var cursor: String?
            repeat {
                let page = try await server.api.json("GET", "/api/v1/charge-points?limit=3" + (cursor.map { "&cursor=\($0)" } ?? ""))
                ids += try Self.items(page, "chargePoints").compactMap { $0["id"] as? String }
                cursor = page["nextCursor"] as? String
            } while cursor != nil
            #expect(ids == ["CP-001", "CP-002", "CP-003", "CP-004", "CP-005", "CP-006", "CP-007", "CP-PAGE"])
        }
    }

    @Test func badInputIsRefusedWithAReasonNeverA500() async throws {
        try await TestServer.with { server in
            let api = server.api
            try await TestCharger.with(url: server.ocppURL + "/CP-BADQ") { charger in
                _ = try await charger.boot()
            }
            let chargePointCursor = HistoryTestCursor.base64URL("CCP-BADQ")
            let badRequests = [
                // Cursors: garbage, not base64url, well-formed but from another listing, right tag but junk.
                "/api/v1/transactions?cursor=garbage",
                "/api/v1/transactions?cursor=%2F%2F%2F",
                "/api/v1/transactions?cursor=\(chargePointCursor)",
                "/api/v1/transactions?cursor=\(HistoryTestCursor.base64URL("T12.x"))",
                "/api/v1/charge-points?cursor=\(HistoryTestCursor.base64URL("T1.1"))",
                "/api/v1/charge-points/CP-BADQ/status-history?cursor=abc",
                // Limits.
                "/api/v1/transactions?limit=0", "/api/v1/transactions?limit=501", "/api/v1/transactions?limit=-1",
                "/api/v1/transactions?limit=ten", "/api/v1/transactions?limit=99999999999999999999999",
                "/api/v1/charge-points?limit=1000", "/api/v1/charge-points/CP-BADQ/status-history?limit=0",
                // Dates.
                "/api/v1/transactions?from=yesterday", "/api/v1/transactions?to=2026-13-45T99:00:00Z",
                "/api/v1/transactions?from=2026-11-26T00:00:00Z&to=2026-11-25T00:00:00Z",
                "/api/v1/charge-points/CP-BADQ/status-history?from=1732000000",
                // Enumerations and numbers.
                "/api/v1/transactions?status=open", "/api/v1/transactions?status=ACTIVE", "/api/v1/transactions?format=xml",
                "/api/v1/transactions?connectorId=one", "/api/v1/transactions?connectorId=-1",
                "/api/v1/transactions/abc", "/api/v1/transactions/1.5", "/api/v1/transactions/abc/meter-values.csv",
                "/api/v1/transactions/99999999999999999999999",
                // SQL-ish or huge values.
                "/api/v1/transactions?chargePointId=\(Self.encode("'; DROP TABLE transactions; --"))",
                "/api/v1/transactions?idTag=\(Self.encode("' OR 1=1; DROP TABLE transactions; --"))",
                "/api/v1/transactions?chargePointId=\(String(repeating: "A", count: 10_000))",
                "/api/v1/transactions?idTag=\(String(repeating: "x", count: 5_000))",
                "/api/v1/transactions/1?measurand=\(String(repeating: "m", count: 3_000))",
                "/api/v1/charge-points/\(Self.encode("CP' OR '1'='1"))",
                "/api/v1/charge-points/\(String(repeating: "C", count: 2_000))/status-history",
            ]
            for path in badRequests {
                let response = try await api.request("GET", path)
                #expect(response.status == 400, "\(path.prefix(120)) answered \(response.status): \(response.body.prefix(200))")
            }
            // SQL-ish values that are valid as values find nothing.
            for path in [
                "/api/v1/transactions?idTag=\(Self.encode("' OR '1'='1"))",
                "/api/v1/transactions?chargePointId=\(Self.encode("x'OR'1'='1'--"))",
                "/api/v1/transactions?idTag=\(Self.encode("%00;\\"))&status=active&connectorId=2147483647",
            ] {
                let page = try await api.json("GET", path)
                #expect(try Self.items(page, "transactions").isEmpty, "\(path)")
                #expect(page["nextCursor"] is NSNull)
            }
            // Unknown things.
            for path in ["/api/v1/transactions/424242", "/api/v1/transactions/424242/meter-values.csv", "/api/v1/charge-points/CP-NOPE",
                         "/api/v1/charge-points/CP-NOPE/status-history"] {
                #expect(try await api.request("GET", path).status == 404, "\(path)")
            }
            // The token is required on every history route.
            for path in ["/api/v1/transactions", "/api/v1/transactions/1", "/api/v1/transactions/1/meter-values.csv",
                         "/api/v1/charge-points", "/api/v1/charge-points/CP-BADQ", "/api/v1/charge-points/CP-BADQ/status-history"] {
                let missing = try await TestHTTPClient(port: server.running.apiPort, token: nil).request("GET", path)
                #expect(missing.status == 401, "\(path)")
                #expect(try await api.request("GET", path, authorization: "Bearer wrong").status == 401, "\(path)")
            }
            // Nothing above hurt the data.
            #expect(try Self.items(try await api.json("GET", "/api/v1/charge-points"), "chargePoints").count == 1)
        }
    }
}

enum HistoryTestCursor {
    static func base64URL(_ text: String) -> String {
        Data(text.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
