import ChargepathWorkflows
import Testing

/// When a worker's catch-up lanes work, from the lateness of what its lanes take.
@Suite struct WorkflowCatchUpPolicyTests {
    /// `observe`, outside the `#expect` macro (which cannot hold a mutating call).
    func changed(_ catchUp: inout WorkflowCatchUp, _ lateness: Duration?) -> Bool {
        catchUp.observe(lateness: lateness)
    }

    @Test func lateWorkTurnsCatchUpOnAndItStaysOnUntilTheWorkIsLessThanHalfAsLateOrThereIsNone() {
        var catchUp = WorkflowCatchUp(after: .seconds(10))
        #expect(!catchUp.behind)
        #expect(!changed(&catchUp, .seconds(9)), "under the limit: nothing changes")
        #expect(!changed(&catchUp, nil))
        #expect(changed(&catchUp, .seconds(10)), "at the limit: behind")
        #expect(catchUp.behind)
        #expect(!changed(&catchUp, .seconds(30)))
        #expect(!changed(&catchUp, .seconds(5)), "half the limit: still behind")
        #expect(catchUp.behind)
        #expect(changed(&catchUp, .milliseconds(4_999)), "under half: caught up")
        #expect(!catchUp.behind)
        #expect(!changed(&catchUp, .seconds(7)), "between half and the limit: stays caught up")
        #expect(!catchUp.behind)
        #expect(changed(&catchUp, .seconds(60)))
        #expect(changed(&catchUp, nil), "nothing found: caught up")
        #expect(!catchUp.behind)
    }
}
