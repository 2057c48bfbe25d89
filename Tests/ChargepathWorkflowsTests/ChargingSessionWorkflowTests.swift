import Chargepath
import ChargepathWorkflows
import Foundation
import OCPPCore
import Testing

/// The ChargingSession step function, with an injected clock.
@Suite struct ChargingSessionWorkflowTests {
    let workflow = ChargingSessionWorkflow()
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func input(_ limits: SessionLimits? = nil, grace: Int? = nil) -> ChargingSessionWorkflow.Input {
        .init(chargePointId: "CP-7", connectorId: 2, transactionId: 41, idTag: "TAG", meterStart: 1_000, limits: limits, interruptGraceSeconds: grace)
    }

    func meterValues(_ value: String, unit: String? = nil, measurand: String? = nil) -> WorkflowEvent {
        var sample = JSONObject()
        sample["value"] = .string(value)
        if let unit { sample["unit"] = .string(unit) }
        if let measurand { sample["measurand"] = .string(measurand) }
        let request: JSONValue = [
            "connectorId": 2, "transactionId": 41,
            "meterValue": [["timestamp": "2027-01-15T08:00:00Z", "sampledValue": .array([.object(sample)])]],
        ]
        return .chargerMessage(chargePointID: "CP-7", action: "MeterValues", request: request, response: .emptyObject)
    }

    func remoteStops(_ transition: WorkflowTransition<ChargingSessionWorkflow.State>) -> [WorkflowCommand] {
        transition.commands.filter { if case .call(_, _, "RemoteStopTransaction", _) = $0 { return true } else { return false } }
    }

    @Test func withoutLimitsItWaitsForTheStopOnlyAndIsNotWokenByEverySample() throws {
        let started = try workflow.start(input(), now: t0)
        #expect(started.commands.isEmpty)
        #expect(Set(started.waitingFor.map(\.action)) == ["StopTransaction", "StatusNotification"])
        let stopped = workflow.handle(
            .chargerMessage(chargePointID: "CP-7", action: "StopTransaction", request: ["transactionId": 41, "meterStop": 7_500, "reason": "EVDisconnected"], response: .emptyObject),
            in: started.state, now: t0.addingTimeInterval(3_600)
        )
        guard case .succeeded(let summary)? = stopped.outcome else { Issue.record("no summary: \(String(describing: stopped.outcome))"); return }
        #expect(summary["energyWh"] == 6_500)
        #expect(summary["stopReason"] == "EVDisconnected")
        #expect(summary["limitReached"] == .null)
        #expect(summary["interrupted"] == false)
    }

    /// A stop the session's start was told of (it came first) ends the session at its start.
    @Test func aStopBeforeTheStartEndsTheSessionAtOnce() throws {
        var early = input(SessionLimits(maxDurationSeconds: 600))
        early.stoppedBeforeStart = .init(meterStop: 1_250, reason: "Local")
        let started = try workflow.start(early, now: t0)
        #expect(started.state == .finished)
        #expect(started.waitingFor.isEmpty)
        #expect(started.commands.isEmpty, "no timers for a session that is over")
        guard case .succeeded(let summary)? = started.outcome else { Issue.record("no summary: \(String(describing: started.outcome))"); return }
        #expect(summary["meterStop"] == 1_250)
        #expect(summary["energyWh"] == 250)
        #expect(summary["stopReason"] == "Local")
    }

    @Test func anEnergyLimitStopsTheSessionOnceAndTheSummarySaysWhy() throws {
        let started = try workflow.start(input(SessionLimits(maxEnergyWh: 5_000)), now: t0)
        #expect(started.waitingFor.contains { $0.action == "MeterValues" && $0.transactionID == 41 })
        let below = workflow.handle(meterValues("5999"), in: started.state, now: t0.addingTimeInterval(60))
        #expect(remoteStops(below).isEmpty)
        // kWh counts as well: 6.0 kWh = 6000 Wh, 5000 Wh after the meter start.
        let reached = workflow.handle(meterValues("6.0", unit: "kWh"), in: below.state, now: t0.addingTimeInterval(120))
        #expect(remoteStops(reached) == [.call(key: "remote-stop", chargePointID: "CP-7", action: "RemoteStopTransaction", payload: ["transactionId": 41])])
        // More samples after the stop was sent do not send it again.
        let again = workflow.handle(meterValues("6500"), in: reached.state, now: t0.addingTimeInterval(125))
        #expect(remoteStops(again).isEmpty)
        let stopped = workflow.handle(
            .chargerMessage(chargePointID: "CP-7", action: "StopTransaction", request: ["transactionId": 41, "meterStop": 6_100, "reason": "Remote"], response: .emptyObject),
            in: again.state, now: t0.addingTimeInterval(130)
        )
        guard case .succeeded(let summary)? = stopped.outcome else { Issue.record("not finished"); return }
        #expect(summary["limitReached"] == "EnergyLimit")
        #expect(summary["energyWh"] == 5_100)
    }

    @Test func otherMeasurandsAndPhasesDoNotCountAsEnergy() throws {
        let started = try workflow.start(input(SessionLimits(maxEnergyWh: 10)), now: t0)
        let power = workflow.handle(meterValues("99999", measurand: "Power.Active.Import"), in: started.state, now: t0.addingTimeInterval(5))
        #expect(remoteStops(power).isEmpty)
    }

    @Test func aDurationLimitFiresItsTimer() throws {
        let started = try workflow.start(input(SessionLimits(maxDurationSeconds: 1_800)), now: t0)
        #expect(started.commands == [.setTimer(name: "max-duration", at: t0.addingTimeInterval(1_800))])
        let fired = workflow.handle(.timerFired(name: "max-duration"), in: started.state, now: t0.addingTimeInterval(1_800))
        #expect(remoteStops(fired).count == 1)
        #expect(fired.note.contains("Duration limit"))
    }

    @Test func theIdleLimitCountsFromTheLastRiseOfEnergy() throws {
        let started = try workflow.start(input(SessionLimits(maxIdleSeconds: 600)), now: t0)
        #expect(started.commands == [.setTimer(name: "max-idle", at: t0.addingTimeInterval(600))])
        // Energy rises at t0+300: the idle timer moves to t0+900.
        let rising = workflow.handle(meterValues("1200"), in: started.state, now: t0.addingTimeInterval(300))
        #expect(rising.commands == [.setTimer(name: "max-idle", at: t0.addingTimeInterval(900))])
        // The same reading again is no energy flowing: the timer stays.
        let flat = workflow.handle(meterValues("1200"), in: rising.state, now: t0.addingTimeInterval(500))
        #expect(flat.commands.isEmpty)
        let fired = workflow.handle(.timerFired(name: "max-idle"), in: flat.state, now: t0.addingTimeInterval(900))
        #expect(remoteStops(fired).count == 1)
        #expect(fired.note.contains("No energy flowed"))
    }

    @Test func availableWithoutAStopClosesTheTransactionAsInterruptedAfterTheGrace() throws {
        let started = try workflow.start(input(grace: 30), now: t0)
        let available = workflow.handle(
            .chargerMessage(chargePointID: "CP-7", action: "StatusNotification", request: ["connectorId": 2, "status": "Available", "errorCode": "NoError"], response: .emptyObject),
            in: started.state, now: t0.addingTimeInterval(100)
        )
        #expect(available.commands == [.setTimer(name: "interrupt-grace", at: t0.addingTimeInterval(130))])
        #expect(available.outcome == nil)
        let closed = workflow.handle(.timerFired(name: "interrupt-grace"), in: available.state, now: t0.addingTimeInterval(130))
        #expect(closed.commands == [.closeTransaction(transactionId: 41, reason: "Interrupted")])
        guard case .succeeded(let summary)? = closed.outcome else { Issue.record("not finished"); return }
        #expect(summary["interrupted"] == true)
        #expect(summary["stopReason"] == "Interrupted")
    }

    @Test func chargingAgainWithinTheGraceKeepsTheTransactionOpen() throws {
        let started = try workflow.start(input(grace: 30), now: t0)
        let status = { (value: String, at: TimeInterval, state: ChargingSessionWorkflow.State) in
            workflow.handle(
                .chargerMessage(chargePointID: "CP-7", action: "StatusNotification", request: ["connectorId": 2, "status": .string(value), "errorCode": "NoError"], response: .emptyObject),
                in: state, now: t0.addingTimeInterval(at)
            )
        }
        let available = status("Available", 100, started.state)
        let charging = status("Charging", 105, available.state)
        #expect(charging.commands == [.cancelTimer(name: "interrupt-grace")])
        // A stale grace timer that fires anyway changes nothing.
        let late = workflow.handle(.timerFired(name: "interrupt-grace"), in: charging.state, now: t0.addingTimeInterval(130))
        #expect(late.outcome == nil)
        #expect(late.commands.isEmpty)
        // And a later Available starts a new grace period.
        #expect(status("Available", 200, charging.state).commands == [.setTimer(name: "interrupt-grace", at: t0.addingTimeInterval(230))])
    }

    /// Each StatusNotification that wakes a session costs a transaction and its history: only
    /// those it acts on wake it (Available; then, during the grace period, a session's statuses).
    @Test func onlyTheStatusesItActsOnWakeIt() throws {
        let started = try workflow.start(input(grace: 30), now: t0)
        func wakes(_ status: String, _ transition: WorkflowTransition<ChargingSessionWorkflow.State>, connector: Int = 2) -> Bool {
            transition.waitingFor.contains {
                $0.matches(chargePointID: "CP-7", action: "StatusNotification",
                           request: ["connectorId": .integer(Int64(connector)), "status": .string(status), "errorCode": "NoError"], response: .emptyObject)
            }
        }
        #expect(wakes("Available", started))
        for status in ["Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Faulted", "Unavailable"] {
            #expect(!wakes(status, started), "\(status) woke a session with no grace period running")
        }
        #expect(!wakes("Available", started, connector: 1))
        let available = workflow.handle(
            .chargerMessage(chargePointID: "CP-7", action: "StatusNotification", request: ["connectorId": 2, "status": "Available", "errorCode": "NoError"], response: .emptyObject),
            in: started.state, now: t0.addingTimeInterval(100)
        )
        for status in ["Charging", "SuspendedEV", "SuspendedEVSE"] { #expect(wakes(status, available)) }
        for status in ["Available", "Finishing", "Preparing"] { #expect(!wakes(status, available)) }
        // A filter stored before it had statuses (no `statuses` member) still matches every status.
        let stored = try JSONValue.parse(Data(#"{"chargePointID":"CP-7","action":"StatusNotification","connectorID":2}"#.utf8)).decode(MessageFilter.self)
        #expect(stored.statuses == nil)
        #expect(stored.matches(chargePointID: "CP-7", action: "StatusNotification", request: ["connectorId": 2, "status": "Finishing"], response: .emptyObject))
    }

    @Test func aStopWithinTheGraceEndsTheSessionNormally() throws {
        let started = try workflow.start(input(grace: 30), now: t0)
        let available = workflow.handle(
            .chargerMessage(chargePointID: "CP-7", action: "StatusNotification", request: ["connectorId": 2, "status": "Available", "errorCode": "NoError"], response: .emptyObject),
            in: started.state, now: t0.addingTimeInterval(100)
        )
        let stopped = workflow.handle(
            .chargerMessage(chargePointID: "CP-7", action: "StopTransaction", request: ["transactionId": 41, "meterStop": 2_000], response: .emptyObject),
            in: available.state, now: t0.addingTimeInterval(110)
        )
        #expect(stopped.commands.isEmpty)
        guard case .succeeded(let summary)? = stopped.outcome else { Issue.record("not finished"); return }
        #expect(summary["interrupted"] == false)
        #expect(summary["energyWh"] == 1_000)
        // A status of another connector is no reason to wait.
        let other = workflow.handle(
            .chargerMessage(chargePointID: "CP-7", action: "StatusNotification", request: ["connectorId": 1, "status": "Available", "errorCode": "NoError"], response: .emptyObject),
            in: started.state, now: t0.addingTimeInterval(100)
        )
        #expect(other.commands.isEmpty)
    }

    @Test func limitsSentLaterApplyAndAnAlreadyPassedEnergyLimitStopsAtOnce() throws {
        let started = try workflow.start(input(), now: t0)
        let metered = workflow.handle(meterValues("4000"), in: started.state, now: t0.addingTimeInterval(60))
        // 3000 Wh delivered so far: a 2000 Wh limit is already passed, and the stop goes at once.
        let passed = workflow.handle(.signal(name: "limits", payload: ["maxEnergyWh": 2_000]), in: metered.state, now: t0.addingTimeInterval(61))
        #expect(remoteStops(passed).count == 1)
        // A 5000 Wh limit is not: the session now watches the samples and stops when it is reached.
        let limited = workflow.handle(.signal(name: "limits", payload: ["maxEnergyWh": 5_000]), in: metered.state, now: t0.addingTimeInterval(61))
        #expect(remoteStops(limited).isEmpty)
        #expect(limited.waitingFor.contains { $0.action == "MeterValues" })
        let reached = workflow.handle(meterValues("6000"), in: limited.state, now: t0.addingTimeInterval(70))
        #expect(remoteStops(reached).count == 1)
        let bad = workflow.handle(.signal(name: "limits", payload: ["maxEnergyWh": -5]), in: started.state, now: t0)
        #expect(bad.state == started.state)
    }

    @Test func badInputNamesTheField() {
        #expect(throws: WorkflowInputError(field: "limits.maxEnergyWh", problem: "must be 1 or more")) {
            try workflow.start(input(SessionLimits(maxEnergyWh: 0)), now: t0)
        }
        #expect(throws: WorkflowInputError(field: "connectorId", problem: "must be 1 or more")) {
            try workflow.start(.init(chargePointId: "CP", connectorId: 0, transactionId: 1, idTag: "T", meterStart: 0), now: t0)
        }
    }
}

/// The Provisioning step function.
@Suite struct ProvisioningWorkflowTests {
    let workflow = ProvisioningWorkflow()
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let input = ProvisioningWorkflow.Input(chargePointId: "CP-9", configuration: [
        .init(key: "HeartbeatInterval", value: "120"), .init(key: "MeterValueSampleInterval", value: "30"), .init(key: "Vendor.Thing", value: "x"),
    ])

    @Test func eachKeyInTurnThenTheStatusesAndEveryAnswerRecorded() throws {
        let started = try workflow.start(input, now: t0)
        #expect(started.commands == [.call(key: "config-0", chargePointID: "CP-9", action: "ChangeConfiguration", payload: ["key": "HeartbeatInterval", "value": "120"])])
        let second = workflow.handle(.callAnswered(key: "config-0", payload: ["status": "Accepted"]), in: started.state, now: t0)
        #expect(second.commands == [.call(key: "config-1", chargePointID: "CP-9", action: "ChangeConfiguration", payload: ["key": "MeterValueSampleInterval", "value": "30"])])
        // A rejected key is recorded and not sent again: the next key goes.
        let third = workflow.handle(.callAnswered(key: "config-1", payload: ["status": "Rejected"]), in: second.state, now: t0)
        #expect(third.commands.first.map { if case .call("config-2", _, _, _) = $0 { return true } else { return false } } == true)
        let trigger = workflow.handle(.callFailed(key: "config-2", code: "NotSupported", description: "?"), in: third.state, now: t0)
        #expect(trigger.commands == [.call(key: "trigger-status", chargePointID: "CP-9", action: "TriggerMessage", payload: ["requestedMessage": "StatusNotification"])])
        let done = workflow.handle(.callAnswered(key: "trigger-status", payload: ["status": "Accepted"]), in: trigger.state, now: t0)
        guard case .succeeded(let output)? = done.outcome else { Issue.record("not finished"); return }
        #expect(output["configuration"]?["HeartbeatInterval"] == "Accepted")
        #expect(output["configuration"]?["MeterValueSampleInterval"] == "Rejected")
        #expect(output["configuration"]?["Vendor.Thing"] == "CallError:NotSupported")
        #expect(output["rejected"] == ["MeterValueSampleInterval", "Vendor.Thing"])
        #expect(output["triggerMessage"] == "Accepted")
    }

    @Test func aLateOrRepeatedAnswerForAnEarlierKeyChangesNothing() throws {
        let started = try workflow.start(input, now: t0)
        let second = workflow.handle(.callAnswered(key: "config-0", payload: ["status": "Accepted"]), in: started.state, now: t0)
        let repeated = workflow.handle(.callAnswered(key: "config-0", payload: ["status": "Rejected"]), in: second.state, now: t0)
        #expect(repeated.state == second.state)
        #expect(repeated.commands.isEmpty)
    }

    @Test func nothingToConfigureStillAsksForStatuses() throws {
        let started = try workflow.start(.init(chargePointId: "CP-9", configuration: []), now: t0)
        #expect(started.commands.count == 1)
        #expect(started.commands.first.map { if case .call(_, _, "TriggerMessage", _) = $0 { return true } else { return false } } == true)
    }

    @Test func aKeyLongerThanOCPPAllowsIsRefused() {
        #expect(throws: WorkflowInputError(field: "configuration.0.key", problem: "must be 1 to 50 characters")) {
            try workflow.start(.init(chargePointId: "CP-9", configuration: [.init(key: String(repeating: "k", count: 51), value: "1")]), now: t0)
        }
    }
}
