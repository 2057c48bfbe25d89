public import Foundation

/// The port through which a server process announces itself and cleans up after dead peers.
public protocol NodeRepository: Sendable {
    /// Records this node as alive (creates or refreshes its row).
    func register(_ node: NodeID, hostname: String, at date: Date) async throws
    /// Refreshes this node's heartbeat. Returns false when the row was gone (another node swept us
    /// as dead): the caller re-registers and reconciles its sockets.
    func heartbeat(_ node: NodeID, at date: Date) async throws -> Bool
    /// Removes this node and, with it, every connection it recorded (a clean shutdown).
    func deregister(_ node: NodeID) async throws
    /// Deletes connections past their `expires_at` and nodes (with their connections) whose
    /// heartbeat is older than `staleBefore`. Returns how many connection rows went.
    func sweep(now: Date, staleBefore: Date) async throws -> Int
    /// The ids of the connections this node holds according to the database.
    func connectionIDs(of node: NodeID) async throws -> Set<ConnectionID>
}
