import Foundation

/// A small deterministic generator (SplitMix64) so every test sees the same "random" inputs.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Array where Element == Float {
    static func random(count: Int, in range: ClosedRange<Float> = -1...1, using g: inout SeededGenerator) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &g) }
    }
}

/// ‖a − b‖ / ‖b‖, the normalised error that llama.cpp's test-backend-ops uses to compare kernels.
func normalisedError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var difference = 0.0, norm = 0.0
    for i in a.indices {
        difference += Double(a[i] - b[i]) * Double(a[i] - b[i])
        norm += Double(b[i]) * Double(b[i])
    }
    return norm == 0 ? difference.squareRoot() : (difference / norm).squareRoot()
}
