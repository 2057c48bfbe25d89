public import Foundation

/// Cheap unique OCPP message ids (always <= 36 characters).
///
/// Format: `<prefix>-<counter>` where `prefix` is 12 random base-36 characters chosen per generator
/// (≈ 62 bits of randomness, so ids from different connections / restarts do not collide) and
/// `counter` is a base-36 UInt64 (max 13 chars) → at most 26 characters.
/// Value type: keep one per connection inside the owning actor and call `next()`.
public struct MessageIDGenerator: Sendable {
    public let prefix: String
    private var counter: UInt64 = 0

    public init() {
        var rng = SystemRandomNumberGenerator()
        self.init(prefix: Self.randomPrefix(using: &rng))
    }

    /// Deterministic prefix (tests). `prefix` must be <= 22 characters to keep ids <= 36.
    public init(prefix: String) {
        precondition(prefix.count <= 22, "prefix too long for 36-character message ids")
        self.prefix = prefix
    }

    public mutating func next() -> String {
        counter &+= 1
        return prefix + "-" + String(counter, radix: 36)
    }

    /// A random UUID string (36 characters) — stateless alternative.
    public static func uuid() -> String { UUID().uuidString.lowercased() }

    static func randomPrefix(using rng: inout some RandomNumberGenerator) -> String {
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        return String((0..<12).map { _ in alphabet[Int(rng.next(upperBound: UInt8(36)))] })
    }
}
