import Synchronization

/// Group commit: the writes of many concurrent callers go to PostgreSQL in one statement, with one
/// commit, and each caller returns only once its own item is committed. A statement that answers
/// each item (`Result`) serves reads the same way: many callers' lookups in one round trip.
///
/// There is no background task and no timer. A caller that finds a free write slot writes at once
/// (alone, so a quiet system waits for nothing); callers that come while every slot is busy queue up,
/// and when a write returns, the oldest of them takes over the slot with everything queued behind it
/// (up to `maximumBatchSize`): the next batch fills while the previous one commits, so the batch size
/// follows the load by itself.
///
/// - A failed batch loses no one's item: every caller in it writes its item again, alone (in its own
///   task), so only a bad item's caller sees an error. A write must therefore be atomic (one statement
///   or one transaction) and safe to repeat after an unclear failure (e.g. `ON CONFLICT DO NOTHING`).
/// - Bounded: at most `maximumPending` callers wait; beyond that a caller writes alone, outside the
///   batches (the connection pool bounds those). A charger has one CALL in flight at a time, so each
///   connection holds at most one waiting item.
/// - The lock is held only to move items in and out of the queue, never across an `await`.
/// - A batch runs in the task of the caller that leads it; if that caller is cancelled and the batch
///   fails, the others write their items alone, as after any failed batch. Waiting callers are not
///   cancellable: the wait lasts one batch.
package final class GroupCommit<Item: Sendable, Result: Sendable>: Sendable {
    package struct Configuration: Sendable {
        /// The most items written in one statement.
        package var maximumBatchSize: Int
        /// Writes running at once (each holds one pooled connection while it runs).
        package var maximumConcurrentWrites: Int
        /// The most callers waiting for a slot; beyond it a caller writes its item alone.
        package var maximumPending: Int

        package init(maximumBatchSize: Int = 512, maximumConcurrentWrites: Int = 2, maximumPending: Int = 20_000) {
            precondition(maximumBatchSize >= 1 && maximumConcurrentWrites >= 1 && maximumPending >= 0)
            self.maximumBatchSize = maximumBatchSize
            self.maximumConcurrentWrites = maximumConcurrentWrites
            self.maximumPending = maximumPending
        }
    }

    /// Counters for tests and diagnostics.
    package struct Statistics: Sendable, Equatable {
        /// Writes of more than one item that committed, and the items in them.
        package var batches = 0
        package var batchedItems = 0
        package var largestBatch = 0
        /// Batches that failed (their items were then written one by one).
        package var failedBatches = 0
        /// Items written alone because the queue was full.
        package var overflowed = 0
    }

    /// What a waiting caller is told to do when it is resumed.
    private enum Turn: Sendable {
        /// Your item is committed; its result.
        case committed(Result)
        /// Your batch failed: write your item alone.
        case writeAlone
        /// A slot is yours: write your item with these (who wait for you).
        case lead([Waiter])
    }

    private struct Waiter: Sendable {
        let item: Item
        let continuation: CheckedContinuation<Turn, Never>
    }

    private struct State {
        /// FIFO; non-empty only while all slots are busy.
        var pending: [Waiter] = []
        var writing = 0
        var statistics = Statistics()
    }

    package let configuration: Configuration
    private let write: @Sendable ([Item]) async throws -> [Result]
    private let state = Mutex(State())

    /// `write` stores the items it is given in one statement or transaction, committed when it
    /// returns, and returns one result per item, in the items' order.
    @_disfavoredOverload  // a closure that returns nothing means the `Result == Void` one below
    package init(configuration: Configuration = .init(), write: @escaping @Sendable ([Item]) async throws -> [Result]) {
        self.configuration = configuration
        self.write = { items in
            let results = try await write(items)
            precondition(results.count == items.count, "GroupCommit: a write must return one result per item")
            return results
        }
    }

    package var statistics: Statistics { state.withLock { $0.statistics } }
    /// Callers waiting for a slot now.
    package var pendingCount: Int { state.withLock { $0.pending.count } }
    /// Slots in use now.
    package var writingCount: Int { state.withLock { $0.writing } }

    /// Writes `item` (in a batch with other callers' items when the database is busy); returns its
    /// result once it is committed, or throws the error that writing it alone gave.
    @discardableResult
    package func submit(_ item: Item) async throws -> Result {
        let turn: Turn = await withCheckedContinuation { continuation in
            let now: Turn? = state.withLock { state in
                if state.writing < configuration.maximumConcurrentWrites {
                    state.writing += 1
                    return .lead([])
                }
                if state.pending.count >= configuration.maximumPending {
                    state.statistics.overflowed += 1
                    return .writeAlone
                }
                state.pending.append(Waiter(item: item, continuation: continuation))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
        switch turn {
        case .committed(let result):
            return result
        case .writeAlone:
            return try await write([item])[0]
        case .lead(let others):
            return try await lead(item, others)
        }
    }

    private func lead(_ item: Item, _ others: [Waiter]) async throws -> Result {
        let outcome: Swift.Result<[Result], any Error>
        do {
            outcome = .success(try await write([item] + others.map(\.item)))
        } catch {
            outcome = .failure(error)
        }
        // The slot goes to the next batch at once, before this one's callers are answered.
        switch outcome {
        case .success(let results):
            handOff(batchSize: others.count + 1, failed: false)
            for (index, waiter) in others.enumerated() { waiter.continuation.resume(returning: .committed(results[index + 1])) }
            return results[0]
        case .failure(let failure):
            handOff(batchSize: others.count + 1, failed: true)
            guard !others.isEmpty else { throw failure }
            for waiter in others { waiter.continuation.resume(returning: .writeAlone) }
            return try await write([item])[0]
        }
    }

    private func handOff(batchSize: Int, failed: Bool) {
        let next: (leader: Waiter, others: [Waiter])? = state.withLock { state in
            if batchSize > 1 {
                if failed {
                    state.statistics.failedBatches += 1
                } else {
                    state.statistics.batches += 1
                    state.statistics.batchedItems += batchSize
                    state.statistics.largestBatch = max(state.statistics.largestBatch, batchSize)
                }
            }
            guard !state.pending.isEmpty else {
                state.writing -= 1
                return nil
            }
            let count = min(state.pending.count, configuration.maximumBatchSize)
            let batch = state.pending[0..<count]
            state.pending.removeFirst(count)
            return (batch.first!, Array(batch.dropFirst()))
        }
        if let next { next.leader.continuation.resume(returning: .lead(next.others)) }
    }
}

extension GroupCommit where Result == Void {
    /// Writes that answer nothing but their commit.
    package convenience init(configuration: Configuration = .init(), write: @escaping @Sendable ([Item]) async throws -> Void) {
        self.init(configuration: configuration) { (items: [Item]) -> [Void] in
            try await write(items)
            return Array(repeating: (), count: items.count)
        }
    }
}
