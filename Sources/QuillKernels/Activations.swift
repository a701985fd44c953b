#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element-wise activation functions of feed-forward blocks, named as in Hugging Face configs.
public enum Activation: String, Sendable, CaseIterable {
    /// `max(x, 0)` (T5 v1.0).
    case relu
    /// Exact GELU, `x · Φ(x) = x/2 · (1 + erf(x/√2))` (BART, `"gelu"`).
    case gelu
    /// The tanh approximation `x/2 · (1 + tanh(√(2/π)(x + 0.044715x³)))` (T5 v1.1, `"gelu_new"`).
    case geluTanh
    /// `x · sigmoid(x)` (Marian, `"swish"` / `"silu"`).
    case silu

    /// The activation for an HF config name (`activation_function`, `dense_act_fn`), nil if unknown.
    public init?(huggingFaceName name: String) {
        switch name {
        case "relu": self = .relu
        case "gelu": self = .gelu
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": self = .geluTanh
        case "swish", "silu": self = .silu
        default: return nil
        }
    }

    /// Applies the activation in place to `count` values.
    public func apply(_ x: UnsafeMutablePointer<Float>, count: Int) {
        // One small function per activation: a single function holding every vector loop grew past
        // the inliner's size limit, which then called `gelu16`'s `exp16` out of line with its 16 lanes
        // split into four 4-lane registers (GELU cost ~8 ns a value in Whisper's encoder).
        switch self {
        case .relu: for i in 0..<count { x[i] = max(x[i], 0) }
        case .gelu: Self.applyGELU(x, count: count)
        case .geluTanh: Self.applyGELUTanh(x, count: count)
        case .silu: Self.applySiLU(x, count: count)
        }
    }

    private static func applyGELU(_ x: UnsafeMutablePointer<Float>, count: Int) {
        map(x, count: count, vector: gelu16) { 0.5 * $0 * (1 + erff($0 * 0.70710678118654752)) }
    }

    private static func applySiLU(_ x: UnsafeMutablePointer<Float>, count: Int) {
        // As torch's silu on fp32: x / (1 + exp(−x)); 16 lanes through `exp16` (scalar `expf` cost
        // 1–2 % of a Marian decoder step of 64 rows).
        map(x, count: count, vector: silu16) { $0 / (1 + expf(-$0)) }
    }

    private static func applyGELUTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        // Same association as transformers' NewGELUActivation: 0.5·x·(1 + tanh(c·(x + 0.044715·x³))).
        map(x, count: count, vector: geluTanh16) { 0.5 * $0 * (1 + tanhf(0.7978845608028654 * ($0 + 0.044715 * ($0 * $0 * $0)))) }
    }

    /// `x[i] = f(x[i])`: 16 lanes at a time, the tail one by one.
    @inline(__always)
    private static func map(_ x: UnsafeMutablePointer<Float>, count: Int, vector: (SIMD16<Float>) -> SIMD16<Float>,
                            scalar: (Float) -> Float) {
        let raw = UnsafeMutableRawPointer(x)
        var i = 0
        while i + 16 <= count {
            raw.storeBytes(of: vector(raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)),
                           toByteOffset: 4 * i, as: SIMD16<Float>.self)
            i += 16
        }
        while i < count { x[i] = scalar(x[i]); i += 1 }
    }

    /// `gate[i] = act(gate[i]) · up[i]`: the gated feed-forward of T5 v1.1 (`wi_0`, `wi_1`).
    public func applyGated(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        // GeGLU (Gemma 3) in one pass over 16-lane blocks; other activations, and the tail, in two.
        var done = 0
        if self == .geluTanh {
            let g = UnsafeMutableRawPointer(gate), u = UnsafeRawPointer(up)
            while done + 16 <= count {
                let v = g.loadUnaligned(fromByteOffset: 4 * done, as: SIMD16<Float>.self)
                let w = u.loadUnaligned(fromByteOffset: 4 * done, as: SIMD16<Float>.self)
                g.storeBytes(of: geluTanh16(v) * w, toByteOffset: 4 * done, as: SIMD16<Float>.self)
                done += 16
            }
        }
        apply(gate + done, count: count - done)
        for i in done..<count { gate[i] *= up[i] }
    }
}

/// GELU's tanh approximation for 16 lanes, through the identity `1 + tanh(y) = 2 / (1 + e^(−2y))`:
/// `x/2 · (1 + tanh(y)) = x / (1 + e^(−2y))`, y = √(2/π)(x + 0.044715x³), with `exp16` (relative
/// error ~1e-7; no cancellation near y = 0 because the sum 1 + tanh is formed exactly). Vectorised
/// because scalar `tanhf` took ~18% of Gemma 3's prompt processing.
@inlinable @inline(__always)
public func geluTanh16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let y = 0.797_884_560_802_865_4 * (x + 0.044715 * (x * x * x))
    return x / (1 + exp16(-2 * y))
}

/// SiLU for 16 lanes, `x / (1 + e^−x)` as torch computes it on fp32, with `exp16`.
@inlinable @inline(__always)
public func silu16(_ x: SIMD16<Float>) -> SIMD16<Float> { x / (1 + exp16(-x)) }

/// Exact GELU for 16 lanes through erfc (Numerical Recipes' `erfcc` Chebyshev fit, fractional error
/// < 1.2e-7 everywhere, with `exp16`): x ≥ 0: `x/2 · (2 − erfc(x/√2))`, x < 0: `x/2 · erfc(−x/√2)`, so
/// the relative error stays that small on the negative side too. Vectorised because scalar `erff`
/// calls took ~10% of Whisper's encoder.
///
/// Past |x| ≈ 13 erfc(z) falls below 2⁻¹²⁶, and every subnormal operation costs a microcode assist
/// (GELU over such values ran 6× slower, though the final ×x/2 made them normal again). So from
/// z = |x|/√2 > 8.5 (|x| ≈ 12) on, z is clamped to 8.5: for x > 0 the result is unchanged, because
/// 2 − erfc rounds to 2 either way; for x < 0 it is 0, as in PyTorch, whose `1 + erf` is exactly 0
/// already from x ≈ −5.5.
@inlinable @inline(__always)
public func gelu16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let magnitude = (x * 0.707_106_781_186_547_52).replacing(with: 0, where: x .< 0)
        - (x * 0.707_106_781_186_547_52).replacing(with: 0, where: x .>= 0)
    let far = magnitude .> 8.5
    let z = magnitude.replacing(with: 8.5, where: far)
    let t = 1 / (1 + 0.5 * z)
    var p = SIMD16<Float>(repeating: 0.170_872_77)
    p = p * t - 0.822_152_23
    p = p * t + 1.488_515_87
    p = p * t - 1.135_203_98
    p = p * t + 0.278_868_07
    p = p * t - 0.186_288_06
    p = p * t + 0.096_784_18
    p = p * t + 0.374_091_96
    p = p * t + 1.000_023_68
    p = p * t - 1.265_512_23
    let erfc = t * exp16(p - z * z)
    let factor = erfc.replacing(with: 2 - erfc, where: x .>= 0)
    return (0.5 * x * factor).replacing(with: 0, where: far .& (x .< 0))
}

/// Plain twins of `Activation`, in Double.
public enum ReferenceActivation {
    public static func apply(_ activation: Activation, _ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let v = Double(x[i])
            let y: Double
            switch activation {
            case .relu: y = max(v, 0)
            case .gelu: y = 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
            case .geluTanh: y = 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
            case .silu: y = v / (1 + exp(-v))
            }
            x[i] = Float(y)
        }
    }
}
