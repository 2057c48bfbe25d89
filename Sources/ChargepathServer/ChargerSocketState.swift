import DequeModule
import NIOCore
import NIOWebSocket

/// The WebSocket side of one charger socket as a value (RFC 6455, server side, OCPP-J text
/// messages): frames and events in, actions out. `ChargerSocketHandler` performs the actions on
/// the channel; this type decides them and is tested without a socket.
///
/// What it keeps per socket is small on purpose (an idle socket holds a few words here): the
/// fragments of a text message still arriving, the messages that arrived while the session was
/// busy with an earlier one (bounded: reads stop when it is full), and where the close handshake is.
struct ChargerSocketState {
    struct Configuration: Sendable {
        /// The largest text message, fragments together; more closes the socket with 1009.
        var maxMessageSize: Int
        /// How many whole messages may wait for the session before the socket stops reading.
        var inboxCapacity: Int = 4
    }

    enum Phase: Equatable {
        /// Messages flow both ways.
        case open
        /// We sent our close frame and wait for the charger's (or the close timeout).
        case closing
        /// Close frames were exchanged, or the socket is gone.
        case closed
    }

    /// What the handler does with a frame it received.
    enum FrameAction: Equatable {
        case none
        /// Hand this message to the session now (it has nothing else in hand).
        case deliver(String)
        /// Answer a ping.
        case pong(ByteBuffer)
        /// Send a close frame with this code and reason, then wait for the charger's.
        case close(WebSocketErrorCode, reason: String)
        /// The charger closed first: echo its code, then close the TCP connection (the server closes it).
        case echoCloseAndShutDown(WebSocketErrorCode?)
        /// The charger answered our close frame: close the TCP connection.
        case shutDown
    }

    /// What the handler does when a ping period passes.
    enum PingAction: Equatable {
        case none
        case sendPing
        /// The last ping went unanswered for a whole period: the charger is gone.
        case giveUp
    }

    let configuration: Configuration
    private(set) var phase: Phase = .open
    /// The close code that ended (or is ending) the socket: ours or the charger's.
    private(set) var closeCode: WebSocketErrorCode?
    /// A text message arriving in fragments.
    private var fragments: ByteBuffer?
    private var inbox: Deque<String> = []
    /// The session is attached (the connection is recorded) and may get messages.
    private var attached = false
    /// The session has a message in hand.
    private var handling = false
    private var awaitingPong = false

    init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// Whether the socket should read more from the network: not while the inbox is full.
    var wantsInput: Bool {
        phase != .closed && inbox.count < configuration.inboxCapacity
    }

    /// The session has a message in hand.
    var isHandling: Bool { handling }

    // MARK: Frames from the charger

    mutating func received(_ frame: WebSocketFrame) -> FrameAction {
        guard frame.reservedBits.isEmpty else {
            // No extension is negotiated, so no reserved bit may be set (RFC 6455 §5.2).
            return fail(.protocolError, "Reserved bits set without a negotiated extension")
        }
        switch frame.opcode {
        case .ping:
            guard phase == .open else { return .none }
            return .pong(frame.unmaskedData)
        case .pong:
            awaitingPong = false
            return .none
        case .connectionClose:
            return receivedClose(frame.unmaskedData)
        case .text:
            guard phase == .open else { return .none }
            guard fragments == nil else {
                return fail(.protocolError, "A new message began before the previous one's last fragment")
            }
            if frame.fin { return complete(frame.unmaskedData) }
            fragments = frame.unmaskedData
            return .none
        case .continuation:
            guard phase == .open else { return .none }
            guard var message = fragments else {
                return fail(.protocolError, "A continuation frame without a message to continue")
            }
            fragments = nil  // no second reference while appending: the buffer grows in place
            guard message.readableBytes + frame.length <= configuration.maxMessageSize else {
                return fail(.messageTooLarge, "The message exceeds \(configuration.maxMessageSize) bytes")
            }
            var data = frame.unmaskedData
            message.writeBuffer(&data)
            if frame.fin { return complete(message) }
            fragments = message
            return .none
        case .binary:
            guard phase == .open else { return .none }
            return fail(.unacceptableData, "OCPP-J messages are text frames")
        default:
            return fail(.protocolError, "Unknown opcode \(frame.opcode)")
        }
    }

    private mutating func complete(_ bytes: ByteBuffer) -> FrameAction {
        guard let text = String(validating: bytes.readableBytesView, as: UTF8.self) else {
            return fail(.dataInconsistentWithMessage, "A text message that is not UTF-8")
        }
        if attached && !handling {
            handling = true
            return .deliver(text)
        }
        inbox.append(text)
        return .none
    }

    private mutating func receivedClose(_ data: ByteBuffer) -> FrameAction {
        switch phase {
        case .closed:
            return .none
        case .closing:
            phase = .closed
            return .shutDown
        case .open:
            phase = .closed
            fragments = nil
            var data = data
            switch data.readableBytes {
            case 0:
                // No status: the answer carries none either (RFC 6455 §5.5.1).
                closeCode = .normalClosure
                return .echoCloseAndShutDown(nil)
            case 1:
                closeCode = .protocolError
                return .echoCloseAndShutDown(.protocolError)
            default:
                let code = data.readWebSocketErrorCode() ?? .protocolError
                guard String(validating: data.readableBytesView, as: UTF8.self) != nil else {
                    closeCode = .protocolError
                    return .echoCloseAndShutDown(.protocolError)
                }
                closeCode = code
                return .echoCloseAndShutDown(Self.isSendable(code) ? code : .protocolError)
            }
        }
    }

    /// Codes a peer may put on the wire (RFC 6455 §7.4): 1005, 1006 and 1015 are for reporting only.
    private static func isSendable(_ code: WebSocketErrorCode) -> Bool {
        switch code {
        case .normalClosure, .goingAway, .protocolError, .unacceptableData, .dataInconsistentWithMessage,
             .policyViolation, .messageTooLarge, .missingExtension, .unexpectedServerError:
            return true
        case .unknown(let raw):
            return (3000...4999).contains(raw)
        }
    }

    private mutating func fail(_ code: WebSocketErrorCode, _ reason: String) -> FrameAction {
        guard phase == .open else { return .none }
        phase = .closing
        closeCode = code
        fragments = nil
        inbox.removeAll()
        return .close(code, reason: reason)
    }

    // MARK: The session

    /// The session is ready: the first message that waited for it, if any.
    mutating func attach() -> String? {
        attached = true
        return next()
    }

    /// The session finished a message: the next one, if any.
    mutating func handled() -> String? {
        handling = false
        return next()
    }

    private mutating func next() -> String? {
        guard attached, !handling, phase != .closed, let text = inbox.popFirst() else { return nil }
        handling = true
        return text
    }

    // MARK: Closing and pings

    /// The server closes the socket (an operator, a newer connection, shutdown): whether to send a close frame.
    mutating func closeRequested(_ code: WebSocketErrorCode) -> Bool {
        guard phase == .open else { return false }
        phase = .closing
        closeCode = code
        return true
    }

    /// A ping period passed. `readingPaused`: the socket is not reading (messages queue for a
    /// slow session, or the charger does not read our writes), so a pong could not have been
    /// seen: that period does not count against the charger.
    mutating func pingPeriodPassed(readingPaused: Bool = false) -> PingAction {
        guard phase == .open else { return .none }
        if readingPaused {
            awaitingPong = false
            return .none
        }
        if awaitingPong {
            phase = .closing
            closeCode = .goingAway
            return .giveUp
        }
        awaitingPong = true
        return .sendPing
    }

    /// The TCP connection is gone.
    mutating func disconnected() {
        phase = .closed
        fragments = nil
        inbox.removeAll()
    }
}
