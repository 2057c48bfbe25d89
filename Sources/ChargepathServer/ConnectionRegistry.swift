public import Chargepath
public import Foundation
import Synchronization

/// The charger sockets this process holds, by connection id and by charge point.
///
/// A `Mutex` over two dictionaries: every operation is a few hash lookups, never held across an
/// `await`. Sends happen outside the lock through the socket's own `ChargerSocket`.
public final class ConnectionRegistry: Sendable {
    /// One open socket, as the registry hands it out.
    public struct Entry: Sendable {
        public let connectionID: ConnectionID
        public let identity: ChargePointIdentity
        public let socket: ChargerSocket
        public let session: any ChargerSession
        public let connectedAt: Date
    }

    private struct State {
        var byID: [ConnectionID: Entry] = [:]
        var byIdentity: [ChargePointIdentity: ConnectionID] = [:]
        /// Sockets that saw traffic since the last flush of `last_seen_at`.
        var active: Set<ConnectionID> = []
    }

    private let state = Mutex(State())

    public init() {}

    /// Adds a socket. Returns the entry it displaces for the same identity, which the caller closes.
    public func add(_ entry: Entry) -> Entry? {
        state.withLock { state in
            let previous = state.byIdentity[entry.identity].flatMap { state.byID.removeValue(forKey: $0) }
            state.byID[entry.connectionID] = entry
            state.byIdentity[entry.identity] = entry.connectionID
            return previous
        }
    }

    /// Removes a socket; a newer socket of the same identity stays registered.
    public func remove(_ id: ConnectionID) {
        state.withLock { state in
            guard let entry = state.byID.removeValue(forKey: id) else { return }
            if state.byIdentity[entry.identity] == id {
                state.byIdentity.removeValue(forKey: entry.identity)
            }
            state.active.remove(id)
        }
    }

    public func entry(_ id: ConnectionID) -> Entry? {
        state.withLock { $0.byID[id] }
    }

    public func entry(for identity: ChargePointIdentity) -> Entry? {
        state.withLock { state in state.byIdentity[identity].flatMap { state.byID[$0] } }
    }

    public var count: Int { state.withLock { $0.byID.count } }

    public var allIDs: [ConnectionID] { state.withLock { Array($0.byID.keys) } }

    public var all: [Entry] { state.withLock { Array($0.byID.values) } }

    /// Notes that a socket saw traffic (its `last_seen_at` is written in the next batch).
    public func markActive(_ id: ConnectionID) {
        _ = state.withLock { $0.active.insert(id) }
    }

    /// The sockets active since the last call, for one batched `last_seen_at` update.
    public func drainActive() -> [ConnectionID] {
        state.withLock { state in
            let ids = Array(state.active)
            state.active.removeAll(keepingCapacity: true)
            return ids
        }
    }
}
