import EventLoopExecutor
import NIOCore
import Synchronization
public import NIOWebSocket
import Logging

/// One charger's WebSocket as the rest of the server sees it: send a text message, close.
///
/// Behind it is a `ChargerSocketHandler` in the channel's pipeline, on the channel's event loop.
/// Nothing here owns a task: an idle charger costs its channel, its handler and this object.
public final class ChargerSocket: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBound<ChargerSocketHandler>

    init(channel: any Channel, handler: ChargerSocketHandler) {
        self.channel = channel
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
    }

    /// Sends one text message without waiting for it to be written: the answers to a charger's
    /// CALLs and the CALLs to it. Reads stop while the socket cannot write, so these are bounded.
    public func send(_ text: String) {
        channel.writeAndFlush(textFrame(text), promise: nil)
    }

    /// Sends one text message and waits until the network layer took it (`@connections` pushes).
    /// Throws when the socket is closing or closed.
    public func write(_ text: String) async throws {
        try await channel.writeAndFlush(textFrame(text))
    }

    private func textFrame(_ text: String) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, data: channel.allocator.buffer(string: text))
    }

    /// Starts the close handshake: a close frame now, the TCP connection closed when the charger
    /// answers or after the close timeout. Returns at once.
    public func close(_ code: WebSocketErrorCode, reason: String) {
        channel.triggerUserOutboundEvent(ChargerSocketHandler.CloseRequest(code: code, reason: reason), promise: nil)
    }

    /// Starts delivering the charger's messages to `receive`, one at a time, in order: the next
    /// waits until `receive` returned for the previous one, or until it let the message go
    /// earlier (`MessageTurn.letGo`).
    func start(_ receive: @escaping @Sendable (String, MessageTurn) async -> Void) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.attach(receive) }
    }

    /// Calls `body` once the TCP connection is closed and the session has no message in hand
    /// (at once if that is so already), with the close code that ended the socket (the charger's
    /// or ours; nil when none was exchanged). What runs after it cannot race a message still
    /// being handled: the session's end, the row's deletion, a shutdown that stops the database.
    func whenClosed(_ body: @escaping @Sendable (WebSocketErrorCode?) -> Void) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.whenClosed(body) }
    }
}

/// The charger socket's WebSocket layer as a NIO channel handler, after NIO's frame decoder and
/// encoder: assembles text messages, answers pings, pings the charger, runs the close handshake,
/// and hands each message to the session in a short-lived task, one at a time.
///
/// Why not hummingbird-websocket's `WebSocketHandler`: it keeps a task (and its stack) per socket
/// for as long as the socket lives, plus an async channel's buffers; with tens of thousands of
/// mostly idle chargers per node that was most of each connection's memory (BENCHMARKS.md). Here a
/// task exists only while a message is being handled.
final class ChargerSocketHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// The user outbound event `ChargerSocket.close` sends down the pipeline.
    struct CloseRequest: Sendable {
        let code: WebSocketErrorCode
        let reason: String
    }

    struct Configuration: Sendable {
        var state: ChargerSocketState.Configuration
        var pingInterval: Duration?
        var closeTimeout: Duration
    }

    private var state: ChargerSocketState
    private let configuration: Configuration
    private let logger: Logger
    private var receive: (@Sendable (String, MessageTurn) async -> Void)?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var pings: RepeatedTask?
    private var onClosed: ((WebSocketErrorCode?) -> Void)?
    private var inactive = false
    private var closeTimer: Scheduled<Void>?
    /// Where the message tasks run: this channel's event loop.
    private var executor: EventLoopTaskExecutor?

    var closeCode: WebSocketErrorCode? { state.closeCode }

    init(configuration: Configuration, logger: Logger) {
        self.state = ChargerSocketState(configuration: configuration.state)
        self.configuration = configuration
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.executor = EventLoopTaskExecutor.for(context.eventLoop)
        if let interval = configuration.pingInterval {
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let period = TimeAmount(interval)
            var random = SystemRandomNumberGenerator()
            let first = Self.firstPingDelay(period: period, using: &random)
            pings = context.eventLoop.scheduleRepeatedTask(initialDelay: first, delay: period) { _ in
                handler.value.pingPeriodPassed()
            }
        }
    }

    /// When a socket's first ping comes: at a random point of the period's second half, not a
    /// whole period after the upgrade. A fleet that reconnects at once (a node restarted, a
    /// network back) would otherwise be pinged all at once, every period, for as long as its
    /// sockets live: 1,000 chargers' pings and pongs in one moment made that second's p99 two to
    /// three times the others' at ~5,000 messages a second (BENCHMARKS.md, 2026-11-27 16:45).
    /// Spread over half a period, they stay spread. A silent charger is still found within two
    /// periods (a ping unanswered for a whole period).
    static func firstPingDelay(period: TimeAmount, using random: inout some RandomNumberGenerator) -> TimeAmount {
        let whole = max(period.nanoseconds, 2)
        return .nanoseconds(Int64.random(in: (whole / 2)...whole, using: &random))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopTimers()
        self.context = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch state.received(frame) {
        case .none:
            break
        case .deliver(let text):
            deliver(text, context: context)
        case .pong(let data):
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: data)), promise: nil)
        case .close(let code, let reason):
            logger.info("Closing a charger socket that broke the WebSocket protocol", metadata: [
                "ws.close_code": "\(code)", "reason": "\(reason)",
            ])
            writeCloseFrame(code, reason: reason, context: context)
        case .echoCloseAndShutDown(let code):
            let frame = Self.closeFrame(code, allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(frame)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        case .shutDown:
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The charger shut its side without a close frame: nothing more will come.
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReadingIfWanted(context: context)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.disconnected()
        stopTimers()
        inactive = true
        reportClosedIfDone()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("A charger socket failed; closing it", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        // Backpressure: no more from the network while messages queue for the session, or while
        // the answers cannot be written (a charger that sends and never reads).
        if state.wantsInput && context.channel.isWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard state.phase == .open else {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        context.write(data, promise: promise)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let request = event as? CloseRequest else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        if state.closeRequested(request.code) {
            writeCloseFrame(request.code, reason: request.reason, context: context)
        }
        promise?.succeed()
    }

    // MARK: Helpers

    /// A close frame: the code (none when nil, as when echoing a close without one) and as much of
    /// `reason` as fits: a control frame's payload is at most 125 bytes, 2 of them the code.
    private static func closeFrame(_ code: WebSocketErrorCode?, reason: String = "", allocator: ByteBufferAllocator) -> WebSocketFrame {
        var buffer = allocator.buffer(capacity: 2 + reason.utf8.count)
        if let code {
            buffer.write(webSocketErrorCode: code)
            var fitting = Substring(reason)
            while fitting.utf8.count > 123 { fitting = fitting.dropLast() }
            buffer.writeString(String(fitting))
        }
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)
    }

    /// Writes our close frame (the state already moved to closing) and bounds the wait for the answer.
    private func writeCloseFrame(_ code: WebSocketErrorCode, reason: String, context: ChannelHandlerContext) {
        // Not through self.write: the state says closing, and the close frame is the exception.
        context.writeAndFlush(wrapOutboundOut(Self.closeFrame(code, reason: reason, allocator: context.channel.allocator)), promise: nil)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        closeTimer = context.eventLoop.scheduleTask(in: TimeAmount(configuration.closeTimeout)) {
            handler.value.context?.close(promise: nil)
        }
    }

    private func pingPeriodPassed() {
        guard let context else { return }
        switch state.pingPeriodPassed(readingPaused: pendingRead) {
        case .none:
            break
        case .sendPing:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
        case .giveUp:
            logger.info("A charger did not answer a ping within a ping period; closing its socket")
            context.writeAndFlush(wrapOutboundOut(Self.closeFrame(.goingAway, allocator: context.channel.allocator)), promise: nil)
            context.close(promise: nil)
        }
    }

    fileprivate func attach(_ receive: @escaping @Sendable (String, MessageTurn) async -> Void) {
        guard let context else { return }
        self.receive = receive
        if let text = state.attach() { deliver(text, context: context) }
        resumeReadingIfWanted(context: context)
    }

    private func deliver(_ text: String, context: ChannelHandlerContext) {
        guard let receive, let executor else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let turn = MessageTurn { eventLoop.execute { handler.value.handled() } }
        // The one task of this message: the session handles it here, inline (a time limit on the
        // answer lets the message go without a second task; see `MessageTurn`).
        turn.started(Task(executorPreference: executor) {
            await receive(text, turn)
            turn.letGo()
        })
    }

    private func handled() {
        let next = state.handled()
        guard let context else {
            reportClosedIfDone()
            return
        }
        if let text = next { deliver(text, context: context) }
        resumeReadingIfWanted(context: context)
        reportClosedIfDone()
    }

    fileprivate func whenClosed(_ body: @escaping (WebSocketErrorCode?) -> Void) {
        onClosed = body
        reportClosedIfDone()
    }

    /// The socket's end is reported once: when it is closed and no message is with the session.
    private func reportClosedIfDone() {
        guard inactive, !state.isHandling, let report = onClosed else { return }
        onClosed = nil
        report(state.closeCode)
    }

    private func resumeReadingIfWanted(context: ChannelHandlerContext) {
        if pendingRead, state.wantsInput, context.channel.isWritable {
            pendingRead = false
            context.read()
        }
    }

    private func stopTimers() {
        pings?.cancel()
        pings = nil
        closeTimer?.cancel()
        closeTimer = nil
    }
}

/// One message's hold on its socket: the socket delivers the next message once this one is let
/// go, which happens when the session returns from it, or earlier, when the session answered
/// the charger at a time limit while the work goes on (`abandon`).
///
/// Why not a second task racing a deadline (`withTimeLimit`): that cost every charger CALL a
/// second task and two more hops between threads; here the message's own task does the work, and
/// the deadline only answers and lets go.
public final class MessageTurn: Sendable {
    private struct State {
        var done = false
        var work: Task<Void, Never>?
        var cancelWhenStarted = false
    }

    private let state = Mutex(State())
    private let onLetGo: @Sendable () -> Void

    init(onLetGo: @escaping @Sendable () -> Void) {
        self.onLetGo = onLetGo
    }

    /// The task handling the message, once it is created.
    fileprivate func started(_ work: Task<Void, Never>) {
        let cancel = state.withLock { state in
            state.work = work
            return state.cancelWhenStarted
        }
        if cancel { work.cancel() }
    }

    /// The socket may deliver the next message. Only the first call counts.
    public func letGo() {
        let first = state.withLock { state in
            defer { state.done = true }
            return !state.done
        }
        if first { onLetGo() }
    }

    /// Lets the message go and cancels the work still being done for it.
    public func abandon() {
        let work = state.withLock { state in
            if state.work == nil { state.cancelWhenStarted = true }
            return state.work
        }
        work?.cancel()
        letGo()
    }
}
