import Foundation
import OCPP16
import Testing

@Suite("OCPP16DateTime")
struct DateTimeTests {
    static let reference: TimeInterval = 1_795_608_000 // 2026-11-25T12:00:00Z

    @Test(arguments: [
        ("2026-11-25T12:00:00Z", 0.0),
        ("2026-11-25T12:00:00.000Z", 0.0),
        ("2026-11-25T12:00:00.5Z", 0.5),
        ("2026-11-25T12:00:00.123Z", 0.123),
        ("2026-11-25T12:00:00.123456Z", 0.123456),
        ("2026-11-25T12:00:00.123456789Z", 0.123456789),
        ("2026-11-25T12:00:00.1234567891234Z", 0.123456789),
        ("2026-11-25T12:00:00,25Z", 0.25),
        ("2026-11-25t12:00:00z", 0.0),
        ("2026-11-25 12:00:00Z", 0.0),
        ("2026-11-25T12:00:00", 0.0),                // no offset -> UTC
        ("2026-11-25T12:00:00.250", 0.25),           // no offset -> UTC
        ("2026-11-25T13:00:00+01:00", 0.0),
        ("2026-11-25T13:00:00.000+01:00", 0.0),
        ("2026-11-25T06:30:00-05:30", 0.0),
        ("2026-11-25T13:00:00+0100", 0.0),
        ("2026-11-25T13:00:00+01", 0.0),
        ("2026-11-25T12:00:00+00:00", 0.0),
        ("2026-11-25T12:00:00-00:00", 0.0),
        ("2026-11-26T01:45:00+13:45", 0.0),
        ("2026-11-24T23:00:00-13:00", 0.0),
        (" 2026-11-25T12:00:00Z ", 0.0),
    ])
    func parses(_ input: String, _ fraction: Double) throws {
        let date = try #require(OCPP16DateTime.parse(input))
        #expect(abs(date.timeIntervalSince1970 - (Self.reference + fraction)) < 1e-6, "\(input)")
    }

    @Test(arguments: [
        "", "garbage", "2026-11-25", "2026-11-25T12:00Z", "2026-11-25T12:00:00.Z",
        "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z", "2026-11-25T24:00:00Z", "2026-11-25T12:60:00Z",
        "2026-11-25T12:00:00+24:00", "2026-11-25T12:00:00+01:", "2026-11-25T12:00:00Q",
        "2026-11-25T12:00:00Zjunk", "26-11-25T12:00:00Z", "2026/11/25T12:00:00Z",
        "+2026-11-25T12:00:00Z", "2026-11-25T12:00:00+1",
    ])
    func rejects(_ input: String) {
        #expect(OCPP16DateTime.parse(input) == nil, "\(input)")
    }

    @Test func leapDays() throws {
        #expect(OCPP16DateTime.parse("2024-02-29T00:00:00Z") != nil)
        #expect(OCPP16DateTime.parse("2000-02-29T00:00:00Z") != nil)
        #expect(OCPP16DateTime.parse("1900-02-29T00:00:00Z") == nil)
        let date = try #require(OCPP16DateTime.parse("2024-02-29T23:59:59.999Z"))
        #expect(OCPP16DateTime.format(date) == "2024-02-29T23:59:59.999Z")
    }

    @Test func formats() {
        #expect(OCPP16DateTime.format(Date(timeIntervalSince1970: Self.reference)) == "2026-11-25T12:00:00.000Z")
        #expect(OCPP16DateTime.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(OCPP16DateTime.format(Date(timeIntervalSince1970: -0.001)) == "1969-12-31T23:59:59.999Z")
        #expect(OCPP16DateTime.format(Date(timeIntervalSince1970: Self.reference + 0.123)) == "2026-11-25T12:00:00.123Z")
        #expect(OCPP16DateTime.format(Date(timeIntervalSince1970: Self.reference + 0.9996)) == "2026-11-25T12:00:01.000Z")
        #expect(OCPP16DateTime.format(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00.000Z")
        #expect(OCPP16DateTime.format(Date(timeIntervalSince1970: 253_402_300_799)) == "9999-12-31T23:59:59.000Z")
    }

    /// Cross-check against Foundation's ISO8601DateFormatter across a wide range.
    @Test func agreesWithFoundation() throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let millis = Int64.random(in: -2_208_988_800_000...4_102_444_800_000, using: &generator)
            let date = Date(timeIntervalSince1970: Double(millis) / 1000)
            let ours = OCPP16DateTime.format(date)
            #expect(ours == formatter.string(from: date), "\(millis)")
            let parsed = try #require(OCPP16DateTime.parse(ours))
            #expect(Int64((parsed.timeIntervalSince1970 * 1000).rounded()) == millis)
            let theirs = try #require(formatter.date(from: ours))
            #expect(abs(parsed.timeIntervalSince1970 - theirs.timeIntervalSince1970) < 0.0005)
        }
    }

    @Test func coderRoundTripPreservesMilliseconds() throws {
        let date = try #require(OCPP16DateTime.parse("2026-11-25T12:00:00.987654+02:00"))
        let data = try OCPP16Coding.makeEncoder().encode(HeartbeatResponse(currentTime: date))
        #expect(String(decoding: data, as: UTF8.self) == #"{"currentTime":"2026-11-25T10:00:00.988Z"}"#)
        let back = try OCPP16Coding.makeDecoder().decode(HeartbeatResponse.self, from: data)
        #expect(abs(back.currentTime.timeIntervalSince(date)) < 0.001)
    }
}
