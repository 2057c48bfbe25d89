import Chargepath
import ChargepathServer
import HTTPTypes
import NIOCore
import NIOWebSocket
import ChargepathApp
import ChargepathPostgres
import Foundation
import PostgresNIO
import Testing

/// Issue 2 against a real PostgreSQL, through real sockets.
@Suite(.timeLimit(.minutes(3))) struct ConnectionTrackingTests {
    static func rows(_ server: TestServer, chargePointID: String) async throws -> [ConnectionRecord] {
        try await TestDatabase.withClient(server.database) { client in
            try await PostgresConnectionRepository(client: client, logger: TestDatabase.logger)
                .list(chargePointID: chargePointID, limit: 10)
        }
    }

    @Test func aChargerConnectingByACustomPathIsRecordedAndForgottenWhenItCloses() async throws {
        try await TestServer.with { server in
            let url = server.ocppURL + "/this/is/my/custom/path/CP-001?my_query=foo&other=a%20b"
            try await TestCharger.with(url: url, headers: [.authorization: "Basic c2VjcmV0", .userAgent: "test-charger/1.0"]) { _ in
                try await eventually("the connection row appears") { try await !Self.rows(server, chargePointID: "CP-001").isEmpty }
                let row = try #require(try await Self.rows(server, chargePointID: "CP-001").first)
                #expect(row.path == "/this/is/my/custom/path/CP-001")
                #expect(row.query == ["my_query": "foo", "other": "a b"])
                #expect(row.subprotocol == "ocpp1.6")
                #expect(row.headers["user-agent"] == "test-charger/1.0")
                #expect(row.headers["authorization"] == ConnectionRecord.redacted)
                #expect(row.remoteAddress == "127.0.0.1")
                #expect(row.nodeID == server.running.nodeID)
                let hours = row.expiresAt.timeIntervalSince(row.connectedAt) / 3600
                #expect(abs(hours - 24) < 0.01)
                #expect(abs(row.connectedAt.timeIntervalSinceNow) < 60)
                #expect(ConnectionID.isPlausible(row.connectionID.rawValue))
            }
            try await eventually("the row goes when the charger closes") { try await Self.rows(server, chargePointID: "CP-001").isEmpty }
        }
    }

    @Test func aPercentEncodedIdentityIsDecodedOnce() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/ocpp/CP%2D7%2541") { _ in
                try await eventually("the row appears") { try await !Self.rows(server, chargePointID: "CP-7%41").isEmpty }
            }
        }
    }

    @Test func postingToAtConnectionsDeliversTheBodyAsOneTextFrame() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-POST") { charger in
                try await eventually("recorded") { try await !Self.rows(server, chargePointID: "CP-POST").isEmpty }
                let id = try #require(try await Self.rows(server, chargePointID: "CP-POST").first).connectionID
                let frame = #"[2,"abc","Reset",{"type":"Soft"}]"#
                let response = try await server.api.request("POST", "/@connections/\(id)", body: frame)
                #expect(response.status == 200)
                #expect(try await charger.next() == frame)

                let record = try await server.api.json("GET", "/@connections/\(id)")
                #expect(record["identity"] as? String == "CP-POST")
                #expect(record["path"] as? String == "/CP-POST")
                #expect(record["sourceIp"] as? String == "127.0.0.1")
                #expect(record["connectedAt"] is String)
                #expect(record["lastActiveAt"] is String)

                let list = try await server.api.json("GET", "/api/v1/connections?chargePointId=CP-POST")
                #expect((list["connections"] as? [[String: Any]])?.first?["connectionId"] as? String == id.rawValue)
            }
        }
    }

    @Test func deletingAConnectionClosesTheSocketAndRemovesTheRow() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-DEL") { charger in
                try await eventually("recorded") { try await !Self.rows(server, chargePointID: "CP-DEL").isEmpty }
                let id = try #require(try await Self.rows(server, chargePointID: "CP-DEL").first).connectionID
                #expect(try await server.api.request("DELETE", "/@connections/\(id)").status == 204)
                _ = try await charger.waitUntilClosed()
                try await eventually("the row goes") { try await Self.rows(server, chargePointID: "CP-DEL").isEmpty }
                #expect(try await server.api.request("DELETE", "/@connections/\(id)").status == 410)
                #expect(try await server.api.request("POST", "/@connections/\(id)", body: "[]").status == 410)
                #expect(try await server.api.request("GET", "/@connections/\(id)").status == 410)
            }
        }
    }

    @Test func aSecondConnectionOfTheSameIdentityReplacesTheFirst() async throws {
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/a/CP-DUP") { first in
                try await eventually("first recorded") { try await Self.rows(server, chargePointID: "CP-DUP").count == 1 }
                let firstID = try #require(try await Self.rows(server, chargePointID: "CP-DUP").first).connectionID
                try await TestCharger.with(url: server.ocppURL + "/b/CP-DUP") { _ in
                    _ = try await first.waitUntilClosed()
                    try await eventually("the second connection's row replaces the first") {
                        let rows = try await Self.rows(server, chargePointID: "CP-DUP")
                        return rows.count == 1 && rows[0].connectionID != firstID && rows[0].path == "/b/CP-DUP"
                    }
                    // The old socket's close must not have removed the new row.
                    try await Task.sleep(for: .milliseconds(300))
                    let rows = try await Self.rows(server, chargePointID: "CP-DUP")
                    #expect(rows.count == 1 && rows[0].path == "/b/CP-DUP")
                }
            }
        }
    }

    @Test func aMessageOverTheLimitClosesWith1009AndTheRowGoes() async throws {
        try await TestServer.with(configure: { $0.gateway.maxMessageSize = 1024 }) { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-BIG") { charger in
                try await eventually("recorded") { try await !Self.rows(server, chargePointID: "CP-BIG").isEmpty }
                try await charger.send(String(repeating: "x", count: 4096))
                let code = try await charger.waitUntilClosed()
                #expect(code == .messageTooLarge)
                try await eventually("the row goes") { try await Self.rows(server, chargePointID: "CP-BIG").isEmpty }
            }
        }
    }

    @Test func aClientThatVanishesWithoutACloseFrameIsFoundByPings() async throws {
        // 2 s: the row lives at least one ping period, long enough to be seen on a busy machine
        // (at 300 ms the socket could be found dead and its row gone between two polls).
        try await TestServer.with(configure: { $0.gateway.pingInterval = .seconds(2) }) { server in
            // A hand-made client: it upgrades, then never answers a ping and never closes.
            try await RawTCP.withConnection(port: server.running.ocppPort) { inbound, outbound in
                try await outbound.write(.init(string: RawTCP.upgradeRequest(path: "/CP-GHOST")))
                try await eventually("recorded") { try await !Self.rows(server, chargePointID: "CP-GHOST").isEmpty }
                // The server gives up on the silent client and closes the TCP connection.
                try await withTimeout(.seconds(20)) {
                    for try await _ in inbound {}
                }
            }
            try await eventually("the row goes") { try await Self.rows(server, chargePointID: "CP-GHOST").isEmpty }
        }
    }

    /// Chargers that connect together are not pinged together: each socket's first ping comes at
    /// a random point of the period's second half, so a fleet reconnecting at once (a restart)
    /// does not get its pings, and send its pongs, in one burst every period.
    @Test func chargersConnectedTogetherArePingedAtSpreadMoments() async throws {
        try await TestServer.with(configure: { $0.gateway.pingInterval = .seconds(2) }) { server in
            let port = server.running.ocppPort
            // Per socket, from its 101 to its first ping: what the server's timer decides, whatever
            // the upgrades' own delays on a busy machine.
            let firstPings = try await withThrowingTaskGroup(of: Duration.self) { group in
                for n in 0..<12 {
                    group.addTask {
                        try await withTimeout(.seconds(30)) {
                            try await RawTCP.withConnection(port: port) { inbound, outbound in
                                try await outbound.write(.init(string: RawTCP.upgradeRequest(path: "/CP-PING-\(n)")))
                                var bytes: [UInt8] = []
                                var upgraded: ContinuousClock.Instant?
                                for try await buffer in inbound {
                                    bytes += buffer.readableBytesView
                                    guard let end = bytes.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound else { continue }
                                    if upgraded == nil { upgraded = .now }
                                    // After the 101's head, the first frame the server sends: a ping (FIN, opcode 9).
                                    guard end < bytes.count, let upgraded else { continue }
                                    #expect(bytes[end] == 0x89, "the first frame is a ping")
                                    return upgraded.duration(to: .now)
                                }
                                throw TestFailure("the server closed CP-PING-\(n) before pinging it")
                            }
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let earliest = firstPings.min()!, latest = firstPings.max()!
            #expect(earliest >= .milliseconds(800), "no first ping before half a period: \(firstPings)")
            #expect(latest <= .seconds(12), "every first ping within the period (and a busy machine's delay): \(firstPings)")
            // A whole period after each upgrade, as before, they came within a few milliseconds.
            #expect(latest - earliest >= .milliseconds(250), "the first pings are spread: \(firstPings)")
        }
    }

    @Test(arguments: [
        ("/", "no identity"),
        ("/ocpp/", "empty last segment"),
        ("/ocpp/" + String(repeating: "A", count: 49), "49 characters"),
        ("/ocpp/CP%3A1", "a colon"),
        ("/ocpp/CP%201", "a space"),
        ("/ocpp/CP%C3%A91", "non-ASCII"),
        ("/ocpp/CP%ZZ", "bad percent-encoding"),
    ])
    func anUpgradeWithABadIdentityGets400AndNothingIsRecorded(path: String, what: String) async throws {
        try await TestServer.with { server in
            let response = try TestHTTPResponse(parsing: try await RawTCP.exchange(port: server.running.ocppPort, RawTCP.upgradeRequest(path: path)))
            #expect(response.status == 400, "\(what)")
            #expect(!response.body.isEmpty, "the refusal says why (\(what))")
            let all = try await TestDatabase.withClient(server.database) { client in
                try await PostgresConnectionRepository(client: client, logger: TestDatabase.logger).list(chargePointID: nil, limit: 10)
            }
            #expect(all.isEmpty)
        }
    }

    /// A connection that never finishes its upgrade request (a client gone before it sent it,
    /// or one that sends a line and stalls) is closed after the handshake timeout, unanswered;
    /// the server then stops without waiting for it. A charger whose request arrived in time is
    /// not touched by that timeout, however long its admission takes.
    @Test func aConnectionWithoutACompleteUpgradeRequestIsClosed() async throws {
        try await TestServer.with(configure: { $0.gateway.handshakeTimeout = .seconds(3) }) { server in
            /// Whether the server closed the connection without a byte of answer (a reset counts:
            /// closing a socket with unread input resets it).
            @Sendable func closedUnanswered(_ request: String) async throws -> Bool {
                do {
                    return try await RawTCP.exchange(port: server.running.ocppPort, request, timeout: .seconds(30)).isEmpty
                } catch let error as IOError where error.errnoCode == ECONNRESET {
                    return true
                }
            }
            #expect(try await closedUnanswered(""))
            #expect(try await closedUnanswered("GET /ocpp/CP-STALL HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
            try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-KEPT") { charger in
                try await Task.sleep(for: .seconds(4))
                _ = try await charger.boot()
                _ = try await charger.expectResult("Heartbeat", "{}")
            }
        }
    }

    @Test func anIdentityOf48PrintableCharactersIsAccepted() async throws {
        try await TestServer.with { server in
            let identity = String(repeating: "A", count: 47) + "~"
            try await TestCharger.with(url: server.ocppURL + "/ocpp/" + identity) { _ in
                try await eventually("recorded") { try await !Self.rows(server, chargePointID: identity).isEmpty }
            }
        }
    }

    @Test func subprotocolNegotiation() async throws {
        try await TestServer.with { server in
            // Only unsupported subprotocols: refused before the upgrade.
            let refused = try TestHTTPResponse(parsing: try await RawTCP.exchange(
                port: server.running.ocppPort, RawTCP.upgradeRequest(path: "/CP-SP", subprotocols: ["ocpp1.5", "ocpp0.9"])
            ))
            #expect(refused.status == 400)
            #expect(refused.body.contains("ocpp1.6"))

            // ocpp1.6 among others: chosen and echoed exactly.
            let accepted = try await RawTCP.withConnection(port: server.running.ocppPort) { inbound, outbound in
                try await outbound.write(.init(string: RawTCP.upgradeRequest(path: "/CP-SP", subprotocols: ["ocpp2.0.1", "ocpp1.6"])))
                var text = ""
                for try await var buffer in inbound {
                    text += buffer.readString(length: buffer.readableBytes) ?? ""
                    if text.contains("\r\n\r\n") { break }
                }
                return text
            }
            #expect(accepted.hasPrefix("HTTP/1.1 101"))
            #expect(accepted.lowercased().contains("sec-websocket-protocol: ocpp1.6\r\n"))
        }
        // None offered: accepted as 1.6 by default, refused when the flag says so.
        try await TestServer.with { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-NONE", subprotocols: []) { _ in
                try await eventually("recorded") { try await !Self.rows(server, chargePointID: "CP-NONE").isEmpty }
                #expect(try await Self.rows(server, chargePointID: "CP-NONE").first?.subprotocol == nil)
            }
        }
        try await TestServer.with(configure: { $0.gateway.handshake.versionWhenNoneOffered = nil }) { server in
            let response = try TestHTTPResponse(parsing: try await RawTCP.exchange(
                port: server.running.ocppPort, RawTCP.upgradeRequest(path: "/CP-NONE", subprotocols: nil)
            ))
            #expect(response.status == 400)
        }
    }

    @Test func aPlainHTTPRequestToTheChargerPortGets426() async throws {
        try await TestServer.with { server in
            let response = try TestHTTPResponse(parsing: try await RawTCP.exchange(
                port: server.running.ocppPort, "GET /ocpp/CP-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            ))
            #expect(response.status == 426)
            #expect(response.body.contains("WebSocket"))
            // Garbage is not HTTP at all: the server answers or closes, and keeps serving.
            _ = try? await RawTCP.exchange(port: server.running.ocppPort, "\u{0}\u{1}garbage\r\n\r\n")
            try await TestCharger.with(url: server.ocppURL + "/CP-AFTER") { _ in
                try await eventually("still serving") { try await !Self.rows(server, chargePointID: "CP-AFTER").isEmpty }
            }
        }
    }
}
