import Synchronization

/// Group commit: the writes of many concurrent callers go to PostgreSQL in one statement, with one
/// commit, and each caller returns only once its own item is committed. A statement that answers
/// each item (`Result`) serves reads the same way: many callers' lookups in one round trip.
///
/// There is no background task and no timer. A caller that finds a free write slot writes at once
/// (alone, so a quiet system waits for nothing); callers that come while every slot is busy queue up,
/// and when a write returns, the oldest of them takes over the slot with everything queued behind it
/// (up to `maximumBatchSize`): the next batch fills while the previous one commits, so the batch size
/// follows the load by itself. With `pendingForAnotherSlot` above 1, callers that come while one
/// slot writes queue up even when another is free, until that many wait; then they take the free
/// slot together.
///
/// - A failed batch loses no one's item: every caller in it (even one alone in it) writes its item
///   again, alone (in its own task, outside the slots), so only a bad item's caller sees an error.
///   A write must therefore be atomic (one statement or one transaction) and safe to repeat after
///   an unclear failure (e.g. `ON CONFLICT DO NOTHING`).
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
        /// Writes running at once, each in its own slot (numbered from 0, given to `write`).
        ///
        /// One is the default: a free slot writes at once, so the number of statements a second
        /// follows the database's speed, not the load, and every slot more multiplies the statements
        /// (and PostgreSQL's CPU) at low and moderate load, when batches are small anyway. Measured
        /// with 1,000 chargers sending MeterValues (BENCHMARKS.md): two slots kept two backends busy
        /// with batches of 1.4 readings at 1,000 msg/s; one halves the statements.
        package var maximumConcurrentWrites: Int
        /// The most callers waiting for a slot; beyond it a caller writes its item alone.
        package var maximumPending: Int
        /// While a write runs, a further free slot starts a batch only once this many callers wait
        /// (1: at once). With more than one slot this keeps a moderate load on one slot, writing
        /// the batches one after the other, and lets the next batch start before the last one has
        /// committed only when callers pile up: a second slot taken at once by every caller that
        /// finds the first busy writes batches of one or two.
        package var pendingForAnotherSlot: Int

        package init(maximumBatchSize: Int = 512, maximumConcurrentWrites: Int = 1, maximumPending: Int = 20_000, pendingForAnotherSlot: Int = 1) {
            precondition(maximumBatchSize >= 1 && maximumConcurrentWrites >= 1 && maximumPending >= 0 && pendingForAnotherSlot >= 1)
            self.maximumBatchSize = maximumBatchSize
            self.maximumConcurrentWrites = maximumConcurrentWrites
            self.maximumPending = maximumPending
            self.pendingForAnotherSlot = pendingForAnotherSlot
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
        /// Slot `slot` is yours: write your item with these (who wait for you).
        case lead(slot: Int, [Waiter])
    }

    /// What a caller that comes finds to do, when not to wait.
    private enum Arrival {
        case now(Turn)
        /// A free slot for the waiters, this caller among them.
        case batch(leader: Waiter, others: [Waiter], slot: Int)
    }

    private struct Waiter: Sendable {
        let item: Item
        let continuation: CheckedContinuation<Turn, Never>
    }

    private struct State {
        /// FIFO; non-empty only while a slot writes (and while all do, or fewer than
        /// `pendingForAnotherSlot` wait).
        var pending: [Waiter] = []
        /// Slots no write holds.
        var freeSlots: [Int]
        var statistics = Statistics()
    }

    package let configuration: Configuration
    private let write: @Sendable ([Item], Int?) async throws -> [Result]
    private let state: Mutex<State>

    /// `write` stores the items it is given in one statement or transaction, committed when it
    /// returns, and returns one result per item, in the items' order. Its second argument is the
    /// slot the write holds (`0..<maximumConcurrentWrites`; no two writes hold one at once), or nil
    /// for an item written alone outside the slots (after a failed batch, or past `maximumPending`):
    /// a slot can keep a connection of its own.
    @_disfavoredOverload  // a closure that returns nothing means the `Result == Void` one below
    package init(configuration: Configuration = .init(), write: @escaping @Sendable (_ items: [Item], _ slot: Int?) async throws -> [Result]) {
        self.configuration = configuration
        self.state = Mutex(State(freeSlots: Array((0..<configuration.maximumConcurrentWrites).reversed())))
        self.write = { items, slot in
            let results = try await write(items, slot)
            precondition(results.count == items.count, "GroupCommit: a write must return one result per item")
            return results
        }
    }

    package var statistics: Statistics { state.withLock { $0.statistics } }
    /// Callers waiting for a slot now.
    package var pendingCount: Int { state.withLock { $0.pending.count } }
    /// Slots in use now.
    package var writingCount: Int { state.withLock { configuration.maximumConcurrentWrites - $0.freeSlots.count } }

    /// Writes `item` (in a batch with other callers' items when the database is busy); returns its
    /// result once it is committed, or throws the error that writing it alone gave.
    @discardableResult
    package func submit(_ item: Item) async throws -> Result {
        let turn: Turn = await withCheckedContinuation { continuation in
            let next: Arrival? = state.withLock { state in
                let writing = configuration.maximumConcurrentWrites - state.freeSlots.count
                if writing == 0 || configuration.pendingForAnotherSlot == 1, let slot = state.freeSlots.popLast() {
                    return .now(.lead(slot: slot, []))
                }
                if state.pending.count >= configuration.maximumPending {
                    state.statistics.overflowed += 1
                    return .now(.writeAlone)
                }
                state.pending.append(Waiter(item: item, continuation: continuation))
                guard state.pending.count >= configuration.pendingForAnotherSlot, let slot = state.freeSlots.popLast() else { return nil }
                let (leader, others) = Self.takeBatch(from: &state, upTo: configuration.maximumBatchSize)
                return .batch(leader: leader, others: others, slot: slot)
            }
            switch next {
            case .now(let turn): continuation.resume(returning: turn)
            case .batch(let leader, let others, let slot): leader.continuation.resume(returning: .lead(slot: slot, others))
            case nil: break
            }
        }
        switch turn {
        case .committed(let result):
            return result
        case .writeAlone:
            return try await write([item], nil)[0]
        case .lead(let slot, let others):
            return try await lead(item, others, slot: slot)
        }
    }

    private func lead(_ item: Item, _ others: [Waiter], slot: Int) async throws -> Result {
        let outcome: Swift.Result<[Result], any Error>
        do {
            outcome = .success(try await write([item] + others.map(\.item), slot))
        } catch {
            outcome = .failure(error)
        }
        // The slot goes to the next batch at once, before this one's callers are answered.
        switch outcome {
        case .success(let results):
            handOff(slot: slot, batchSize: others.count + 1, failed: false)
            for (index, waiter) in others.enumerated() { waiter.continuation.resume(returning: .committed(results[index + 1])) }
            return results[0]
        case .failure:
            // The leader's item too, even alone in its batch: the slot's connection may have been
            // what failed (closed by the database, and not yet seen closed), not the item.
            handOff(slot: slot, batchSize: others.count + 1, failed: true)
            for waiter in others { waiter.continuation.resume(returning: .writeAlone) }
            return try await write([item], nil)[0]
        }
    }

    private func handOff(slot: Int, batchSize: Int, failed: Bool) {
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
                state.freeSlots.append(slot)
                return nil
            }
            return Self.takeBatch(from: &state, upTo: configuration.maximumBatchSize)
        }
        if let next { next.leader.continuation.resume(returning: .lead(slot: slot, next.others)) }
    }

    /// The oldest waiters (at least one must wait), up to `maximumBatchSize`: the first leads.
    private static func takeBatch(from state: inout State, upTo maximumBatchSize: Int) -> (leader: Waiter, others: [Waiter]) {
        let count = min(state.pending.count, maximumBatchSize)
        let batch = state.pending[0..<count]
        state.pending.removeFirst(count)
        return (batch.first!, Array(batch.dropFirst()))
    }
}

extension GroupCommit where Result == Void {
    /// Writes that answer nothing but their commit.
    package convenience init(configuration: Configuration = .init(), write: @escaping @Sendable (_ items: [Item], _ slot: Int?) async throws -> Void) {
        self.init(configuration: configuration) { (items: [Item], slot: Int?) -> [Void] in
            try await write(items, slot)
            return Array(repeating: (), count: items.count)
        }
    }
}
