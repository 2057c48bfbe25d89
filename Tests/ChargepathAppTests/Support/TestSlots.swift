/// At most `limit` tests with a server of their own run at once (`TestServer.with`).
///
/// Swift Testing starts every test of the suite together: some 120 servers, their pools and one
/// PostgreSQL on 2 cores. On a machine half as fast as usual (2026-11-26) answers that take
/// milliseconds took more than 10 s at the suite's start, and tests that wait for them with a
/// limit (an operator call's 504, a message's time limit) failed for want of CPU. Bounded, each
/// test gets the machine it expects; the suite's length stays about the same, since the CPU was
/// the bottleneck anyway.
///
/// A test holds one slot for all the servers it starts (a task-local marks the holder), so a
/// test with two servers neither takes two nor waits on itself.
actor TestSlots {
    static let shared = TestSlots(limit: 6)

    @TaskLocal static var held = false

    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(limit: Int) { free = limit }

    /// Runs `body` holding a slot (or in the slot this task already holds).
    static func withSlot<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        if held { return try await body() }
        await shared.acquire()
        do {
            let result = try await $held.withValue(true) { try await body() }
            await shared.release()
            return result
        } catch {
            await shared.release()
            throw error
        }
    }

    private func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}
