import NIOCore
import NIOPosix
import Synchronization

/// A WebSocket client written frame by frame, for what a well-behaved client library will not
/// send: fragments, binary frames, bad UTF-8, reserved bits, pings with payloads.
final class RawWebSocket: Sendable {
    struct Frame: Sendable, Equatable {
        var fin = true
        var opcode: UInt8
        var payload: [UInt8]

        var text: String { String(decoding: payload, as: UTF8.self) }
        /// A close frame's status code, if it carries one.
        var closeCode: Int? { payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : nil }

        static func text(_ text: String, fin: Bool = true) -> Frame { Frame(fin: fin, opcode: 0x1, payload: Array(text.utf8)) }
        static func continuation(_ text: String, fin: Bool) -> Frame { Frame(fin: fin, opcode: 0x0, payload: Array(text.utf8)) }
        static func close(_ code: Int) -> Frame { Frame(opcode: 0x8, payload: [UInt8(code >> 8), UInt8(code & 0xFF)]) }
    }

    enum Event: Sendable, Equatable {
        case frame(Frame)
        /// The server closed the TCP connection.
        case end
    }

    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let events: AsyncStream<Event>
    /// While paused the client reads nothing, so the server's writes back up (TCP flow control).
    private let gate = Mutex<(paused: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    private init(outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, events: AsyncStream<Event>) {
        self.outbound = outbound
        self.events = events
    }

    /// Connects, upgrades (expecting 101), runs `body`, closes the TCP connection.
    static func with<T: Sendable>(port: Int, path: String, _ body: @Sendable (RawWebSocket) async throws -> T) async throws -> T {
        try await RawTCP.withConnection(port: port) { inbound, outbound in
            try await outbound.write(ByteBuffer(string: RawTCP.upgradeRequest(path: path)))
            let (events, continuation) = AsyncStream.makeStream(of: Event.self)
            return try await withThrowingTaskGroup(of: T?.self) { group in
                let socket = RawWebSocket(outbound: outbound, events: events)
                group.addTask {
                    var pending: [UInt8] = []
                    var upgraded = false
                    do {
                        for try await buffer in inbound {
                            await socket.waitWhilePaused()
                            pending += buffer.readableBytesView
                            if !upgraded {
                                guard let end = pending.firstRange(of: Array("\r\n\r\n".utf8)) else { continue }
                                let head = String(decoding: pending[..<end.lowerBound], as: UTF8.self)
                                guard head.hasPrefix("HTTP/1.1 101") else { throw TestFailure("the upgrade was refused: \(head)") }
                                pending.removeSubrange(..<end.upperBound)
                                upgraded = true
                            }
                            while let (frame, used) = Self.parse(pending) {
                                pending.removeFirst(used)
                                continuation.yield(.frame(frame))
                            }
                        }
                    } catch {}
                    continuation.yield(.end)
                    continuation.finish()
                    return nil
                }
                let result = try await body(socket)
                group.cancelAll()
                return result
            }
        }
    }

    /// Stops reading from the socket (after the chunk in hand).
    func pauseReading() {
        gate.withLock { $0.paused = true }
    }

    func resumeReading() {
        let waiters = gate.withLock { state in
            state.paused = false
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func waitWhilePaused() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = gate.withLock { state in
                if state.paused { state.waiters.append(continuation) }
                return !state.paused
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Sends frames in one TCP write (masked, as a client must).
    func send(_ frames: Frame...) async throws {
        try await send(frames)
    }

    func send(_ frames: [Frame]) async throws {
        var bytes: [UInt8] = []
        for frame in frames {
            bytes.append((frame.fin ? 0x80 : 0) | frame.opcode)
            let count = frame.payload.count
            if count < 126 {
                bytes.append(0x80 | UInt8(count))
            } else {
                bytes.append(0x80 | 126)
                bytes += [UInt8(count >> 8), UInt8(count & 0xFF)]
            }
            let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
            bytes += mask
            bytes += frame.payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        }
        try await outbound.write(ByteBuffer(bytes: bytes))
    }

    /// The next frame or the end of the connection, within `timeout`.
    func next(timeout: Duration = TestTiming.wait) async throws -> Event {
        let events = self.events
        return try await withTimeout(timeout) {
            for await event in events { return event }
            return .end
        }
    }

    /// The next frame that is not a ping from the server's keep-alive.
    func nextFrame(timeout: Duration = TestTiming.wait) async throws -> Frame {
        while true {
            switch try await next(timeout: timeout) {
            case .end: throw TestFailure("the server closed the connection")
            case .frame(let frame) where frame.opcode == 0x9: continue
            case .frame(let frame): return frame
            }
        }
    }

    /// Parses one server frame (unmasked) from the front of `bytes`: the frame and the bytes it used.
    private static func parse(_ bytes: [UInt8]) -> (Frame, Int)? {
        guard bytes.count >= 2 else { return nil }
        var length = Int(bytes[1] & 0x7F)
        var offset = 2
        if length == 126 {
            guard bytes.count >= 4 else { return nil }
            length = Int(bytes[2]) << 8 | Int(bytes[3])
            offset = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return nil }
            length = bytes[2..<10].reduce(0) { $0 << 8 | Int($1) }
            offset = 10
        }
        guard bytes.count >= offset + length else { return nil }
        let frame = Frame(fin: bytes[0] & 0x80 != 0, opcode: bytes[0] & 0x0F, payload: Array(bytes[offset..<offset + length]))
        return (frame, offset + length)
    }
}
