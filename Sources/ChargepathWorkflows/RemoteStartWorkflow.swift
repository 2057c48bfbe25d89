public import Chargepath
public import Foundation
public import OCPPCore

/// RemoteStart: sends RemoteStartTransaction; when Accepted, waits for the charger's
/// StartTransaction on that connector (for ConnectionTimeOut); then follows the transaction until
/// StopTransaction and finishes with its summary. Rejected, a timeout, and a charger that drops
/// off before the car is plugged in are distinct outcomes.
public struct RemoteStartWorkflow: WorkflowDefinition {
    public static let name = "RemoteStart"
    public static let version = 1

    public struct Input: Sendable, Codable, Equatable {
        public var chargePointId: String
        public var connectorId: Int
        public var idTag: String
        /// Seconds to wait for the car after Accepted (the charger's ConnectionTimeOut; default 60).
        public var connectionTimeout: Int?
        /// Limits for the session this start leads to (its ChargingSession enforces them; they win
        /// over the id tag's, field by field).
        public var limits: SessionLimits?

        public init(chargePointId: String, connectorId: Int, idTag: String, connectionTimeout: Int? = nil, limits: SessionLimits? = nil) {
            self.chargePointId = chargePointId
            self.connectorId = connectorId
            self.idTag = idTag
            self.connectionTimeout = connectionTimeout
            self.limits = limits
        }
    }

    public enum State: Sendable, Codable, Equatable {
        case requested(Input)
        case waitingForStart(Input)
        case charging(Input, transactionId: Int, meterStart: Int)
        case finished
    }

    static let callKey = "remote-start"
    static let connectionTimer = "connection-timeout"

    public init() {}

    public func start(_ input: Input, now: Date) throws(WorkflowInputError) -> WorkflowTransition<State> {
        try WorkflowInputError.checkChargePoint(input.chargePointId)
        try WorkflowInputError.checkConnector(input.connectorId)
        try WorkflowInputError.checkIdTag(input.idTag)
        if let timeout = input.connectionTimeout, !(1...3600).contains(timeout) {
            throw WorkflowInputError(field: "connectionTimeout", problem: "must be 1 to 3600 seconds")
        }
        if let (field, problem) = input.limits?.problem() { throw WorkflowInputError(field: "limits." + field, problem: problem) }
        let payload: JSONValue = ["connectorId": .integer(Int64(input.connectorId)), "idTag": .string(input.idTag)]
        return WorkflowTransition(
            state: .requested(input),
            commands: [.call(key: Self.callKey, chargePointID: input.chargePointId, action: "RemoteStartTransaction", payload: payload)],
            note: "Sent RemoteStartTransaction for connector \(input.connectorId)"
        )
    }

    public func handle(_ event: WorkflowEvent, in state: State, now: Date) -> WorkflowTransition<State> {
        switch (state, event) {
        case (.finished, _):
            return WorkflowTransition(state: state, note: "Ignored an event after the end")

        case (_, .cancelled):
            return WorkflowTransition(
                state: .finished, commands: [.cancelTimer(name: Self.connectionTimer)],
                outcome: .failed(reason: "Cancelled", detail: .emptyObject), note: "Cancelled by an operator"
            )

        case (.requested(let input), .callAnswered(Self.callKey, let payload)):
            guard payload["status"] == "Accepted" else {
                return WorkflowTransition(
                    state: .finished, outcome: .failed(reason: "Rejected", detail: payload),
                    note: "The charger rejected the remote start"
                )
            }
            let timeout = TimeInterval(input.connectionTimeout ?? 60)
            return WorkflowTransition(
                state: .waitingForStart(input),
                commands: [.setTimer(name: Self.connectionTimer, at: now.addingTimeInterval(timeout))],
                waitingFor: [MessageFilter(chargePointID: input.chargePointId, action: "StartTransaction", connectorID: input.connectorId)],
                note: "Accepted; waiting up to \(Int(timeout)) s for the car"
            )

        case (.requested, .callFailed(Self.callKey, let code, let description)):
            return WorkflowTransition(
                state: .finished,
                outcome: .failed(reason: code == "Timeout" || code == "NotConnected" ? "ChargerUnavailable" : "CallError",
                                 detail: ["code": .string(code), "description": .string(description)]),
                note: "The remote start could not be delivered: \(code)"
            )

        case (.waitingForStart(let input), .chargerMessage(_, "StartTransaction", let request, let response)):
            guard let transactionId = response["transactionId"]?.int64Value else {
                return WorkflowTransition(state: state, waitingFor: Self.waitingForStart(input), note: "A StartTransaction without a transaction id; still waiting")
            }
            return WorkflowTransition(
                state: .charging(input, transactionId: Int(transactionId), meterStart: Int(request["meterStart"]?.int64Value ?? 0)),
                commands: [.cancelTimer(name: Self.connectionTimer)],
                waitingFor: [MessageFilter(chargePointID: input.chargePointId, action: "StopTransaction", transactionID: Int(transactionId))],
                note: "Transaction \(transactionId) started"
            )

        case (.waitingForStart, .timerFired(Self.connectionTimer)):
            return WorkflowTransition(
                state: .finished, outcome: .failed(reason: "ConnectionTimeout", detail: .emptyObject),
                note: "No car was plugged in before the connection timeout"
            )

        case (.requested(let input), .chargerDisconnected(let chargePoint)) where chargePoint == input.chargePointId,
             (.waitingForStart(let input), .chargerDisconnected(let chargePoint)) where chargePoint == input.chargePointId:
            return WorkflowTransition(
                state: .finished, commands: [.cancelTimer(name: Self.connectionTimer)],
                outcome: .failed(reason: "ChargerDisconnected", detail: .emptyObject),
                note: "The charger dropped off before the transaction started"
            )

        case (.charging(let input, let transactionId, let meterStart), .chargerMessage(_, "StopTransaction", let request, _)):
            let meterStop = Int(request["meterStop"]?.int64Value ?? Int64(meterStart))
            var summary = JSONObject()
            summary["chargePointId"] = .string(input.chargePointId)
            summary["connectorId"] = .integer(Int64(input.connectorId))
            summary["transactionId"] = .integer(Int64(transactionId))
            summary["meterStart"] = .integer(Int64(meterStart))
            summary["meterStop"] = .integer(Int64(meterStop))
            summary["energyWh"] = .integer(Int64(meterStop - meterStart))
            summary["reason"] = request["reason"] ?? "Local"
            return WorkflowTransition(state: .finished, outcome: .succeeded(.object(summary)), note: "Transaction \(transactionId) stopped")

        case (.waitingForStart(let input), _):
            return WorkflowTransition(state: state, waitingFor: Self.waitingForStart(input), note: "Ignored an unexpected event")
        case (.charging(let input, let transactionId, _), _):
            return WorkflowTransition(
                state: state, waitingFor: [MessageFilter(chargePointID: input.chargePointId, action: "StopTransaction", transactionID: transactionId)],
                note: "Ignored an unexpected event while charging"
            )
        case (.requested, _):
            return WorkflowTransition(state: state, note: "Ignored an unexpected event")
        }
    }

    static func waitingForStart(_ input: Input) -> [MessageFilter] {
        [MessageFilter(chargePointID: input.chargePointId, action: "StartTransaction", connectorID: input.connectorId)]
    }
}
