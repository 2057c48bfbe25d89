@testable import ChargePointSimulator
import Foundation
import Testing

/// The simulator's sampled values are what a charger's meter prints: fixed decimals, as `%.Nf` would.
struct MeterFormatTests {
    @Test func formatsLikePrintfFixedPoint() {
        var generator = SystemRandomNumberGenerator()
        var values: [Double] = [0, -0.0, 0.004, 0.005, 1, 9.99, 10, 229.96, 230.04, 11_000.5, -3.25, 99.999, 100]
        for _ in 0..<2_000 { values.append(Double.random(in: -500...50_000, using: &generator)) }
        for value in values {
            for digits in 0...3 {
                let ours = EnergyMeter.format(value, digits)
                let printf = String(format: "%.\(digits)f", value)
                // Equal, or (on an exact tie in binary, which printf rounds to even) one unit apart in the last digit.
                if ours != printf {
                    let scale = pow(10, Double(digits))
                    #expect(abs((Double(ours)! - Double(printf)!) * scale) <= 1.000001, "\(value) with \(digits): \(ours) vs \(printf)")
                    #expect(!printf.hasPrefix("-0") || ours == printf.dropFirst().description, "\(value)")
                }
            }
        }
        #expect(EnergyMeter.format(230.04, 1) == "230.0")
        #expect(EnergyMeter.format(7.5, 2) == "7.50")
        #expect(EnergyMeter.format(-3.25, 1) == "-3.3")
        #expect(EnergyMeter.format(0.004, 2) == "0.00")
    }
}
