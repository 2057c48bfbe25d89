import Chargepath
import ChargepathApp
import ChargepathPostgres
import ChargepathWorkflows
import Foundation
import OCPPCore
import PostgresNIO
import Synchronization
import Testing

/// A worker that falls behind brings in its catch-up lanes, and only then. Real PostgreSQL,
/// engines built directly as in WorkflowFaultTests.
@Suite(.timeLimit(.minutes(3))) struct WorkflowCatchUpTests {
    /// One base lane and two catch-up lanes (after 10 s), starts taken 4 at a time.
    ///
    /// 1. Starts asked for just now are all taken by the base lane: the catch-up lanes never join.
    /// 2. Starts asked for two minutes ago bring them in. While the base lane is stuck (one start
    ///    of its batch waits for a row lock another session holds), the catch-up lanes take
    ///    every other start, then stop once there is none left.
    /// 3. Once the lock goes, the stuck batch starts too.
    @Test func lateStartsBringInTheCatchUpLanesWhichTakeTheRestWhileALaneIsStuckAndThenStop() async throws {
        let database = try await WorkflowFaultTests.migratedDatabase()
        let reported = WorkflowMetricsTests.Reported()
        let configuration = PostgresWorkflowEngine.Configuration(
            pollInterval: .milliseconds(20), stepTimeout: .seconds(120), workerConcurrency: 1, startBatchSize: 4,
            catchUpLanes: 2, catchUpAfter: .seconds(10)
        )
        @Sendable func lanes() -> [WorkflowActivity] {
            reported.activity.withLock { $0.filter { if case .lanes = $0 { true } else { false } } }
        }
        try await WorkflowFaultTests.withEngines(
            database, workers: ["A"], configuration: configuration, poolSize: 10,
            workflows: { _ in [AnyWorkflow(TallyWorkflow())] },
            observer: { activity in reported.activity.withLock { $0.append(activity) } },
            caller: WorkflowFaultTests.noCalls
        ) { engines, workersMayStart in
            let engine = engines[0]
            try await Self.askForStarts(database, prefix: "fresh", count: 20, secondsAgo: 0)
            workersMayStart.open()
            try await eventually(timeout: .seconds(30), "the fresh starts are taken") {
                let waiting = try await engine.backlog().starts.count
                let started = try await WorkflowFaultTests.statuses(database).count
                return waiting == 0 && started == 20
            }
            #expect(lanes() == [.lanes(working: 1, behind: false)], "no catch-up for work that is not late")

            // Another session creates late-05's execution and keeps its transaction open: the lane
            // whose batch holds late-05 waits for that row lock (the executions' key).
            try await WorkflowFaultTests.withConnection(database) { blocker in
                try await blocker.query("BEGIN", logger: TestDatabase.logger)
                try await blocker.query(
                    """
                    INSERT INTO workflow_executions (id, workflow, version, input, state, status, created_at, updated_at)
                    VALUES ('late-05', 'Tally', 1, '{"signals": 1}', 'null', 'RUNNING', now(), now())
                    """,
                    logger: TestDatabase.logger
                )
                try await Self.askForStarts(database, prefix: "late", count: 40, secondsAgo: 120)
                try await eventually(timeout: .seconds(30), "every start but the stuck batch is taken") {
                    let started = try await WorkflowFaultTests.statuses(database).keys.filter { $0.hasPrefix("late-") }.count
                    let waiting = try await engine.backlog().starts.count
                    return started == 36 && waiting == 4
                }
                #expect(lanes().contains(.lanes(working: 3, behind: true)))
                try await eventually(timeout: .seconds(30), "the catch-up lanes stop once they find nothing") {
                    lanes().last == .lanes(working: 1, behind: false)
                }
                // Reported once each way: a lane that took the last late work before another found
                // none does not turn them on again.
                #expect(lanes() == [.lanes(working: 1, behind: false), .lanes(working: 3, behind: true), .lanes(working: 1, behind: false)])
                try await blocker.query("ROLLBACK", logger: TestDatabase.logger)
            }
            try await eventually(timeout: .seconds(30), "the stuck batch starts once the lock goes") {
                let statuses = try await WorkflowFaultTests.statuses(database)
                return statuses.count == 60 && statuses.values.allSatisfy { $0.status == "RUNNING" }
            }
            #expect(try await engine.backlog().starts.count == 0)
            #expect(!reported.activity.withLock { $0 }.contains(.failedRound))
        }
    }

    /// `count` starts of TallyWorkflow asked for `secondsAgo`, named `prefix-01`… in the order
    /// they are taken.
    static func askForStarts(_ database: DatabaseEndpoint, prefix: String, count: Int, secondsAgo: Int) async throws {
        try await WorkflowFaultTests.withConnection(database) { connection in
            try await connection.query(
                """
                INSERT INTO workflow_starts (execution_id, workflow, input, created_at)
                SELECT \(prefix) || '-' || lpad(i::text, 2, '0'), 'Tally', '{"signals": 1}'::jsonb, now() - make_interval(secs => \(secondsAgo))
                FROM generate_series(1, \(count)) i ORDER BY i
                """,
                logger: TestDatabase.logger
            )
        }
    }
}

/// How many workflow lanes a node runs, from its configuration.
@Suite struct WorkflowLaneBudgetTests {
    @Test func theCatchUpLanesAreCappedSoThatAllLanesHoldAtMostHalfThePool() {
        func lanes(base: Int, catchUp: Int, pool: Int) -> Int {
            var configuration = ChargepathConfiguration(databasePoolSize: pool)
            configuration.workflows.workerConcurrency = base
            configuration.workflows.catchUpLanes = catchUp
            return configuration.workflowEngine.catchUpLanes
        }
        #expect(lanes(base: 1, catchUp: 2, pool: 20) == 2, "2 cores: as configured")
        #expect(lanes(base: 8, catchUp: 16, pool: 20) == 2, "16 cores: 10 lanes in all")
        #expect(lanes(base: 12, catchUp: 4, pool: 20) == 0, "the base lanes alone pass half the pool")
        #expect(lanes(base: 1, catchUp: 0, pool: 20) == 0, "turned off")
        #expect(lanes(base: 8, catchUp: 16, pool: 100) == 16)
    }
}
