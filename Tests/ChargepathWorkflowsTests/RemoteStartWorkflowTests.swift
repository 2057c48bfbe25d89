import ChargepathWorkflows
import Foundation
import OCPPCore
import Testing

/// The RemoteStart step function, without a database, a socket or a real clock.
@Suite struct RemoteStartWorkflowTests {
    let workflow = RemoteStartWorkflow()
    let input = RemoteStartWorkflow.Input(chargePointId: "CP-7", connectorId: 2, idTag: "TAG", connectionTimeout: 90)
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func accepted() throws -> WorkflowTransition<RemoteStartWorkflow.State> {
        let started = try workflow.start(input, now: t0)
        return workflow.handle(.callAnswered(key: "remote-start", payload: ["status": "Accepted"]), in: started.state, now: t0.addingTimeInterval(1))
    }

    @Test func startSendsRemoteStartTransactionToTheConnector() throws {
        let step = try workflow.start(input, now: t0)
        #expect(step.commands == [.call(key: "remote-start", chargePointID: "CP-7", action: "RemoteStartTransaction", payload: ["connectorId": 2, "idTag": "TAG"])])
        #expect(step.outcome == nil)
    }

    @Test func acceptedWaitsForTheCarUntilTheConnectionTimeout() throws {
        let step = try accepted()
        #expect(step.commands == [.setTimer(name: "connection-timeout", at: t0.addingTimeInterval(91))])
        #expect(step.waitingFor == [MessageFilter(chargePointID: "CP-7", action: "StartTransaction", connectorID: 2)])
        let timedOut = workflow.handle(.timerFired(name: "connection-timeout"), in: step.state, now: t0.addingTimeInterval(91))
        #expect(timedOut.outcome == .failed(reason: "ConnectionTimeout", detail: .emptyObject))
    }

    @Test func aWholeSessionEndsWithItsSummary() throws {
        let waiting = try accepted()
        let started = workflow.handle(
            .chargerMessage(chargePointID: "CP-7", action: "StartTransaction", request: ["connectorId": 2, "idTag": "TAG", "meterStart": 1000],
                            response: ["transactionId": 42, "idTagInfo": ["status": "Accepted"]]),
            in: waiting.state, now: t0.addingTimeInterval(30)
        )
        #expect(started.commands == [.cancelTimer(name: "connection-timeout")])
        #expect(started.waitingFor == [MessageFilter(chargePointID: "CP-7", action: "StopTransaction", transactionID: 42)])
        // The timer that may still fire (a race with the cancel) changes nothing.
        let late = workflow.handle(.timerFired(name: "connection-timeout"), in: started.state, now: t0.addingTimeInterval(91))
        #expect(late.outcome == nil && late.state == started.state)
        let stopped = workflow.handle(
            .chargerMessage(chargePointID: "CP-7", action: "StopTransaction", request: ["transactionId": 42, "meterStop": 8500, "reason": "EVDisconnected"], response: [:]),
            in: late.state, now: t0.addingTimeInterval(3600)
        )
        guard case .succeeded(let summary)? = stopped.outcome else { throw TestFailure("not succeeded: \(String(describing: stopped.outcome))") }
        #expect(summary["transactionId"] == 42)
        #expect(summary["energyWh"] == 7500)
        #expect(summary["reason"] == "EVDisconnected")
    }

    @Test func rejectedUnavailableAndDisconnectedAreDistinctOutcomes() throws {
        let started = try workflow.start(input, now: t0)
        let rejected = workflow.handle(.callAnswered(key: "remote-start", payload: ["status": "Rejected"]), in: started.state, now: t0)
        #expect(rejected.outcome == .failed(reason: "Rejected", detail: ["status": "Rejected"]))
        let unreachable = workflow.handle(.callFailed(key: "remote-start", code: "Timeout", description: "no answer"), in: started.state, now: t0)
        guard case .failed("ChargerUnavailable", _)? = unreachable.outcome else { throw TestFailure("timeout") }
        let refused = workflow.handle(.callFailed(key: "remote-start", code: "NotSupported", description: "no"), in: started.state, now: t0)
        guard case .failed("CallError", _)? = refused.outcome else { throw TestFailure("call error") }
        let dropped = workflow.handle(.chargerDisconnected(chargePointID: "CP-7"), in: try accepted().state, now: t0)
        #expect(dropped.outcome == .failed(reason: "ChargerDisconnected", detail: .emptyObject))
    }

    @Test func badInputNamesTheField() {
        #expect(throws: WorkflowInputError(field: "connectorId", problem: "must be 1 or more")) {
            try workflow.start(.init(chargePointId: "CP", connectorId: 0, idTag: "T"), now: t0)
        }
        #expect(throws: WorkflowInputError(field: "idTag", problem: "must be 1 to 20 characters")) {
            try workflow.start(.init(chargePointId: "CP", connectorId: 1, idTag: String(repeating: "x", count: 21)), now: t0)
        }
    }

    @Test func anotherConnectorsStartDoesNotMatch() {
        let filter = MessageFilter(chargePointID: "CP-7", action: "StartTransaction", connectorID: 2)
        #expect(filter.matches(chargePointID: "CP-7", action: "StartTransaction", request: ["connectorId": 2], response: [:]))
        #expect(!filter.matches(chargePointID: "CP-7", action: "StartTransaction", request: ["connectorId": 1], response: [:]))
        #expect(!filter.matches(chargePointID: "CP-8", action: "StartTransaction", request: ["connectorId": 2], response: [:]))
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
