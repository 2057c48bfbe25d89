public import OCPP16
import Synchronization

/// What a test can observe about a simulated charger at one instant.
public struct ChargePointSnapshot: Sendable, Equatable {
    public var isConnected = false
    /// Successful WebSocket connections so far (reconnects included).
    public var connectionCount = 0
    /// Last BootNotification answer on the current registration; `nil` before the first answer.
    public var registrationStatus: RegistrationStatus?
    /// BootNotification requests answered with Accepted so far.
    public var bootAcceptedCount = 0
    /// Status of connector 0...N as last reported (or to be reported).
    public var connectorStatus: [ChargePointStatus] = []
    /// Server transaction id per connector with a running transaction (after StartTransaction was answered).
    public var transactionIDs: [Int: Int] = [:]
    /// Connectors with a session (even if its StartTransaction is still queued).
    public var sessionConnectors: Set<Int> = []
    /// Transaction messages waiting for delivery (offline queue).
    public var queuedTransactionMessages = 0
    /// StopTransaction messages answered so far.
    public var completedTransactions = 0
    /// Negotiated subprotocol of the current connection.
    public var subprotocol: String?
    /// Last connection or protocol error, for diagnostics.
    public var lastError: String?
    /// The configuration store (`GetConfiguration` view).
    public var configuration: [String: String] = [:]

    public init() {}

    public func status(ofConnector id: Int) -> ChargePointStatus? {
        connectorStatus.indices.contains(id) ? connectorStatus[id] : nil
    }
}

/// Shared snapshot plus waiters (continuations resumed when a predicate holds).
final class SnapshotBox: Sendable {
    private struct Waiter {
        let id: UInt64
        let predicate: @Sendable (ChargePointSnapshot) -> Bool
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var snapshot = ChargePointSnapshot()
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
        var finished = false
    }

    private let state = Mutex(State())

    var current: ChargePointSnapshot { state.withLock { $0.snapshot } }

    func update(_ body: (inout ChargePointSnapshot) -> Void) {
        let ready: [CheckedContinuation<Void, any Error>] = state.withLock { s in
            body(&s.snapshot)
            guard !s.waiters.isEmpty else { return [] }
            var ready: [CheckedContinuation<Void, any Error>] = []
            let snapshot = s.snapshot
            s.waiters.removeAll { w in
                if w.predicate(snapshot) { ready.append(w.continuation); return true }
                return false
            }
            return ready
        }
        for c in ready { c.resume() }
    }

    /// Fails all waiters (the charger stopped) and makes future waits fail immediately unless already true.
    func finish() {
        let waiters: [Waiter] = state.withLock { s in
            s.finished = true
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for w in waiters { w.continuation.resume(throwing: SimulatorError(.notRunning, "charger stopped while waiting")) }
    }

    func reset() { state.withLock { $0.finished = false } }

    func wait(timeout: Duration, _ predicate: @escaping @Sendable (ChargePointSnapshot) -> Bool) async throws {
        if state.withLock({ predicate($0.snapshot) }) { return }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await Task.sleep(for: timeout)
                throw SimulatorError(.timeout, "condition not reached within \(timeout)")
            }
            group.addTask { try await self.waitUntil(predicate) }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private func waitUntil(_ predicate: @escaping @Sendable (ChargePointSnapshot) -> Bool) async throws {
        let id = state.withLock { s -> UInt64 in s.nextID += 1; return s.nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                enum Outcome { case ready, stopped, cancelled, waiting }
                let outcome: Outcome = state.withLock { s in
                    if predicate(s.snapshot) { return .ready }
                    if Task.isCancelled { return .cancelled }
                    if s.finished { return .stopped }
                    s.waiters.append(Waiter(id: id, predicate: predicate, continuation: c))
                    return .waiting
                }
                switch outcome {
                case .ready: c.resume()
                case .stopped: c.resume(throwing: SimulatorError(.notRunning, "charger is not running"))
                case .cancelled: c.resume(throwing: CancellationError())
                case .waiting: break
                }
            }
        } onCancel: {
            let w: Waiter? = state.withLock { s in
                guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: i)
            }
            w?.continuation.resume(throwing: CancellationError())
        }
    }
}
