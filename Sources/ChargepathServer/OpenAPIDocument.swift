import OCPPCore

/// The operator API described as OpenAPI 3.1, served at `GET /api/v1/openapi.json`.
///
/// Written as data (one entry per route) rather than as one long JSON text, so a test can check
/// that every route the router serves is described here and nothing described is missing.
public enum OpenAPIDocument {
    public struct Parameter: Sendable {
        public enum Location: String, Sendable { case path, query, header }
        let name: String
        let location: Location
        let type: String
        let description: String
        var required: Bool { location == .path }
    }

    public struct Operation: Sendable {
        public let method: String
        /// OpenAPI path template (`/api/v1/transactions/{id}`).
        public let path: String
        let summary: String
        let parameters: [Parameter]
        let requestBody: String?
        let responses: [(Int, String)]
        let secured: Bool
    }

    static func path(_ name: String, _ description: String) -> Parameter { .init(name: name, location: .path, type: "string", description: description) }
    static func query(_ name: String, _ description: String, type: String = "string") -> Parameter {
        .init(name: name, location: .query, type: type, description: description)
    }

    static let unauthorized = (401, "Missing or wrong bearer token")
    static let badRequest = (400, "Bad input; the body says what is wrong")

    /// The routes of the core, management and command areas.
    public static let coreOperations: [Operation] = [
        .init(method: "GET", path: "/health", summary: "Liveness", parameters: [], requestBody: nil, responses: [(200, "Alive")], secured: false),
        .init(method: "GET", path: "/ready", summary: "Readiness: database reachable and migrated", parameters: [], requestBody: nil,
              responses: [(200, "Ready"), (503, "Not ready, with the reason")], secured: false),
        .init(method: "GET", path: "/metrics",
              summary: "Prometheus metrics (text format 0.0.4): charger CALLs answered by action and outcome, their handling time (once read), chargers connected, refused upgrades, batch statements, the workflow engine's work and backlog",
              parameters: [], requestBody: nil, responses: [(200, "The metrics"), unauthorized], secured: true),
        .init(method: "GET", path: "/api/v1/openapi.json", summary: "This document", parameters: [], requestBody: nil,
              responses: [(200, "OpenAPI 3.1 document")], secured: false),
        .init(method: "GET", path: "/@connections/{connectionId}", summary: "One open charger connection (API Gateway's GetConnection)",
              parameters: [path("connectionId", "The connection id")], requestBody: nil,
              responses: [(200, "connectedAt, identity, path, query, headers, lastActiveAt, sourceIp"), badRequest, unauthorized, (410, "Not open")], secured: true),
        .init(method: "POST", path: "/@connections/{connectionId}", summary: "Send the body, as is, as one text frame to the charger",
              parameters: [path("connectionId", "The connection id")], requestBody: "Any text (normally an OCPP-J frame)",
              responses: [(200, "Sent"), badRequest, unauthorized, (410, "Not open"), (503, "Held by another node")], secured: true),
        .init(method: "DELETE", path: "/@connections/{connectionId}", summary: "Close the connection",
              parameters: [path("connectionId", "The connection id")], requestBody: nil,
              responses: [(204, "Closed"), badRequest, unauthorized, (410, "Not open"), (503, "Held by another node")], secured: true),
        .init(method: "GET", path: "/api/v1/connections", summary: "Open charger connections",
              parameters: [query("chargePointId", "Only this charge point"), query("limit", "At most this many (1 to 10000)", type: "integer")],
              requestBody: nil, responses: [(200, "{connections: [...]}"), unauthorized], secured: true),
        .init(method: "PUT", path: "/api/v1/charge-points/{chargePointId}", summary: "Register or update a charge point",
              parameters: [path("chargePointId", "The charge point identity")],
              requestBody: "{description?, registrationStatus?: Accepted|Pending|Rejected, password?: string (16-40 chars) | null}",
              responses: [(200, "Updated"), (201, "Registered"), badRequest, unauthorized], secured: true),
        .init(method: "POST", path: "/api/v1/charge-points/{chargePointId}/calls/{action}",
              summary: "Send a central-system-initiated OCPP 1.6 call; synchronous unless ?mode=async or Prefer: respond-async",
              parameters: [path("chargePointId", "The charge point identity"), path("action", "An OCPP 1.6 action sent by a central system"),
                           query("mode", "sync (default) or async"),
                           .init(name: "Prefer", location: .header, type: "string", description: "respond-async for the asynchronous mode"),
                           .init(name: "X-Chargepath-Actor", location: .header, type: "string", description: "Who sends it, for the audit trail")],
              requestBody: "The call's payload (validated against the action's schema)",
              responses: [(200, "The charger's CALLRESULT payload"), (202, "Asynchronous: {executionId}, Location: /api/v1/executions/{id}"),
                          badRequest, unauthorized, (404, "Unknown charge point"), (409, "Not connected, or its registration forbids it"),
                          (429, "Too many calls wait for this charger"), (502, "The charger answered a CALLERROR: {errorCode, errorDescription, errorDetails}"),
                          (504, "The charger did not answer in time")], secured: true),
        .init(method: "GET", path: "/api/v1/charge-points/{chargePointId}/calls", summary: "The audit trail of commands sent to a charger, newest first",
              parameters: [path("chargePointId", "The charge point identity"), query("limit", "1 to 500", type: "integer")],
              requestBody: nil, responses: [(200, "{calls: [...]}"), badRequest, unauthorized], secured: true),
        .init(method: "GET", path: "/api/v1/executions/{executionId}", summary: "An asynchronous command (RUNNING, SUCCEEDED, FAILED, TIMED_OUT) or a workflow execution with its history",
              parameters: [path("executionId", "From the 202 answer")], requestBody: nil,
              responses: [(200, "The execution with its request, answer and timestamps"), unauthorized, (404, "Unknown")], secured: true),
        .init(method: "PUT", path: "/api/v1/id-tags/{idTag}", summary: "Create or replace an entry of the authorization list",
              parameters: [path("idTag", "1 to 20 characters")], requestBody: "{status: Accepted|Blocked|Expired|Invalid|ConcurrentTx, expiryDate?, parentIdTag?, sessionLimits?: {maxEnergyWh?, maxDurationSeconds?, maxIdleSeconds?}}",
              responses: [(200, "Replaced"), (201, "Created"), badRequest, unauthorized], secured: true),
        .init(method: "GET", path: "/api/v1/id-tags/{idTag}", summary: "One id tag", parameters: [path("idTag", "The id tag")], requestBody: nil,
              responses: [(200, "The id tag"), badRequest, unauthorized, (404, "Unknown")], secured: true),
        .init(method: "DELETE", path: "/api/v1/id-tags/{idTag}", summary: "Remove an id tag (the next Authorize answers Invalid)",
              parameters: [path("idTag", "The id tag")], requestBody: nil,
              responses: [(204, "Removed"), badRequest, unauthorized, (404, "Unknown")], secured: true),
        .init(method: "GET", path: "/api/v1/id-tags", summary: "The authorization list, in idTag order",
              parameters: [query("limit", "1 to 500", type: "integer"), query("cursor", "nextCursor of the previous page")],
              requestBody: nil, responses: [(200, "{idTags: [...], nextCursor}"), badRequest, unauthorized], secured: true),
        .init(method: "GET", path: "/api/v1/transactions", summary: "Session history, newest first, with cursor pagination (or CSV)",
              parameters: [query("chargePointId", "Only this charge point"), query("connectorId", "Only this connector", type: "integer"),
                           query("idTag", "Only this id tag"), query("status", "active or completed"),
                           query("from", "Started at or after: a date-time with its offset (2026-11-25T10:00:00Z) or a date (UTC)"), query("to", "Started before: as from"),
                           query("limit", "1 to 500 (default 50)", type: "integer"), query("cursor", "nextCursor of the previous page"),
                           query("format", "json (default) or csv; CSV pages carry X-Next-Cursor")],
              requestBody: nil, responses: [(200, "{transactions: [...], nextCursor}"), badRequest, unauthorized], secured: true),
        .init(method: "GET", path: "/api/v1/transactions/{transactionId}", summary: "One transaction with its meter values, ordered by time",
              parameters: [path("transactionId", "The transaction id"), query("measurand", "Only this measurand")], requestBody: nil,
              responses: [(200, "The transaction with meterValues"), badRequest, unauthorized, (404, "Unknown")], secured: true),
        .init(method: "GET", path: "/api/v1/transactions/{transactionId}/meter-values.csv", summary: "A transaction's meter values as CSV, for billing",
              parameters: [path("transactionId", "The transaction id"), query("measurand", "Only this measurand")], requestBody: nil,
              responses: [(200, "text/csv"), badRequest, unauthorized, (404, "Unknown")], secured: true),
        .init(method: "GET", path: "/api/v1/charge-points", summary: "Charge points with registration, boot data, online state and connectors",
              parameters: [query("limit", "1 to 500", type: "integer"), query("cursor", "nextCursor of the previous page")], requestBody: nil,
              responses: [(200, "{chargePoints: [...], nextCursor}"), badRequest, unauthorized], secured: true),
        .init(method: "GET", path: "/api/v1/charge-points/{chargePointId}", summary: "One charge point, with its connection when online",
              parameters: [path("chargePointId", "The charge point identity")], requestBody: nil,
              responses: [(200, "The charge point"), badRequest, unauthorized, (404, "Unknown")], secured: true),
        .init(method: "GET", path: "/api/v1/charge-points/{chargePointId}/status-history", summary: "Connector status history, newest first",
              parameters: [path("chargePointId", "The charge point identity"), query("connectorId", "Only this connector", type: "integer"),
                           query("from", "At or after: a date-time with its offset (2026-11-25T10:00:00Z) or a date (UTC)"), query("to", "Before: as from"),
                           query("limit", "1 to 500", type: "integer"), query("cursor", "nextCursor of the previous page")],
              requestBody: nil, responses: [(200, "{chargePointId, statusHistory: [...], nextCursor}"), badRequest, unauthorized, (404, "Unknown")], secured: true),
        .init(method: "POST", path: "/api/v1/workflows/{workflow}/executions",
              summary: "Start a workflow (RemoteStart, Provisioning); ?mode=sync waits up to timeout seconds and returns the finished execution. ChargingSession and ChargerCommand are started by the system (403)",
              parameters: [path("workflow", "The workflow's name"), query("mode", "async (default) or sync"),
                           query("timeout", "Seconds to wait in sync mode (1 to 300, default 30)", type: "integer")],
              requestBody: "The workflow's input",
              responses: [(200, "Sync mode: the finished execution with its history"), (202, "{executionId}, Location: /api/v1/executions/{id}"),
                          badRequest, unauthorized, (403, "Started by the system, not by hand"), (404, "Unknown workflow")], secured: true),
        .init(method: "GET", path: "/api/v1/executions", summary: "Workflow executions, newest first",
              parameters: [query("workflow", "Only this workflow"), query("chargePointId", "Only this charge point"),
                           query("status", "RUNNING, SUCCEEDED, FAILED or CANCELLED"), query("limit", "1 to 500", type: "integer")],
              requestBody: nil, responses: [(200, "{executions: [...]}"), badRequest, unauthorized], secured: true),
        .init(method: "POST", path: "/api/v1/executions/{executionId}/cancel", summary: "Cancel a running workflow execution",
              parameters: [path("executionId", "The execution id")], requestBody: nil,
              responses: [(202, "Cancelling"), unauthorized, (404, "Unknown"), (409, "Already finished")], secured: true),
        .init(method: "POST", path: "/api/v1/executions/{executionId}/signals/{signal}",
              summary: "Send a signal to a running execution (limits: new session limits for a ChargingSession)",
              parameters: [path("executionId", "The execution id"), path("signal", "The signal's name, e.g. limits")],
              requestBody: "A JSON object; for limits: {maxEnergyWh?, maxDurationSeconds?, maxIdleSeconds?}",
              responses: [(202, "Delivered"), badRequest, unauthorized, (404, "Unknown"), (409, "Already finished")], secured: true),
        .init(method: "PUT", path: "/api/v1/configuration/{key}", summary: "Set a configuration key pushed to every charger after an Accepted boot",
              parameters: [path("key", "An OCPP configuration key (1 to 50 characters)")], requestBody: "{value: string (at most 500 characters)}",
              responses: [(200, "Replaced"), (201, "Created"), badRequest, unauthorized], secured: true),
        .init(method: "GET", path: "/api/v1/configuration", summary: "Configuration pushed to every charger", parameters: [], requestBody: nil,
              responses: [(200, "{scope: \"*\", configuration: [{key, value, updatedAt}]}"), unauthorized], secured: true),
        .init(method: "DELETE", path: "/api/v1/configuration/{key}", summary: "Stop pushing a key to every charger",
              parameters: [path("key", "The key")], requestBody: nil, responses: [(204, "Removed"), badRequest, unauthorized, (404, "Not set")], secured: true),
        .init(method: "PUT", path: "/api/v1/charge-points/{chargePointId}/configuration/{key}",
              summary: "Set a configuration key pushed to this charger after an Accepted boot (wins over the value for all)",
              parameters: [path("chargePointId", "The charge point identity"), path("key", "An OCPP configuration key")],
              requestBody: "{value: string (at most 500 characters)}",
              responses: [(200, "Replaced"), (201, "Created"), badRequest, unauthorized], secured: true),
        .init(method: "GET", path: "/api/v1/charge-points/{chargePointId}/configuration", summary: "Configuration set for this charger",
              parameters: [path("chargePointId", "The charge point identity")], requestBody: nil,
              responses: [(200, "{scope, configuration: [{key, value, updatedAt}]}"), unauthorized], secured: true),
        .init(method: "DELETE", path: "/api/v1/charge-points/{chargePointId}/configuration/{key}", summary: "Remove this charger's own value for a key",
              parameters: [path("chargePointId", "The charge point identity"), path("key", "The key")], requestBody: nil,
              responses: [(204, "Removed"), badRequest, unauthorized, (404, "Not set")], secured: true),
    ]

    /// Every operation of the operator API.
    public static var operations: [Operation] { coreOperations }

    /// The document as JSON text.
    public static func json(operations: [Operation] = operations) -> String {
        var paths = JSONObject()
        for operation in operations {
            var item = paths[operation.path]?.objectValue ?? JSONObject()
            var entry = JSONObject()
            entry["summary"] = .string(operation.summary)
            entry["operationId"] = .string(operationID(operation))
            if !operation.parameters.isEmpty {
                entry["parameters"] = .array(operation.parameters.map { parameter in
                    var object = JSONObject()
                    object["name"] = .string(parameter.name)
                    object["in"] = .string(parameter.location.rawValue)
                    object["required"] = .bool(parameter.required)
                    object["description"] = .string(parameter.description)
                    object["schema"] = ["type": .string(parameter.type)]
                    return .object(object)
                })
            }
            if let body = operation.requestBody {
                entry["requestBody"] = ["description": .string(body), "content": ["application/json": ["schema": [:]]]]
            }
            var responses = JSONObject()
            for (status, description) in operation.responses {
                responses[String(status)] = ["description": .string(description)]
            }
            entry["responses"] = .object(responses)
            entry["security"] = operation.secured ? [["bearerAuth": []]] : []
            item[operation.method.lowercased()] = .object(entry)
            paths[operation.path] = .object(item)
        }
        var document = JSONObject()
        document["openapi"] = "3.1.0"
        document["info"] = [
            "title": "Chargepath operator API",
            "version": "1",
            "description": "Session history, charge points, id tags and commands to chargers. Every route except /health, /ready and this document needs Authorization: Bearer <token>.",
        ]
        document["paths"] = .object(paths)
        document["components"] = ["securitySchemes": ["bearerAuth": ["type": "http", "scheme": "bearer"]]]
        return JSONValue.object(document).serialized()
    }

    static func operationID(_ operation: Operation) -> String {
        let words = operation.path.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map { $0.prefix(1).uppercased() + $0.dropFirst() }
        return operation.method.lowercased() + words.joined()
    }
}
