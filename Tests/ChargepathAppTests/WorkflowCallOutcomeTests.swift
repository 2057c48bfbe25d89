import Chargepath
@testable import ChargepathPostgres
import ChargepathWorkflows
import Foundation
import OCPPCore
import PostgresNIO
import Synchronization
import Testing

/// A call's outcome is recorded once: the call marked done and its event added together, and an
/// outcome that comes again (the call sent twice, its lease having run out) adds nothing.
@Suite(.timeLimit(.minutes(2))) struct WorkflowCallOutcomeTests {
    @Test func aCallsOutcomeBecomesOneEventEvenWhenItComesTwice() async throws {
        try await WorkflowMetricsTests.withTallyEngine { engine, database, reported, _ in
            // No worker runs (its gate stays shut): this test claims and performs the call itself.
            let id = try await engine.start(workflow: "Tally", input: ["signals": 1])
            try await WorkflowFaultTests.withConnection(database) { connection in
                try await connection.query(
                    """
                    INSERT INTO workflow_outbox (execution_id, key, charge_point_id, action, payload, next_attempt_at, give_up_at, created_at)
                    VALUES (\(id), 'reset', 'CP-1', 'Reset', '{"type": "Soft"}', now() - interval '1 second', now() + interval '1 hour', now())
                    """,
                    logger: TestDatabase.logger
                )
            }
            let claimed = try await engine.claimCalls(limit: 16)
            let call = try #require(claimed.first)
            #expect(claimed.count == 1 && call.key == "reset" && call.action == "Reset")
            await engine.perform(call)
            await engine.perform(call)
            let (events, done) = try await WorkflowFaultTests.withConnection(database) { connection in
                var events: [String] = []
                for try await event in try await connection.query(
                    "SELECT event::text FROM workflow_inbox WHERE execution_id = \(id) ORDER BY id", logger: TestDatabase.logger
                ).decode(String.self) {
                    events.append(event)
                }
                var done = false
                for try await doneAt in try await connection.query(
                    "SELECT done_at FROM workflow_outbox WHERE execution_id = \(id)", logger: TestDatabase.logger
                ).decode(Date?.self) {
                    done = doneAt != nil
                }
                return (events, done)
            }
            #expect(done)
            #expect(events.count == 1, "\(events)")
            let event = try JSONValue.parse(try #require(events.first)).decode(WorkflowEvent.self, using: JSONValueDecoder())
            guard case .callFailed(let key, let code, _) = event else {
                Issue.record("not a failed call: \(event)")
                return
            }
            #expect(key == "reset" && code == "NotExpected")
            #expect(reported.activity.withLock { $0.filter { $0 == .call(action: "Reset", outcome: .failed) }.count } == 2, "both sends counted")
        }
    }
}
