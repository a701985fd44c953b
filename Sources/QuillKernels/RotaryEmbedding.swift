import Foundation

/// Rotary position embedding with a precomputed cos/sin table.
///
/// GGUF files store Llama's Q and K rows permuted for ggml's "normal" RoPE, which rotates
/// adjacent pairs `(x[2i], x[2i+1])`; Hugging Face un-permutes them and rotates halves. Both are the
/// same function of the un-permuted weights, so an engine reading the GGUF as-is rotates pairs.
public struct RotaryEmbedding: Sendable {
    public let headDimension: Int
    public let maxPositions: Int
    /// (maxPositions, headDimension / 2)
    @usableFromInline let cosTable: [Float]
    /// (maxPositions, headDimension / 2)
    @usableFromInline let sinTable: [Float]

    /// Frequencies follow Hugging Face: `inv_freq[i] = 1 / base^(2i/d)` and angle `= pos · inv_freq[i]`,
    /// both in Float, so the table matches the reference implementation's rounding.
    public init(headDimension: Int, base: Float, maxPositions: Int) {
        precondition(headDimension % 2 == 0, "RoPE needs an even head dimension")
        self.headDimension = headDimension
        self.maxPositions = maxPositions
        let half = headDimension / 2
        let inverseFrequencies = (0..<half).map { i in
            1 / Float(pow(Double(base), Double(Float(2 * i) / Float(headDimension))))
        }
        var c = [Float](repeating: 0, count: maxPositions * half)
        var s = c
        for p in 0..<maxPositions {
            for i in 0..<half {
                let angle = Float(p) * inverseFrequencies[i]
                c[p * half + i] = cosf(angle)
                s[p * half + i] = sinf(angle)
            }
        }
        cosTable = c
        sinTable = s
    }

    /// Rotates `heads` consecutive head vectors (heads, headDimension) of the token at `position`.
    @inlinable
    public func apply(_ vectors: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        precondition(position >= 0 && position < maxPositions, "position \(position) outside the RoPE table")
        let half = headDimension / 2
        cosTable.withUnsafeBufferPointer { cosine in
            sinTable.withUnsafeBufferPointer { sine in
                let c = cosine.baseAddress! + position * half, s = sine.baseAddress! + position * half
                for h in 0..<heads {
                    let v = vectors + h * headDimension
                    for i in 0..<half {
                        let x0 = v[2 * i], x1 = v[2 * i + 1]
                        v[2 * i] = x0 * c[i] - x1 * s[i]
                        v[2 * i + 1] = x0 * s[i] + x1 * c[i]
                    }
                }
            }
        }
    }
}
