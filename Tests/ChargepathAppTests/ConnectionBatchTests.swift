import Chargepath
import ChargepathPostgres
import Foundation
import OCPP16
import OCPPCore
import PostgresNIO
import Testing

/// Chargers that connect together (a boot storm) are looked up and recorded many in one statement;
/// each still gets its own credentials and learns which connection it replaced, and nothing is
/// lost when a batch holds one charger twice.
@Suite(.timeLimit(.minutes(3))) struct ConnectionBatchTests {
    static func record(_ chargePointID: String, node: NodeID, index: Int) -> ConnectionRecord {
        let now = Date()
        return ConnectionRecord(
            connectionID: .random(), chargePointID: chargePointID, path: "/ocpp/batch/\(chargePointID)",
            query: ["i": String(index), "slash": "a/b"], headers: ["user-agent": "batch \(index)", "x-quote": "say \"hi\""],
            subprotocol: index.isMultiple(of: 2) ? "ocpp1.6" : nil, remoteAddress: index.isMultiple(of: 3) ? nil : "127.0.0.\(index % 250 + 1)",
            nodeID: node, connectedAt: now, lastSeenAt: now, expiresAt: now.addingTimeInterval(600)
        )
    }

    @Test func concurrentOpensAreRecordedWithWhatEachReplaced() async throws {
        try await Self.withDatabase("open test") { client, pinned in
            let repository = PostgresConnectionRepository(client: client, logger: TestDatabase.logger, openConnections: pinned)
            let node = NodeID(rawValue: "batch-node")
            try await repository.register(node, hostname: "test", at: Date())
            let ids = (0..<200).map { String(format: "BATCH-%03d", $0) }

            // First wave: 200 new chargers at once; nobody replaced anybody.
            let first = (0..<200).map { Self.record(ids[$0], node: node, index: $0) }
            let firstReplaced = try await Self.openAll(first, repository)
            #expect(firstReplaced.allSatisfy { $0 == nil })

            // Second wave: the same chargers again, plus the first 20 twice in the same wave.
            let second = (0..<200).map { Self.record(ids[$0], node: node, index: 1_000 + $0) }
            let twice = (0..<20).map { Self.record(ids[$0], node: node, index: 2_000 + $0) }
            let replaced = try await Self.openAll(second + twice, repository)
            for i in 20..<200 {
                #expect(replaced[i] == first[i].connectionID, "\(ids[i]) replaced its first connection")
            }
            // A charger opened twice at once: one of its two opens replaced the first connection,
            // the other replaced that one, and the row holds whichever came last.
            for i in 0..<20 {
                let a = replaced[i], b = replaced[200 + i]
                let pair: Set<ConnectionID?> = [a, b]
                #expect(pair.contains(first[i].connectionID), "\(ids[i])")
                #expect(pair.contains(second[i].connectionID) || pair.contains(twice[i].connectionID), "\(ids[i])")
            }

            // Every charger has exactly one row, its newest connection, with its own data.
            let rows = try await repository.list(chargePointID: nil, limit: 1_000)
            #expect(rows.count == 200)
            let byCharger = Dictionary(uniqueKeysWithValues: rows.map { ($0.chargePointID, $0) })
            for i in 20..<200 {
                let row = try #require(byCharger[ids[i]])
                #expect(row.connectionID == second[i].connectionID)
                #expect(row.path == second[i].path && row.query == second[i].query && row.headers == second[i].headers)
                #expect(row.subprotocol == second[i].subprotocol && row.remoteAddress == second[i].remoteAddress)
            }
            for i in 0..<20 {
                let row = try #require(byCharger[ids[i]])
                #expect([second[i].connectionID, twice[i].connectionID].contains(row.connectionID))
                #expect(!replaced.contains(row.connectionID), "the newest connection was replaced by nobody")
            }
            // They went in batches, and the batch that held a charger twice was written one by one.
            #expect(repository.opens.statistics.batches > 0)
        }
    }

    /// Admission's lookups, asked together, each get their own charger's credentials (or none).
    @Test func concurrentCredentialLookupsGetTheirOwnCharger() async throws {
        try await Self.withDatabase("lookup test") { client, pinned in
            let store = PostgresManagementStore(client: client, logger: TestDatabase.logger, lookupConnections: pinned)
            let statuses: [RegistrationStatus] = [.accepted, .pending, .rejected]
            for i in 0..<60 {
                let password: ChargePointRegistration.PasswordChange = i.isMultiple(of: 2) ? .set(hash: "hash-\(i)") : .remove
                _ = try await store.putChargePoint(
                    "CRED-\(i)", ChargePointRegistration(description: nil, registrationStatus: statuses[i % 3], password: password), at: Date()
                )
            }
            // 60 registered and 60 unknown, asked all at once, three times over.
            let asked = (0..<360).map { "CRED-\($0 % 120)" }
            let answers = try await withThrowingTaskGroup(of: (Int, ChargePointCredentials?).self) { lookups in
                for (i, id) in asked.enumerated() { lookups.addTask { (i, try await store.credentials(of: id)) } }
                var result = [ChargePointCredentials?](repeating: nil, count: asked.count)
                for try await (i, credentials) in lookups { result[i] = credentials }
                return result
            }
            for (i, answer) in answers.enumerated() {
                let n = i % 120
                if n < 60 {
                    #expect(answer == ChargePointCredentials(
                        registered: true, passwordHash: n.isMultiple(of: 2) ? "hash-\(n)" : nil, registrationStatus: statuses[n % 3]
                    ), "CRED-\(n)")
                } else {
                    #expect(answer == nil, "CRED-\(n) is unknown")
                }
            }
            #expect(store.credentialLookups.statistics.batches > 0, "the lookups went in batches")
        }
    }

    /// Boots that come together are written many in one statement: each charger's row holds its
    /// own data, each boot gets its charger's registration status, and only Accepted boots start a
    /// Provisioning, with the configuration for that charger (its own value over the one for all).
    @Test func concurrentBootsAreRecordedEachWithItsStatusAndProvisioning() async throws {
        try await Self.withDatabase("boot test") { client, pinned in
            let store = PostgresCentralSystemStore(client: client, logger: TestDatabase.logger, bootConnections: pinned)
            let management = PostgresManagementStore(client: client, logger: TestDatabase.logger)
            let statuses: [RegistrationStatus] = [.accepted, .pending, .rejected]
            for i in 0..<90 where i % 3 != 0 {  // a third unknown (Accepted by default), the others set
                _ = try await management.putChargePoint(
                    "BOOT-\(i)", ChargePointRegistration(description: nil, registrationStatus: statuses[i % 3], password: .keep), at: Date()
                )
            }
            try await client.query("""
                INSERT INTO charger_configuration (scope, key, value, updated_at) VALUES
                ('*', 'HeartbeatInterval', '300', now()), ('*', 'MeterValueSampleInterval', '60', now()),
                ('BOOT-3', 'HeartbeatInterval', '120', now())
                """, logger: TestDatabase.logger)
            // 90 chargers boot at once; then ten of them boot twice in the same moment.
            @Sendable func bootAll(_ chargers: [Int]) async throws -> [RegistrationStatus] {
                try await withThrowingTaskGroup(of: (Int, RegistrationStatus).self) { booting in
                    for (k, i) in chargers.enumerated() {
                        let request = BootNotificationRequest(
                            chargePointVendor: "Vendor \(i)", chargePointModel: "Model \"\(i)\"",
                            chargePointSerialNumber: i.isMultiple(of: 2) ? "SN-\(i)" : nil, firmwareVersion: i.isMultiple(of: 5) ? "fw/\(i)" : nil
                        )
                        booting.addTask { (k, try await store.recordBoot(chargePointID: "BOOT-\(i)", request, at: Date())) }
                    }
                    var result = [RegistrationStatus](repeating: .accepted, count: chargers.count)
                    for try await (k, status) in booting { result[k] = status }
                    return result
                }
            }
            let first = Array(0..<90), twice = (0..<10).flatMap { [$0 * 9, $0 * 9] }
            let firstAnswers = try await bootAll(first)
            #expect(store.bootWrites.statistics.batches > 0, "the boots went in batches")
            let twiceAnswers = try await bootAll(twice)
            let boots = first + twice, answers = firstAnswers + twiceAnswers
            for (k, i) in boots.enumerated() {
                #expect(answers[k] == (i % 3 == 0 ? .accepted : statuses[i % 3]), "BOOT-\(i)")
            }

            var rows: [String: (String, String, String?, String?)] = [:]
            for try await (id, vendor, model, serial, firmware) in try await client.query(
                "SELECT charge_point_id, vendor, model, serial_number, firmware_version FROM charge_points WHERE charge_point_id LIKE 'BOOT-%'",
                logger: TestDatabase.logger
            ).decode((String, String, String, String?, String?).self) {
                rows[id] = (vendor, model, serial, firmware)
            }
            #expect(rows.count == 90)
            for i in 0..<90 {
                let row = try #require(rows["BOOT-\(i)"])
                #expect(row.0 == "Vendor \(i)" && row.1 == "Model \"\(i)\"", "BOOT-\(i)")
                #expect(row.2 == (i.isMultiple(of: 2) ? "SN-\(i)" : nil) && row.3 == (i.isMultiple(of: 5) ? "fw/\(i)" : nil), "BOOT-\(i)")
            }
            // One Provisioning start per Accepted boot (the unknown third), none for Pending or Rejected.
            var provisioned: [String: String] = [:]
            for try await (cp, configuration) in try await client.query(
                "SELECT input->>'chargePointId', (input->'configuration')::text FROM workflow_starts WHERE workflow = 'Provisioning'",
                logger: TestDatabase.logger
            ).decode((String, String).self) {
                provisioned[cp, default: ""] += configuration
            }
            let accepted = Set(boots.filter { $0 % 3 == 0 }.map { "BOOT-\($0)" })
            #expect(Set(provisioned.keys) == accepted)
            let own = try JSONValue.parse(try #require(provisioned["BOOT-3"]))
            #expect(own == [["key": "HeartbeatInterval", "value": "120"], ["key": "MeterValueSampleInterval", "value": "60"]])
            let shared = try JSONValue.parse(try #require(provisioned["BOOT-6"]))
            #expect(shared == [["key": "HeartbeatInterval", "value": "300"], ["key": "MeterValueSampleInterval", "value": "60"]])
        }
    }

    /// A fresh migrated database, a client on it and one pinned connection (`name`), closed after `body`.
    static func withDatabase(_ name: String, _ body: @Sendable (PostgresClient, PinnedConnections) async throws -> Void) async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        try await TestSlots.withSlot {
            let client = PostgresClient(configuration: database.clientConfiguration(maximumConnections: 4), backgroundLogger: TestDatabase.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                try await MigrationRunner().run(on: client, logger: TestDatabase.logger)
                let pinned = try PinnedConnections(endpoint: database, count: 1, options: .init(applicationName: name), logger: TestDatabase.logger)
                do {
                    try await body(client, pinned)
                } catch {
                    await pinned.close()
                    throw error
                }
                await pinned.close()
            }
        }
    }

    /// Opens every record concurrently; their replaced connections, in the records' order.
    static func openAll(_ records: [ConnectionRecord], _ repository: PostgresConnectionRepository) async throws -> [ConnectionID?] {
        try await withThrowingTaskGroup(of: (Int, ConnectionID?).self) { group in
            for (i, record) in records.enumerated() {
                group.addTask { (i, try await repository.open(record)) }
            }
            var result = [ConnectionID?](repeating: nil, count: records.count)
            for try await (i, replaced) in group { result[i] = replaced }
            return result
        }
    }
}
