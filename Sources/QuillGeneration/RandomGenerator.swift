/// The seeded pseudo-random generator behind sampling: xoshiro256** 1.0 (Blackman and Vigna, 2018),
/// its 256-bit state filled from the 64-bit seed by SplitMix64, as the authors recommend.
///
/// Quill uses its own generator rather than `SystemRandomNumberGenerator` or a platform one so that a
/// seed means the same token sequence on every run, platform and Swift version. Nothing here depends
/// on threads: sampling runs on the calling thread after the logits are complete.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable {
    private var s0, s1, s2, s3: UInt64

    /// A generator whose whole output is determined by `seed`.
    public init(seed: UInt64) {
        var x = seed
        func splitMix64() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix64(); s1 = splitMix64(); s2 = splitMix64(); s3 = splitMix64()
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotateLeft(s3, 45)
        return result
    }

    /// A uniform value in [0, 1) with 53 random bits (the top bits, which are the best ones of xoshiro).
    public mutating func nextUnitInterval() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    @inline(__always) private func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }
}
