@testable import ChargePointSimulator
import NIOCore
import NIOPosix
import Testing

/// The chargers' timers: one NIO timer per grid point for all the chargers of a loop.
struct WakeWheelTests {
    /// The sequence numbers of the next `count` wakes in `events`.
    private func wakes(_ count: Int, from events: inout AsyncStream<EngineEvent>.AsyncIterator) async -> [UInt64] {
        var result: [UInt64] = []
        while result.count < count, let event = await events.next() {
            if case .wake(let sequence) = event { result.append(sequence) }
        }
        return result
    }

    /// Wakes due at one point come to each of their chargers, and a wake asked for after a later
    /// one, due before it, comes first: nothing waits behind the later point.
    @Test func eachWakeComesAtItsPointAndAnEarlierOneIsNotHeldBack() async {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let wheel = WakeWheel.of(loop)
        #expect(WakeWheel.of(loop) === wheel)
        let (first, firstEvents) = AsyncStream<EngineEvent>.makeStream()
        let (second, secondEvents) = AsyncStream<EngineEvent>.makeStream()
        let now = NIODeadline.now().uptimeNanoseconds
        let late = now + 2_000_000_000, early = now + 20_000_000
        // Asked from outside the loop, as a charger's task may: each hops to it.
        wheel.add(at: late, events: firstEvents, sequence: 2)
        wheel.add(at: early, events: firstEvents, sequence: 1)
        wheel.add(at: early, events: secondEvents, sequence: 7)
        var a = first.makeAsyncIterator(), b = second.makeAsyncIterator()
        #expect(await wakes(1, from: &b) == [7])
        #expect(NIODeadline.now().uptimeNanoseconds < late)
        #expect(await wakes(2, from: &a) == [1, 2])
        // A timer never fires before its point.
        #expect(NIODeadline.now().uptimeNanoseconds >= late)
    }

    /// A wake for a charger that stopped (its stream finished) is dropped without harm, and the
    /// point's other chargers still get theirs.
    @Test func aStoppedChargersWakeIsDropped() async {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let (gone, goneEvents) = AsyncStream<EngineEvent>.makeStream()
        let (live, liveEvents) = AsyncStream<EngineEvent>.makeStream()
        let point = NIODeadline.now().uptimeNanoseconds + 10_000_000
        WakeWheel.of(loop).add(at: point, events: goneEvents, sequence: 1)
        WakeWheel.of(loop).add(at: point, events: liveEvents, sequence: 3)
        goneEvents.finish()
        var g = gone.makeAsyncIterator(), l = live.makeAsyncIterator()
        #expect(await wakes(1, from: &l) == [3])
        #expect(await g.next() == nil)
    }
}
