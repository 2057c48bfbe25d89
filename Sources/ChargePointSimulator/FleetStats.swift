public import Foundation
import Histogram
import Synchronization

/// Aggregated counters and a round-trip HDR histogram for a fleet (thread-safe, one lock).
public final class FleetStats: ChargePointStatsSink {
    struct State {
        var connected = 0
        var peakConnected = 0
        var connections = 0
        var connectFailures = 0
        var disconnects = 0
        var bootAccepted = 0
        var allAcceptedAfter: Duration?
        var callsAnswered = 0
        var callErrors = 0
        var timeouts = 0
        var failures = 0
        var centralSystemCalls = 0
        var errorSamples: [String: Int] = [:]
        var latencyMicros = State.histogram()
        /// The same, per action: which message is slow is the first question when p99 is high.
        var latencyByAction: [String: Histogram<UInt64>] = [:]
        var windowCalls = 0
        /// The round trips of the live line's window alone: a stall shows in the second it happened,
        /// where the run's p99 moves little.
        var windowLatencyMicros = State.histogram()
        var windowStart: ContinuousClock.Instant
        /// Since when calls answered and the latency histogram count (the end of the warm-up).
        var measuringSince: ContinuousClock.Instant

        static func histogram() -> Histogram<UInt64> {
            Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        }
    }

    public let expectedChargers: Int
    public let startedAt: ContinuousClock.Instant
    private let state: Mutex<State>

    public init(expectedChargers: Int, startedAt: ContinuousClock.Instant = .now) {
        self.expectedChargers = expectedChargers
        self.startedAt = startedAt
        self.state = Mutex(State(windowStart: startedAt, measuringSince: startedAt))
    }

    /// Ends the warm-up: calls answered and round-trip latencies count from now on.
    public func startMeasuring(now: ContinuousClock.Instant = .now) {
        state.withLock { s in
            s.callsAnswered = 0
            s.latencyMicros.reset()
            s.latencyByAction.removeAll()
            s.measuringSince = now
        }
    }

    public func connected() {
        state.withLock { s in
            s.connected += 1
            s.connections += 1
            s.peakConnected = max(s.peakConnected, s.connected)
        }
    }

    public func disconnected() { state.withLock { $0.connected -= 1; $0.disconnects += 1 } }

    public func connectFailed(_ error: SimulatorError, identity: String) {
        let message = Self.kind(of: error.message, identity: identity)
        state.withLock { s in
            s.connectFailures += 1
            Self.sample(message, into: &s)
        }
    }

    /// `message` with the charger's identity (as given, and as it appears in a URL) replaced by
    /// `<id>`: the summary then counts a storm's failures by kind ("17,000× … refused the
    /// WebSocket upgrade: HTTP 503", "20× … Connection reset by peer") instead of listing the first
    /// ten chargers' messages once each.
    static func kind(of message: String, identity: String) -> String {
        guard !identity.isEmpty else { return message }
        var kind = message.replacingOccurrences(of: identity, with: "<id>")
        if let encoded = identity.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed), encoded != identity {
            kind = kind.replacingOccurrences(of: encoded, with: "<id>")
        }
        return kind
    }

    public func bootAccepted() {
        let now = ContinuousClock.now
        state.withLock { s in
            s.bootAccepted += 1
            if s.bootAccepted == expectedChargers, s.allAcceptedAfter == nil {
                s.allAcceptedAfter = startedAt.duration(to: now)
            }
        }
    }

    public func callCompleted(action: String, roundTrip: Duration, isError: Bool) {
        let micros = UInt64(max(1, roundTrip.components.seconds * 1_000_000 + roundTrip.components.attoseconds / 1_000_000_000_000))
        state.withLock { s in
            s.callsAnswered += 1
            s.windowCalls += 1
            if isError {
                s.callErrors += 1
                Self.sample("CALLERROR to \(action)", into: &s)
            }
            _ = s.latencyMicros.record(micros)
            _ = s.windowLatencyMicros.record(micros)
            _ = s.latencyByAction[action, default: State.histogram()].record(micros)
        }
    }

    public func callFailed(action: String, error: SimulatorError) {
        state.withLock { s in
            if error.code == .timeout { s.timeouts += 1 } else { s.failures += 1 }
            Self.sample("\(action): \(error.code.rawValue)", into: &s)
        }
    }

    public func centralSystemCall(action: String) { state.withLock { $0.centralSystemCalls += 1 } }

    private static func sample(_ message: String, into s: inout State) {
        if s.errorSamples[message] != nil || s.errorSamples.count < 10 {
            s.errorSamples[message, default: 0] += 1
        }
    }

    /// Chargers whose last BootNotification was accepted reached the expected count.
    public var allAccepted: Bool { state.withLock { $0.allAcceptedAfter != nil } }

    /// One status line (resets the per-second window).
    public func statusLine(now: ContinuousClock.Instant = .now) -> String {
        state.withLock { s in
            let window = s.windowStart.duration(to: now)
            let rate = window > .zero ? Double(s.windowCalls) / window.seconds : 0
            s.windowCalls = 0
            s.windowStart = now
            let elapsed = Int(startedAt.duration(to: now).seconds)
            let h = s.latencyMicros
            let w = s.windowLatencyMicros
            s.windowLatencyMicros.reset()
            let errors = s.callErrors + s.timeouts + s.failures + s.connectFailures
            func ms(_ h: Histogram<UInt64>, _ percentile: Double?) -> Double {
                guard h.totalCount > 0 else { return 0 }
                return Double(percentile.map { h.valueAtPercentile($0) } ?? h.max) / 1000
            }
            return String(
                format: "[%4ds] connected %d/%d  accepted %d  calls/s %.0f  errors %d  p50 %.2f ms  p99 %.2f ms  max %.2f ms  (this second: p99 %.2f ms  max %.2f ms)",
                elapsed, s.connected, expectedChargers, s.bootAccepted, rate, errors,
                ms(h, 50), ms(h, 99), ms(h, nil), ms(w, 99), ms(w, nil)
            )
        }
    }

    public func report(scenario: String, now: ContinuousClock.Instant = .now) -> FleetReport {
        state.withLock { s in
            let elapsed = startedAt.duration(to: now).seconds
            let measured = s.measuringSince.duration(to: now).seconds
            let h = s.latencyMicros
            return FleetReport(
                scenario: scenario,
                chargers: expectedChargers,
                elapsedSeconds: elapsed,
                measuredSeconds: measured,
                connectedAtEnd: s.connected,
                peakConnected: s.peakConnected,
                connections: s.connections,
                connectFailures: s.connectFailures,
                disconnects: s.disconnects,
                bootAccepted: s.bootAccepted,
                secondsUntilAllAccepted: s.allAcceptedAfter.map(\.seconds),
                callsAnswered: s.callsAnswered,
                callsPerSecond: measured > 0 ? Double(s.callsAnswered) / measured : 0,
                callErrors: s.callErrors,
                timeouts: s.timeouts,
                otherFailures: s.failures,
                centralSystemCalls: s.centralSystemCalls,
                latency: .init(h),
                latencyByAction: s.latencyByAction.mapValues(FleetReport.Latency.init),
                errors: s.errorSamples
            )
        }
    }
}

/// The final summary of a fleet run (`--json` prints it as JSON).
public struct FleetReport: Codable, Sendable, Equatable {
    public struct Latency: Codable, Sendable, Equatable {
        /// Round trips measured (CALL sent → CALLRESULT/CALLERROR received).
        public var count: Int
        public var p50: Double
        public var p90: Double
        public var p99: Double
        public var max: Double
        public var mean: Double

        init(_ h: Histogram<UInt64>) {
            func ms(_ p: Double) -> Double { h.totalCount > 0 ? Double(h.valueAtPercentile(p)) / 1000 : 0 }
            count = Int(h.totalCount)
            p50 = ms(50)
            p90 = ms(90)
            p99 = ms(99)
            max = h.totalCount > 0 ? Double(h.max) / 1000 : 0
            mean = h.totalCount > 0 ? h.mean / 1000 : 0
        }
    }

    public var scenario: String
    public var chargers: Int
    public var elapsedSeconds: Double
    /// The part of the run that calls answered, calls/s and latency cover: all of it, less the warm-up.
    public var measuredSeconds: Double
    public var connectedAtEnd: Int
    public var peakConnected: Int
    public var connections: Int
    public var connectFailures: Int
    public var disconnects: Int
    public var bootAccepted: Int
    /// boot-storm: seconds from start until every charger was Accepted.
    public var secondsUntilAllAccepted: Double?
    public var callsAnswered: Int
    public var callsPerSecond: Double
    public var callErrors: Int
    public var timeouts: Int
    public var otherFailures: Int
    public var centralSystemCalls: Int
    /// Round-trip latency in milliseconds.
    public var latency: Latency
    /// The same, per action the simulated chargers sent.
    public var latencyByAction: [String: Latency]
    /// Up to 10 distinct error messages with counts.
    public var errors: [String: Int]

    public var totalErrors: Int { callErrors + timeouts + otherFailures + connectFailures }

    public var text: String {
        var lines = [
            "scenario        \(scenario)",
            "chargers        \(chargers) (peak connected \(peakConnected), connected at end \(connectedAtEnd))",
            String(format: "elapsed         %.1f s", elapsedSeconds),
            "boot accepted   \(bootAccepted)" + (secondsUntilAllAccepted.map { String(format: " (all after %.3f s)", $0) } ?? ""),
            "connections     \(connections) (failed \(connectFailures), disconnects \(disconnects))",
            String(format: "calls answered  %d (%.1f/s), CALLERROR %d, timeouts %d, other failures %d", callsAnswered, callsPerSecond, callErrors, timeouts, otherFailures)
                + (measuredSeconds < elapsedSeconds - 0.5 ? String(format: " in the last %.1f s (after the warm-up)", measuredSeconds) : ""),
            String(format: "round trip ms   p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f (n=%d)",
                   latency.p50, latency.p90, latency.p99, latency.max, latency.mean, latency.count),
        ]
        for (action, l) in latencyByAction.sorted(by: { $0.key < $1.key }) where latencyByAction.count > 1 {
            let name = "  " + action.padding(toLength: 22, withPad: " ", startingAt: 0)
            lines.append(name + String(format: " p50 %.3f  p99 %.3f  max %.3f (n=%d)", l.p50, l.p99, l.max, l.count))
        }
        if centralSystemCalls > 0 { lines.append("CS calls        \(centralSystemCalls)") }
        for (message, count) in errors.sorted(by: { $0.value > $1.value }) {
            lines.append("error           \(count)× \(message)")
        }
        return lines.joined(separator: "\n")
    }
}
