import ChargepathApp
import ChargepathServer
import Foundation
import NIOCore
import Testing

/// A node never runs out of open files: past `GatewayConfiguration.maximumConnections` a new
/// connection is answered 503 and closed, and the chargers already connected are not disturbed.
/// Without the bound, a node at its open-file limit with more chargers knocking was stopped by
/// libdispatch within seconds (`ConnectionSlots`).
@Suite(.timeLimit(.minutes(2))) struct ConnectionBoundTests {
    @Test func pastItsBoundTheChargerPortAnswers503AndKeepsItsChargers() async throws {
        try await TestServer.with(configure: { $0.gateway.maximumConnections = 2 }) { server in
            try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-BOUND-1") { first in
                try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-BOUND-2") { second in
                    // The third socket is answered at once (it need not send anything) and closed.
                    let refused = try TestHTTPResponse(parsing: try await Self.readUntilClosed(port: server.running.ocppPort))
                    #expect(refused.status == 503)
                    #expect(refused.headers["retry-after"] == "60")
                    #expect(refused.body.contains("holds the most charger connections it can"))
                    // The two in service still are.
                    for (charger, id) in [(first, "a"), (second, "b")] {
                        try await charger.send(#"[2,"\#(id)","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#)
                        let answer = try await charger.next()
                        #expect(answer.hasPrefix(#"[3,"\#(id)",{"#) && answer.contains(#""status":"Accepted""#))
                    }
                }
            }
            // Their sockets closed, their slots are free again (the server sees the closes a moment later).
            let deadline = ContinuousClock.now + .seconds(10)
            var connected = false
            while !connected, ContinuousClock.now < deadline {
                connected = (try? await TestCharger.with(url: server.ocppURL + "/ocpp/CP-BOUND-3") { charger in
                    try await charger.send(#"[2,"c","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#)
                    return try await charger.next().hasPrefix(#"[3,"c",{"#)
                }) ?? false
                if !connected { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(connected)
        }
    }

    /// A charger sends its upgrade request as soon as it is connected, and the 503 may already be
    /// on its way: the request must not make the node reset the socket (a socket closed with
    /// unread data is reset, and a reset can reach the charger before it has read the 503). Each
    /// refused charger here sends its request at once, or after the 503 was written.
    @Test func aRefusedChargerThatSendsItsRequestStillReads503() async throws {
        try await TestServer.with(configure: { $0.gateway.maximumConnections = 1 }) { server in
            try await TestCharger.with(url: server.ocppURL + "/ocpp/CP-BOUND-1") { _ in
                let request = "GET /ocpp/CP-REFUSED HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
                for attempt in 0..<20 {
                    let text = try await RawTCP.withConnection(port: server.running.ocppPort) { inbound, outbound in
                        if attempt % 2 == 1 { try await Task.sleep(for: .milliseconds(50)) }
                        // After a pause the 503 and the server's FIN may be here already, and this
                        // client closes when its input ends: the write may then fail; the read not.
                        try? await outbound.write(ByteBuffer(string: request))
                        var text = ""
                        for try await var buffer in inbound {
                            text += buffer.readString(length: buffer.readableBytes) ?? ""
                        }
                        return text
                    }
                    #expect(text.hasPrefix("HTTP/1.1 503"), "attempt \(attempt): \(String(text.prefix(60)))")
                }
            }
        }
    }

    /// The operator API's connections come from the files kept besides the chargers' sockets:
    /// bounded too, so a client that opens many cannot take the node's last files.
    @Test func pastItsBoundTheOperatorAPIAnswers503() async throws {
        try await TestServer.with(configure: { $0.maximumAPIConnections = 1 }) { server in
            let port = server.running.apiPort
            try await RawTCP.withConnection(port: port) { inbound, outbound in
                // One connection is open, answered once and kept alive (so the server has set it
                // up: connections are set up on their own event loops, in no fixed order).
                try await outbound.write(ByteBuffer(string: "GET /api/v1/charge-points HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(TestServer.token)\r\n\r\n"))
                var head = ""
                for try await var buffer in inbound {
                    head += buffer.readString(length: buffer.readableBytes) ?? ""
                    if head.contains("\r\n\r\n") { break }
                }
                #expect(head.hasPrefix("HTTP/1.1 200"))
                // The next is refused at once.
                let refused = try TestHTTPResponse(parsing: try await Self.readUntilClosed(port: port))
                #expect(refused.status == 503)
                #expect(refused.body.contains("operator API has the most connections open"))
            }
            // Closed, its slot is free again.
            let deadline = ContinuousClock.now + .seconds(10)
            var status = 0
            while status != 200, ContinuousClock.now < deadline {
                status = (try? await server.api.request("GET", "/api/v1/charge-points").status) ?? 0
                if status != 200 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(status == 200)
        }
    }

    /// Refused sockets wait for their charger to read the 503 only a few at a time.
    @Test func fewRefusedSocketsLingerAtOnce() {
        let slots = ConnectionSlots(maximum: 1, maximumLingering: 2)
        #expect(slots.takeLingering() && slots.takeLingering())
        #expect(!slots.takeLingering())
        slots.releaseLingering()
        #expect(slots.takeLingering())
    }

    @Test func slotsAreTakenUpToTheBoundAndRefusalsAreReportedNowAndThen() {
        let slots = ConnectionSlots(maximum: 2, warningInterval: .seconds(10))
        #expect(slots.take() && slots.take())
        #expect(!slots.take())
        #expect(slots.count == 2)
        slots.release()
        #expect(slots.take())
        #expect(!slots.take())
        let start = ContinuousClock.now
        #expect(slots.refused(now: start) == 1)  // the first refusal is reported at once
        #expect(slots.refused(now: start + .seconds(1)) == nil)
        #expect(slots.refused(now: start + .seconds(2)) == nil)
        #expect(slots.refused(now: start + .seconds(11)) == 3)  // then the ones since, once per interval
    }

    /// Connects, sends nothing, and reads until the server closes.
    static func readUntilClosed(port: Int) async throws -> String {
        try await withTimeout(TestTiming.wait) {
            try await RawTCP.withConnection(port: port) { inbound, _ in
                var text = ""
                for try await var buffer in inbound { text += buffer.readString(length: buffer.readableBytes) ?? "" }
                return text
            }
        }
    }
}
