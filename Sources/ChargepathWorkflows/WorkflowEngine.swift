public import Foundation
public import OCPPCore
public import Chargepath

/// One execution as operators see it.
public struct WorkflowExecution: Sendable {
    public var id: String
    public var workflow: String
    public var version: Int
    public var chargePointID: String?
    public var input: JSONValue
    public var state: JSONValue
    /// RUNNING, SUCCEEDED, FAILED or CANCELLED.
    public var status: String
    public var output: JSONValue?
    public var error: JSONValue?
    public var createdAt: Date
    public var updatedAt: Date
    public var finishedAt: Date?
    /// Events, transitions, commands and attempts, oldest first (only when asked for one execution).
    public var history: [JSONValue]

    public init(id: String, workflow: String, version: Int, chargePointID: String?, input: JSONValue, state: JSONValue, status: String,
                output: JSONValue?, error: JSONValue?, createdAt: Date, updatedAt: Date, finishedAt: Date?, history: [JSONValue]) {
        self.id = id
        self.workflow = workflow
        self.version = version
        self.chargePointID = chargePointID
        self.input = input
        self.state = state
        self.status = status
        self.output = output
        self.error = error
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.finishedAt = finishedAt
        self.history = history
    }
}

public enum WorkflowStartError: Error, Sendable {
    case unknownWorkflow(String)
    case badInput(WorkflowInputError)
}

public enum WorkflowCancelResult: Sendable { case cancelled, alreadyFinished, notFound }

public enum WorkflowSignalResult: Sendable { case delivered, alreadyFinished, notFound }

/// The port the operator API and the charger sessions use to reach the workflow engine.
public protocol WorkflowEngine: Sendable {
    var workflowNames: [String] { get }
    func start(workflow: String, input: JSONValue) async throws -> String
    /// Starts an execution under a given id (an operator command's audit id, say).
    func start(workflow: String, input: JSONValue, executionID: String?) async throws -> String
    func execution(id: String) async throws -> WorkflowExecution?
    func executions(workflow: String?, chargePointID: String?, status: String?, limit: Int) async throws -> [WorkflowExecution]
    func cancel(id: String) async throws -> WorkflowCancelResult
    /// Delivers an operator signal (`limits` to a ChargingSession, say) to a running execution.
    func signal(id: String, name: String, payload: JSONValue) async throws -> WorkflowSignalResult
    /// A charger message was persisted (and is about to be answered). `waiting`: the executions
    /// waiting for the charger's messages of this action, when storing the message read them
    /// already; nil to have the engine look them up.
    func chargerMessage(chargePointID: String, action: String, request: JSONValue, response: JSONValue, waiting: [WaitingWorkflow]?) async
    /// A charger's last connection to this node closed.
    func chargerDisconnected(chargePointID: String) async
    /// What waits for the workers now, across every node on the database.
    func backlog() async throws -> WorkflowBacklog
}
