import Foundation
import NIOWebSocket
import Synchronization

/// The simulator's randomness without a system call per number.
///
/// `SystemRandomNumberGenerator` asks the kernel (`getrandom`) for every number: three calls per
/// simulated MeterValues (the meter's power and voltage, the frame's masking key), about 3% of the
/// simulator's CPU at 5,000 messages/s (perf). The meter's jitter needs no secrecy, so it comes
/// from a SplitMix64 generator seeded once from the system; masking keys (RFC 6455 §5.3 asks for
/// a strong source of entropy) still come from the kernel's random source, 1,024 at a time.

/// SplitMix64 (Steele, Lea and Flood 2014): fast, 64 bits of state, good enough for jitter.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    /// Seeded from the system's generator.
    init() {
        var system = SystemRandomNumberGenerator()
        state = system.next()
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// WebSocket masking keys read from `/dev/urandom` in blocks of 4 KiB (one read per 1,024 frames).
/// Falls back to `WebSocketMaskingKey.random()` if the device cannot be read.
enum MaskingKeys {
    private struct Pool {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var next = 4096
        var source: Int32 = -2  // not opened yet; -1: cannot be opened
    }

    private static let pool = Mutex(Pool())

    static func next() -> WebSocketMaskingKey {
        let key: WebSocketMaskingKey? = pool.withLock { pool in
            if pool.next + 4 > pool.bytes.count {
                if pool.source == -2 { pool.source = open("/dev/urandom", O_RDONLY | O_CLOEXEC) }
                guard pool.source >= 0 else { return nil }
                let filled = pool.bytes.withUnsafeMutableBytes { read(pool.source, $0.baseAddress, $0.count) }
                guard filled == pool.bytes.count else { return nil }
                pool.next = 0
            }
            defer { pool.next += 4 }
            return WebSocketMaskingKey(pool.bytes[pool.next..<pool.next + 4])
        }
        return key ?? .random()
    }
}
