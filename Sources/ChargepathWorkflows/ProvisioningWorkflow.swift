public import Foundation
public import OCPPCore

/// Provisioning: after a BootNotification is Accepted, pushes the configuration the operator set
/// for that charger or for all (one ChangeConfiguration per key, in order) and then asks the
/// charger for its connector statuses with TriggerMessage. Each key's answer is recorded; a key
/// the charger rejects (or does not support) is recorded and not sent again.
public struct ProvisioningWorkflow: WorkflowDefinition {
    public static let name = "Provisioning"
    public static let version = 1

    public struct Setting: Sendable, Codable, Equatable {
        public var key: String
        public var value: String
        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    public struct Input: Sendable, Codable, Equatable {
        public var chargePointId: String
        public var configuration: [Setting]
        /// Ask for connector statuses at the end (default true).
        public var triggerStatus: Bool?

        public init(chargePointId: String, configuration: [Setting], triggerStatus: Bool? = nil) {
            self.chargePointId = chargePointId
            self.configuration = configuration
            self.triggerStatus = triggerStatus
        }
    }

    public struct Progress: Sendable, Codable, Equatable {
        public var input: Input
        /// The answer for each key sent so far, in order: Accepted, Rejected, RebootRequired,
        /// NotSupported, or the failure (`CallError:<code>`, `Timeout`, `NotConnected`).
        public var results: [String]
    }

    public enum State: Sendable, Codable, Equatable {
        case configuring(Progress)
        case triggering(Progress)
        case finished
    }

    static let triggerKey = "trigger-status"

    static func configKey(_ index: Int) -> String { "config-\(index)" }

    public init() {}

    public func start(_ input: Input, now: Date) throws(WorkflowInputError) -> WorkflowTransition<State> {
        try WorkflowInputError.checkChargePoint(input.chargePointId)
        for (index, setting) in input.configuration.enumerated() {
            // ChangeConfiguration.req: key is CiString50, value CiString500.
            guard (1...50).contains(setting.key.count) else {
                throw WorkflowInputError(field: "configuration.\(index).key", problem: "must be 1 to 50 characters")
            }
            guard setting.value.count <= 500 else {
                throw WorkflowInputError(field: "configuration.\(index).value", problem: "must be at most 500 characters")
            }
        }
        return next(Progress(input: input, results: []), note: "Provisioning \(input.configuration.count) configuration key(s)")
    }

    public func handle(_ event: WorkflowEvent, in state: State, now: Date) -> WorkflowTransition<State> {
        switch (state, event) {
        case (.finished, _):
            return WorkflowTransition(state: state, note: "Ignored an event after the end")

        case (_, .cancelled):
            return WorkflowTransition(state: .finished, outcome: .failed(reason: "Cancelled", detail: .emptyObject), note: "Cancelled by an operator")

        case (.configuring(var progress), .callAnswered(let key, let payload)) where key == Self.configKey(progress.results.count):
            let status = payload["status"]?.stringValue ?? "Unknown"
            let setting = progress.input.configuration[progress.results.count]
            progress.results.append(status)
            return next(progress, note: "\(setting.key): \(status)")

        case (.configuring(var progress), .callFailed(let key, let code, _)) where key == Self.configKey(progress.results.count):
            let setting = progress.input.configuration[progress.results.count]
            let result = (code == "Timeout" || code == "NotConnected") ? code : "CallError:\(code)"
            progress.results.append(result)
            return next(progress, note: "\(setting.key): \(result); not sent again")

        case (.triggering(let progress), .callAnswered(Self.triggerKey, let payload)):
            return done(progress, trigger: payload["status"]?.stringValue ?? "Unknown")

        case (.triggering(let progress), .callFailed(Self.triggerKey, let code, _)):
            return done(progress, trigger: (code == "Timeout" || code == "NotConnected") ? code : "CallError:\(code)")

        default:
            return WorkflowTransition(state: state, note: "Ignored an unexpected event")
        }
    }

    /// Sends the next key, or the TriggerMessage, or finishes.
    private func next(_ progress: Progress, note: String) -> WorkflowTransition<State> {
        let input = progress.input
        let index = progress.results.count
        if index < input.configuration.count {
            let setting = input.configuration[index]
            return WorkflowTransition(
                state: .configuring(progress),
                commands: [.call(key: Self.configKey(index), chargePointID: input.chargePointId, action: "ChangeConfiguration",
                                 payload: ["key": .string(setting.key), "value": .string(setting.value)])],
                note: note + "; sent \(setting.key)"
            )
        }
        guard input.triggerStatus ?? true else { return done(progress, trigger: nil) }
        return WorkflowTransition(
            state: .triggering(progress),
            commands: [.call(key: Self.triggerKey, chargePointID: input.chargePointId, action: "TriggerMessage",
                             payload: ["requestedMessage": "StatusNotification"])],
            note: note + "; asked for connector statuses"
        )
    }

    private func done(_ progress: Progress, trigger: String?) -> WorkflowTransition<State> {
        var results = JSONObject()
        for (setting, result) in zip(progress.input.configuration, progress.results) {
            results[setting.key] = .string(result)
        }
        var output = JSONObject()
        output["chargePointId"] = .string(progress.input.chargePointId)
        output["configuration"] = .object(results)
        output["rejected"] = .array(zip(progress.input.configuration, progress.results)
            .filter { $0.1 != "Accepted" && $0.1 != "RebootRequired" }.map { .string($0.0.key) })
        output["rebootRequired"] = .bool(progress.results.contains("RebootRequired"))
        output["triggerMessage"] = trigger.map { .string($0) } ?? .null
        return WorkflowTransition(state: .finished, outcome: .succeeded(.object(output)), note: "Provisioning done")
    }
}
