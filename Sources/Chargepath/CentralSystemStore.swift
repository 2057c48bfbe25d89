public import Foundation
public import OCPP16

/// One sampled value as stored: the same shape for MeterValues and StopTransaction's transactionData.
public struct MeterSample: Sendable, Equatable {
    public var sampledAt: Date
    public var value: String
    public var context: String?
    public var format: String?
    public var measurand: String?
    public var phase: String?
    public var location: String?
    public var unit: String?

    public init(sampledAt: Date, value: String, context: String? = nil, format: String? = nil, measurand: String? = nil,
                phase: String? = nil, location: String? = nil, unit: String? = nil) {
        self.sampledAt = sampledAt
        self.value = value
        self.context = context
        self.format = format
        self.measurand = measurand
        self.phase = phase
        self.location = location
        self.unit = unit
    }
}

/// The result of a StartTransaction: the id the charger gets, and what we think of its tag.
public struct StartedTransaction: Sendable, Equatable {
    public var transactionID: Int
    public var idTagInfo: IdTagInfo
    /// True when this was a retry of a start we had already recorded.
    public var wasRetry: Bool
    /// The running workflow executions waiting for this charger's StartTransactions, read by the
    /// statement that stored it; nil when the store did not look.
    public var waitingWorkflows: [WaitingWorkflow]?

    public init(transactionID: Int, idTagInfo: IdTagInfo, wasRetry: Bool, waitingWorkflows: [WaitingWorkflow]? = nil) {
        self.transactionID = transactionID
        self.idTagInfo = idTagInfo
        self.wasRetry = wasRetry
        self.waitingWorkflows = waitingWorkflows
    }
}

/// How a StopTransaction matched what we know.
public enum StopOutcome: Sendable, Equatable {
    case stopped
    /// The same stop again (a retry): nothing changed.
    case alreadyStoppedSame
    /// Recorded as an anomaly, answered anyway.
    case unknownTransaction
    case alreadyStoppedDifferently
}

/// The result of a StopTransaction: how it matched, and what we think of its tag (nil when the
/// charger sent none).
public struct StoppedTransaction: Sendable, Equatable {
    public var outcome: StopOutcome
    public var idTagInfo: IdTagInfo?
    /// The running workflow executions waiting for this charger's StopTransactions, read by the
    /// statement that stored it; nil when the store did not look.
    public var waitingWorkflows: [WaitingWorkflow]?

    public init(outcome: StopOutcome, idTagInfo: IdTagInfo?, waitingWorkflows: [WaitingWorkflow]? = nil) {
        self.outcome = outcome
        self.idTagInfo = idTagInfo
        self.waitingWorkflows = waitingWorkflows
    }
}

/// A running workflow execution waiting for one action's messages from a charger, as storage
/// found it: its filters (`waitingFor`, JSON) are still to be checked against the message.
public struct WaitingWorkflow: Sendable, Equatable {
    public var executionID: String
    public var waitingFor: String

    public init(executionID: String, waitingFor: String) {
        self.executionID = executionID
        self.waitingFor = waitingFor
    }
}

/// The port through which the OCPP 1.6 handler persists what chargers tell it.
/// Every method commits before it returns: the charger's answer is sent only afterwards.
public protocol CentralSystemStore: Sendable {
    /// Records a boot (creating the charge point) and returns the operator's registration decision.
    func recordBoot(chargePointID: String, _ request: BootNotificationRequest, at: Date) async throws -> RegistrationStatus
    /// The operator's registration decision, or nil for a charge point never seen.
    func registrationStatus(chargePointID: String) async throws -> RegistrationStatus?
    /// Stores a StatusNotification; returns the running workflow executions waiting for this
    /// charger's StatusNotifications, read by the statement that stored it.
    @discardableResult
    func recordStatus(chargePointID: String, _ request: StatusNotificationRequest, receivedAt: Date) async throws -> [WaitingWorkflow]
    /// Looks an idTag up in the authorization list (unknown → Invalid; past expiry → Expired).
    func authorize(idTag: String, at: Date) async throws -> IdTagInfo
    func startTransaction(chargePointID: String, _ request: StartTransactionRequest, receivedAt: Date) async throws -> StartedTransaction
    /// Stores a MeterValues message's samples; returns the running workflow executions waiting for
    /// this charger's MeterValues, read by the statement that stored them (no second round trip
    /// on the busiest message).
    @discardableResult
    func recordMeterValues(chargePointID: String, connectorID: Int, transactionID: Int?, samples: [MeterSample], receivedAt: Date) async throws -> [WaitingWorkflow]
    func stopTransaction(chargePointID: String, _ request: StopTransactionRequest, samples: [MeterSample], receivedAt: Date) async throws -> StoppedTransaction
    /// Stores a message kept as it came (DataTransfer, notifications).
    func recordMessage(chargePointID: String, action: String, payload: String, receivedAt: Date) async throws
}
