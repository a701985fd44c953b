#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Root-mean-square layer norm as Llama uses it: `y = weight ⊙ x / sqrt(mean(x²) + eps)`.
public enum RMSNorm {
    /// Normalises `rows` consecutive vectors of `width` elements each.
    /// - Parameters:
    ///   - input: (rows, width)
    ///   - weight: (width)
    ///   - output: (rows, width); may be the same buffer as `input`.
    @inlinable
    public static func apply(_ input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             into output: UnsafeMutablePointer<Float>, rows: Int = 1, width: Int, epsilon: Float) {
        for r in 0..<rows {
            let x = input + r * width, y = output + r * width
            let meanSquare = dot(x, x, count: width) / Float(width)
            let scale = 1 / (meanSquare + epsilon).squareRoot()
            // Same order as Hugging Face: (x · rsqrt) first, then the weight.
            var i = 0
            let s = SIMD16<Float>(repeating: scale)
            let rx = UnsafeRawPointer(x), rw = UnsafeRawPointer(weight), ry = UnsafeMutableRawPointer(y)
            while i + 16 <= width {
                let v = rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) * s
                ry.storeBytes(of: rw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) * v,
                              toByteOffset: i * 4, as: SIMD16<Float>.self)
                i += 16
            }
            while i < width {
                y[i] = weight[i] * (x[i] * scale)
                i += 1
            }
        }
    }
}

/// The plain twin of `RMSNorm`, accumulating in Double.
public enum ReferenceRMSNorm {
    public static func apply(_ input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             into output: UnsafeMutablePointer<Float>, rows: Int = 1, width: Int, epsilon: Float) {
        for r in 0..<rows {
            var sum = 0.0
            for i in 0..<width { sum += Double(input[r * width + i]) * Double(input[r * width + i]) }
            let scale = 1 / (sum / Double(width) + Double(epsilon)).squareRoot()
            for i in 0..<width {
                output[r * width + i] = Float(Double(weight[i]) * Double(input[r * width + i]) * scale)
            }
        }
    }
}

/// SwiGLU gating of a feed-forward block: `gate[i] = silu(gate[i]) · up[i]`, with `silu(x) = x / (1 + e^-x)`.
public enum SwiGLU {
    @inlinable
    public static func apply(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        let rg = UnsafeMutableRawPointer(gate), ru = UnsafeRawPointer(up)
        var i = 0
        while i + 16 <= count {
            let g = rg.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
            let u = ru.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
            rg.storeBytes(of: g / (1 + exp16(-g)) * u, toByteOffset: 4 * i, as: SIMD16<Float>.self)
            i += 16
        }
        while i < count {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
            i += 1
        }
    }
}
