import NIOCore
import Synchronization

/// The wakes of the chargers on one event loop, grouped by the point of the timer grid they are
/// due at (`TimerGrid`): one NIO timer per point in use, however many chargers wait for it.
///
/// Each NIO timer costs an insertion into the loop's timer heap and a removal when it fires, and
/// both copy `ScheduledTask`s (with their retains) along a path of the heap's height; a heap
/// holding every charger's timers is a dozen levels deep. With one timer per charger and wake,
/// that was ~12% of the simulator's CPU in `sessions` at ~5,000 messages a second (perf,
/// 2026-11-27), where ~10 chargers' MeterValues fall due in each 2 ms point of the grid.
///
/// A wake cannot be cancelled: one that is no longer wanted still comes, and its charger only
/// looks again at what is due (`ChargePointEngine.handle(.wake)` ignores it).
///
/// Everything but `add` runs on `loop`; `add` hops to it when called elsewhere.
final class WakeWheel: @unchecked Sendable {
    struct Wake {
        let events: AsyncStream<EngineEvent>.Continuation
        let sequence: UInt64
    }

    let loop: any EventLoop
    /// Wakes by grid point (uptime nanoseconds); touched on `loop` only.
    private var due: [UInt64: [Wake]] = [:]

    private init(loop: any EventLoop) { self.loop = loop }

    /// The wheel of `loop`, made on first use. Chargers run on the loops of
    /// `MultiThreadedEventLoopGroup.singleton`, so there are as many wheels as cores.
    static func of(_ loop: any EventLoop) -> WakeWheel {
        wheels.withLock { wheels in
            let key = ObjectIdentifier(loop as AnyObject)
            if let wheel = wheels[key] { return wheel }
            let wheel = WakeWheel(loop: loop)
            wheels[key] = wheel
            return wheel
        }
    }

    private static let wheels = Mutex<[ObjectIdentifier: WakeWheel]>([:])

    /// Yields `.wake(sequence)` into `events` at `point` (uptime nanoseconds) or soon after.
    func add(at point: UInt64, events: AsyncStream<EngineEvent>.Continuation, sequence: UInt64) {
        let wake = Wake(events: events, sequence: sequence)
        guard loop.inEventLoop else {
            loop.execute { self.insert(wake, at: point) }
            return
        }
        insert(wake, at: point)
    }

    private func insert(_ wake: Wake, at point: UInt64) {
        if due[point]?.append(wake) != nil { return }
        due[point] = [wake]
        loop.scheduleTask(deadline: .uptimeNanoseconds(point)) { self.fire(point) }
    }

    private func fire(_ point: UInt64) {
        guard let wakes = due.removeValue(forKey: point) else { return }
        for wake in wakes { _ = wake.events.yield(.wake(wake.sequence)) }
    }
}
