/// Limits on one charging session; each is off when nil.
public struct SessionLimits: Sendable, Codable, Equatable {
    /// Energy delivered in the session (Wh, from the meter start).
    public var maxEnergyWh: Int?
    /// Time since the session started, in seconds.
    public var maxDurationSeconds: Int?
    /// Time with no energy flowing (the energy register not rising), in seconds.
    public var maxIdleSeconds: Int?

    public init(maxEnergyWh: Int? = nil, maxDurationSeconds: Int? = nil, maxIdleSeconds: Int? = nil) {
        self.maxEnergyWh = maxEnergyWh
        self.maxDurationSeconds = maxDurationSeconds
        self.maxIdleSeconds = maxIdleSeconds
    }

    public var isEmpty: Bool { maxEnergyWh == nil && maxDurationSeconds == nil && maxIdleSeconds == nil }

    /// The first value an operator may not give, as (field, problem), for a 400 that names it.
    public func problem() -> (field: String, problem: String)? {
        if let value = maxEnergyWh, value < 1 { return ("maxEnergyWh", "must be 1 or more") }
        if let value = maxDurationSeconds, value < 1 { return ("maxDurationSeconds", "must be 1 or more") }
        if let value = maxIdleSeconds, value < 1 { return ("maxIdleSeconds", "must be 1 or more") }
        return nil
    }

    /// Later limits replace earlier ones field by field.
    public func merged(with newer: SessionLimits) -> SessionLimits {
        SessionLimits(
            maxEnergyWh: newer.maxEnergyWh ?? maxEnergyWh,
            maxDurationSeconds: newer.maxDurationSeconds ?? maxDurationSeconds,
            maxIdleSeconds: newer.maxIdleSeconds ?? maxIdleSeconds
        )
    }
}
