import HeapModule
import Synchronization

/// Thrown by `withTimeLimit` when the limit passes first.
public struct TimeLimitExceeded: Error, Sendable, CustomStringConvertible {
    public let limit: Duration
    public var description: String { "took longer than \(limit)" }
}

/// Runs `operation`; throws `TimeLimitExceeded` once `limit` passes.
///
/// Unlike a task group, this returns at the limit even when the operation does not react to
/// cancellation (a wait inside a driver, say): the operation is cancelled and left to finish on
/// its own. That is the point of a deadline that protects a charger's answer or a shutdown.
public func withTimeLimit<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let outcome = OneShot<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            outcome.install(continuation)
            let work = Task {
                do {
                    outcome.resume(with: .success(try await operation()))
                } catch {
                    outcome.resume(with: .failure(error))
                }
            }
            let deadline = DeadlineSweeper.shared.add(deadline: .now + limit) {
                if outcome.resume(with: .failure(TimeLimitExceeded(limit: limit))) { work.cancel() }
            }
            outcome.onFinish { work.cancel(); DeadlineSweeper.shared.remove(deadline) }
        }
    } onCancel: {
        outcome.resume(with: .failure(CancellationError()))
    }
}

/// The deadlines of every `withTimeLimit` in the process, kept by one task that wakes every
/// `granularity` while any deadline is pending and ends when none is.
///
/// A sleeping task per call (what this replaces) cost each charger CALL a second task and a
/// dispatch timer armed and disarmed; with this a CALL costs one task and a dictionary entry.
/// A limit fires up to one `granularity` late; the limits here are seconds long.
///
/// The deadlines wait in a min-heap, so a tick looks only at those due: scanning them all each
/// tick cost 8% of the server's CPU in a boot storm of 10,000 chargers. A removed deadline leaves
/// its heap slot behind (skipped when it comes up); the heap is rebuilt from the live ones when
/// the stale slots outnumber them, so it stays within a small multiple of the pending count.
package final class DeadlineSweeper: Sendable {
    package static let shared = DeadlineSweeper(granularity: .milliseconds(25))

    private struct Entry {
        let deadline: ContinuousClock.Instant
        let fire: @Sendable () -> Void
    }

    private struct Slot: Comparable {
        let deadline: ContinuousClock.Instant
        let id: UInt64
        static func < (a: Slot, b: Slot) -> Bool { (a.deadline, a.id) < (b.deadline, b.id) }
    }

    private struct State {
        var entries: [UInt64: Entry] = [:]
        var heap = Heap<Slot>()
        var nextID: UInt64 = 0
        var sweeping = false

        mutating func compactIfMostlyStale() {
            guard heap.count > 64, heap.count > 2 * entries.count else { return }
            heap = Heap(entries.map { Slot(deadline: $0.value.deadline, id: $0.key) })
        }
    }

    let granularity: Duration
    private let state = Mutex(State())

    init(granularity: Duration) {
        self.granularity = granularity
    }

    /// Calls `fire` once `deadline` has passed, unless `remove` comes first. Returns the entry's id.
    package func add(deadline: ContinuousClock.Instant, fire: @escaping @Sendable () -> Void) -> UInt64 {
        let (id, startSweeping) = state.withLock { state -> (UInt64, Bool) in
            let id = state.nextID
            state.nextID &+= 1
            state.entries[id] = Entry(deadline: deadline, fire: fire)
            state.heap.insert(Slot(deadline: deadline, id: id))
            if state.sweeping { return (id, false) }
            state.sweeping = true
            return (id, true)
        }
        if startSweeping { Task.detached { await self.sweep() } }
        return id
    }

    package func remove(_ id: UInt64) {
        state.withLock { state in
            if state.entries.removeValue(forKey: id) != nil { state.compactIfMostlyStale() }
        }
    }

    /// Deadlines not yet fired nor removed.
    var pendingCount: Int { state.withLock { $0.entries.count } }

    /// Heap slots, stale ones included (for tests of the bound).
    var slotCount: Int { state.withLock { $0.heap.count } }

    private func sweep() async {
        while true {
            try? await Task.sleep(for: granularity)
            let now = ContinuousClock.now
            let due: [Entry]? = state.withLock { state in
                guard !state.entries.isEmpty else {
                    state.heap = Heap()
                    state.sweeping = false
                    return nil
                }
                var due: [Entry] = []
                while let first = state.heap.min, first.deadline <= now {
                    state.heap.removeMin()
                    if let entry = state.entries.removeValue(forKey: first.id) { due.append(entry) }
                }
                return due
            }
            guard let due else { return }
            for entry in due { entry.fire() }
        }
    }
}

/// A continuation resumed exactly once, whoever comes first.
final class OneShot<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var early: Result<T, any Error>?
        var finished = false
        var cleanup: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func install(_ continuation: CheckedContinuation<T, any Error>) {
        let early: Result<T, any Error>? = state.withLock { state in
            if let early = state.early { return early }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func onFinish(_ cleanup: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { state -> Bool in
            if state.finished { return true }
            state.cleanup = cleanup
            return false
        }
        if runNow { cleanup() }
    }

    /// Returns true when this call was the one that resumed.
    @discardableResult
    func resume(with result: Result<T, any Error>) -> Bool {
        let (continuation, cleanup, won): (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?, Bool) = state.withLock { state in
            guard !state.finished else { return (nil, nil, false) }
            state.finished = true
            let continuation = state.continuation
            if continuation == nil { state.early = result }
            state.continuation = nil
            let cleanup = state.cleanup
            state.cleanup = nil
            return (continuation, cleanup, true)
        }
        continuation?.resume(with: result)
        cleanup?()
        return won
    }
}
