public import Chargepath
public import Foundation
public import OCPPCore

/// ChargingSession: follows one transaction from StartTransaction (every one starts a session,
/// whoever started it) to its end. It enforces the session's limits (given on the id tag, at the
/// start, or later with a `limits` signal): when one is reached it sends RemoteStopTransaction and
/// records why. A charger that reports the connector Available with no StopTransaction (it
/// rebooted, the transaction is lost) gets the transaction closed as interrupted, with the last
/// meter value, once a grace period passes without a StopTransaction: no transaction stays open.
public struct ChargingSessionWorkflow: WorkflowDefinition {
    public static let name = "ChargingSession"
    public static let version = 1

    public struct Input: Sendable, Codable, Equatable {
        public var chargePointId: String
        public var connectorId: Int
        public var transactionId: Int
        public var idTag: String
        public var meterStart: Int
        public var limits: SessionLimits?
        /// Seconds to wait for a StopTransaction after the connector went Available (default 60).
        public var interruptGraceSeconds: Int?
        /// The charger's StopTransaction, when it came before the session started (a short
        /// transaction while the worker was behind): the session ends as it starts. Set by the
        /// statement that stores the StopTransaction on the session's pending start.
        public var stoppedBeforeStart: StopBeforeStart?

        public init(chargePointId: String, connectorId: Int, transactionId: Int, idTag: String, meterStart: Int,
                    limits: SessionLimits? = nil, interruptGraceSeconds: Int? = nil, stoppedBeforeStart: StopBeforeStart? = nil) {
            self.chargePointId = chargePointId
            self.connectorId = connectorId
            self.transactionId = transactionId
            self.idTag = idTag
            self.meterStart = meterStart
            self.limits = limits
            self.interruptGraceSeconds = interruptGraceSeconds
            self.stoppedBeforeStart = stoppedBeforeStart
        }
    }

    public struct StopBeforeStart: Sendable, Codable, Equatable {
        public var meterStop: Int
        public var reason: String

        public init(meterStop: Int, reason: String) {
            self.meterStop = meterStop
            self.reason = reason
        }
    }

    public struct Session: Sendable, Codable, Equatable {
        public var input: Input
        public var limits: SessionLimits
        public var startedAt: Date
        /// The highest energy register reading seen (Wh), and when it last rose.
        public var lastEnergyWh: Int
        public var lastEnergyRiseAt: Date
        /// The limit that was reached and made us send RemoteStopTransaction, if any.
        public var limitReached: String?
        /// Set when the connector went Available without a StopTransaction.
        public var availableWithoutStopAt: Date?
    }

    public enum State: Sendable, Codable, Equatable {
        case active(Session)
        case finished
    }

    static let stopKey = "remote-stop"
    static let durationTimer = "max-duration"
    static let idleTimer = "max-idle"
    static let graceTimer = "interrupt-grace"
    static let statusesOfASession: Set<String> = ["Charging", "SuspendedEV", "SuspendedEVSE"]

    public init() {}

    public func start(_ input: Input, now: Date) throws(WorkflowInputError) -> WorkflowTransition<State> {
        try WorkflowInputError.checkChargePoint(input.chargePointId)
        try WorkflowInputError.checkConnector(input.connectorId)
        try WorkflowInputError.checkIdTag(input.idTag)
        if let grace = input.interruptGraceSeconds, !(0...86_400).contains(grace) {
            throw WorkflowInputError(field: "interruptGraceSeconds", problem: "must be 0 to 86400 seconds")
        }
        let limits = input.limits ?? SessionLimits()
        if let (field, problem) = limits.problem() { throw WorkflowInputError(field: "limits." + field, problem: problem) }
        let session = Session(input: input, limits: limits, startedAt: now, lastEnergyWh: input.meterStart, lastEnergyRiseAt: now)
        if let stopped = input.stoppedBeforeStart {
            return finish(session, meterStop: stopped.meterStop, stopReason: stopped.reason, interrupted: false,
                          note: "Transaction \(input.transactionId) stopped by the charger before the session started")
        }
        let described = Self.describe(limits)
        return WorkflowTransition(
            state: .active(session), commands: Self.limitTimers(session),
            waitingFor: Self.waitingFor(session),
            note: "Following transaction \(input.transactionId) on connector \(input.connectorId)" + (described.isEmpty ? "" : " with limits: \(described)")
        )
    }

    public func handle(_ event: WorkflowEvent, in state: State, now: Date) -> WorkflowTransition<State> {
        guard case .active(var session) = state else {
            return WorkflowTransition(state: state, note: "Ignored an event after the end")
        }
        let input = session.input
        switch event {
        case .cancelled:
            return WorkflowTransition(
                state: .finished, outcome: .failed(reason: "Cancelled", detail: .emptyObject),
                note: "Cancelled by an operator; the charger's session is not touched"
            )

        case .chargerMessage(_, "StopTransaction", let request, _):
            let meterStop = Int(request["meterStop"]?.int64Value ?? Int64(session.lastEnergyWh))
            return finish(session, meterStop: meterStop, stopReason: request["reason"]?.stringValue ?? "Local", interrupted: false,
                          note: "Transaction \(input.transactionId) stopped by the charger")

        case .chargerMessage(_, "MeterValues", let request, _):
            if let reading = Self.energyRegisterWh(request), reading > session.lastEnergyWh {
                session.lastEnergyWh = reading
                session.lastEnergyRiseAt = now
            }
            if let maximum = Self.reachedEnergyLimit(session) {
                return stop(session, limit: "EnergyLimit", note: "Energy limit of \(maximum) Wh reached")
            }
            var commands: [WorkflowCommand] = []
            if session.limitReached == nil, let idle = session.limits.maxIdleSeconds, session.lastEnergyRiseAt == now {
                // Energy flows: the idle clock starts again.
                commands.append(.setTimer(name: Self.idleTimer, at: now.addingTimeInterval(TimeInterval(idle))))
            }
            return WorkflowTransition(state: .active(session), commands: commands, waitingFor: Self.waitingFor(session),
                                      note: "Meter at \(session.lastEnergyWh) Wh")

        case .timerFired(Self.durationTimer):
            guard session.limitReached == nil, let maximum = session.limits.maxDurationSeconds else { return unchanged(session) }
            return stop(session, limit: "DurationLimit", note: "Duration limit of \(maximum) s reached")

        case .timerFired(Self.idleTimer):
            guard session.limitReached == nil, let idle = session.limits.maxIdleSeconds else { return unchanged(session) }
            let idleSince = session.lastEnergyRiseAt
            if now.timeIntervalSince(idleSince) >= TimeInterval(idle) {
                return stop(session, limit: "IdleLimit", note: "No energy flowed for \(idle) s")
            }
            return WorkflowTransition(
                state: .active(session), commands: [.setTimer(name: Self.idleTimer, at: idleSince.addingTimeInterval(TimeInterval(idle)))],
                waitingFor: Self.waitingFor(session), note: "Energy flowed since; idle check moved"
            )

        case .chargerMessage(_, "StatusNotification", let request, _):
            let connector = request["connectorId"]?.int64Value
            let status = request["status"]?.stringValue
            // The connector is in a session again (some firmware reports Available for a moment):
            // the transaction was not lost after all.
            if connector == Int64(input.connectorId), session.availableWithoutStopAt != nil,
               let status, Self.statusesOfASession.contains(status) {
                session.availableWithoutStopAt = nil
                return WorkflowTransition(
                    state: .active(session), commands: [.cancelTimer(name: Self.graceTimer)], waitingFor: Self.waitingFor(session),
                    note: "Connector \(input.connectorId) is \(status) again; the transaction goes on"
                )
            }
            guard connector == Int64(input.connectorId), status == "Available", session.availableWithoutStopAt == nil else {
                return unchanged(session)
            }
            session.availableWithoutStopAt = now
            let grace = TimeInterval(input.interruptGraceSeconds ?? 60)
            return WorkflowTransition(
                state: .active(session), commands: [.setTimer(name: Self.graceTimer, at: now.addingTimeInterval(grace))],
                waitingFor: Self.waitingFor(session),
                note: "Connector \(input.connectorId) is Available with no StopTransaction; waiting \(Int(grace)) s for one"
            )

        case .timerFired(Self.graceTimer):
            guard session.availableWithoutStopAt != nil else { return unchanged(session) }
            return finish(session, meterStop: nil, stopReason: "Interrupted", interrupted: true,
                          note: "No StopTransaction came: transaction \(input.transactionId) closed as interrupted")

        case .signal("limits", let payload):
            guard let newer = try? payload.decode(SessionLimits.self), newer.problem() == nil else {
                return WorkflowTransition(state: .active(session), waitingFor: Self.waitingFor(session), note: "Ignored limits that do not fit")
            }
            session.limits = session.limits.merged(with: newer)
            var commands = Self.limitTimers(session)
            if let maximum = Self.reachedEnergyLimit(session) {
                return stop(session, limit: "EnergyLimit", note: "Energy limit of \(maximum) Wh already reached when it was set")
            }
            if session.limitReached != nil { commands = [] }
            return WorkflowTransition(state: .active(session), commands: commands, waitingFor: Self.waitingFor(session),
                                      note: "Limits now: \(Self.describe(session.limits))")

        case .callAnswered(Self.stopKey, let payload):
            let status = payload["status"]?.stringValue ?? "?"
            return WorkflowTransition(state: .active(session), waitingFor: Self.waitingFor(session),
                                      note: "The charger answered RemoteStopTransaction: \(status)")

        case .callFailed(Self.stopKey, let code, _):
            return WorkflowTransition(state: .active(session), waitingFor: Self.waitingFor(session),
                                      note: "RemoteStopTransaction failed (\(code)); the session goes on until the charger stops it")

        default:
            return unchanged(session)
        }
    }

    // MARK: Steps

    private func unchanged(_ session: Session) -> WorkflowTransition<State> {
        WorkflowTransition(state: .active(session), waitingFor: Self.waitingFor(session), note: "Ignored an unexpected event")
    }

    private func stop(_ session: Session, limit: String, note: String) -> WorkflowTransition<State> {
        var session = session
        session.limitReached = limit
        let payload: JSONValue = ["transactionId": .integer(Int64(session.input.transactionId))]
        return WorkflowTransition(
            state: .active(session),
            commands: [
                .cancelTimer(name: Self.durationTimer), .cancelTimer(name: Self.idleTimer),
                .call(key: Self.stopKey, chargePointID: session.input.chargePointId, action: "RemoteStopTransaction", payload: payload),
            ],
            waitingFor: Self.waitingFor(session), note: note + "; sent RemoteStopTransaction"
        )
    }

    private func finish(_ session: Session, meterStop: Int?, stopReason: String, interrupted: Bool, note: String) -> WorkflowTransition<State> {
        let input = session.input
        var summary = JSONObject()
        summary["chargePointId"] = .string(input.chargePointId)
        summary["connectorId"] = .integer(Int64(input.connectorId))
        summary["transactionId"] = .integer(Int64(input.transactionId))
        summary["idTag"] = .string(input.idTag)
        summary["meterStart"] = .integer(Int64(input.meterStart))
        summary["stopReason"] = .string(stopReason)
        summary["limitReached"] = session.limitReached.map { .string($0) } ?? .null
        summary["interrupted"] = .bool(interrupted)
        var commands: [WorkflowCommand] = []
        if let meterStop {
            summary["meterStop"] = .integer(Int64(meterStop))
            summary["energyWh"] = .integer(Int64(meterStop - input.meterStart))
        } else {
            // The last meter value is in the database; the runner closes the transaction with it.
            summary["lastEnergyWhSeen"] = .integer(Int64(session.lastEnergyWh))
            commands.append(.closeTransaction(transactionId: input.transactionId, reason: stopReason))
        }
        return WorkflowTransition(state: .finished, commands: commands, outcome: .succeeded(.object(summary)), note: note)
    }

    // MARK: Helpers

    /// The energy limit, when no limit has stopped the session yet and the energy since the meter
    /// start has reached it.
    static func reachedEnergyLimit(_ session: Session) -> Int? {
        guard session.limitReached == nil, let maximum = session.limits.maxEnergyWh,
              session.lastEnergyWh - session.input.meterStart >= maximum else { return nil }
        return maximum
    }

    static func limitTimers(_ session: Session) -> [WorkflowCommand] {
        var commands: [WorkflowCommand] = []
        if let duration = session.limits.maxDurationSeconds {
            commands.append(.setTimer(name: durationTimer, at: session.startedAt.addingTimeInterval(TimeInterval(duration))))
        }
        if let idle = session.limits.maxIdleSeconds {
            commands.append(.setTimer(name: idleTimer, at: session.lastEnergyRiseAt.addingTimeInterval(TimeInterval(idle))))
        }
        return commands
    }

    /// MeterValues only matter with an energy or idle limit: without one the session is not woken
    /// by every sample. Of its connector's statuses only those it acts on wake it: Available (the
    /// session may be interrupted) or, once it waits for a StopTransaction after one, those of a
    /// session going on.
    static func waitingFor(_ session: Session) -> [MessageFilter] {
        let input = session.input
        let statuses = session.availableWithoutStopAt == nil ? ["Available"] : statusesOfASession.sorted()
        var filters = [
            MessageFilter(chargePointID: input.chargePointId, action: "StopTransaction", transactionID: input.transactionId),
            MessageFilter(chargePointID: input.chargePointId, action: "StatusNotification", connectorID: input.connectorId, statuses: statuses),
        ]
        if session.limitReached == nil, session.limits.maxEnergyWh != nil || session.limits.maxIdleSeconds != nil {
            filters.append(MessageFilter(chargePointID: input.chargePointId, action: "MeterValues", transactionID: input.transactionId))
        }
        return filters
    }

    static func describe(_ limits: SessionLimits) -> String {
        var parts: [String] = []
        if let value = limits.maxEnergyWh { parts.append("\(value) Wh") }
        if let value = limits.maxDurationSeconds { parts.append("\(value) s") }
        if let value = limits.maxIdleSeconds { parts.append("\(value) s idle") }
        return parts.joined(separator: ", ")
    }

    /// The highest Energy.Active.Import.Register reading (whole meter, no phase) in a MeterValues
    /// request, in Wh. OCPP's default measurand is that register and its default unit Wh.
    static func energyRegisterWh(_ request: JSONValue) -> Int? {
        var best: Int?
        for meterValue in request["meterValue"]?.arrayValue ?? [] {
            for sample in meterValue["sampledValue"]?.arrayValue ?? [] {
                let measurand = sample["measurand"]?.stringValue ?? "Energy.Active.Import.Register"
                guard measurand == "Energy.Active.Import.Register", sample["phase"] == nil,
                      (sample["format"]?.stringValue ?? "Raw") == "Raw",
                      let text = sample["value"]?.stringValue, let number = Double(text), number.isFinite else { continue }
                let wh = (sample["unit"]?.stringValue == "kWh") ? number * 1000 : number
                let reading = Int(wh.rounded())
                best = max(best ?? reading, reading)
            }
        }
        return best
    }
}
