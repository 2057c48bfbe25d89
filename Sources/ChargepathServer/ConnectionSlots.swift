import Logging
import NIOCore
import Synchronization

/// A port's bound on open sockets: the charger port's (upgraded or not) and the operator API's.
///
/// Every socket is an open file, and a Swift process on Linux must never run out of them:
/// libdispatch's worker-pool monitor reads `/proc/<tid>/stat` for each of its threads, and when
/// that `open` fails it stops the process ("workq: registered worker exited prematurely"). A node
/// at its open-file limit, with more chargers knocking (a reconnect storm after an outage, a fleet
/// larger than the node), crashed so within seconds (seen with a limit of 600 and 2,000 chargers).
/// With this bound a connection past it is answered 503 at once and closed, and the files the
/// process needs besides its chargers (database connections, the operator API, libdispatch's
/// reads) stay free.
package final class ConnectionSlots: Sendable {
    package let maximum: Int
    private let open = Atomic<Int>(0)
    /// Refusals since the last warning, and when that was (one warning per `warningInterval`).
    private let refusals = Mutex<(count: Int, lastWarning: ContinuousClock.Instant?)>((0, nil))
    private let warningInterval: Duration
    /// Refused sockets open while their 503 is read (`OverCapacityHandler`), and the most there may be.
    private let lingering = Atomic<Int>(0)
    package let maximumLingering: Int
    /// How long a refused socket may stay open for its charger to read the 503 and close.
    let lingerTimeout: Duration

    /// `maximumLingering` of each port comes out of the files kept besides the chargers
    /// (`ChargepathApp.filesBesideChargers`).
    package init(maximum: Int, warningInterval: Duration = .seconds(10), maximumLingering: Int = 16, lingerTimeout: Duration = .seconds(2)) {
        precondition(maximum >= 0 && maximumLingering >= 0)
        self.maximum = maximum
        self.warningInterval = warningInterval
        self.maximumLingering = maximumLingering
        self.lingerTimeout = lingerTimeout
    }

    /// Sockets open now.
    package var count: Int { open.load(ordering: .relaxed) }

    /// Adds one to `counter` unless that would take it past `maximum`; false then.
    private static func take(_ counter: borrowing Atomic<Int>, upTo maximum: Int) -> Bool {
        if counter.wrappingAdd(1, ordering: .relaxed).newValue <= maximum { return true }
        counter.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    /// Takes a slot for a new socket; false when all are taken.
    package func take() -> Bool {
        Self.take(open, upTo: maximum)
    }

    package func release() {
        open.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Takes one of the few places for a refused socket that waits for its charger to read the 503.
    package func takeLingering() -> Bool {
        Self.take(lingering, upTo: maximumLingering)
    }

    package func releaseLingering() {
        lingering.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Takes a slot for a new socket, given back when it closes. Past the bound the socket is set
    /// to be answered `refusal` (a 503) and closed as soon as it is active, `warning` is logged now
    /// and then with the count of refusals, and false is returned. On the channel's event loop.
    func admit(_ channel: any Channel, refusal: String, warning: Logger.Message, logger: Logger) throws -> Bool {
        guard take() else {
            if let refused = refused() {
                logger.warning(warning, metadata: ["connections.max": "\(maximum)", "refused": "\(refused)"])
            }
            try channel.pipeline.syncOperations.addHandler(OverCapacityHandler(response: refusal, slots: self))
            return false
        }
        channel.closeFuture.whenComplete { _ in self.release() }
        return true
    }

    /// Counts a refused connection; returns how many were refused since the last warning when it
    /// is time for the next one.
    package func refused(now: ContinuousClock.Instant = .now) -> Int? {
        refusals.withLock { state in
            state.count += 1
            if let last = state.lastWarning, now < last + warningInterval { return nil }
            defer { state = (0, now) }
            return state.count
        }
    }

    /// The answer a connection past the bound gets before it is closed: 503, `Retry-After`, and why.
    static func overCapacityResponse(_ message: String) -> String {
        let body = message + "\n"
        return "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 60\r\nConnection: close\r\n"
            + "Content-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
    }

    static let chargerPortFull = overCapacityResponse(
        "This Chargepath node holds the most charger connections it can (its open-file limit). Connect again later, or to another node."
    )
    static let operatorAPIFull = overCapacityResponse(
        "This Chargepath node's operator API has the most connections open that it allows. Close idle ones, or try again later."
    )
}

/// Answers a socket past the bound 503 as soon as it is active, and closes it.
///
/// A charger sends its upgrade request right after it connects, often after the 503 is written. A
/// socket closed with that request unread is reset by the kernel, and the reset can reach the
/// charger before it reads the 503 (a NIO client then sees only "Connection reset by peer"). So
/// while a few sockets are lingering (`ConnectionSlots.takeLingering`), the 503 is followed by a
/// half-close (FIN), what the charger sends is read and dropped, and the socket is closed when the
/// charger closes its side, or after `ConnectionSlots.lingerTimeout`. Past those few (a storm of
/// refusals) a socket is closed at once, as its file matters more than its 503.
final class OverCapacityHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let response: String
    let slots: ConnectionSlots
    private var refusing = false
    private var deadline: Scheduled<Void>?

    init(response: String, slots: ConnectionSlots) {
        self.response = response
        self.slots = slots
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context: context)
    }

    /// The charger's request, read only so that closing does not reset the socket.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The charger closed its side (remote half-closure is allowed on this port): done.
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    private func refuse(context: ChannelHandlerContext) {
        guard !refusing else { return }
        refusing = true
        let response = context.channel.allocator.buffer(string: self.response)
        // The write goes out in this call (a new socket is writable); the close follows it.
        context.writeAndFlush(NIOAny(response), promise: nil)
        guard slots.takeLingering() else {
            context.close(promise: nil)
            return
        }
        let channel = context.channel
        channel.closeFuture.whenComplete { [slots] _ in slots.releaseLingering() }
        context.close(mode: .output, promise: nil)
        deadline = context.eventLoop.scheduleTask(in: TimeAmount(slots.lingerTimeout)) { channel.close(promise: nil) }
    }
}

/// The upgrade result of a socket past the bound (it is closed; nothing to handle).
struct ConnectionLimitReached: Error {}
