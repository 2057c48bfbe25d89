import Synchronization

/// A global token bucket shared by a fleet: `reserve()` hands out send slots at `rate` per second
/// with a burst of up to one second's worth. Callers wait until their slot (while still serving
/// their socket), so nothing is buffered here.
public final class RateLimiter: Sendable {
    public let ratePerSecond: Double
    private let interval: Duration
    private let burst: Duration
    private let next: Mutex<ContinuousClock.Instant>

    public init(ratePerSecond: Double) {
        precondition(ratePerSecond > 0)
        self.ratePerSecond = ratePerSecond
        self.interval = .nanoseconds(Int64((1_000_000_000 / ratePerSecond).rounded()))
        self.burst = .seconds(1)
        self.next = Mutex(.now)
    }

    /// The instant at which the caller may send one message.
    public func reserve() -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        return next.withLock { next in
            let earliest = now - burst
            if next < earliest { next = earliest }
            let slot = next
            next = next + interval
            return slot
        }
    }
}
