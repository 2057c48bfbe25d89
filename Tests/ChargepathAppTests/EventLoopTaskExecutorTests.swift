import EventLoopExecutor
import NIOCore
import NIOPosix
import Testing

/// Charger message tasks and simulated chargers run on their channel's event loop: a task that
/// prefers an `EventLoopTaskExecutor` must start there and come back there after each await, even
/// when what it awaited finished on another thread.
@Suite struct EventLoopTaskExecutorTests {
    @Test func aTaskThatPrefersALoopRunsOnItBeforeAndAfterItsAwaits() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loop = group.next()
        let other = group.next()
        #expect(loop !== other)
        let executor = EventLoopTaskExecutor.for(loop)
        #expect(EventLoopTaskExecutor.for(loop) === executor)
        let observed = try await Task(executorPreference: executor) { () -> [Bool] in
            var onLoop = [loop.inEventLoop]
            for _ in 0..<20 {
                // Resumed from the other loop's thread.
                try await other.submit { precondition(other.inEventLoop) }.get()
                onLoop.append(loop.inEventLoop)
                try await Task.sleep(for: .milliseconds(1))
                onLoop.append(loop.inEventLoop)
            }
            return onLoop
        }.value
        try await group.shutdownGracefully()
        #expect(observed.count == 41)
        #expect(observed.allSatisfy { $0 })
    }
}
