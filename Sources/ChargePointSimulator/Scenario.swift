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
