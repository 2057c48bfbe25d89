@testable import ChargepathServer
@testable import ChargePointSimulator
import ChargepathApp
import Foundation
import NIOCore
import NIOWebSocket
import Testing

/// The charger socket's WebSocket layer as a value: the decisions, without a socket.
@Suite struct ChargerSocketStateTests {
    static func frame(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true) -> WebSocketFrame {
        WebSocketFrame(fin: fin, opcode: opcode, data: ByteBuffer(string: text))
    }

    /// The state in a box, so that `#expect` can call its mutating methods.
    final class Machine {
        var state: ChargerSocketState
        init(capacity: Int, maxMessageSize: Int) {
            state = ChargerSocketState(configuration: .init(maxMessageSize: maxMessageSize, inboxCapacity: capacity))
        }
        func received(_ frame: WebSocketFrame) -> ChargerSocketState.FrameAction { state.received(frame) }
        func attach() -> String? { state.attach() }
        func handled() -> String? { state.handled() }
        func closeRequested(_ code: WebSocketErrorCode) -> Bool { state.closeRequested(code) }
        func pingPeriodPassed(readingPaused: Bool = false) -> ChargerSocketState.PingAction {
            state.pingPeriodPassed(readingPaused: readingPaused)
        }
        var wantsInput: Bool { state.wantsInput }
        var phase: ChargerSocketState.Phase { state.phase }
        var closeCode: WebSocketErrorCode? { state.closeCode }
    }

    static func attached(capacity: Int = 2, maxMessageSize: Int = 100) -> Machine {
        let machine = Machine(capacity: capacity, maxMessageSize: maxMessageSize)
        #expect(machine.attach() == nil)
        return machine
    }

    /// A socket's first ping comes in the second half of its first period, spread over it, and
    /// even a period of 0 or 1 ns gives a delay (no empty range).
    @Test func theFirstPingComesInTheSecondHalfOfThePeriod() {
        var random = SplitMix64(seed: 42)  // the simulator's seeded generator
        let period = TimeAmount.seconds(30)
        let delays = (0..<1_000).map { _ in ChargerSocketHandler.firstPingDelay(period: period, using: &random) }
        #expect(delays.allSatisfy { $0 >= .seconds(15) && $0 <= period })
        #expect(delays.min()! < .seconds(16) && delays.max()! > .seconds(29), "spread over the whole half period")
        for tiny in [TimeAmount.nanoseconds(0), .nanoseconds(1), .nanoseconds(2)] {
            let delay = ChargerSocketHandler.firstPingDelay(period: tiny, using: &random)
            #expect(delay >= .nanoseconds(1) && delay <= .nanoseconds(2))
        }
    }

    @Test func messagesGoToTheSessionOneAtATimeInOrderAndReadingStopsWhenTheInboxIsFull() {
        let state = Self.attached(capacity: 2)
        #expect(state.received(Self.frame(.text, "a")) == .deliver("a"))
        #expect(state.received(Self.frame(.text, "b")) == .none)
        #expect(state.wantsInput)
        #expect(state.received(Self.frame(.text, "c")) == .none)
        #expect(!state.wantsInput, "two messages wait: no more reads")
        #expect(state.handled() == "b")
        #expect(state.wantsInput)
        #expect(state.handled() == "c")
        #expect(state.handled() == nil)
        #expect(state.received(Self.frame(.text, "d")) == .deliver("d"))
    }

    @Test func messagesBeforeTheSessionIsReadyWaitForIt() {
        let state = Machine(capacity: 4, maxMessageSize: 100)
        #expect(state.received(Self.frame(.text, "early")) == .none)
        #expect(state.received(Self.frame(.text, "later")) == .none)
        #expect(state.attach() == "early")
        #expect(state.handled() == "later")
    }

    @Test func fragmentsMakeOneMessageAndTheLimitCountsThemTogether() {
        let state = Self.attached(maxMessageSize: 10)
        #expect(state.received(Self.frame(.text, "[2,", fin: false)) == .none)
        #expect(state.received(Self.frame(.continuation, "\"x\"", fin: false)) == .none)
        #expect(state.received(Self.frame(.continuation, "]", fin: true)) == .deliver("[2,\"x\"]"))
        _ = state.handled()
        #expect(state.received(Self.frame(.text, "123456", fin: false)) == .none)
        #expect(state.received(Self.frame(.continuation, "78901", fin: true)) == .close(.messageTooLarge, reason: "The message exceeds 10 bytes"))
        #expect(state.phase == .closing)
        #expect(state.closeCode == .messageTooLarge)
    }

    @Test func protocolViolationsCloseWithTheirCodes() {
        let binary = Self.attached()
        #expect(binary.received(Self.frame(.binary, "x")) == .close(.unacceptableData, reason: "OCPP-J messages are text frames"))

        let orphan = Self.attached()
        guard case .close(.protocolError, _) = orphan.received(Self.frame(.continuation, "x")) else {
            Issue.record("a continuation without a message must close with 1002"); return
        }

        let interleaved = Self.attached()
        _ = interleaved.received(Self.frame(.text, "a", fin: false))
        guard case .close(.protocolError, _) = interleaved.received(Self.frame(.text, "b")) else {
            Issue.record("a new message inside a fragmented one must close with 1002"); return
        }

        let badUTF8 = Self.attached()
        let invalid = WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: [0x5B, 0xC3, 0x28, 0x5D]))
        guard case .close(.dataInconsistentWithMessage, _) = badUTF8.received(invalid) else {
            Issue.record("invalid UTF-8 must close with 1007"); return
        }

        let reserved = Self.attached()
        var flagged = Self.frame(.text, "x")
        flagged.rsv1 = true
        guard case .close(.protocolError, _) = reserved.received(flagged) else {
            Issue.record("a reserved bit without an extension must close with 1002"); return
        }
        // After our close frame, data is ignored and the charger's close ends the socket.
        #expect(reserved.received(Self.frame(.text, "late")) == .none)
        #expect(reserved.received(Self.frame(.connectionClose, "")) == .shutDown)
        #expect(reserved.phase == .closed)
    }

    @Test func theChargersCloseIsEchoed() {
        let state = Self.attached()
        var payload = ByteBuffer()
        payload.write(webSocketErrorCode: .goingAway)
        payload.writeString("rebooting")
        #expect(state.received(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)) == .echoCloseAndShutDown(.goingAway))
        #expect(state.closeCode == .goingAway)
        #expect(!state.wantsInput)

        let empty = Self.attached()
        #expect(empty.received(Self.frame(.connectionClose, "")) == .echoCloseAndShutDown(nil))

        let reserved = Self.attached()
        var code1005 = ByteBuffer()
        code1005.writeInteger(UInt16(1005))
        #expect(reserved.received(WebSocketFrame(fin: true, opcode: .connectionClose, data: code1005)) == .echoCloseAndShutDown(.protocolError))
    }

    @Test func aPingIsAnsweredAndAnUnansweredPingEndsTheSocketAfterOnePeriod() {
        let state = Self.attached()
        #expect(state.received(Self.frame(.ping, "p")) == .pong(ByteBuffer(string: "p")))
        #expect(state.pingPeriodPassed() == .sendPing)
        #expect(state.received(Self.frame(.pong, "")) == .none)
        #expect(state.pingPeriodPassed() == .sendPing)
        #expect(state.pingPeriodPassed() == .giveUp)
        #expect(state.closeCode == .goingAway)
        #expect(state.pingPeriodPassed() == .none)
    }

    @Test func aPeriodWithReadingPausedDoesNotCountAgainstTheCharger() {
        // Reads pause while messages queue for a slow database: the pong may be sitting unread.
        let state = Self.attached()
        #expect(state.pingPeriodPassed() == .sendPing)
        #expect(state.pingPeriodPassed(readingPaused: true) == .none)
        #expect(state.pingPeriodPassed() == .sendPing, "the charger gets a fresh ping, not a verdict")
        #expect(state.phase == .open)
        #expect(state.pingPeriodPassed() == .giveUp)
    }

    @Test func theServersCloseIsSentOnce() {
        let state = Self.attached()
        #expect(state.closeRequested(.normalClosure))
        #expect(!state.closeRequested(.goingAway))
        #expect(state.closeCode == .normalClosure)
        #expect(state.received(Self.frame(.text, "after")) == .none)
    }
}

/// The same, through a real node and real sockets, with frames a client library would not send.
@Suite(.timeLimit(.minutes(3))) struct ChargerSocketTests {
    static let boot = #"{"chargePointVendor":"Chargepath","chargePointModel":"Raw"}"#

    @Test func aMessageInFragmentsIsAnsweredAsOne() async throws {
        try await TestServer.with { server in
            try await RawWebSocket.with(port: server.running.ocppPort, path: "/ocpp/CP-FRAG") { socket in
                try await socket.send(
                    .text(#"[2,"f1","BootNot"#, fin: false),
                    .continuation(#"ification","#, fin: false),
                    .continuation(Self.boot + "]", fin: true)
                )
                let answer = try await socket.nextFrame()
                #expect(answer.opcode == 0x1)
                #expect(answer.text.hasPrefix(#"[3,"f1",{"#), "\(answer.text)")
                #expect(answer.text.contains(#""status":"Accepted""#), "\(answer.text)")
            }
        }
    }

    @Test func callsSentBackToBackAreAnsweredInOrder() async throws {
        try await TestServer.with { server in
            try await RawWebSocket.with(port: server.running.ocppPort, path: "/ocpp/CP-PIPE") { socket in
                try await socket.send(.text(#"[2,"b","BootNotification","# + Self.boot + "]"))
                _ = try await socket.nextFrame()
                // Ten CALLs in one TCP segment: more than the socket's inbox holds, so reads pause and resume.
                let ids = (1...10).map { "hb-\($0)" }
                try await socket.send(.text(#"[2,"\#(ids[0])","Heartbeat",{}]"#), .text(#"[2,"\#(ids[1])","Heartbeat",{}]"#),
                                      .text(#"[2,"\#(ids[2])","Heartbeat",{}]"#), .text(#"[2,"\#(ids[3])","Heartbeat",{}]"#),
                                      .text(#"[2,"\#(ids[4])","Heartbeat",{}]"#), .text(#"[2,"\#(ids[5])","Heartbeat",{}]"#),
                                      .text(#"[2,"\#(ids[6])","Heartbeat",{}]"#), .text(#"[2,"\#(ids[7])","Heartbeat",{}]"#),
                                      .text(#"[2,"\#(ids[8])","Heartbeat",{}]"#), .text(#"[2,"\#(ids[9])","Heartbeat",{}]"#))
                var answered: [String] = []
                for _ in ids {
                    let frame = try await socket.nextFrame()
                    let parsed = try #require(try JSONSerialization.jsonObject(with: Data(frame.text.utf8)) as? [Any])
                    #expect(parsed.first as? Int == 3, "\(frame.text)")
                    answered.append(parsed[1] as? String ?? "?")
                }
                #expect(answered == ids)
            }
        }
    }

    @Test func aChargerThatSendsWithoutReadingGetsEveryAnswerInOrderAndHoldsNoOneUp() async throws {
        try await TestServer.with { server in
            try await RawWebSocket.with(port: server.running.ocppPort, path: "/ocpp/CP-DEAF") { socket in
                try await socket.send(.text(#"[2,"b","BootNotification","# + Self.boot + "]"))
                _ = try await socket.nextFrame()
                // 20,000 CALLs while reading nothing (~1.5 MB of answers): the socket's inbox fills,
                // reads pause and resume thousands of times, and no answer is lost or reordered.
                socket.pauseReading()
                let count = 20_000
                for chunk in stride(from: 0, to: count, by: 500) {
                    let frames = (chunk..<chunk + 500).map { RawWebSocket.Frame.text(#"[2,"h\#($0)","Heartbeat",{}]"#) }
                    try await socket.send(frames)
                }
                // Meanwhile another charger is answered as usual.
                try await TestCharger.with(url: server.ocppURL + "/CP-OTHER") { other in
                    _ = try await withTimeout(.seconds(20)) { try await other.boot() }
                }
                socket.resumeReading()
                for expected in 0..<count {
                    let frame = try await socket.nextFrame(timeout: .seconds(60))
                    guard frame.text.hasPrefix(#"[3,"h\#(expected)","#) else {
                        Issue.record("answer \(expected) out of order: \(frame.text.prefix(60))")
                        return
                    }
                }
            }
        }
    }

    @Test(arguments: [
        (RawWebSocket.Frame(opcode: 0x2, payload: [1, 2, 3]), 1003, "a binary frame"),
        (RawWebSocket.Frame(opcode: 0x1, payload: [0x5B, 0xC3, 0x28, 0x5D]), 1007, "text that is not UTF-8"),
        (RawWebSocket.Frame.continuation("]", fin: true), 1002, "a continuation without a message"),
        (RawWebSocket.Frame(opcode: 0x3, payload: []), 1002, "a reserved opcode"),
    ])
    func aFrameOCPPJCannotCarryClosesTheSocketWithItsCode(frame: RawWebSocket.Frame, code: Int, what: String) async throws {
        try await TestServer.with { server in
            try await RawWebSocket.with(port: server.running.ocppPort, path: "/ocpp/CP-BAD") { socket in
                try await socket.send(frame)
                let close = try await socket.nextFrame()
                #expect(close.opcode == 0x8, "\(what)")
                #expect(close.closeCode == code, "\(what)")
                #expect(!close.text.dropFirst(2).isEmpty, "the close frame says why (\(what))")
                // We answer the close; the server then ends the TCP connection.
                try await socket.send(.close(code))
                #expect(try await socket.next() == .end, "\(what)")
            }
            try await eventually("the row goes") { try await ConnectionTrackingTests.rows(server, chargePointID: "CP-BAD").isEmpty }
        }
    }

    @Test func aPingIsAnsweredWithItsPayloadAndACloseIsEchoed() async throws {
        try await TestServer.with { server in
            try await RawWebSocket.with(port: server.running.ocppPort, path: "/ocpp/CP-PING") { socket in
                try await socket.send(RawWebSocket.Frame(opcode: 0x9, payload: Array("are you there".utf8)))
                let pong = try await socket.nextFrame()
                #expect(pong == RawWebSocket.Frame(opcode: 0xA, payload: Array("are you there".utf8)))
                try await eventually("recorded") { try await !ConnectionTrackingTests.rows(server, chargePointID: "CP-PING").isEmpty }
                try await socket.send(.close(1001))
                let echoed = try await socket.nextFrame()
                #expect(echoed.opcode == 0x8 && echoed.closeCode == 1001)
                #expect(try await socket.next() == .end)
            }
            try await eventually("the row goes") { try await ConnectionTrackingTests.rows(server, chargePointID: "CP-PING").isEmpty }
        }
    }

    @Test func aShutdownTellsConnectedChargersItIsGoingAway() async throws {
        let watcher = try await TestServer.with { server in
            let (recorded, ready) = AsyncStream.makeStream(of: Void.self)
            let port = server.running.ocppPort
            let watcher = Task {
                try await RawWebSocket.with(port: port, path: "/ocpp/CP-BYE") { socket in
                    ready.yield()
                    let close = try await socket.nextFrame(timeout: .seconds(60))
                    try await socket.send(.close(close.closeCode ?? 1000))
                    return close
                }
            }
            for await _ in recorded { break }
            try await eventually("recorded") { try await !ConnectionTrackingTests.rows(server, chargePointID: "CP-BYE").isEmpty }
            return watcher
        }
        let close = try await watcher.value
        #expect(close.opcode == 0x8)
        #expect(close.closeCode == 1001)
        #expect(close.text.contains("shutting down"))
    }
}
