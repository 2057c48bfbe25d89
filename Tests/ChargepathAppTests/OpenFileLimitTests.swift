@testable import ChargepathApp
import Logging
import ProcessLimits
import Testing

/// Each charger connection is an open file: the server raises its soft limit to the hard one at
/// start (many systems start processes at 1,024), and says so when the limit holds few chargers.
@Suite struct OpenFileLimitTests {
    /// The real limit of this process, raised by the server's start. The only test that changes
    /// the process's limit (tests run side by side); it puts it back as it was.
    @Test func theServerRaisesItsSoftLimitToTheHardLimit() throws {
        let original = try #require(OpenFileLimit.current())
        try #require(original.hard != .max && original.hard > 200, "needs a finite hard limit above 200 (here \(original))")
        defer { OpenFileLimit.setSoftLimit(original.soft) }
        // Lowered a little only: other tests hold sockets meanwhile.
        #expect(OpenFileLimit.setSoftLimit(original.hard - 16))
        #expect(OpenFileLimit.current()?.soft == original.hard - 16)

        // Never lowers, and stops at the target asked for.
        #expect(OpenFileLimit.raiseSoftLimit(to: 10)?.soft == original.hard - 16)
        #expect(OpenFileLimit.raiseSoftLimit(to: original.hard - 8)?.soft == original.hard - 8)

        let logs = LogCapture()
        let raised = ChargepathApp.raiseOpenFileLimit(logger: Logger(label: "test") { _ in logs }, reserved: 250)
        let expected = min(original.hard, OpenFileLimit.highestUsefulLimit)
        #expect(raised?.soft == expected)
        #expect(OpenFileLimit.current()?.soft == expected)
        #expect(logs.messages.contains { $0.contains("Open-file limit") && $0.contains("limit=\(expected)") && $0.contains("limit.before=\(original.hard - 8)") })
    }

    /// A hard limit that holds few chargers: the log says how many and what to do.
    @Test func aLimitThatHoldsFewChargersIsLoggedWithWhatToDo() {
        let logs = LogCapture()
        let limit = OpenFileLimit(soft: 1_024, hard: 1_024)
        let reserved = ChargepathApp.filesBesideChargers(ChargepathConfiguration())
        #expect(reserved == 128 + 20 + 6 + 96)  // API connections, database pool, pinned connections, the rest
        let result = ChargepathApp.raiseOpenFileLimit(
            logger: Logger(label: "test") { _ in logs }, reserved: reserved, current: { limit }, raise: { limit }
        )
        #expect(result == limit)
        #expect(ChargepathApp.chargerCapacity(limit, reserved: reserved) == 774)
        #expect(logs.messages.contains { $0.contains("This node can hold only about 774 chargers") && $0.contains("LimitNOFILE=") })
        // A larger pool leaves fewer files for chargers.
        var bigPool = ChargepathConfiguration()
        bigPool.databasePoolSize = 120
        #expect(ChargepathApp.filesBesideChargers(bigPool) == reserved + 100)

        // A soft limit of 1,024 under a high hard limit: raised, and nothing to warn about.
        let quiet = LogCapture()
        let raised = OpenFileLimit(soft: 524_288, hard: 524_288)
        _ = ChargepathApp.raiseOpenFileLimit(
            logger: Logger(label: "test") { _ in quiet }, reserved: reserved,
            current: { OpenFileLimit(soft: 1_024, hard: 524_288) }, raise: { raised }
        )
        #expect(quiet.messages.count == 1)
        #expect(quiet.messages.first?.contains("limit.before=1024") == true)
        #expect(quiet.messages.first?.contains("chargers.max=\(524_288 - reserved)") == true)
    }
}
