public import ChargepathWorkflows
import Foundation
public import Hummingbird
import OCPPCore

/// `POST /api/v1/workflows/{name}/executions`, the executions list and cancel.
public struct WorkflowAPI: Sendable {
    let engine: any WorkflowEngine
    let maxBodySize: Int

    public init(engine: any WorkflowEngine, maxBodySize: Int) {
        self.engine = engine
        self.maxBodySize = maxBodySize
    }

    static let startedByTheSystem: Set<String> = ["ChargingSession", "ChargerCommand"]

    public func addRoutes(to group: RouterGroup<BasicRequestContext>) {
        group.post("api/v1/workflows/:workflow/executions") { request, context in
            let name = try context.parameters.require("workflow")
            let body = try await request.body.collect(upTo: maxBodySize)
            let input: JSONValue
            do {
                input = body.readableBytes == 0 ? .emptyObject : try JSONValue.parse(Array(body.readableBytesView))
            } catch {
                throw HTTPError(.badRequest, message: "The body must be the workflow's input as JSON: \(error)")
            }
            // ChargingSession follows a StartTransaction, ChargerCommand an operator command (with its
            // checks and audit record): neither is started by hand.
            if Self.startedByTheSystem.contains(name) {
                throw HTTPError(.forbidden, message: "\(name) executions are started by the system (\(name == "ChargingSession" ? "every StartTransaction starts one" : "POST /api/v1/charge-points/{id}/calls/{action}?mode=async")), not through this endpoint.")
            }
            let id: String
            do {
                id = try await engine.start(workflow: name, input: input)
            } catch WorkflowStartError.unknownWorkflow {
                throw HTTPError(.notFound, message: "No workflow '\(name.prefix(60))'. Workflows: \(engine.workflowNames.joined(separator: ", ")).")
            } catch WorkflowStartError.badInput(let problem) {
                throw HTTPError(.badRequest, message: "The input does not fit \(name): \(problem)")
            }
            if request.uri.queryParameters["mode"] == "sync" {
                // Like an express run: wait for the end (up to `timeout` seconds) and return the details.
                let seconds = request.uri.queryParameters["timeout"].flatMap { Int($0) } ?? 30
                guard (1...300).contains(seconds) else { throw HTTPError(.badRequest, message: "timeout must be 1 to 300 seconds.") }
                let deadline = ContinuousClock.now + .seconds(seconds)
                while ContinuousClock.now < deadline {
                    if let execution = try await engine.execution(id: id), execution.status != "RUNNING" {
                        return Response.rawJSON(execution.json(withHistory: true).serialized(), status: .ok)
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                let execution = try await engine.execution(id: id)
                var response = Response.rawJSON((execution?.json(withHistory: true) ?? (["id": .string(id)] as JSONValue)).serialized(), status: .accepted)
                response.headers[.location] = "/api/v1/executions/\(id)"
                return response
            }
            var response = Response.rawJSON((["executionId": .string(id), "status": "RUNNING"] as JSONValue).serialized(), status: .accepted)
            response.headers[.location] = "/api/v1/executions/\(id)"
            return response
        }
        group.get("api/v1/executions") { request, _ in
            let parameters = request.uri.queryParameters
            let status = parameters["status"].map(String.init)
            if let status, !["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"].contains(status) {
                throw HTTPError(.badRequest, message: "status must be RUNNING, SUCCEEDED, FAILED or CANCELLED.")
            }
            let limit = try ManagementAPI.limit(request)
            let list = try await engine.executions(
                workflow: parameters["workflow"].map(String.init), chargePointID: parameters["chargePointId"].map(String.init),
                status: status, limit: limit
            )
            return Response.rawJSON((["executions": .array(list.map { $0.json(withHistory: false) })] as JSONValue).serialized(), status: .ok)
        }
        group.post("api/v1/executions/:executionId/cancel") { _, context in
            let id = try context.parameters.require("executionId")
            switch try await engine.cancel(id: id) {
            case .cancelled: return Response.rawJSON((["executionId": .string(id), "status": "CANCELLING"] as JSONValue).serialized(), status: .accepted)
            case .alreadyFinished: throw HTTPError(.conflict, message: "Execution \(id) has already finished.")
            case .notFound: throw HTTPError(.notFound, message: "No execution '\(id.prefix(64))'.")
            }
        }
        group.post("api/v1/executions/:executionId/signals/:signal") { request, context in
            let id = try context.parameters.require("executionId")
            let name = try context.parameters.require("signal")
            guard (1...64).contains(name.utf8.count) else { throw HTTPError(.badRequest, message: "A signal name is 1 to 64 characters.") }
            let payload = JSONValue.object(try await ManagementAPI.jsonObject(request, maxSize: maxBodySize))
            if name == "limits" { _ = try ManagementAPI.sessionLimits(payload, field: "limits") }
            switch try await engine.signal(id: id, name: name, payload: payload) {
            case .delivered: return Response.rawJSON((["executionId": .string(id), "signal": .string(name)] as JSONValue).serialized(), status: .accepted)
            case .alreadyFinished: throw HTTPError(.conflict, message: "Execution \(id) has already finished.")
            case .notFound: throw HTTPError(.notFound, message: "No execution '\(id.prefix(64))'.")
            }
        }
    }
}

extension WorkflowExecution {
    func json(withHistory: Bool) -> JSONValue {
        var object = JSONObject()
        object["id"] = .string(id)
        object["workflow"] = .string(workflow)
        object["version"] = .integer(Int64(version))
        object["chargePointId"] = chargePointID.map(JSONValue.string) ?? .null
        object["status"] = .string(status)
        object["input"] = input
        object["state"] = state
        object["output"] = output ?? .null
        object["error"] = error ?? .null
        object["createdAt"] = .string(createdAt.formatted(.iso8601))
        object["updatedAt"] = .string(updatedAt.formatted(.iso8601))
        object["finishedAt"] = finishedAt.map { .string($0.formatted(.iso8601)) } ?? .null
        if withHistory { object["history"] = .array(history) }
        return .object(object)
    }
}
