@testable import ChargepathServer
import Foundation
import Testing

/// The history API's `from` and `to`: a date, or a date-time with its offset; nothing else.
struct HistoryTimeTests {
    static func utc(_ seconds: TimeInterval) -> Date { Date(timeIntervalSince1970: seconds) }

    @Test func acceptsDatesAndDateTimesWithOffsets() throws {
        let tenAM = 1_795_600_800.0  // 2026-11-25T10:00:00Z
        #expect(HistoryTime.parse("2026-11-25") == Self.utc(tenAM - 36_000))
        #expect(HistoryTime.parse("2026-11-25T10:00:00Z") == Self.utc(tenAM))
        #expect(HistoryTime.parse("2026-11-25T11:00:00+01:00") == Self.utc(tenAM))
        #expect(HistoryTime.parse("2026-11-25T05:30:00-04:30") == Self.utc(tenAM))
        // A '+' that became a space in an unencoded query string.
        #expect(HistoryTime.parse("2026-11-25T11:00:00 01:00") == Self.utc(tenAM))
        let fraction = try #require(HistoryTime.parse("2026-11-25T10:00:00.250123Z"))
        #expect(abs(fraction.timeIntervalSince1970 - (tenAM + 0.250123)) < 1e-6)
        #expect(HistoryTime.format(fraction) == "2026-11-25T10:00:00.250123Z")
        #expect(HistoryTime.parse("2028-02-29") != nil)
    }

    @Test func formatsToTheMicrosecondPostgreSQLKeeps() {
        #expect(HistoryTime.format(Self.utc(1_795_600_800)) == "2026-11-25T10:00:00Z")
        #expect(HistoryTime.format(Self.utc(1_795_600_800.25)) == "2026-11-25T10:00:00.250Z")
        #expect(HistoryTime.format(Self.utc(1_795_600_800.000_001)) == "2026-11-25T10:00:00.000001Z")
        #expect(HistoryTime.format(Self.utc(-0.5)) == "1969-12-31T23:59:59.500Z")
        #expect(HistoryTime.format(Self.utc(253_402_300_800)) == "10000-01-01T00:00:00Z")
    }

    @Test func refusesAnythingElse() {
        for text in [
            "", "yesterday", "1732000000", "2026-11-25T10:00:00", "2026-11-25 10:00:00", "2026-11-25T10:00Z",
            "2026-13-01", "2026-02-30", "2027-02-29", "2026-11-25T24:00:00Z", "2026-13-45T99:00:00Z",
            "2026-11-25T10:00:00+25:00", "2026-11-25T10:00:00.Z", "2026-11-25X10:00:00Z", "26-11-25",
            "2026-11-25T10:00:00Zjunk", "+2026-11-25", "2026-1-25",
        ] {
            #expect(HistoryTime.parse(text) == nil, "\(text)")
        }
    }
}
