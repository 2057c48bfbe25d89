@testable import ChargePointSimulator
import Testing

/// Where a `sessions` charger starts in its cycle of a session and a pause.
struct SessionCycleTests {
    let cycle = SessionCycle(duration: .seconds(20), pause: .seconds(5))

    @Test func aChargerInsideASessionStartsAShortenedOneNow() {
        #expect(cycle.firstSession(atPhase: 0) == (.zero, .seconds(20)))
        let first = cycle.firstSession(atPhase: 0.5)  // 12.5 s into its 25 s cycle
        #expect(first.startsIn == .zero)
        #expect(first.length == .milliseconds(7_500))
    }

    @Test func aChargerInsideThePauseStartsAWholeSessionWhenItEnds() {
        let first = cycle.firstSession(atPhase: 0.9)  // 22.5 s into its cycle: 2.5 s of pause left
        #expect(first.startsIn == .milliseconds(2_500))
        #expect(first.length == .seconds(20))
        #expect(cycle.firstSession(atPhase: 0.8) == (.seconds(5), .seconds(20)))
    }

    @Test func aSessionThatWouldEndAtOnceStillLastsAMillisecond() {
        let first = cycle.firstSession(atPhase: 0.799_999_99)
        #expect(first.startsIn == .zero)
        #expect(first.length == .milliseconds(1))
    }

    /// A fleet spread over its phases has the same share of chargers in a session at every moment
    /// (here 80%: 20 s sessions, 5 s pauses), so it offers a steady load from its first second.
    @Test func aFleetSpreadOverItsPhasesChargesAtAnEvenShare() {
        let chargers = 1_000
        // Each charger's session intervals over two cycles, from its first session on.
        let sessions: [[(start: Duration, end: Duration)]] = (0..<chargers).map { i in
            let first = cycle.firstSession(atPhase: Double(i) / Double(chargers))
            var intervals = [(first.startsIn, first.startsIn + first.length)]
            var next = first.startsIn + first.length + cycle.pause
            while next < .seconds(50) {
                intervals.append((next, next + cycle.duration))
                next += cycle.duration + cycle.pause
            }
            return intervals
        }
        for tenth in stride(from: 1, to: 500, by: 7) {
            let t = Duration.milliseconds(tenth * 100)
            let charging = sessions.filter { $0.contains { $0.start <= t && t < $0.end } }.count
            #expect((790...810).contains(charging), "at \(t): \(charging) of \(chargers) in a session")
        }
    }
}
