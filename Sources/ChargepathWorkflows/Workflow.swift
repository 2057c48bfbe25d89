public import Foundation
public import OCPPCore

/// What happens to a workflow execution: it is started, a call it sent is answered, a charger
/// sends a message it waits for, a timer fires, an operator signals or cancels it.
public enum WorkflowEvent: Sendable, Equatable, Codable {
    case callAnswered(key: String, payload: JSONValue)
    /// The charger answered a CALLERROR, or the call could not be delivered (`code` says which:
    /// an OCPP error code, or `Timeout` / `NotConnected`).
    case callFailed(key: String, code: String, description: String)
    /// A charger message the execution waits for: the charger's request and our answer to it.
    case chargerMessage(chargePointID: String, action: String, request: JSONValue, response: JSONValue)
    case chargerDisconnected(chargePointID: String)
    case timerFired(name: String)
    case signal(name: String, payload: JSONValue)
    case cancelled
}

/// Something the runner does after a step is recorded.
public enum WorkflowCommand: Sendable, Equatable, Codable {
    /// Sends a CALL to a charger, at least once; `key` is stable across retries (the idempotency key)
    /// and names the answer event.
    case call(key: String, chargePointID: String, action: String, payload: JSONValue)
    /// Sets the timer `name` (replacing a pending timer of that name).
    case setTimer(name: String, at: Date)
    case cancelTimer(name: String)
    /// Closes a transaction the charger never stopped, with its last recorded energy reading
    /// (domain data, written in the same database transaction as the step).
    case closeTransaction(transactionId: Int, reason: String)
    /// Writes an asynchronous operator command's outcome to its audit record (same transaction).
    case recordCommandOutcome(callId: String, state: String, response: JSONValue?, error: JSONValue?)
}

/// A charger message an execution waits for.
public struct MessageFilter: Sendable, Equatable, Codable, Hashable {
    public var chargePointID: String
    public var action: String
    /// Matches only this connector (`connectorId` in the request), when set.
    public var connectorID: Int?
    /// Matches only this transaction (`transactionId` in the request or in our answer), when set.
    public var transactionID: Int?
    /// Matches only these `status` values of the request (StatusNotification), when set: an
    /// execution is not woken (one transaction and its history) by statuses it would ignore.
    public var statuses: [String]?

    public init(chargePointID: String, action: String, connectorID: Int? = nil, transactionID: Int? = nil, statuses: [String]? = nil) {
        self.chargePointID = chargePointID
        self.action = action
        self.connectorID = connectorID
        self.transactionID = transactionID
        self.statuses = statuses
    }

    /// Whether a charger message passes this filter.
    public func matches(chargePointID: String, action: String, request: JSONValue, response: JSONValue) -> Bool {
        guard chargePointID == self.chargePointID, action == self.action else { return false }
        if let connectorID, request["connectorId"]?.int64Value != Int64(connectorID) { return false }
        if let transactionID {
            let seen = request["transactionId"]?.int64Value ?? response["transactionId"]?.int64Value
            if seen != Int64(transactionID) { return false }
        }
        if let statuses, !statuses.contains(request["status"]?.stringValue ?? "") { return false }
        return true
    }
}

/// How an execution ended.
public enum WorkflowOutcome: Sendable, Equatable, Codable {
    case succeeded(JSONValue)
    /// `reason` is a stable, machine-readable word (`Rejected`, `ConnectionTimeout`, ...).
    case failed(reason: String, detail: JSONValue)
}

/// One step: the new state, what to do, what to wait for, and whether it is over.
public struct WorkflowTransition<State: Sendable & Codable & Equatable>: Sendable, Equatable {
    public var state: State
    public var commands: [WorkflowCommand]
    /// The charger messages the execution waits for from now on (replaces the previous set).
    public var waitingFor: [MessageFilter]
    public var outcome: WorkflowOutcome?
    /// A line for the execution's history, for people.
    public var note: String

    public init(state: State, commands: [WorkflowCommand] = [], waitingFor: [MessageFilter] = [], outcome: WorkflowOutcome? = nil, note: String) {
        self.state = state
        self.commands = commands
        self.waitingFor = waitingFor
        self.outcome = outcome
        self.note = note
    }
}

/// Input that does not fit a workflow: the field and what is wrong with it.
public struct WorkflowInputError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var problem: String
    public init(field: String, problem: String) {
        self.field = field
        self.problem = problem
    }
    public var description: String { "\(field): \(problem)" }

    /// The checks several workflows make on their input, with the same words.
    static func checkChargePoint(_ id: String, field: String = "chargePointId") throws(WorkflowInputError) {
        guard !id.isEmpty, id.count <= 48 else { throw WorkflowInputError(field: field, problem: "must be 1 to 48 characters") }
    }

    static func checkConnector(_ id: Int, field: String = "connectorId") throws(WorkflowInputError) {
        guard id >= 1 else { throw WorkflowInputError(field: field, problem: "must be 1 or more") }
    }

    static func checkIdTag(_ tag: String, field: String = "idTag") throws(WorkflowInputError) {
        guard (1...20).contains(tag.count) else { throw WorkflowInputError(field: field, problem: "must be 1 to 20 characters") }
    }
}

/// A durable workflow: a state machine whose step function is pure. The runner persists every
/// transition in PostgreSQL before it carries out the commands, so a crash resumes from the last
/// recorded state; the clock is passed in.
public protocol WorkflowDefinition: Sendable {
    associatedtype Input: Sendable & Codable
    associatedtype State: Sendable & Codable & Equatable

    static var name: String { get }
    static var version: Int { get }

    /// Checks the input and takes the first step.
    func start(_ input: Input, now: Date) throws(WorkflowInputError) -> WorkflowTransition<State>
    /// Takes the next step. An event the state does not expect leaves it as it is (no commands).
    func handle(_ event: WorkflowEvent, in state: State, now: Date) -> WorkflowTransition<State>
}
