#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// This process's open-file limit (`RLIMIT_NOFILE`). Every socket is an open file, so it bounds how
/// many chargers one server process holds and how many one simulator process plays.
///
/// Many systems start a process with a soft limit of 1,024 and a much higher hard limit (systemd's
/// default is 1,024 and 524,288): a process may raise its own soft limit up to the hard one without
/// privileges, and a server that does not stops accepting chargers at about a thousand, whatever
/// the machine could hold. `raiseSoftLimit(to:)` does it; `plan(needed:)` says what a number of
/// files asks of the limit, for a clear error before a run that cannot fit.
public struct OpenFileLimit: Sendable, Equatable, CustomStringConvertible {
    /// The limit in force.
    public var soft: Int
    /// The most the soft limit can be raised to without privileges.
    public var hard: Int

    public init(soft: Int, hard: Int) {
        self.soft = soft
        self.hard = hard
    }

    /// What `needed` open files ask of this limit.
    public enum Plan: Sendable, Equatable {
        /// The soft limit is enough already.
        case enough
        /// Raising the soft limit to this (at most the hard limit) makes room.
        case raise(to: Int)
        /// Even the hard limit is too low: at most `available` files.
        case tooFew(available: Int)
    }

    public func plan(needed: Int) -> Plan {
        if needed <= soft { return .enough }
        let ceiling = max(soft, min(hard, Self.highestUsefulLimit))
        if needed <= ceiling { return .raise(to: needed) }
        return .tooFew(available: ceiling)
    }

    public var description: String { "\(soft) open files (hard limit \(hard))" }

    /// Linux refuses a limit above `fs.nr_open` (1,048,576 by default), and an unlimited hard limit
    /// is not one a soft limit can take: raising "to the hard limit" stops here.
    public static let highestUsefulLimit = 1 << 20

    /// The limit now, or nil where it cannot be read.
    public static func current() -> OpenFileLimit? {
        var limit = rlimit()
        guard getrlimit(Self.resource, &limit) == 0 else { return nil }
        return OpenFileLimit(soft: Self.count(limit.rlim_cur), hard: Self.count(limit.rlim_max))
    }

    /// Raises the soft limit to `target` (capped at the hard limit and at `highestUsefulLimit`);
    /// never lowers it. Returns the limit after, or nil where it cannot be read or changed.
    @discardableResult
    public static func raiseSoftLimit(to target: Int = .max) -> OpenFileLimit? {
        var limit = rlimit()
        guard getrlimit(Self.resource, &limit) == 0 else { return nil }
        let soft = Self.count(limit.rlim_cur)
        let wanted = min(target, Self.count(limit.rlim_max), highestUsefulLimit)
        guard wanted > soft else { return OpenFileLimit(soft: soft, hard: Self.count(limit.rlim_max)) }
        limit.rlim_cur = rlim_t(wanted)
        _ = setrlimit(Self.resource, &limit)  // refused or not, the limit in force is what counts
        return current()
    }

    /// Sets the soft limit as given (tests, to put a process back as it was).
    @discardableResult
    public static func setSoftLimit(_ soft: Int) -> Bool {
        var limit = rlimit()
        guard getrlimit(Self.resource, &limit) == 0 else { return false }
        limit.rlim_cur = rlim_t(min(soft, Self.count(limit.rlim_max)))
        return setrlimit(Self.resource, &limit) == 0
    }

    private static func count(_ value: rlim_t) -> Int {
        // RLIM_INFINITY (all ones on Linux, 2^63 - 1 on Darwin) is not importable as a constant.
        value >= rlim_t(Int.max) ? Int.max : Int(value)
    }

    #if canImport(Glibc)
    private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let resource = RLIMIT_NOFILE
    #endif
}
