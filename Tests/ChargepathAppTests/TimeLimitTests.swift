@testable import Chargepath
import Synchronization
import Testing

/// `withTimeLimit` guards every charger CALL and every database round of the background services.
@Suite struct TimeLimitTests {
    @Test func anOperationThatFinishesInTimeGivesItsResultAndLeavesNoDeadline() async throws {
        let value = try await withTimeLimit(.seconds(5)) { 42 }
        #expect(value == 42)
        let error = await #expect(throws: ErrorInOperation.self) { try await withTimeLimit(.seconds(5)) { throw ErrorInOperation() } }
        #expect(error != nil)
        // Deadlines of finished calls are gone (others' may still be pending in a parallel test).
        let sweeper = DeadlineSweeper(granularity: .milliseconds(10))
        let id = sweeper.add(deadline: .now + .seconds(60)) {}
        #expect(sweeper.pendingCount == 1)
        sweeper.remove(id)
        #expect(sweeper.pendingCount == 0)
    }

    /// The point of the limit: it returns even when the operation ignores cancellation (a wait
    /// inside a driver), and the operation is told to stop.
    @Test func theLimitReturnsEvenWhenTheOperationIgnoresCancellation() async throws {
        let cancelled = Mutex(false)
        let release = AsyncStream<Void>.makeStream()
        let started = ContinuousClock.now
        await #expect(throws: TimeLimitExceeded.self) {
            try await withTimeLimit(.milliseconds(200)) {
                await withTaskCancellationHandler {
                    for await _ in release.stream {}  // ends only when released, not when cancelled
                } onCancel: {
                    cancelled.withLock { $0 = true }
                }
            }
        }
        let took = ContinuousClock.now - started
        #expect(took >= .milliseconds(200) && took < .seconds(3), "returned after \(took)")
        #expect(cancelled.withLock { $0 })
        release.continuation.finish()
    }

    @Test func manyConcurrentLimitsEachFireOnceAndOnlyTheirOwn() async throws {
        let sweeper = DeadlineSweeper(granularity: .milliseconds(10))
        let fired = Mutex([Int: Int]())
        var ids: [UInt64] = []
        for i in 0..<200 {
            let due = ContinuousClock.now + .milliseconds(i % 2 == 0 ? 50 : 60_000)
            ids.append(sweeper.add(deadline: due) { fired.withLock { $0[i, default: 0] += 1 } })
        }
        // Due in 50 ms; a full test run on two cores can hold the sweeper's thread up far longer.
        try await eventually(timeout: .seconds(30), "the 100 short limits fire") { fired.withLock { $0.count } >= 100 }
        try await Task.sleep(for: .milliseconds(100))  // room for a wrong second firing
        let counts = fired.withLock { $0 }
        #expect(counts.count == 100)
        #expect(counts.allSatisfy { $0.key % 2 == 0 && $0.value == 1 })
        #expect(sweeper.pendingCount == 100)
        for id in ids { sweeper.remove(id) }
        #expect(sweeper.pendingCount == 0)
    }

    /// Every answered CALL removes its deadline long before it is due: those must not pile up in
    /// the sweeper's heap (at 6,000 CALLs/s with 30 s limits that would be 180,000 dead slots).
    @Test func removedDeadlinesDoNotPileUpAndTheRestStillFire() async throws {
        let sweeper = DeadlineSweeper(granularity: .milliseconds(10))
        let fired = Mutex(0)
        _ = sweeper.add(deadline: .now + .milliseconds(100)) { fired.withLock { $0 += 1 } }
        for _ in 0..<10_000 {
            let id = sweeper.add(deadline: .now + .seconds(60)) { fired.withLock { $0 += 1 } }
            sweeper.remove(id)
        }
        #expect(sweeper.pendingCount == 1)
        #expect(sweeper.slotCount <= 2 * 1 + 64 + 1)
        try await eventually(timeout: .seconds(30), "the one left fires") { fired.withLock { $0 } == 1 }
        #expect(sweeper.pendingCount == 0)
        try await Task.sleep(for: .milliseconds(50))
        #expect(fired.withLock { $0 } == 1)
    }

    struct ErrorInOperation: Error {}
}
