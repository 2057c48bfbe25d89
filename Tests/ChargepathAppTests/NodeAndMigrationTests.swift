import Chargepath
import ChargepathApp
import ChargepathPostgres
import ChargepathServer
import Foundation
import Logging
import OCPP16
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(3))) struct NodeAndMigrationTests {
    @Test func twoNodesStartingTogetherApplyEachMigrationExactlyOnce() async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        // Two nodes with their own pools, started at the same moment on one empty database (in
        // one test slot: neither waits for the other's).
        let nodes = try await TestSlots.withSlot {
            try await withThrowingTaskGroup(of: NodeID.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        try await TestServer.with(database: database) { server in server.running.nodeID }
                    }
                }
                return try await group.reduce(into: [NodeID]()) { $0.append($1) }
            }
        }
        #expect(Set(nodes).count == 2)
        let counts = try await TestDatabase.withClient(database) { client in
            var counts: [Int: Int] = [:]
            for try await (version, count) in try await client.query(
                "SELECT version, count(*)::int FROM schema_migrations GROUP BY version", logger: TestDatabase.logger
            ).decode((Int, Int).self) {
                counts[version] = count
            }
            return counts
        }
        #expect(counts.keys.sorted() == Migration.embedded.map(\.version))
        #expect(counts.values.allSatisfy { $0 == 1 })
    }

    @Test func aMigrationEditedAfterItWasAppliedIsRefused() async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        try await TestDatabase.withClient(database) { client in
            try await MigrationRunner().run(on: client, logger: TestDatabase.logger)
            let first = try #require(Migration.embedded.first)
            let edited = Migration(version: first.version, name: first.name, sql: first.sql + "\n-- edited")
            await #expect(throws: MigrationRunner.Error.self) {
                try await MigrationRunner(migrations: [edited]).run(on: client, logger: TestDatabase.logger)
            }
            #expect(try await MigrationRunner().isUpToDate(on: client, logger: TestDatabase.logger))
        }
    }

    /// Migration 0009 moves the sampled values of a database in use into one row per reading: every
    /// value must still be there, the same, in the order it was stored.
    @Test func upgradingToMeterReadingsKeepsEveryStoredValueInItsOrder() async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        try await TestDatabase.withClient(database) { client in
            try await MigrationRunner(migrations: Array(Migration.embedded.prefix(8))).run(on: client, logger: TestDatabase.logger)
            try await client.query("""
                INSERT INTO meter_values (charge_point_id, connector_id, transaction_id, sampled_at, value, context, format,
                    measurand, phase, location, unit, source, received_at) VALUES
                ('CP-1', 1, 7, '2026-11-25T12:00:00Z', '1000', 'Sample.Periodic', NULL, 'Energy.Active.Import.Register', NULL, NULL, 'Wh', 'MeterValues', '2026-11-25T12:00:01Z'),
                ('CP-1', 1, 7, '2026-11-25T12:00:00Z', '230.1', NULL, 'Raw', 'Voltage', 'L1', 'Outlet', 'V', 'MeterValues', '2026-11-25T12:00:01Z'),
                ('CP-2', 2, NULL, '2026-11-25T12:00:00Z', '5', NULL, NULL, 'Current.Import', NULL, NULL, 'A', 'MeterValues', '2026-11-25T12:00:02Z'),
                ('CP-1', 1, 7, '2026-11-25T12:01:00Z', '1010', NULL, NULL, NULL, NULL, NULL, NULL, 'MeterValues', '2026-11-25T12:01:01Z'),
                ('CP-1', 1, 7, '2026-11-25T12:00:00Z', '7400', NULL, NULL, 'Power.Active.Import', NULL, NULL, 'W', 'MeterValues', '2026-11-25T12:00:01Z'),
                ('CP-1', 1, 7, '2026-11-25T12:01:30Z', '1015', NULL, NULL, NULL, NULL, NULL, 'Wh', 'StopTransaction', '2026-11-25T12:01:31Z')
                """, logger: TestDatabase.logger)
            func values(orderedBy order: String) async throws -> [String] {
                var found: [String] = []
                let rows = try await client.query(PostgresQuery(unsafeSQL: """
                    SELECT concat_ws('|', charge_point_id, connector_id, coalesce(transaction_id::text, '-'), sampled_at, value,
                        coalesce(context, '-'), coalesce(format, '-'), coalesce(measurand, '-'), coalesce(phase, '-'),
                        coalesce(location, '-'), coalesce(unit, '-'), source, received_at)
                    FROM meter_values ORDER BY \(order)
                    """), logger: TestDatabase.logger)
                for try await row in rows.decode(String.self) { found.append(row) }
                return found
            }
            // Stored order, with the values of one reading together (as they arrived, in one message).
            let before = try await values(orderedBy: "(charge_point_id, connector_id, transaction_id, sampled_at, source, received_at), id")
            #expect(before.count == 6)
            try await MigrationRunner().run(on: client, logger: TestDatabase.logger)
            #expect(try await values(orderedBy: "(charge_point_id, connector_id, transaction_id, sampled_at, source, received_at), reading_id, sample_index") == before)
            var readings = -1
            for try await n in try await client.query("SELECT count(*)::int FROM meter_readings", logger: TestDatabase.logger).decode(Int.self) {
                readings = n
            }
            #expect(readings == 4)
        }
    }

    /// Migration 0010 moves a reading's unique key from an md5 PostgreSQL computed to a hash the
    /// server sends: both must agree, so that a reading stored before the upgrade and resent after
    /// it is still stored once, whatever the key order and escapes of its JSON.
    @Test func aReadingStoredBeforeTheHashMigrationAndResentAfterItIsStoredOnce() async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        let sampledAt = Date(timeIntervalSince1970: 1_795_000_000.123)
        let samples = [
            MeterSample(sampledAt: sampledAt, value: "1000", context: "Sample.Periodic", format: "Raw",
                        measurand: "Energy.Active.Import.Register", phase: "L1", location: "Outlet", unit: "Wh"),
            MeterSample(sampledAt: sampledAt, value: "quote \" back \\ tab \t bell \u{07} é ✓ 𝄞 </", unit: "V"),
            MeterSample(sampledAt: sampledAt, value: ""),
        ]
        // As a charger might order the keys, and as migration 0009 stored it.
        let storedBefore = #"[{"measurand":"Energy.Active.Import.Register","phase":"L1","unit":"Wh","location":"Outlet","format":"Raw","context":"Sample.Periodic","value":"1000"},{"unit":"V","value":"quote \" back \\ tab \t bell \u0007 é ✓ 𝄞 </"},{"value":""}]"#
        try await TestDatabase.withClient(database) { client in
            try await MigrationRunner(migrations: Array(Migration.embedded.prefix(9))).run(on: client, logger: TestDatabase.logger)
            try await client.query("""
                INSERT INTO meter_readings (charge_point_id, connector_id, transaction_id, sampled_at, samples, source, received_at)
                VALUES ('CP-H', 1, 9, \(OCPP16DateTime.format(sampledAt))::timestamptz, \(storedBefore)::jsonb, 'MeterValues', now())
                """, logger: TestDatabase.logger)
            try await MigrationRunner().run(on: client, logger: TestDatabase.logger)

            let reading = try #require(MeterReading.group(samples).first)
            for try await (text, stored, computed) in try await client.query(
                "SELECT samples::text, samples_hash, meter_samples_hash(samples) FROM meter_readings", logger: TestDatabase.logger
            ).decode((String, Int64, Int64).self) {
                #expect(text == String(decoding: MeterReading.canonicalText(samples), as: UTF8.self))
                #expect(stored == reading.samplesHash)
                #expect(computed == reading.samplesHash)
            }
            let store = PostgresCentralSystemStore(client: client, logger: TestDatabase.logger)
            try await store.recordMeterValues(chargePointID: "CP-H", connectorID: 1, transactionID: 9, samples: samples, receivedAt: Date())
            // A different reading at the same time is a second row.
            try await store.recordMeterValues(chargePointID: "CP-H", connectorID: 1, transactionID: 9,
                                              samples: [MeterSample(sampledAt: sampledAt, value: "1001", unit: "Wh")], receivedAt: Date())
            var readings = -1
            for try await n in try await client.query("SELECT count(*)::int FROM meter_readings", logger: TestDatabase.logger).decode(Int.self) {
                readings = n
            }
            #expect(readings == 2)
        }
    }

    @Test func theSweeperRemovesRowsOfDeadNodesAndExpiredRows() async throws {
        try await TestServer.with { server in
            try await TestDatabase.withClient(server.database) { client in
                let repository = PostgresConnectionRepository(client: client, logger: TestDatabase.logger)
                let now = Date()
                // A node that crashed two minutes ago, with a connection it never removed.
                try await repository.register(NodeID(rawValue: "crashed"), hostname: "gone", at: now.addingTimeInterval(-120))
                try await repository.open(Self.record("CP-GHOST", node: "crashed", connectedAt: now.addingTimeInterval(-130)))
                // A live node's connection past its 24 h expiry.
                try await repository.open(Self.record("CP-OLD", node: server.running.nodeID.rawValue, connectedAt: now.addingTimeInterval(-90_000)))
                // A live node's current connection.
                try await repository.open(Self.record("CP-LIVE", node: server.running.nodeID.rawValue, connectedAt: now))

                let removed = try await repository.sweep(now: now, staleBefore: now.addingTimeInterval(-60))
                #expect(removed == 2)
                let left = try await repository.list(chargePointID: nil, limit: 10).map(\.chargePointID)
                #expect(left == ["CP-LIVE"])
            }
        }
    }

    @Test func aStartedNodeClosesSocketsWhoseRowsAnotherNodeTookOver() async throws {
        try await TestServer.with(configure: {
            $0.node = .init(heartbeatInterval: .milliseconds(200), sweepInterval: .milliseconds(400), deadNodeAfter: .seconds(60))
        }) { server in
            try await TestCharger.with(url: server.ocppURL + "/CP-MOVED") { charger in
                try await eventually("recorded") {
                    try await TestDatabase.withClient(server.database) { client in
                        try await !PostgresConnectionRepository(client: client, logger: TestDatabase.logger).list(chargePointID: "CP-MOVED", limit: 1).isEmpty
                    }
                }
                // The charger reconnected through another node: its row now names that node.
                try await TestDatabase.withClient(server.database) { client in
                    let repository = PostgresConnectionRepository(client: client, logger: TestDatabase.logger)
                    try await repository.register(NodeID(rawValue: "other"), hostname: "other", at: Date())
                    try await repository.open(Self.record("CP-MOVED", node: "other", connectedAt: Date()))
                }
                // This node's sweep (every 30 s by default; 1 s here) finds its socket superseded.
                _ = try await charger.waitUntilClosed(timeout: .seconds(15))
            }
        }
    }

    @Test func anUnreachableDatabaseIsRetriedAndNoChargerIsAccepted() async throws {
        let deadPort = try FreePort.find()
        let unreachable = DatabaseEndpoint(host: "127.0.0.1", port: deadPort, username: "nobody", password: "x", database: "none")
        var configuration = ChargepathConfiguration(
            dataDirectory: URL(fileURLWithPath: NSTemporaryDirectory()), ocppHost: "127.0.0.1", ocppPort: 0,
            apiHost: "127.0.0.1", apiPort: 0, apiToken: TestServer.token, databasePoolSize: 2,
            maximumStartupBackoff: .milliseconds(500), startupAttemptTimeout: .seconds(1)
        )
        configuration.nodeID = NodeID(rawValue: "unreachable-db")
        let logs = LogCapture()
        let listening = Mutex<ChargepathApp.Running?>(nil)
        let services = try ChargepathApp.makeServices(
            configuration: configuration, database: unreachable, apiToken: TestServer.token,
            logger: Logger(label: "test", factory: { _ in logs }),
            onRunning: { running in listening.withLock { $0 = running } }
        )
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: TestDatabase.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                do {
                    try await group.run()
                } catch is StartupAbandoned {
                    // Expected: shut down while still waiting for the database.
                }
            }
            defer { if ProcessInfo.processInfo.environment["TEST_PRINT_LOGS"] != nil { print(logs.messages.joined(separator: "\n")) } }
            try await eventually("the failure is logged with a retry") {
                logs.messages.contains { $0.contains("Could not migrate the database") && $0.contains("retrying") }
            }
            // The charger port is not open: nothing can connect that could not be recorded. (Asked
            // of the node, which reports once both of its listeners are bound, rather than by
            // connecting to a port found free earlier: under the parallel suite another test's
            // listener could take that port in between.)
            try await Task.sleep(for: .seconds(1))
            #expect(listening.withLock { $0 } == nil, "the charger listener must not open before the database is reached")
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    static func record(_ chargePoint: String, node: String, connectedAt: Date) -> ConnectionRecord {
        ConnectionRecord(
            connectionID: .random(), chargePointID: chargePoint, path: "/\(chargePoint)", query: [:], headers: [:],
            subprotocol: "ocpp1.6", remoteAddress: "127.0.0.1", nodeID: NodeID(rawValue: node),
            connectedAt: connectedAt, lastSeenAt: connectedAt, expiresAt: connectedAt.addingTimeInterval(86_400)
        )
    }
}
