import NIOWebSocket
public import Chargepath
import ChargepathWorkflows
import Foundation
public import Hummingbird
import Logging
import NIOCore
import OCPPCore

/// The operator listener: `@connections` (modelled on API Gateway's management API), the
/// `/api/v1` routes, and the unauthenticated `/health` and `/ready` probes.
public struct OperatorAPI: Sendable {
    public struct Configuration: Sendable {
        /// The bearer token every operator endpoint requires.
        public var token: String
        /// The largest body `POST /@connections/{id}` forwards (the charger's own message limit).
        public var maxMessageSize: Int

        public init(token: String, maxMessageSize: Int = 65_536) {
            self.token = token
            self.maxMessageSize = maxMessageSize
        }
    }

    let configuration: Configuration
    let connections: any ConnectionRepository
    let registry: ConnectionRegistry
    let nodeID: NodeID
    let management: ManagementAPI?
    let workflows: WorkflowAPI?
    /// Whether the database is reachable and fully migrated.
    let readiness: @Sendable () async -> Result<Void, any Error>
    /// The history read routes (transactions, charge points, status history), behind the token.
    public var history: HistoryAPI?
    /// `GET /metrics` (Prometheus' text format), behind the token.
    public var metrics: ServerMetrics?

    public init(
        configuration: Configuration, connections: any ConnectionRepository, registry: ConnectionRegistry, nodeID: NodeID,
        management: ManagementAPI? = nil,
        workflows: WorkflowAPI? = nil,
        readiness: @escaping @Sendable () async -> Result<Void, any Error>
    ) {
        self.configuration = configuration
        self.connections = connections
        self.registry = registry
        self.nodeID = nodeID
        self.management = management
        self.workflows = workflows
        self.readiness = readiness
    }

    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("health") { _, _ in HTTPResponse.Status.ok }
        let document = OpenAPIDocument.json()
        router.get("api/v1/openapi.json") { _, _ in Response.rawJSON(document, status: .ok) }
        router.get("ready") { _, _ in
            switch await readiness() {
            case .success: return Response.text("ready\n", status: .ok)
            case .failure(let error): return Response.text("not ready: \(error)\n", status: .serviceUnavailable)
            }
        }
        let protected = router.group().add(middleware: BearerTokenMiddleware(token: configuration.token))
        history?.addRoutes(to: protected)
        if let metrics {
            let engine = workflows?.engine
            protected.get("metrics") { _, context in
                if let engine {
                    // Bounded: a scrape answers even while the database is away.
                    do {
                        try await metrics.refreshWorkflowBacklog(within: .seconds(2)) { try await engine.backlog() }
                    } catch {
                        context.logger.warning("Could not read the workflow backlog for /metrics", metadata: ["error": "\(String(reflecting: error))"])
                    }
                }
                return Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition(connectedChargers: registry.count)))
                )
            }
        }
        protected.get("@connections/:connectionId") { _, context in
            let id = try Self.connectionID(context)
            guard let record = try await connections.find(id) else { throw Self.gone(id) }
            return try Response.json(ConnectionView(record))
        }
        protected.post("@connections/:connectionId") { request, context in
            let id = try Self.connectionID(context)
            let body = try await request.body.collect(upTo: configuration.maxMessageSize)
            let text = String(buffer: body)
            guard let entry = registry.entry(id) else {
                if let record = try await connections.find(id), record.nodeID != nodeID {
                    throw HTTPError(.serviceUnavailable, message: "Connection \(id) is held by node \(record.nodeID); send through that node's API (cross-node delivery is not built yet).")
                }
                throw Self.gone(id)
            }
            do {
                try await entry.socket.write(text)
            } catch {
                throw Self.gone(id)
            }
            return HTTPResponse.Status.ok
        }
        protected.delete("@connections/:connectionId") { _, context in
            let id = try Self.connectionID(context)
            guard let entry = registry.entry(id) else {
                if let record = try await connections.find(id), record.nodeID != nodeID {
                    throw HTTPError(.serviceUnavailable, message: "Connection \(id) is held by node \(record.nodeID); delete it through that node's API.")
                }
                throw Self.gone(id)
            }
            entry.socket.close(.normalClosure, reason: "Closed by the operator")
            return HTTPResponse.Status.noContent
        }
        management?.addRoutes(to: protected)
        workflows?.addRoutes(to: protected)
        protected.get("api/v1/connections") { request, _ in
            let chargePointID = request.uri.queryParameters["chargePointId"].map(String.init)
            let limit = min(max(request.uri.queryParameters["limit"].flatMap { Int($0) } ?? 1000, 1), 10_000)
            let records = try await connections.list(chargePointID: chargePointID, limit: limit)
            return try Response.json(ConnectionList(connections: records.map(ConnectionView.init)))
        }
        return router
    }

    static func connectionID(_ context: BasicRequestContext) throws -> ConnectionID {
        let text = try context.parameters.require("connectionId")
        guard ConnectionID.isPlausible(text) else {
            throw HTTPError(.badRequest, message: "'\(text.prefix(80))' is not a connection id (URL-safe base64, up to 64 characters).")
        }
        return ConnectionID(rawValue: text)
    }

    static func gone(_ id: ConnectionID) -> HTTPError {
        HTTPError(.gone, message: "Connection \(id) is not open.")
    }
}

/// One connection as the API shows it (API Gateway's GetConnection, plus what OCPP needs).
struct ConnectionView: Codable, Sendable {
    var connectionId: String
    var identity: String
    var path: String
    var query: [String: String]
    var headers: [String: String]
    var subprotocol: String?
    var sourceIp: String?
    var nodeId: String
    var connectedAt: Date
    var lastActiveAt: Date
    var expiresAt: Date

    init(_ record: ConnectionRecord) {
        connectionId = record.connectionID.rawValue
        identity = record.chargePointID
        path = record.path
        query = record.query
        headers = record.headers
        subprotocol = record.subprotocol
        sourceIp = record.remoteAddress
        nodeId = record.nodeID.rawValue
        connectedAt = record.connectedAt
        lastActiveAt = record.lastSeenAt
        expiresAt = record.expiresAt
    }
}

struct ConnectionList: Codable, Sendable {
    var connections: [ConnectionView]
}

/// Requires `Authorization: Bearer <token>`, compared in constant time.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]

    init(token: String) {
        self.token = Array(token.utf8)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            Self.constantTimeEquals(Array(header.utf8.dropFirst(7)), token)
        else {
            var response = Response.text("Missing or wrong bearer token: send 'Authorization: Bearer <token>' (see the server's startup log for where the token is kept).\n", status: .unauthorized)
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        return try await next(request, context)
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess was right.
    static func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: lhs.count ^ rhs.count)
        for index in 0..<max(lhs.count, rhs.count) {
            let left = index < lhs.count ? lhs[index] : 0
            let right = index < rhs.count ? rhs[index] : 0
            difference |= left ^ right
        }
        return difference == 0 && lhs.count == rhs.count
    }
}

extension Response {
    static func text(_ text: String, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func rawJSON(_ text: String, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
