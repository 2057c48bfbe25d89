import ChargepathWorkflows
import Testing

/// When a worker's catch-up lanes work, from the lateness of what its lanes take.
@Suite struct WorkflowCatchUpPolicyTests {
    let t0 = ContinuousClock.now

    /// A round begun and ended at `second` (relative to `t0`), outside the `#expect` macro (which
    /// cannot hold a mutating call).
    func changed(_ catchUp: inout WorkflowCatchUp, _ lateness: Duration?, at second: Int) -> Bool {
        changed(&catchUp, lateness, began: second, ended: second)
    }

    /// A round begun at `began` and ended at `ended` (seconds after `t0`).
    func changed(_ catchUp: inout WorkflowCatchUp, _ lateness: Duration?, began: Int, ended: Int) -> Bool {
        catchUp.observe(lateness: lateness, began: t0 + .seconds(began), now: t0 + .seconds(ended))
    }

    @Test func lateWorkTurnsCatchUpOnAndItStaysOnUntilTheWorkIsLessThanHalfAsLateOrThereIsNone() {
        var catchUp = WorkflowCatchUp(after: .seconds(10))
        #expect(!catchUp.behind)
        #expect(!changed(&catchUp, .seconds(9), at: 1), "under the limit: nothing changes")
        #expect(!changed(&catchUp, nil, at: 2))
        #expect(changed(&catchUp, .seconds(10), at: 3), "at the limit: behind")
        #expect(catchUp.behind)
        #expect(!changed(&catchUp, .seconds(30), at: 4))
        #expect(!changed(&catchUp, .seconds(5), at: 5), "half the limit: still behind")
        #expect(catchUp.behind)
        #expect(changed(&catchUp, .milliseconds(4_999), at: 6), "under half: caught up")
        #expect(!catchUp.behind)
        #expect(!changed(&catchUp, .seconds(7), at: 7), "between half and the limit: stays caught up")
        #expect(!catchUp.behind)
        #expect(changed(&catchUp, .seconds(60), at: 8))
        #expect(changed(&catchUp, nil, at: 9), "nothing found: caught up")
        #expect(!catchUp.behind)
    }

    /// A lane that took the last late work before another lane found none does not turn the
    /// catch-up lanes on again: its round began before they were turned off.
    @Test func aRoundBegunBeforeTheLastChangeChangesNothing() {
        var catchUp = WorkflowCatchUp(after: .seconds(10))
        #expect(changed(&catchUp, .seconds(30), began: 0, ended: 1))
        // Lane A began at 2 s and is still taking late work; lane B, begun at 3 s, finds none.
        #expect(changed(&catchUp, nil, began: 3, ended: 4))
        #expect(!catchUp.behind)
        #expect(!changed(&catchUp, .seconds(30), began: 2, ended: 5), "A's round began before")
        #expect(!catchUp.behind)
        // A round begun after the change counts.
        #expect(changed(&catchUp, .seconds(30), began: 6, ended: 7))
        #expect(catchUp.behind)
    }
}
