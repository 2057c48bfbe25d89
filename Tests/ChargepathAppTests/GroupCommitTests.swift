import Chargepath
import ChargepathPostgres
import Foundation
import Logging
import OCPP16
import NIOPosix
import PostgresNIO
import Synchronization
import Testing

/// Group commit of MeterValues: many chargers' values in one statement and one commit, each charger
/// answered only after its own values are committed, and a bad item never costs the good ones.
@Suite(.timeLimit(.minutes(3))) struct GroupCommitTests {
    // MARK: - The batcher alone (no database)

    @Test func callersThatComeWhileAWriteRunsShareTheNextOne() async throws {
        let release = Latch(), releaseSecond = Latch()
        let written = Shared<[[Int]]>([])
        let batches = GroupCommit<Int, Void>(configuration: .init(maximumConcurrentWrites: 1)) { items, _ in
            if items == [0] { await release.wait() } else { await releaseSecond.wait() }
            written.withLock { $0.append(items) }
        }
        let answered = Shared(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await batches.submit(0); answered.withLock { $0 += 1 } }
            // On a failed expectation, let the blocked writes end, so the test fails instead of hanging.
            do {
                try await eventually(timeout: .seconds(60), "the first write runs") { batches.writingCount == 1 }
                for i in 1...20 {
                    group.addTask { try await batches.submit(i); answered.withLock { $0 += 1 } }
                }
                try await eventually(timeout: .seconds(60), "20 wait") { batches.pendingCount == 20 }
                #expect(answered.withLock { $0 } == 0)
                await release.open()
                // The 20 are written together, and none is answered before that write returns.
                try await eventually(timeout: .seconds(60), "the second write runs") { batches.pendingCount == 0 && answered.withLock { $0 } >= 1 }
                #expect(batches.writingCount == 1)
                #expect(answered.withLock { $0 } == 1)
                await releaseSecond.open()
            } catch {
                await release.open(); await releaseSecond.open()
                throw error
            }
            try await group.waitForAll()
        }
        #expect(answered.withLock { $0 } == 21)
        let batchesWritten = written.withLock { $0 }
        #expect(batchesWritten.count == 2)
        #expect(batchesWritten.last?.sorted() == Array(1...20))
        #expect(batches.statistics.largestBatch == 20)
        #expect(batches.writingCount == 0 && batches.pendingCount == 0)
    }

    @Test func aFailedBatchIsWrittenAgainItemByItem() async throws {
        let release = Latch()
        let committed = Shared<Set<Int>>([])
        let slotsOfWritesAlone = Shared<[Int?]>([])
        let batches = GroupCommit<Int, Void>(configuration: .init(maximumConcurrentWrites: 1)) { items, slot in
            if items == [0] { await release.wait() } else if items.count == 1 { slotsOfWritesAlone.withLock { $0.append(slot) } }
            if items.contains(13) { throw TestFailure("13 is refused") }
            committed.withLock { $0.formUnion(items) }
        }
        let results = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            group.addTask { ((try? await batches.submit(0)) != nil) ? (0, true) : (0, false) }
            do {
                try await eventually(timeout: .seconds(60), "the first write runs") { batches.writingCount == 1 }
                for i in 1...20 {
                    group.addTask { ((try? await batches.submit(i)) != nil) ? (i, true) : (i, false) }
                }
                try await eventually(timeout: .seconds(60), "20 wait") { batches.pendingCount == 20 }
            } catch {
                await release.open()
                throw error
            }
            await release.open()
            var results: [Int: Bool] = [:]
            for try await (i, ok) in group { results[i] = ok }
            return results
        }
        #expect(results.filter { !$0.value }.map(\.key) == [13])
        #expect(committed.withLock { $0 } == Set(0...20).subtracting([13]))
        #expect(batches.statistics.failedBatches == 1)
        // Written alone outside the slots (through the pool, in the store), not on a slot's connection.
        #expect(slotsOfWritesAlone.withLock { $0 } == Array(repeating: nil, count: 20))
    }

    /// Each running write holds a slot of its own (a slot can keep a connection of its own), and a
    /// batch that follows a write takes over its slot.
    @Test func writesAtOnceHoldDifferentSlotsAndTheNextBatchTakesOverAFreedOne() async throws {
        let releaseFirst = Latch(), releaseSecond = Latch()
        let slotOf = Shared<[Int: Int]>([:])  // a write's first item → its slot
        let batches = GroupCommit<Int, Void>(configuration: .init(maximumConcurrentWrites: 2)) { items, slot in
            slotOf.withLock { $0[items[0]] = slot ?? -1 }
            if items == [0] { await releaseFirst.wait() }
            if items == [1] { await releaseSecond.wait() }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await batches.submit(0) }
            do {
                try await eventually(timeout: .seconds(60), "the first write runs") { batches.writingCount == 1 }
                group.addTask { try await batches.submit(1) }
                try await eventually(timeout: .seconds(60), "the second write runs") { batches.writingCount == 2 }
                for i in 2...4 { group.addTask { try await batches.submit(i) } }
                try await eventually(timeout: .seconds(60), "3 wait") { batches.pendingCount == 3 }
                await releaseFirst.open()
                try await eventually(timeout: .seconds(60), "the batch of 3 is written") { batches.pendingCount == 0 && slotOf.withLock { $0.count } == 3 }
            } catch {
                await releaseFirst.open(); await releaseSecond.open()
                throw error
            }
            await releaseSecond.open()
            try await group.waitForAll()
        }
        let slots = slotOf.withLock { $0 }
        #expect(Set([slots[0], slots[1]]) == [0, 1])
        #expect(slots.count == 3 && slots.values.allSatisfy { $0 == 0 || $0 == 1 })
        let batchSlot = slots.first { $0.key > 1 }?.value
        #expect(batchSlot == slots[0])
        #expect(batches.writingCount == 0)
    }

    /// With `pendingForAnotherSlot`, a caller that finds a write running waits even when a slot is
    /// free, until that many wait: then they all go in a batch on the free slot, without waiting for
    /// the running write. (A second slot taken by every caller that found the first busy wrote
    /// batches of one or two at a moderate load, a statement each.)
    @Test func aFurtherSlotStartsOnlyOnceEnoughCallersWait() async throws {
        let releaseFirst = Latch(), releaseSecond = Latch()
        let written = Shared<[(items: [Int], slot: Int?)]>([])
        let batches = GroupCommit<Int, Void>(configuration: .init(maximumConcurrentWrites: 2, pendingForAnotherSlot: 4)) { items, slot in
            written.withLock { $0.append((items, slot)) }
            if items == [0] { await releaseFirst.wait() } else { await releaseSecond.wait() }
        }
        let answered = Shared(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await batches.submit(0); answered.withLock { $0 += 1 } }
            do {
                try await eventually(timeout: .seconds(60), "the first write runs") { batches.writingCount == 1 }
                for i in 1...3 { group.addTask { try await batches.submit(i); answered.withLock { $0 += 1 } } }
                try await eventually(timeout: .seconds(60), "3 wait") { batches.pendingCount == 3 }
                // Three wait and a slot is free: it stays free.
                try await Task.sleep(for: .milliseconds(50))
                #expect(batches.writingCount == 1 && batches.pendingCount == 3)
                group.addTask { try await batches.submit(4); answered.withLock { $0 += 1 } }
                // The fourth makes four: the four are written together on the other slot, while the
                // first write still runs.
                try await eventually(timeout: .seconds(60), "the second write runs") { batches.writingCount == 2 && batches.pendingCount == 0 }
                #expect(answered.withLock { $0 } == 0)
                await releaseSecond.open()
                try await eventually(timeout: .seconds(60), "the four are answered") { answered.withLock { $0 } == 4 }
                #expect(batches.writingCount == 1)
                await releaseFirst.open()
            } catch {
                await releaseFirst.open(); await releaseSecond.open()
                throw error
            }
            try await group.waitForAll()
        }
        let writes = written.withLock { $0 }
        #expect(writes.count == 2)
        #expect(writes.first?.items == [0])
        #expect(writes.last?.items.sorted() == [1, 2, 3, 4])
        #expect(Set(writes.map(\.slot)) == [0, 1])
        #expect(batches.writingCount == 0 && batches.pendingCount == 0)
    }

    /// A batch that answers each item (the workflow wake-up probe is one): each caller gets the
    /// answer to its own item, whether it led the batch, waited in it, or wrote alone after a failure.
    @Test func eachCallerGetsTheResultForItsOwnItem() async throws {
        let release = Latch()
        let batches = GroupCommit<Int, String>(configuration: .init(maximumConcurrentWrites: 1)) { items, _ in
            if items == [0] { await release.wait() }
            if items.count > 1, items.contains(7) { throw TestFailure("a batch with 7 fails") }
            return items.map { "answer to \($0)" }
        }
        let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            group.addTask { (0, try await batches.submit(0)) }
            do {
                try await eventually(timeout: .seconds(60), "the first write runs") { batches.writingCount == 1 }
                for i in 1...12 { group.addTask { (i, try await batches.submit(i)) } }
                try await eventually(timeout: .seconds(60), "12 wait") { batches.pendingCount == 12 }
            } catch {
                await release.open()
                throw error
            }
            await release.open()
            var answers: [Int: String] = [:]
            for try await (i, answer) in group { answers[i] = answer }
            return answers
        }
        #expect(answers == Dictionary(uniqueKeysWithValues: (0...12).map { ($0, "answer to \($0)") }))
        #expect(batches.statistics.failedBatches == 1)
    }

    @Test func aFullQueueMakesCallersWriteAlone() async throws {
        let release = Latch()
        let batches = GroupCommit<Int, Void>(configuration: .init(maximumConcurrentWrites: 1, maximumPending: 3)) { items, _ in
            if items == [0] { await release.wait() }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await batches.submit(0) }
            do {
                try await eventually(timeout: .seconds(60), "the first write runs") { batches.writingCount == 1 }
                for i in 1...3 { group.addTask { try await batches.submit(i) } }
                try await eventually(timeout: .seconds(60), "3 wait") { batches.pendingCount == 3 }
                // The queue is full: these do not wait for the blocked write.
                for i in 4...6 { try await batches.submit(i) }
                #expect(batches.pendingCount == 3)
                #expect(batches.statistics.overflowed == 3)
            } catch {
                await release.open()
                throw error
            }
            await release.open()
            try await group.waitForAll()
        }
    }

    // MARK: - Against PostgreSQL

    @Test func manyChargersAtOnceLoseNoValueAndEachIsCommittedBeforeItsAnswer() async throws {
        try await Self.withStore { store, client in
            let chargers = 40, messages = 6
            try await withThrowingTaskGroup(of: Void.self) { group in
                for c in 0..<chargers {
                    group.addTask {
                        let id = "CP-\(c)"
                        for m in 0..<messages {
                            try await store.recordMeterValues(
                                chargePointID: id, connectorID: 1 + c % 2, transactionID: c % 3 == 0 ? nil : 1000 + c,
                                samples: Self.samples(message: m), receivedAt: Date()
                            )
                            // Answered: so it is committed and visible to any other connection.
                            let stored = try await Self.count(client, "WHERE charge_point_id = \(id)")
                            #expect(stored == (m + 1) * 5)
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await Self.count(client, "") == chargers * messages * 5)
            #expect(try await Self.count(client, "WHERE transaction_id IS NULL") == 14 * messages * 5)
            #expect(try await Self.count(client, "WHERE measurand = 'SoC' AND unit = 'Percent' AND context IS NULL") == chargers * messages)
            // Exactly the rows one message at a time wrote: the same values, times to the millisecond.
            let rows = try await client.query(
                """
                SELECT connector_id, transaction_id, value, measurand, phase, location, unit, format, source,
                    to_char(sampled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS')
                FROM meter_values WHERE charge_point_id = 'CP-7' AND measurand = 'Voltage' ORDER BY sampled_at
                """,
                logger: TestDatabase.logger
            )
            var voltages: [String] = []
            for try await (connector, transaction, value, measurand, phase, location, unit, format, source, at)
                in rows.decode((Int, Int?, String, String?, String?, String?, String?, String?, String, String).self) {
                #expect(connector == 2 && transaction == 1007 && measurand == "Voltage" && phase == "L1")
                #expect(location == "Outlet" && unit == "V" && format == "Raw" && source == "MeterValues")
                voltages.append("\(value)@\(at)")
            }
            #expect(voltages == (0..<messages).map { "230.\($0)@2026-11-25T12:00:\(String(format: "%02d", $0)).123" })
        }
    }

    /// The database closed a slot's pinned connection (a restart, a DBA's pg_terminate_backend): the
    /// message that finds it closed is still stored (written alone through the pool if need be), and
    /// the slot opens a new connection for the next batches.
    @Test func aSlotWhosePinnedConnectionWasClosedStoresEveryMessageAndConnectsAgain() async throws {
        try await Self.withStore { store, client in
            func record(_ m: Int) async throws {
                try await store.recordMeterValues(chargePointID: "CP-P", connectorID: 1, transactionID: 7, samples: Self.samples(message: m), receivedAt: Date())
            }
            try await record(0)
            let before = try await Self.pinnedBackends(client)
            #expect(before.count == 1)
            for try await _ in try await client.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = \(Self.pinnedName)", logger: TestDatabase.logger
            ) {}
            try await eventually(timeout: .seconds(60), "the pinned backend is gone") { try await Self.pinnedBackends(client).isEmpty }
            for m in 1...5 { try await record(m) }
            #expect(try await Self.count(client, "WHERE charge_point_id = 'CP-P'") == 6 * 5)
            let after = try await Self.pinnedBackends(client)
            #expect(after.count == 1 && after != before)
            #expect(store.meterValueWrites.writingCount == 0)
        }
    }

    /// A slot keeps its connection while its statements succeed, and replaces it after one fails
    /// (a statement whose preparation failed would otherwise stay failed on that connection).
    @Test func aPinnedConnectionIsKeptWhileItsStatementsSucceedAndReplacedAfterOneFails() async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        let pinned = try PinnedConnections(endpoint: database, count: 1, logger: TestDatabase.logger)
        func backend() async throws -> Int {
            try await pinned.withConnection(slot: 0) { connection in
                for try await pid in try await connection.query("SELECT pg_backend_pid()", logger: TestDatabase.logger).decode(Int.self) { return pid }
                return -1
            }
        }
        do {
            let first = try await backend()
            #expect(try await backend() == first)
            await #expect(throws: PSQLError.self) {
                try await pinned.withConnection(slot: 0) { connection in
                    for try await _ in try await connection.query("SELECT 1/0", logger: TestDatabase.logger) {}
                }
            }
            let next = try await backend()
            #expect(next != first && next > 0)
            #expect(try await backend() == next)
        } catch {
            await pinned.close()
            throw error
        }
        await pinned.close()
        await #expect(throws: PinnedConnections.ShutDown.self) { try await backend() }
    }

    @Test func noChargerIsAnsweredBeforeTheCommitOfItsBatch() async throws {
        try await Self.withStore { store, client in
            let batches = store.meterValueWrites
            let answered = Shared(0)
            // Other transactions hold (uncommitted) a row with the same key as one value of CP-B1, of
            // CP-B2 and of CP-5: an INSERT of that value waits until they end.
            let first = try await Self.holdRows(client: client, chargePoints: ["CP-B1"])
            let second = try await Self.holdRows(client: client, chargePoints: ["CP-B2", "CP-5"])
            try await withThrowingTaskGroup(of: Void.self) { group in
                func submit(_ id: String) {
                    group.addTask {
                        try await store.recordMeterValues(
                            chargePointID: id, connectorID: 1, transactionID: 1, samples: Self.samples(message: 0), receivedAt: Date()
                        )
                        answered.withLock { $0 += 1 }
                    }
                }
                submit("CP-B1")
                do {
                    try await eventually(timeout: .seconds(60), "CP-B1 writes") { batches.writingCount == 1 }
                    submit("CP-B2")
                    try await eventually(timeout: .seconds(60), "CP-B2 writes") { batches.writingCount == 2 }
                    for c in 0..<38 { submit("CP-\(c)") }
                    try await eventually(timeout: .seconds(60), "38 queued") { batches.pendingCount == 38 }
                    #expect(answered.withLock { $0 } == 0)
                    // CP-B1's write goes through; the 38 follow in one statement, which waits for CP-5's row.
                    try await first.release()
                    try await eventually(timeout: .seconds(60), "the batch of 38 waits in PostgreSQL") {
                        let waiting = try await Self.waitingOnLocks(client)
                        return batches.pendingCount == 0 && waiting == 2 && answered.withLock { $0 } >= 1
                    }
                    #expect(answered.withLock { $0 } == 1)
                    #expect(try await Self.count(client, "WHERE charge_point_id <> 'CP-B2'") == 5)
                } catch {
                    try await first.release(); try await second.release()
                    throw error
                }
                try await second.release()
                try await group.waitForAll()
            }
            #expect(answered.withLock { $0 } == 40)
            #expect(try await Self.count(client, "") == 40 * 5)
            #expect(batches.statistics.largestBatch == 38)
        }
    }

    @Test func aBadMessageInABatchCostsOnlyItsOwnCharger() async throws {
        try await Self.withStore { store, client in
            let batches = store.meterValueWrites
            let locker = try await Self.lockMeterValues(client: client)
            let results = try await withThrowingTaskGroup(of: (String, Bool).self) { group in
                func submit(_ id: String, connector: Int) {
                    group.addTask {
                        do {
                            try await store.recordMeterValues(
                                chargePointID: id, connectorID: connector, transactionID: nil, samples: Self.samples(message: 0), receivedAt: Date()
                            )
                            return (id, true)
                        } catch {
                            return (id, false)
                        }
                    }
                }
                // Two good ones hold both write slots (blocked by the lock); the rest queue into one batch.
                submit("CP-A", connector: 1)
                submit("CP-B", connector: 1)
                do {
                    try await eventually(timeout: .seconds(60), "both slots busy") { batches.writingCount == 2 }
                    for c in 0..<10 { submit("CP-\(c)", connector: 1) }
                    // connector_id is an integer column: this one fails its whole statement.
                    submit("CP-BAD", connector: Int(Int32.max) + 1)
                    try await eventually(timeout: .seconds(60), "11 queued") { batches.pendingCount == 11 }
                } catch {
                    try await locker.release()
                    throw error
                }
                try await locker.release()
                var results: [String: Bool] = [:]
                for try await (id, ok) in group { results[id] = ok }
                return results
            }
            #expect(results.count == 13)
            #expect(results.filter { !$0.value }.map(\.key) == ["CP-BAD"])
            #expect(try await Self.count(client, "") == 12 * 5)
            #expect(try await Self.count(client, "WHERE charge_point_id = 'CP-BAD'") == 0)
            #expect(batches.statistics.failedBatches == 1)
        }
    }

    /// StatusNotifications share statements too: every charger's history row, the newest status per
    /// connector (not the last to arrive), NULL kept apart from "", and one that cannot be stored
    /// (a charge point never booted) failing alone.
    @Test func statusNotificationsOfManyChargersShareAStatementAndABadOneFailsAlone() async throws {
        try await Self.withStore { store, client in
            let base = Date(timeIntervalSince1970: 1_795_608_000)
            for id in ["CP-S0", "CP-S1", "CP-S2"] {
                _ = try await store.recordBoot(chargePointID: id, BootNotificationRequest(chargePointVendor: "V", chargePointModel: "M"), at: base)
            }
            func status(_ id: String, _ status: ChargePointStatus, at seconds: Double?, info: String? = nil) -> (String, StatusNotificationRequest) {
                (id, StatusNotificationRequest(connectorId: 1, errorCode: .noError, info: info, status: status,
                                               timestamp: seconds.map { base.addingTimeInterval($0) }))
            }
            let batches = store.statusWrites
            /// Submits `first`, which holds the slot while `table` is locked, then `queued` in order
            /// (one batch once the lock goes); returns which of `queued` were stored.
            func submitBehindALock(_ queued: [(String, StatusNotificationRequest)]) async throws -> [Int: Bool] {
                let locker = try await Self.lock(client: client, table: "connector_status")
                return try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
                    func submit(_ index: Int, _ item: (String, StatusNotificationRequest)) {
                        group.addTask {
                            do {
                                try await store.recordStatus(chargePointID: item.0, item.1, receivedAt: Date())
                                return (index, true)
                            } catch {
                                return (index, false)
                            }
                        }
                    }
                    do {
                        submit(-1, status("CP-S0", .available, at: nil))
                        try await eventually(timeout: .seconds(60), "the slot busy") { batches.writingCount == 1 }
                        for (index, item) in queued.enumerated() {
                            submit(index, item)
                            try await eventually(timeout: .seconds(60), "\(index + 1) queued") { batches.pendingCount == index + 1 }
                        }
                    } catch {
                        try await locker.release()
                        throw error
                    }
                    try await locker.release()
                    var results: [Int: Bool] = [:]
                    for try await (index, ok) in group { results[index] = ok }
                    return results
                }
            }
            let stored = try await submitBehindALock([
                status("CP-S1", .charging, at: 10, info: ""),
                status("CP-S1", .finishing, at: 20),
                status("CP-S2", .faulted, at: 30, info: "ground fault"),
                status("CP-S2", .available, at: 5),
            ])
            #expect(stored.values.allSatisfy { $0 } && stored.count == 5)
            #expect(batches.statistics.largestBatch == 4 && batches.statistics.failedBatches == 0)
            // A batch with a status that cannot be stored is written again one by one: only that one fails.
            let retried = try await submitBehindALock([status("CP-NEVER-BOOTED", .available, at: 10), status("CP-S1", .available, at: 40)])
            #expect(retried.filter { !$0.value }.map(\.key) == [0], "only the never-booted charger's status fails: \(retried)")
            #expect(batches.statistics.failedBatches == 1)
            func rows(_ sql: PostgresQuery) async throws -> [String] {
                var out: [String] = []
                for try await text in try await client.query(sql, logger: TestDatabase.logger).decode(String.self) { out.append(text) }
                return out
            }
            #expect(try await rows("""
                SELECT charge_point_id || ' ' || status || ' ' || coalesce(info, 'NULL') FROM status_history ORDER BY id
                """) == ["CP-S0 Available NULL", "CP-S1 Charging ", "CP-S1 Finishing NULL", "CP-S2 Faulted ground fault", "CP-S2 Available NULL",
                         "CP-S0 Available NULL", "CP-S1 Available NULL"])
            #expect(try await rows("""
                SELECT charge_point_id || ' ' || status || ' ' || coalesce(info, 'NULL') || ' ' || coalesce(extract(epoch FROM status_at)::bigint::text, 'NULL')
                FROM connector_status ORDER BY charge_point_id
                """) == ["CP-S0 Available NULL NULL", "CP-S1 Available NULL 1795608040", "CP-S2 Faulted ground fault 1795608030"])
        }
    }

    // MARK: - Helpers

    static func samples(message m: Int) -> [MeterSample] {
        let at = Date(timeIntervalSince1970: 1_795_608_000 + Double(m) + 0.123) // 2026-11-25T12:00:mm.123Z
        return [
            MeterSample(sampledAt: at, value: "\(1000 + m)", context: "Sample.Periodic", measurand: "Energy.Active.Import.Register", unit: "Wh"),
            MeterSample(sampledAt: at, value: "7400", measurand: "Power.Active.Import", unit: "W"),
            MeterSample(sampledAt: at, value: "32", measurand: "Current.Import", phase: "L1", unit: "A"),
            MeterSample(sampledAt: at, value: "230.\(m)", format: "Raw", measurand: "Voltage", phase: "L1", location: "Outlet", unit: "V"),
            MeterSample(sampledAt: at, value: "\(40 + m)", measurand: "SoC", unit: "Percent"),
        ]
    }

    static func count(_ client: PostgresClient, _ condition: PostgresQuery) async throws -> Int {
        var query: PostgresQuery = "SELECT count(*)::int FROM meter_values "
        query.sql += condition.sql
        query.binds = condition.binds
        for try await n in try await client.query(query, logger: TestDatabase.logger).decode(Int.self) { return n }
        return -1
    }

    /// A fresh migrated database, a store on it, and a client with room for checks while the
    /// store's writes wait.
    /// Its MeterValues batches write in two slots, each on its pinned connection (`pinnedName`).
    static func withStore(_ body: @Sendable (PostgresCentralSystemStore, PostgresClient) async throws -> Void) async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        let client = PostgresClient(configuration: database.clientConfiguration(maximumConnections: 8), backgroundLogger: TestDatabase.logger)
        let pinned = try PinnedConnections(endpoint: database, count: 2, options: .init(applicationName: pinnedName), logger: TestDatabase.logger)
        let statusPinned = try PinnedConnections(endpoint: database, count: 1, options: .init(applicationName: "status test"), logger: TestDatabase.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            try await MigrationRunner().run(on: client, logger: TestDatabase.logger)
            let store = PostgresCentralSystemStore(
                client: client, logger: TestDatabase.logger, meterValueConnections: pinned, meterValueSlots: 2,
                // A second write starts at once: the tests below hold both slots with one item each.
                meterValuesForAnotherSlot: 1, statusConnections: statusPinned
            )
            do {
                try await body(store, client)
            } catch {
                await pinned.close()
                await statusPinned.close()
                throw error
            }
            await pinned.close()
            await statusPinned.close()
        }
    }

    static let pinnedName = "group commit test"

    /// The backends of the store's pinned connections.
    static func pinnedBackends(_ client: PostgresClient) async throws -> [Int] {
        let rows = try await client.query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = \(pinnedName) ORDER BY pid",
            logger: TestDatabase.logger
        )
        var pids: [Int] = []
        for try await pid in rows.decode(Int.self) { pids.append(pid) }
        return pids
    }

    /// Holds `LOCK TABLE meter_readings IN EXCLUSIVE MODE` in an open transaction (reads go on, every
    /// INSERT waits) until `release()`.
    static func lockMeterValues(client: PostgresClient) async throws -> TableLock {
        try await lock(client: client, table: "meter_readings")
    }

    /// Holds `table` locked against writes, in a transaction left open until `release()`.
    static func lock(client: PostgresClient, table: String) async throws -> TableLock {
        let lock = TableLock()
        let locked = Latch()
        Task {
            try await client.withConnection { connection in
                try await connection.query("BEGIN", logger: TestDatabase.logger)
                try await connection.query(PostgresQuery(unsafeSQL: "LOCK TABLE \(table) IN EXCLUSIVE MODE"), logger: TestDatabase.logger)
                await locked.open()
                await lock.released.wait()
                try await connection.query("COMMIT", logger: TestDatabase.logger)
            }
        }
        await locked.wait()
        return lock
    }

    /// Inserts, in a transaction left open until `release()`, the reading of `samples(message: 0)`
    /// (connector 1, transaction 1) for each charge point: the same key as that message's.
    static func holdRows(client: PostgresClient, chargePoints: [String]) async throws -> TableLock {
        let lock = TableLock()
        let held = Latch()
        let reading = MeterReading.group(samples(message: 0))[0]
        Task {
            try await client.withConnection { connection in
                try await connection.query("BEGIN", logger: TestDatabase.logger)
                for id in chargePoints {
                    try await connection.query(
                        """
                        INSERT INTO meter_readings (charge_point_id, connector_id, transaction_id, sampled_at, samples, source, received_at, samples_hash)
                        VALUES (\(id), 1, 1, '2026-11-25T12:00:00.123Z'::timestamptz, \(reading.samplesJSON)::jsonb, 'MeterValues', now(), \(reading.samplesHash))
                        """,
                        logger: TestDatabase.logger
                    )
                }
                await held.open()
                await lock.released.wait()
                try await connection.query("COMMIT", logger: TestDatabase.logger)
            }
        }
        await held.wait()
        return lock
    }

    /// Statements of this database waiting for a lock now.
    static func waitingOnLocks(_ client: PostgresClient) async throws -> Int {
        let rows = try await client.query(
            "SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            logger: TestDatabase.logger
        )
        for try await n in rows.decode(Int.self) { return n }
        return -1
    }

    final class TableLock: Sendable {
        let released = Latch()
        func release() async throws { await released.open() }
    }
}

/// A value behind a lock, shared by reference.
final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout sending Value) -> sending R) -> R { value.withLock(body) }
}

/// Waits until opened (once, for every waiter).
actor Latch {
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func open() {
        isOpen = true
        for waiter in waiters { waiter.resume() }
        waiters = []
    }
}
