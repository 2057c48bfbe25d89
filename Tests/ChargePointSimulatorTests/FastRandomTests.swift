@testable import ChargePointSimulator
import NIOWebSocket
import Testing

/// The simulator's cheap randomness: the meter's jitter and the frames' masking keys.
struct FastRandomTests {
    /// SplitMix64's published sequence for seed 0 (as in Vigna's reference `splitmix64.c`).
    @Test func splitMixFollowsTheReferenceSequence() {
        var generator = SplitMix64(seed: 0)
        #expect(generator.next() == 0xE220_A839_7B1D_CDAF)
        #expect(generator.next() == 0x6E78_9E6A_A1B9_65F4)
        #expect(generator.next() == 0x06C4_5D18_8009_454F)
    }

    /// Two meters do not share their jitter: each is seeded from the system.
    @Test func metersAreSeededApart() {
        var a = SplitMix64(), b = SplitMix64()
        #expect((0..<4).map { _ in a.next() } != (0..<4).map { _ in b.next() })
    }

    /// Masking keys keep coming, different, across the refills of the pool (1,024 keys each).
    @Test func maskingKeysVaryAcrossRefills() {
        var seen = Set<UInt32>()
        for _ in 0..<3_000 {
            let key = MaskingKeys.next()
            seen.insert(key.reduce(0) { $0 << 8 | UInt32($1) })
        }
        // 3,000 random 32-bit keys: a collision or two at most, never a stuck pool.
        #expect(seen.count > 2_990)
    }
}
