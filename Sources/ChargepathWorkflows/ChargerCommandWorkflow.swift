public import Foundation
public import OCPPCore

/// ChargerCommand: an operator's asynchronous command (`POST .../calls/{action}?mode=async`) as a
/// durable execution. It sends the one CALL through the engine's outbox (at least once, under a
/// stable key, surviving a crash, waiting a while for a charger that dropped off) and writes the
/// answer to the command's audit record (`charger_calls`), which `GET /api/v1/executions/{id}` shows.
public struct ChargerCommandWorkflow: WorkflowDefinition {
    public static let name = "ChargerCommand"
    public static let version = 1

    public struct Input: Sendable, Codable, Equatable {
        /// The audit record's id (also the execution's id).
        public var callId: String
        public var chargePointId: String
        public var action: String
        public var payload: JSONValue

        public init(callId: String, chargePointId: String, action: String, payload: JSONValue) {
            self.callId = callId
            self.chargePointId = chargePointId
            self.action = action
            self.payload = payload
        }
    }

    public enum State: Sendable, Codable, Equatable {
        case sent(Input)
        case finished
    }

    static let callKey = "command"

    public init() {}

    public func start(_ input: Input, now: Date) throws(WorkflowInputError) -> WorkflowTransition<State> {
        try WorkflowInputError.checkChargePoint(input.chargePointId)
        guard (1...64).contains(input.callId.utf8.count) else { throw WorkflowInputError(field: "callId", problem: "must be 1 to 64 bytes") }
        guard !input.action.isEmpty else { throw WorkflowInputError(field: "action", problem: "is required") }
        return WorkflowTransition(
            state: .sent(input),
            commands: [.call(key: Self.callKey, chargePointID: input.chargePointId, action: input.action, payload: input.payload)],
            note: "Sent \(input.action)"
        )
    }

    public func handle(_ event: WorkflowEvent, in state: State, now: Date) -> WorkflowTransition<State> {
        guard case .sent(let input) = state else { return WorkflowTransition(state: state, note: "Ignored an event after the end") }
        switch event {
        case .callAnswered(Self.callKey, let payload):
            return WorkflowTransition(
                state: .finished,
                commands: [.recordCommandOutcome(callId: input.callId, state: "SUCCEEDED", response: payload, error: nil)],
                outcome: .succeeded(payload), note: "The charger answered"
            )
        case .callFailed(Self.callKey, let code, let description):
            let isOCPPError = code != "Timeout" && code != "NotConnected" && code != "CallFailed"
            let error: JSONValue = isOCPPError
                ? ["errorCode": .string(code), "errorDescription": .string(description), "errorDetails": .emptyObject]
                : ["reason": .string(description)]
            let state = code == "Timeout" ? "TIMED_OUT" : "FAILED"
            return WorkflowTransition(
                state: .finished, commands: [.recordCommandOutcome(callId: input.callId, state: state, response: nil, error: error)],
                outcome: .failed(reason: code, detail: error), note: "The command failed: \(code)"
            )
        case .cancelled:
            let error: JSONValue = ["reason": "Cancelled by an operator"]
            return WorkflowTransition(
                state: .finished, commands: [.recordCommandOutcome(callId: input.callId, state: "FAILED", response: nil, error: error)],
                outcome: .failed(reason: "Cancelled", detail: error), note: "Cancelled by an operator"
            )
        default:
            return WorkflowTransition(state: state, note: "Ignored an unexpected event")
        }
    }
}
