#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Layer normalisation with mean subtraction and bias, as `torch.nn.LayerNorm` computes it (BART,
/// Marian): `y = (x − mean) / sqrt(var + eps) · weight + bias`, biased variance.
public enum LayerNorm {
    /// Normalises `rows` consecutive vectors of `width` elements each.
    /// - Parameters:
    ///   - input: (rows, width)
    ///   - weight: (width)
    ///   - bias: (width)
    ///   - output: (rows, width); may be the same buffer as `input`.
    public static func apply(_ input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                             into output: UnsafeMutablePointer<Float>, rows: Int = 1, width: Int, epsilon: Float) {
        let vectors = width / 16
        for r in 0..<rows {
            let x = input + r * width, y = output + r * width
            let rx = UnsafeRawPointer(x)
            // Two passes (mean, then squared deviations): one-pass E[x²]−E[x]² cancels badly when
            // the mean is large, which post-norm residual streams often have. Each pass sums 16 lanes
            // at a time: a scalar sum is one dependent add per element (~4,000 cycles a row of 512,
            // 3 % of a Marian beam step at 64 rows), as Swift may not reorder it.
            var lanes = SIMD16<Float>()
            for v in 0..<vectors { lanes += rx.loadUnaligned(fromByteOffset: 64 * v, as: SIMD16<Float>.self) }
            var sum = horizontalSum(lanes)
            for i in (16 * vectors)..<width { sum += x[i] }
            let mean = sum / Float(width)
            let m = SIMD16<Float>(repeating: mean)
            lanes = SIMD16<Float>()
            for v in 0..<vectors {
                let d = rx.loadUnaligned(fromByteOffset: 64 * v, as: SIMD16<Float>.self) - m
                lanes += d * d
            }
            var squares = horizontalSum(lanes)
            for i in (16 * vectors)..<width {
                let d = x[i] - mean
                squares += d * d
            }
            let inverse = 1 / (squares / Float(width) + epsilon).squareRoot()
            for i in 0..<width { y[i] = (x[i] - mean) * inverse * weight[i] + bias[i] }
        }
    }
}

/// The plain twin of `LayerNorm`, in Double.
public enum ReferenceLayerNorm {
    public static func apply(_ input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                             into output: UnsafeMutablePointer<Float>, rows: Int = 1, width: Int, epsilon: Float) {
        for r in 0..<rows {
            let x = (0..<width).map { Double(input[r * width + $0]) }
            let mean = x.reduce(0, +) / Double(width)
            let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(width)
            let inverse = 1 / (variance + Double(epsilon)).squareRoot()
            for i in 0..<width {
                output[r * width + i] = Float((x[i] - mean) * inverse * Double(weight[i]) + Double(bias[i]))
            }
        }
    }
}
