import Chargepath
import Testing

@Suite struct GateTests {
    @Test func waitersPassWhenTheGateOpensAndLaterOnesPassAtOnce() async throws {
        let gate = Gate()
        let waiter = Task { try await gate.wait(); return true }
        try await Task.sleep(for: .milliseconds(50))
        #expect(!gate.isOpen)
        gate.open()
        #expect(try await waiter.value)
        try await gate.wait()  // An open gate does not block.
    }

    @Test func aCancelledWaiterStopsWaiting() async throws {
        let gate = Gate()
        let waiter = Task { try await gate.wait() }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(!gate.isOpen)
    }
}
