public import NIOCore
import Synchronization

/// A `TaskExecutor` that runs a task's jobs on one NIO event loop.
///
/// A task that does most of its work with one channel prefers that channel's event loop: it
/// starts in the loop iteration that read its input (no wake-up of a concurrency-pool thread),
/// and what it writes goes to the socket without a hop back to the loop. Each hop between threads
/// costs a context switch on both sides, which on this kind of machine was a large share of the
/// CPU per message (BENCHMARKS.md). Used by the server's charger message tasks and by each
/// simulated charger. The work such a task does between its awaits must be short and must not
/// block: it shares the loop with the sockets' I/O.
///
/// The swift-nio version here has no such executor of its own; one instance per event loop is
/// kept for the process's life (`for(_:)`).
public final class EventLoopTaskExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    private init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        eventLoop.execute { job.runSynchronously(on: executor) }
    }

    private static let executors = Mutex<[ObjectIdentifier: EventLoopTaskExecutor]>([:])

    /// The executor of `eventLoop` (the same object for the same loop).
    public static func `for`(_ eventLoop: any EventLoop) -> EventLoopTaskExecutor {
        executors.withLock { executors in
            let key = ObjectIdentifier(eventLoop)
            if let existing = executors[key] { return existing }
            let executor = EventLoopTaskExecutor(eventLoop: eventLoop)
            executors[key] = executor
            return executor
        }
    }
}
