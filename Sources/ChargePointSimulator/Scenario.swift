/// What a charger does by itself once accepted (besides heartbeats and answering calls).
enum ChargerScenario: Sendable {
    /// Only what the caller asks for (the single-charger test API).
    case idle
    /// Heartbeat back-to-back (paced by the rate limiter, if any).
    case heartbeat
    /// A mix of CALLs back-to-back (paced by the rate limiter, if any).
    case flood
    /// Authorize → StartTransaction → MeterValues every meter interval → StopTransaction, repeated.
    case sessions(sessionDuration: Duration, pause: Duration)
}

/// A `sessions` charger's cycle: a session of `duration`, then a pause of `pause`, repeated.
struct SessionCycle: Equatable {
    var duration: Duration
    var pause: Duration

    /// A charger's first session when it is at `phase` (0 ≤ phase < 1) of its cycle: one inside a
    /// session starts a shortened one now, one inside the pause starts a whole one when the pause
    /// ends. Each charger's phase is random, so a fleet's chargers are spread over the whole cycle,
    /// as in the field, and the fleet offers the same load at every moment. Started all within one
    /// pause instead, every charger charged and paused at the same time: the rate of sessions at
    /// "half" the benchmark's 10,000 msg/s aim swung between 6,000 and 1,200 msg/s with each cycle
    /// (BENCHMARKS.md).
    func firstSession(atPhase phase: Double) -> (startsIn: Duration, length: Duration) {
        let into = (duration + pause) * min(max(phase, 0), 1)
        if into < duration {
            // At least a millisecond, so that the session has a stop time after its start.
            return (.zero, max(duration - into, .milliseconds(1)))
        }
        return (duration + pause - into, duration)
    }
}
