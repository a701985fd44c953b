import Foundation
import QuillKernels
import Testing

@Suite struct LayerNormActivationTests {
    func random(_ count: Int, seed: UInt64, scale: Float = 1, shift: Float = 0) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale + shift
        }
    }

    @Test func layerNormMatchesReference() {
        let rows = 5, width = 200
        let x = random(rows * width, seed: 1, scale: 3, shift: 40)  // a large mean: the two-pass form matters
        let weight = random(width, seed: 2, shift: 1), bias = random(width, seed: 3, scale: 0.1)
        var fast = [Float](repeating: 0, count: x.count), slow = fast
        LayerNorm.apply(x, weight: weight, bias: bias, into: &fast, rows: rows, width: width, epsilon: 1e-5)
        ReferenceLayerNorm.apply(x, weight: weight, bias: bias, into: &slow, rows: rows, width: width, epsilon: 1e-5)
        let worst = zip(fast, slow).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-4, "max error \(worst)")
    }

    @Test(arguments: Activation.allCases)
    func activationMatchesReference(_ activation: Activation) {
        let (_, worst) = applied(activation, random(1000, seed: 4, scale: 6))
        #expect(worst < 1e-5, "\(activation): max relative error \(worst)")
    }

    /// The activation applied to `x`, and its largest error against the Double reference (relative
    /// where the reference exceeds 1 in magnitude, absolute below).
    func applied(_ activation: Activation, _ x: [Float]) -> (values: [Float], worst: Float) {
        var fast = x, slow = x
        activation.apply(&fast, count: x.count)
        ReferenceActivation.apply(activation, &slow, count: x.count)
        return (fast, zip(fast, slow).map { abs($0 - $1) / max(1, abs($1)) }.max()!)
    }

    @Test(arguments: Activation.allCases)
    func gatedActivationMatchesReference(_ activation: Activation) {
        let gate = random(1000, seed: 5, scale: 6), up = random(1000, seed: 6, scale: 2)
        var fast = gate, slow = gate
        activation.applyGated(gate: &fast, up: up, count: gate.count)
        ReferenceActivation.apply(activation, &slow, count: gate.count)
        let worst = (0..<gate.count).map { abs(fast[$0] - slow[$0] * up[$0]) / max(1, abs(slow[$0] * up[$0])) }.max()!
        #expect(worst < 1e-5, "\(activation): max relative error \(worst)")
    }

    /// Far tails: within the reference everywhere, no subnormal results, and exact GELU 0 past x = −12,
    /// where `gelu16` clamps. (The clamp is there for speed: before it, erfc itself was subnormal past
    /// |x| ≈ 13, costing microcode assists, although the final products were normal again. That
    /// intermediate cannot be observed here; the zeros show the clamped path is the one taken.)
    @Test(arguments: [Activation.gelu, .geluTanh])
    func activationTailsStayNormal(_ activation: Activation) {
        let x = random(4000, seed: 7, scale: 60)
        let (fast, worst) = applied(activation, x)
        #expect(worst < 1e-5, "\(activation): max relative error \(worst)")
        #expect(fast.filter { $0.isSubnormal }.isEmpty)
        #expect(x.contains { $0 < -20 } && x.contains { $0 > 20 })
        if activation == .gelu {
            // x·Φ(x) < 1e-31 past x = −12: 0, as in PyTorch, rather than a subnormal.
            #expect(zip(x, fast).allSatisfy { $0 >= -12.1 || $1 == 0 })
        }
    }

    @Test func activationNames() {
        #expect(Activation(huggingFaceName: "swish") == .silu)
        #expect(Activation(huggingFaceName: "gelu_new") == .geluTanh)
        #expect(Activation(huggingFaceName: "gelu") == .gelu)
        #expect(Activation(huggingFaceName: "tanh") == nil)
    }
}
