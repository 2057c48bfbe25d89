public import Foundation

/// Receives what a charger does; the fleet aggregates it. Implementations must be cheap and thread-safe.
public protocol ChargePointStatsSink: Sendable {
    func connected()
    func disconnected()
    /// A connection attempt of the charger `identity` failed.
    func connectFailed(_ error: SimulatorError, identity: String)
    func bootAccepted()
    /// A CALL was answered (CALLRESULT or CALLERROR) after `roundTrip`.
    func callCompleted(action: String, roundTrip: Duration, isError: Bool)
    /// A CALL failed without an answer (timeout, connection closed, schema violation).
    func callFailed(action: String, error: SimulatorError)
    /// A central-system CALL was received and answered.
    func centralSystemCall(action: String)
}
