import Testing
@testable import OCPPCore

@Suite struct CorrelatorTests {
    typealias C = CallCorrelator<Int>
    let t0 = ContinuousClock.now

    func call(_ id: String, _ token: Int) -> OutgoingCall<Int> {
        OutgoingCall(id: id, action: "Reset", payload: ["type": "Soft"], token: token)
    }

    func sent(_ a: C.EnqueueAction) -> OutgoingCall<Int>? { if case .send(let c) = a { return c } else { return nil } }

    @Test func orderingOneInFlight() {
        var c = C(configuration: .init(queueCapacity: 4, timeout: .seconds(10)))
        let first = sent(c.enqueue(call("a", 1), now: t0))
        #expect(first?.id == "a" && first?.deadline == t0 + .seconds(10))
        #expect(first?.frame == .call(id: "a", action: "Reset", payload: ["type": "Soft"]))
        guard case .queued(1) = c.enqueue(call("b", 2), now: t0) else { Issue.record("b queued"); return }
        guard case .queued(2) = c.enqueue(call("c", 3), now: t0) else { Issue.record("c queued"); return }
        #expect(c.queuedCount == 2 && c.nextDeadline == t0 + .seconds(10))

        // answer for a queued (not yet sent) id is unknown
        guard case .unmatched(.unknown) = c.receiveResult(id: "b", now: t0) else { Issue.record("unmatched"); return }

        guard case .matched(let m1, let n1) = c.receiveResult(id: "a", now: t0 + .seconds(1)) else { Issue.record("a matched"); return }
        #expect(m1.token == 1 && n1?.id == "b" && n1?.deadline == t0 + .seconds(11))
        guard case .matched(let m2, let n2) = c.receiveError(id: "b", now: t0 + .seconds(2)) else { Issue.record("b matched"); return }
        #expect(m2.token == 2 && n2?.id == "c")
        guard case .matched(let m3, nil) = c.receiveResult(id: "c", now: t0 + .seconds(3)) else { Issue.record("c matched"); return }
        #expect(m3.token == 3 && c.inFlight == nil && c.nextDeadline == nil)
        // slot free again → send immediately
        #expect(sent(c.enqueue(call("d", 4), now: t0 + .seconds(4)))?.id == "d")
    }

    @Test func queueFullAndDuplicates() {
        var c = C(configuration: .init(queueCapacity: 2))
        _ = c.enqueue(call("a", 1), now: t0)
        _ = c.enqueue(call("b", 2), now: t0)
        _ = c.enqueue(call("c", 3), now: t0)
        guard case .rejected(let r, .queueFull) = c.enqueue(call("d", 4), now: t0) else { Issue.record("queue full"); return }
        #expect(r.token == 4)
        guard case .rejected(_, .duplicateID) = c.enqueue(call("a", 5), now: t0) else { Issue.record("dup in flight"); return }
        guard case .rejected(_, .duplicateID) = c.enqueue(call("c", 6), now: t0) else { Issue.record("dup queued"); return }
        // zero capacity: only the in-flight slot
        var z = C(configuration: .init(queueCapacity: 0))
        #expect(sent(z.enqueue(call("a", 1), now: t0)) != nil)
        guard case .rejected(_, .queueFull) = z.enqueue(call("b", 2), now: t0) else { Issue.record("zero cap"); return }
    }

    @Test func timeoutThenLateAnswerIgnored() {
        var c = C(configuration: .init(timeout: .seconds(5)))
        _ = c.enqueue(call("a", 1), now: t0)
        _ = c.enqueue(call("b", 2), now: t0 + .seconds(1))
        let early = c.tick(now: t0 + .seconds(4))
        #expect(early.isEmpty)
        let t = c.tick(now: t0 + .seconds(5))
        #expect(t.timedOut?.token == 1)
        #expect(t.next?.id == "b" && t.next?.deadline == t0 + .seconds(10))
        guard case .unmatched(.late) = c.receiveResult(id: "a", now: t0 + .seconds(6)) else { Issue.record("late"); return }
        guard case .unmatched(.unknown) = c.receiveResult(id: "zzz", now: t0 + .seconds(6)) else { Issue.record("unknown"); return }
        // b still in flight and matchable
        guard case .matched(let m, nil) = c.receiveResult(id: "b", now: t0 + .seconds(7)) else { Issue.record("b"); return }
        #expect(m.token == 2)
        // tick with nothing in flight
        let idle = c.tick(now: t0 + .seconds(100))
        #expect(idle.isEmpty)
    }

    @Test func lateMemoryIsBounded() {
        var c = C(configuration: .init(timeout: .seconds(1), lateIDMemory: 2))
        var now = t0
        for i in 0..<3 {
            _ = c.enqueue(call("x\(i)", i), now: now)
            now = now + .seconds(1)
            let t = c.tick(now: now)
            #expect(t.timedOut?.token == i)
        }
        guard case .unmatched(.unknown) = c.receiveResult(id: "x0", now: now) else { Issue.record("x0 forgotten"); return }
        guard case .unmatched(.late) = c.receiveResult(id: "x2", now: now) else { Issue.record("x2 late"); return }
    }

    @Test func cancel() {
        var c = C()
        _ = c.enqueue(call("a", 1), now: t0)
        _ = c.enqueue(call("b", 2), now: t0)
        _ = c.enqueue(call("c", 3), now: t0)
        guard case .cancelled(let qb, nil) = c.cancel(id: "b", now: t0) else { Issue.record("cancel queued"); return }
        #expect(qb.token == 2 && c.queuedCount == 1)
        guard case .cancelled(let fa, let next) = c.cancel(id: "a", now: t0) else { Issue.record("cancel in flight"); return }
        #expect(fa.token == 1 && next?.id == "c")
        guard case .notFound = c.cancel(id: "a", now: t0) else { Issue.record("not found"); return }
        guard case .unmatched(.late) = c.receiveResult(id: "a", now: t0) else { Issue.record("late after cancel"); return }
    }

    @Test func closeFailsAll() {
        var c = C()
        _ = c.enqueue(call("a", 1), now: t0)
        _ = c.enqueue(call("b", 2), now: t0)
        _ = c.enqueue(call("c", 3), now: t0)
        _ = c.beginIncoming(id: "in1")
        let failed = c.close()
        #expect(failed.map(\.token) == [1, 2, 3])
        #expect(c.isClosed && c.inFlight == nil && c.queuedCount == 0 && c.incomingInFlight == 0)
        guard case .rejected(_, .closed) = c.enqueue(call("d", 4), now: t0) else { Issue.record("closed"); return }
        guard case .unmatched = c.receiveResult(id: "a", now: t0) else { Issue.record("after close"); return }
        let again = c.close()
        #expect(again.isEmpty)
    }

    @Test func manyCallsQueueCompaction() {
        var c = C(configuration: .init(queueCapacity: 1000))
        for i in 0..<500 { _ = c.enqueue(call("m\(i)", i), now: t0) }
        var order: [Int] = []
        var current = "m0"
        while true {
            guard case .matched(let m, let next) = c.receiveResult(id: current, now: t0) else { break }
            order.append(m.token)
            guard let next else { break }
            current = next.id
            if order.count == 250 { _ = c.enqueue(call("late", 999), now: t0) }
        }
        #expect(order.count == 501 && order.prefix(500) == ArraySlice(0..<500) && order.last == 999)
    }

    @Test func incoming() {
        var c = C(configuration: .init(maxConcurrentIncoming: 2))
        var d = c.beginIncoming(id: "1"); #expect(d == .accepted)
        d = c.beginIncoming(id: "1"); #expect(d == .duplicate)
        d = c.beginIncoming(id: "2"); #expect(d == .acceptedConcurrent(otherInFlight: 1))
        d = c.beginIncoming(id: "3"); #expect(d == .rejectedTooMany)
        var f = c.finishIncoming(id: "1"); #expect(f)
        f = c.finishIncoming(id: "1"); #expect(!f)
        d = c.beginIncoming(id: "3"); #expect(d == .acceptedConcurrent(otherInFlight: 1))
        f = c.finishIncoming(id: "2") && c.finishIncoming(id: "3"); #expect(f)
        d = c.beginIncoming(id: "1"); #expect(d == .accepted)  // ids may be reused after completion
    }
}
