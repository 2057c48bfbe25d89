@testable import ChargePointSimulator
import ProcessLimits
import Testing

/// One socket per simulated charger: a fleet raises its soft open-file limit when it must, and a
/// fleet larger than the hard limit is refused before it starts, with what to do instead.
@Suite struct OpenFileLimitPlanTests {
    @Test func whatANumberOfFilesAsksOfALimit() {
        let limit = OpenFileLimit(soft: 1_024, hard: 20_000)
        #expect(limit.plan(needed: 1_000) == .enough)
        #expect(limit.plan(needed: 1_024) == .enough)
        #expect(limit.plan(needed: 5_000) == .raise(to: 5_000))
        #expect(limit.plan(needed: 20_000) == .raise(to: 20_000))
        #expect(limit.plan(needed: 20_001) == .tooFew(available: 20_000))
        // An unlimited hard limit still stops where Linux does (fs.nr_open).
        let unlimited = OpenFileLimit(soft: 1_024, hard: .max)
        #expect(unlimited.plan(needed: 100_000) == .raise(to: 100_000))
        #expect(unlimited.plan(needed: 2_000_000) == .tooFew(available: OpenFileLimit.highestUsefulLimit))
    }

    @Test func aFleetRaisesTheSoftLimitOrSaysWhatToDo() throws {
        let limit = OpenFileLimit(soft: 1_024, hard: 20_000)
        #expect(try Fleet.softLimitNeeded(chargers: 500, limit: limit) == nil)
        #expect(try Fleet.softLimitNeeded(chargers: 2_000, limit: limit) == 2_000 + Fleet.filesBesideSockets)
        #expect {
            _ = try Fleet.softLimitNeeded(chargers: 50_000, limit: limit)
        } throws: { error in
            guard let error = error as? SimulatorError, error.code == .invalidConfiguration else { return false }
            return error.message.contains("--chargers 50000 needs about 50064 open files")
                && error.message.contains("at most 20000")
                && error.message.contains("each with its own --id-prefix and at most --chargers \(20_000 - Fleet.filesBesideSockets)")
        }
    }

    /// Through the fleet's own check, with this process's real limit: more chargers than any
    /// Linux process may hold sockets for is refused before a single connection is tried.
    @Test func aFleetBeyondTheLimitIsRefusedBeforeItStarts() async throws {
        let config = FleetConfiguration(url: "ws://127.0.0.1:9/ocpp", chargers: 2_000_000)
        #expect {
            try Fleet(configuration: config).validate()
        } throws: { error in
            (error as? SimulatorError).map { $0.code == .invalidConfiguration && $0.message.contains("open files") } ?? false
        }
        await #expect {
            _ = try await Fleet(configuration: config).run()
        } throws: { error in
            (error as? SimulatorError).map { $0.code == .invalidConfiguration && $0.message.contains("one socket per charger") } ?? false
        }
    }
}
