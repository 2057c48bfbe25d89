public import Chargepath
import Foundation
import HTTPTypes
public import ChargepathWorkflows
public import Hummingbird
public import Logging
import OCPP16
import OCPPCore
public import ServiceLifecycle

/// Sends synchronous operator commands to chargers and keeps the audit trail (`charger_calls`).
/// Asynchronous commands run as ChargerCommand executions on the workflow engine instead.
public struct CommandService: Sendable {
    let store: any ManagementStore
    let calls: LocalCallSender
    let logger: Logger

    public init(store: any ManagementStore, registry: ConnectionRegistry, logger: Logger) {
        self.store = store
        self.calls = LocalCallSender(registry: registry)
        self.logger = logger
    }

    /// Records the command, sends it, records the outcome.
    func execute(_ record: ChargerCallRecord) async -> (ChargerCallRecord.State, Result<JSONValue, ChargerCallFailure>) {
        let outcome: Result<JSONValue, ChargerCallFailure>
        do {
            outcome = .success(try await calls.call(chargePointID: record.chargePointID, action: record.action, payload: record.payload))
        } catch let failure as ChargerCallFailure {
            outcome = .failure(failure)
        } catch {
            outcome = .failure(ChargerCallFailure(.connectionClosed))
        }
        let state: ChargerCallRecord.State
        var response: JSONValue?
        var errorValue: JSONValue?
        switch outcome {
        case .success(let payload):
            state = .succeeded
            response = payload
        case .failure(let failure):
            state = failure.kind == .timeout ? .timedOut : .failed
            errorValue = failure.json
        }
        do {
            try await store.finishCall(id: record.id, state: state, response: response, error: errorValue, at: Date())
        } catch {
            logger.error("Could not record a command's outcome", metadata: ["command.id": "\(record.id)", "error": "\(error)"])
        }
        return (state, outcome)
    }
}

extension ChargerCallFailure {
    /// The failure as the API and the audit trail show it.
    var json: JSONValue {
        switch kind {
        case .callError(let code, let description, let details):
            return ["errorCode": .string(code), "errorDescription": .string(description), "errorDetails": details]
        default:
            return ["reason": .string(description)]
        }
    }
}

/// Registration of charge points, the authorization list, and commands to chargers.
public struct ManagementAPI: Sendable {
    let store: any ManagementStore
    let commands: CommandService
    let registry: ConnectionRegistry
    let nodeID: NodeID
    let maxBodySize: Int
    let workflows: (any WorkflowEngine)?

    public init(
        store: any ManagementStore, commands: CommandService, registry: ConnectionRegistry, nodeID: NodeID, maxBodySize: Int,
        workflows: (any WorkflowEngine)? = nil
    ) {
        self.workflows = workflows
        self.store = store
        self.commands = commands
        self.registry = registry
        self.nodeID = nodeID
        self.maxBodySize = maxBodySize
    }

    /// Actions an operator may send to a charger (every central-system-initiated 1.6 action).
    static let commandActions: [String] = OCPP16Action.allCases
        .filter { $0.direction != .chargePointToCentralSystem }
        .map(\.rawValue)
        .sorted()

    public func addRoutes(to group: RouterGroup<BasicRequestContext>) {
        group.put("api/v1/charge-points/:chargePointId") { request, context in
            try await putChargePoint(request, context)
        }
        group.put("api/v1/id-tags/:idTag") { request, context in
            let idTag = try Self.idTag(context)
            let body = try await Self.jsonObject(request, maxSize: maxBodySize)
            guard let statusText = body["status"]?.stringValue ?? (body["status"] == nil ? "Accepted" : nil),
                let status = AuthorizationStatus(rawValue: statusText)
            else {
                throw HTTPError(.badRequest, message: "status must be one of \(AuthorizationStatus.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
            let expiry = try Self.optionalDate(body["expiryDate"], field: "expiryDate")
            let parent = try Self.optionalString(body["parentIdTag"], field: "parentIdTag", maxLength: 20)
            let limits = try Self.sessionLimits(body["sessionLimits"], field: "sessionLimits")
            let record = IdTagRecord(idTag: idTag, status: status, expiryDate: expiry, parentIdTag: parent, sessionLimits: limits)
            let created = try await store.putIdTag(record, at: Date())
            return try Response.json(record, status: created ? .created : .ok)
        }
        group.get("api/v1/id-tags/:idTag") { _, context in
            let idTag = try Self.idTag(context)
            guard let record = try await store.idTag(idTag) else { throw HTTPError(.notFound, message: "No id tag '\(idTag)'.") }
            return try Response.json(record)
        }
        group.delete("api/v1/id-tags/:idTag") { _, context in
            let idTag = try Self.idTag(context)
            guard try await store.deleteIdTag(idTag) else { throw HTTPError(.notFound, message: "No id tag '\(idTag)'.") }
            return HTTPResponse.Status.noContent
        }
        group.get("api/v1/id-tags") { request, _ in
            let limit = try Self.limit(request)
            let after = request.uri.queryParameters["cursor"].map(String.init)
            if let after, after.utf8.count > 20 { throw HTTPError(.badRequest, message: "cursor is not one this API returned.") }
            let tags = try await store.idTags(after: after, limit: limit)
            let next = tags.count == limit ? tags.last?.idTag : nil
            return try Response.json(IdTagPage(idTags: tags, nextCursor: next))
        }
        // Configuration pushed after an Accepted boot: for every charger, or for one.
        group.put("api/v1/configuration/:key") { request, context in
            try await putConfiguration(scope: "*", request, context)
        }
        group.get("api/v1/configuration") { _, _ in
            try await configurationList(scope: "*")
        }
        group.delete("api/v1/configuration/:key") { _, context in
            try await deleteConfiguration(scope: "*", context)
        }
        group.put("api/v1/charge-points/:chargePointId/configuration/:key") { request, context in
            try await putConfiguration(scope: try Self.chargePointID(context), request, context)
        }
        group.get("api/v1/charge-points/:chargePointId/configuration") { _, context in
            try await configurationList(scope: try Self.chargePointID(context))
        }
        group.delete("api/v1/charge-points/:chargePointId/configuration/:key") { _, context in
            try await deleteConfiguration(scope: try Self.chargePointID(context), context)
        }
        group.post("api/v1/charge-points/:chargePointId/calls/:action") { request, context in
            try await sendCommand(request, context)
        }
        group.get("api/v1/charge-points/:chargePointId/calls") { request, context in
            let chargePointID = try Self.chargePointID(context)
            let records = try await store.calls(chargePointID: chargePointID, limit: try Self.limit(request))
            let list: JSONValue = ["calls": .array(records.map(\.json))]
            return Response.rawJSON(list.serialized(), status: .ok)
        }
        group.get("api/v1/executions/:executionId") { _, context in
            // An asynchronous command, or a workflow execution.
            let id = try context.parameters.require("executionId")
            guard id.utf8.count <= 64 else { throw HTTPError(.notFound, message: "No execution '\(id.prefix(64))'.") }
            if let record = try await store.call(id: id) {
                return Response.rawJSON(record.json.serialized(), status: .ok)
            }
            if let execution = try await workflows?.execution(id: id) {
                return Response.rawJSON(execution.json(withHistory: true).serialized(), status: .ok)
            }
            throw HTTPError(.notFound, message: "No execution '\(id.prefix(64))'.")
        }
    }

    static func configurationKey(_ context: BasicRequestContext) throws -> String {
        let key = try context.parameters.require("key")
        // ChangeConfiguration.req: key is CiString50.
        guard (1...50).contains(key.count), key.unicodeScalars.allSatisfy({ $0.value >= 0x21 && $0.value <= 0x7E }) else {
            throw HTTPError(.badRequest, message: "A configuration key is 1 to 50 printable ASCII characters (OCPP CiString50).")
        }
        return key
    }

    private func putConfiguration(scope: String, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let key = try Self.configurationKey(context)
        let body = try await Self.jsonObject(request, maxSize: maxBodySize)
        guard let value = body["value"]?.stringValue, value.count <= 500 else {
            throw HTTPError(.badRequest, message: "value must be a string of at most 500 characters (OCPP CiString500), e.g. {\"value\": \"60\"}.")
        }
        let date = Date()
        let created = try await store.putConfiguration(scope: scope, key: key, value: value, at: date)
        return try Response.json(ConfigurationSetting(key: key, value: value, updatedAt: date), status: created ? .created : .ok)
    }

    private func configurationList(scope: String) async throws -> Response {
        let settings = try await store.configuration(scope: scope)
        let list: JSONValue = [
            "scope": .string(scope),
            "configuration": .array(settings.map { ["key": .string($0.key), "value": .string($0.value), "updatedAt": .string(OCPP16DateTime.format($0.updatedAt))] }),
        ]
        return Response.rawJSON(list.serialized(), status: .ok)
    }

    private func deleteConfiguration(scope: String, _ context: BasicRequestContext) async throws -> HTTPResponse.Status {
        let key = try Self.configurationKey(context)
        guard try await store.deleteConfiguration(scope: scope, key: key) else {
            throw HTTPError(.notFound, message: "No configuration key '\(key)' set for \(scope == "*" ? "all chargers" : scope).")
        }
        return .noContent
    }

    private func putChargePoint(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let raw = try Self.chargePointID(context)
        let identity: ChargePointIdentity
        do {
            identity = try ChargePointIdentity(validating: raw)
        } catch {
            throw HTTPError(.badRequest, message: error.description)
        }
        let body = try await Self.jsonObject(request, maxSize: maxBodySize)
        let statusText = body["registrationStatus"]?.stringValue ?? "Accepted"
        guard let status = RegistrationStatus(rawValue: statusText) else {
            throw HTTPError(.badRequest, message: "registrationStatus must be Accepted, Pending or Rejected.")
        }
        let description = try Self.optionalString(body["description"], field: "description", maxLength: 500)
        let password: ChargePointRegistration.PasswordChange
        switch body["password"] {
        case nil: password = .keep
        case .null?: password = .remove
        case .string(let value)?:
            guard (ChargerPassword.minimumLength...ChargerPassword.maximumLength).contains(value.count),
                value.unicodeScalars.allSatisfy({ $0.value >= 0x21 && $0.value <= 0x7E })
            else {
                throw HTTPError(.badRequest, message: "password must be \(ChargerPassword.minimumLength) to \(ChargerPassword.maximumLength) printable ASCII characters (OCPP security profile 1).")
            }
            password = .set(hash: ChargerPassword.hash(value))
        default:
            throw HTTPError(.badRequest, message: "password must be a string, or null to remove it.")
        }
        let created = try await store.putChargePoint(
            identity.id, ChargePointRegistration(description: description, registrationStatus: status, password: password), at: Date()
        )
        let credentials = try await store.credentials(of: identity.id)
        let view: JSONValue = [
            "chargePointId": .string(identity.id),
            "description": description.map(JSONValue.string) ?? .null,
            "registrationStatus": .string(status.rawValue),
            "hasPassword": .bool(credentials?.passwordHash != nil),
        ]
        return Response.rawJSON(view.serialized(), status: created ? .created : .ok)
    }

    private func sendCommand(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let chargePointID = try Self.chargePointID(context)
        let action = try context.parameters.require("action")
        guard Self.commandActions.contains(action) else {
            throw HTTPError(.badRequest, message: "Unknown command '\(action.prefix(60))'. Valid actions: \(Self.commandActions.joined(separator: ", ")).")
        }
        let body = try await request.body.collect(upTo: maxBodySize)
        let payload: JSONValue
        do {
            payload = try JSONValue.parse(Array(body.readableBytesView))
        } catch {
            throw HTTPError(.badRequest, message: "The body must be the \(action) payload as JSON: \(error)")
        }
        if let schema = OCPP16RequestSchemas.byAction[action] {
            let violations = schema.validate(payload)
            if !violations.isEmpty {
                throw HTTPError(.badRequest, message: "The payload does not fit \(action): \(violations.summary())")
            }
        }
        let credentials = try await store.credentials(of: chargePointID)
        guard registry.entry(for: ChargePointIdentity(unchecked: chargePointID)) != nil else {
            if credentials != nil {
                throw HTTPError(.conflict, message: "\(chargePointID) is not connected to this node right now.")
            }
            throw HTTPError(.notFound, message: "Unknown charge point '\(chargePointID.prefix(60))'.")
        }
        // OCPP 1.6 §4.2.1: a Rejected charger gets nothing from the central system; a Pending one
        // may be configured but not started or stopped remotely.
        switch credentials?.registrationStatus {
        case .rejected?:
            throw HTTPError(.conflict, message: "\(chargePointID) is Rejected: the central system initiates nothing with it. Accept it first (PUT /api/v1/charge-points/{id}).")
        case .pending? where action == "RemoteStartTransaction" || action == "RemoteStopTransaction":
            throw HTTPError(.conflict, message: "\(chargePointID) is Pending: it may be configured, but not started or stopped remotely.")
        default:
            break
        }
        let isAsync = request.uri.queryParameters["mode"] == "async"
            || (request.headers[Self.prefer]?.lowercased().contains("respond-async") ?? false)
        let record = ChargerCallRecord(
            id: ConnectionID.random().rawValue, chargePointID: chargePointID, action: action, payload: payload,
            mode: isAsync ? "async" : "sync", requestedBy: request.headers[Self.actor].map { String($0.prefix(100)) } ?? "api-token",
            state: .running, nodeID: nodeID.rawValue, createdAt: Date()
        )
        try await store.recordCall(record)
        if isAsync {
            // A durable execution on the workflow engine, under the audit record's id: it survives
            // a crash of this process and waits a while for a charger that drops off.
            guard let workflows else {
                try? await store.finishCall(id: record.id, state: .failed, response: nil, error: ["reason": "no workflow engine"], at: Date())
                throw HTTPError(.serviceUnavailable, message: "Asynchronous commands need the workflow engine, which this server does not run.")
            }
            let input: JSONValue = [
                "callId": .string(record.id), "chargePointId": .string(chargePointID), "action": .string(action), "payload": payload,
            ]
            do {
                _ = try await workflows.start(workflow: "ChargerCommand", input: input, executionID: record.id)
            } catch {
                try? await store.finishCall(id: record.id, state: .failed, response: nil, error: ["reason": "could not be queued"], at: Date())
                throw error
            }
            let accepted: JSONValue = ["executionId": .string(record.id), "state": "RUNNING"]
            var response = Response.rawJSON(accepted.serialized(), status: .accepted)
            response.headers[.location] = "/api/v1/executions/\(record.id)"
            return response
        }
        let (_, outcome) = await commands.execute(record)
        switch outcome {
        case .success(let answer):
            return Response.rawJSON(answer.serialized(), status: .ok)
        case .failure(let failure):
            switch failure.kind {
            case .callError: return Response.rawJSON(failure.json.serialized(), status: .badGateway)
            case .timeout: throw HTTPError(.gatewayTimeout, message: failure.description)
            case .notConnected: throw HTTPError(.conflict, message: "\(chargePointID) is not connected to this node right now.")
            case .invalidPayload: throw HTTPError(.badRequest, message: failure.description)
            case .queueFull: throw HTTPError(.tooManyRequests, message: failure.description)
            case .connectionClosed, .malformedAnswer: throw HTTPError(.badGateway, message: failure.description)
            }
        }
    }

    static let prefer = HTTPField.Name("Prefer")!
    /// Who sent a command, for the audit trail (free text, e.g. the operator's user name).
    static let actor = HTTPField.Name("X-Chargepath-Actor")!

    // MARK: Input helpers

    /// The charge point id from the path, percent-decoded once (as the charger gateway decodes it).
    static func chargePointID(_ context: BasicRequestContext) throws -> String {
        let raw = try context.parameters.require("chargePointId")
        guard let decoded = raw.removingPercentEncoding else {
            throw HTTPError(.badRequest, message: "The charge point id in the path is not valid percent-encoding.")
        }
        return decoded
    }

    static func idTag(_ context: BasicRequestContext) throws -> String {
        let raw = try context.parameters.require("idTag")
        guard let idTag = raw.removingPercentEncoding else {
            throw HTTPError(.badRequest, message: "The idTag in the path is not valid percent-encoding.")
        }
        guard (1...20).contains(idTag.count), idTag.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) else {
            throw HTTPError(.badRequest, message: "An idTag is 1 to 20 printable ASCII characters (OCPP 1.6 IdToken).")
        }
        return idTag
    }

    static func limit(_ request: Request) throws -> Int {
        guard let text = request.uri.queryParameters["limit"] else { return 100 }
        guard let limit = Int(text), (1...500).contains(limit) else {
            throw HTTPError(.badRequest, message: "limit must be a whole number from 1 to 500.")
        }
        return limit
    }

    static func jsonObject(_ request: Request, maxSize: Int) async throws -> JSONObject {
        let body = try await request.body.collect(upTo: maxSize)
        guard body.readableBytes > 0 else { return JSONObject() }
        do {
            guard case .object(let object) = try JSONValue.parse(Array(body.readableBytesView)) else {
                throw HTTPError(.badRequest, message: "The body must be a JSON object.")
            }
            return object
        } catch let error as HTTPError {
            throw error
        } catch {
            throw HTTPError(.badRequest, message: "The body is not valid JSON: \(error)")
        }
    }

    static func optionalString(_ value: JSONValue?, field: String, maxLength: Int) throws -> String? {
        switch value {
        case nil, .null?: return nil
        case .string(let text)? where text.count <= maxLength: return text
        default: throw HTTPError(.badRequest, message: "\(field) must be a string of at most \(maxLength) characters.")
        }
    }

    /// Session limits: an object with optional positive whole numbers maxEnergyWh,
    /// maxDurationSeconds and maxIdleSeconds; null or absent means none.
    static func sessionLimits(_ value: JSONValue?, field: String) throws -> SessionLimits? {
        switch value {
        case nil, .null?: return nil
        case .object(let object)?:
            let known = ["maxEnergyWh", "maxDurationSeconds", "maxIdleSeconds"]
            if let unknown = object.keys.first(where: { !known.contains($0) }) {
                throw HTTPError(.badRequest, message: "\(field).\(unknown) is not a session limit; use \(known.joined(separator: ", ")).")
            }
            var numbers: [String: Int] = [:]
            for key in known {
                switch object[key] {
                case nil, .null?: continue
                case .integer(let number)? where number >= 1 && number <= Int64(Int32.max): numbers[key] = Int(number)
                default: throw HTTPError(.badRequest, message: "\(field).\(key) must be a whole number from 1 to \(Int32.max).")
                }
            }
            let limits = SessionLimits(
                maxEnergyWh: numbers["maxEnergyWh"], maxDurationSeconds: numbers["maxDurationSeconds"], maxIdleSeconds: numbers["maxIdleSeconds"]
            )
            return limits.isEmpty ? nil : limits
        default:
            throw HTTPError(.badRequest, message: "\(field) must be an object like {\"maxEnergyWh\": 20000}.")
        }
    }

    static func optionalDate(_ value: JSONValue?, field: String) throws -> Date? {
        switch value {
        case nil, .null?: return nil
        case .string(let text)?:
            if let date = OCPP16DateTime.parse(text) { return date }
            fallthrough
        default: throw HTTPError(.badRequest, message: "\(field) must be an ISO 8601 date-time, like 2026-12-31T23:59:59Z.")
        }
    }
}

struct IdTagPage: Codable, Sendable {
    var idTags: [IdTagRecord]
    var nextCursor: String?
}


extension ChargerCallRecord {
    var json: JSONValue {
        var object = JSONObject()
        for (key, value): (String, JSONValue) in [
            ("id", .string(id)), ("chargePointId", .string(chargePointID)), ("action", .string(action)), ("payload", payload),
            ("mode", .string(mode)), ("requestedBy", .string(requestedBy)), ("state", .string(state.rawValue)),
            ("createdAt", .string(OCPP16DateTime.format(createdAt))),
        ] {
            object[key] = value
        }
        object["response"] = response
        object["error"] = error
        object["finishedAt"] = finishedAt.map { .string(OCPP16DateTime.format($0)) }
        return .object(object)
    }
}
