#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rotary position embedding.
///
/// GGUF files store Llama's Q and K rows permuted for ggml's "normal" RoPE, which rotates adjacent
/// pairs `(x[2i], x[2i+1])`; Hugging Face un-permutes them and rotates halves. Both are the same
/// function of the un-permuted weights, so an engine reading a Llama GGUF as-is rotates pairs.
/// Qwen2 and Gemma 3 files are not permuted: they rotate halves `(x[i], x[i + d/2])` ("NeoX").
///
/// The cos/sin of a batch's positions are computed once per forward pass (`table(positions:)`) and
/// shared by every layer and head; nothing is sized by the context length.
public struct RotaryEmbedding: Sendable, Equatable {
    /// Which elements of a head vector form a rotated pair.
    public enum Pairing: String, Sendable {
        /// `(x[2i], x[2i+1])`: ggml's normal mode (Llama GGUFs).
        case adjacent
        /// `(x[i], x[i + d/2])`: NeoX / Hugging Face's `rotate_half` (Qwen2, Gemma 3).
        case halves
    }

    public let headDimension: Int
    public let pairing: Pairing
    /// `1 / base^(2i/d)` for each pair, divided by its frequency factor and the linear scaling factor.
    public let inverseFrequencies: [Float]

    /// Frequencies follow Hugging Face: `inv_freq[i] = 1 / base^(2i/d)` and angle `= pos · inv_freq[i]`,
    /// both in Float, so the table matches the reference implementation's rounding.
    /// - Parameters:
    ///   - frequencyFactors: per pair, a divisor of the frequency (Llama 3.x `rope_freqs`); nil = none.
    ///   - linearScale: positions are divided by this (linear RoPE scaling); 1 = none.
    public init(headDimension: Int, base: Float, pairing: Pairing = .adjacent, frequencyFactors: [Float]? = nil,
                linearScale: Float = 1) {
        precondition(headDimension % 2 == 0, "RoPE needs an even head dimension")
        precondition(frequencyFactors == nil || frequencyFactors!.count == headDimension / 2)
        self.headDimension = headDimension
        self.pairing = pairing
        inverseFrequencies = (0 ..< headDimension / 2).map { i in
            var f = 1 / Float(pow(Double(base), Double(Float(2 * i) / Float(headDimension))))
            if let frequencyFactors { f /= frequencyFactors[i] }
            return linearScale == 1 ? f : f / linearScale
        }
    }

    /// cos and sin of every position's angles: each (positions.count, headDimension / 2).
    public func table(positions: some Sequence<Int>) -> (cos: [Float], sin: [Float]) {
        var c: [Float] = [], s: [Float] = []
        for p in positions {
            for f in inverseFrequencies {
                let angle = Float(p) * f
                c.append(cosf(angle))
                s.append(sinf(angle))
            }
        }
        return (c, s)
    }

    /// Rotates `heads` consecutive head vectors (heads, headDimension) of one token by the angles
    /// of its position (`cos`, `sin`: headDimension / 2 each, a row of `table(positions:)`).
    @inlinable
    public func apply(_ vectors: UnsafeMutablePointer<Float>, heads: Int, cos c: UnsafePointer<Float>,
                      sin s: UnsafePointer<Float>) {
        let half = headDimension / 2
        for h in 0 ..< heads {
            let v = vectors + h * headDimension
            switch pairing {
            case .adjacent:
                for i in 0 ..< half {
                    let x0 = v[2 * i], x1 = v[2 * i + 1]
                    v[2 * i] = x0 * c[i] - x1 * s[i]
                    v[2 * i + 1] = x0 * s[i] + x1 * c[i]
                }
            case .halves:
                for i in 0 ..< half {
                    let x0 = v[i], x1 = v[i + half]
                    v[i] = x0 * c[i] - x1 * s[i]
                    v[i + half] = x0 * s[i] + x1 * c[i]
                }
            }
        }
    }

    /// Rotates `heads` head vectors of the token at `position` (computes that position's angles).
    public func apply(_ vectors: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let (c, s) = table(positions: [position])
        apply(vectors, heads: heads, cos: c, sin: s)
    }
}
