/// When a workflow worker brings in its catch-up lanes: a value that follows how late the work
/// its lanes take is, and says whether the worker is behind.
///
/// A worker's lanes start executions and apply their events one transaction at a time. Under a
/// node's saturation every round trip waits for a core, and one lane falls behind: the sessions
/// benchmark at its maximum rate left ~2,700 starts waiting, the oldest 35 s, at the end of its
/// window (BENCHMARKS.md, 2026-11-27). Catch-up lanes run only while the work taken is late, so a
/// node that keeps up does not have more background transactions competing with its chargers'
/// answers, and one that falls behind catches up instead of falling further behind.
///
/// - The worker is behind once a lane takes work that waited `after` or longer (a start since it
///   was asked for, an event since it fell due).
/// - It stays behind until a lane takes work that waited less than half of that, or finds none.
///   (Half: a backlog drained oldest first shows a falling lateness, and lanes must not turn off
///   and on at each round near the limit.)
/// - A round that began before the last change says nothing new: a lane that took the last late
///   work before another found none would turn the lanes on again for a round.
public struct WorkflowCatchUp: Sendable, Equatable {
    /// How late work must be for the catch-up lanes to join.
    public let after: Duration
    /// Whether the catch-up lanes work.
    public private(set) var behind = false
    /// When `behind` last changed.
    private var changedAt: ContinuousClock.Instant?

    public init(after: Duration) {
        self.after = after
    }

    /// A lane's round, begun at `began`, took work that had waited `lateness` at the most, or took
    /// nothing (nil); `now` is when it ended. Returns whether `behind` changed.
    public mutating func observe(lateness: Duration?, began: ContinuousClock.Instant, now: ContinuousClock.Instant) -> Bool {
        if let changedAt, began < changedAt { return false }
        let was = behind
        if let lateness {
            if lateness >= after {
                behind = true
            } else if lateness < after / 2 {
                behind = false
            }
        } else {
            behind = false
        }
        if behind != was { changedAt = now }
        return behind != was
    }
}
