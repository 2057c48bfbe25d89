import Chargepath
public import Hummingbird
public import HummingbirdCore
import NIOCore

/// The charger port as Hummingbird sees it: a server builder for the upgrade channel, and the
/// router that answers plain HTTP requests.
public enum ChargerGateway {
    /// The child channel for the charger listener.
    public static func server(
        configuration: GatewayConfiguration, admission: ChargerAdmission?, sessions: ChargerSessions, metrics: ServerMetrics? = nil
    ) -> HTTPServerBuilder {
        let slots = configuration.maximumConnections.map { ConnectionSlots(maximum: $0) }
        return HTTPServerBuilder { responder in
            ChargerGatewayChannel(
                responder: responder,
                handshake: ChargerHandshake(configuration: configuration.handshake),
                admission: admission,
                configuration: configuration,
                slots: slots,
                metrics: metrics,
                session: { upgrade, socket, logger in
                    await sessions.serve(upgrade: upgrade, socket: socket, logger: logger)
                }
            )
        }
    }

    /// Any request that is not a WebSocket upgrade gets 426 with a hint of how to connect.
    public static func plainHTTPRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.addMiddleware { UpgradeRequiredMiddleware() }
        return router
    }
}

struct UpgradeRequiredMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let message = """
            This is Chargepath's OCPP-J charger endpoint: it speaks WebSocket only. Connect with \
            ws://<host>:<port>/<any path>/<chargePointId> and Sec-WebSocket-Protocol: ocpp1.6. \
            Operators use the operator API port instead.

            """
        return Response(
            status: .upgradeRequired,
            headers: [.contentType: "text/plain; charset=utf-8", .upgrade: "websocket", .connection: "close"],
            body: .init(byteBuffer: ByteBuffer(string: message))
        )
    }
}
