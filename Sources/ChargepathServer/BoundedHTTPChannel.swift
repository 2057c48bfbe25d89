public import HummingbirdCore
public import Logging
public import NIOCore

/// The operator API's HTTP/1.1 channel (Hummingbird's `HTTP1Channel`) with a bound on open
/// connections, for the reason the charger port has one (`ConnectionSlots`): files the process
/// keeps besides its chargers' sockets must not run out, and the API's connections come from them.
/// Past the bound a new connection is answered 503 and closed.
public struct BoundedHTTPChannel: ServerChildChannel {
    public struct Value: ServerChildChannelValue {
        /// nil for a connection past the bound (answered and closed in its pipeline).
        let http: HTTP1Channel.Value?
        public let channel: any Channel
    }

    let http: HTTP1Channel
    let slots: ConnectionSlots

    /// A server builder for `Application(server:)`: at most `maximumConnections` open at once.
    public static func server(maximumConnections: Int) -> HTTPServerBuilder {
        let slots = ConnectionSlots(maximum: maximumConnections)
        return HTTPServerBuilder { responder in
            BoundedHTTPChannel(http: HTTP1Channel(responder: responder), slots: slots)
        }
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            guard try slots.admit(
                channel, refusal: ConnectionSlots.operatorAPIFull,
                warning: "Refusing operator API connections (503): the most are open. Look for a client that keeps many open.",
                logger: logger
            ) else {
                return channel.eventLoop.makeSucceededFuture(Value(http: nil, channel: channel))
            }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return http.setup(channel: channel, logger: logger).map { Value(http: $0, channel: channel) }
    }

    public func handle(value: Value, logger: Logger) async {
        guard let connection = value.http else { return }
        await http.handle(value: connection, logger: logger)
    }
}
