import Foundation
import QuillKernels
import Testing

@Suite struct ElementwiseKernelTests {
    @Test(arguments: [1, 15, 16, 17, 64, 576, 1001])
    func rmsNormMatchesReference(width: Int) {
        var g = SeededGenerator(seed: UInt64(width))
        let rows = 3
        let x = [Float].random(count: rows * width, in: -4...4, using: &g)
        let weight = [Float].random(count: width, in: 0.5...1.5, using: &g)
        var fast = [Float](repeating: 0, count: rows * width)
        var reference = fast
        RMSNorm.apply(x, weight: weight, into: &fast, rows: rows, width: width, epsilon: 1e-5)
        ReferenceRMSNorm.apply(x, weight: weight, into: &reference, rows: rows, width: width, epsilon: 1e-5)
        #expect(normalisedError(fast, reference) < 1e-6)
    }

    @Test func rmsNormOfAConstantVectorIsTheWeight() {
        // mean(x²) = 4 for x = 2, so x / sqrt(4 + 0) = 1 and y = weight.
        let weight: [Float] = [0.5, -1, 3, 7]
        var y = [Float](repeating: 0, count: 4)
        RMSNorm.apply([2, 2, 2, 2], weight: weight, into: &y, width: 4, epsilon: 0)
        #expect(y == weight)
    }

    @Test func ropeRotatesAdjacentPairsByPositionTimesFrequency() {
        let headDimension = 8, base: Float = 10_000, position = 3
        let rope = RotaryEmbedding(headDimension: headDimension, base: base)
        var g = SeededGenerator(seed: 7)
        let original = [Float].random(count: 2 * headDimension, using: &g)
        var rotated = original
        rope.apply(&rotated, heads: 2, position: position)
        for h in 0..<2 {
            for i in 0..<headDimension / 2 {
                let angle = Double(position) / pow(Double(base), Double(2 * i) / Double(headDimension))
                let x0 = Double(original[h * headDimension + 2 * i]), x1 = Double(original[h * headDimension + 2 * i + 1])
                #expect(abs(Double(rotated[h * headDimension + 2 * i]) - (x0 * cos(angle) - x1 * sin(angle))) < 1e-5)
                #expect(abs(Double(rotated[h * headDimension + 2 * i + 1]) - (x0 * sin(angle) + x1 * cos(angle))) < 1e-5)
            }
        }
    }

    @Test func ropeAtPositionZeroIsTheIdentity() {
        let rope = RotaryEmbedding(headDimension: 64, base: 100_000)
        var g = SeededGenerator(seed: 1)
        let original = [Float].random(count: 64, using: &g)
        var rotated = original
        rope.apply(&rotated, heads: 1, position: 0)
        #expect(rotated == original)
    }

    @Test func swigluIsSiluOfGateTimesUp() {
        var gate: [Float] = [0, 1, -2, 10]
        let up: [Float] = [3, 2, 1, 0.5]
        SwiGLU.apply(gate: &gate, up: up, count: 4)
        let expected = zip([0, 1, -2, 10] as [Double], up).map { g, u in g / (1 + exp(-g)) * Double(u) }
        for i in 0..<4 { #expect(abs(Double(gate[i]) - expected[i]) < 1e-6) }
    }

    @Test(arguments: [(1, 0), (1, 37), (5, 0), (7, 20)])
    func attentionMatchesReference(tokens: Int, firstPosition: Int) {
        let shape = AttentionShape(heads: 6, kvHeads: 2, headDimension: 64, capacity: 64, scale: 0.125)
        var g = SeededGenerator(seed: UInt64(tokens * 100 + firstPosition))
        let q = [Float].random(count: tokens * shape.heads * shape.headDimension, in: -2...2, using: &g)
        // Fill the whole cache; attention must only read positions up to each token's own.
        let kv = shape.kvHeads * shape.capacity * shape.headDimension
        let keys = [Float].random(count: kv, in: -2...2, using: &g)
        let values = [Float].random(count: kv, using: &g)
        var fast = [Float](repeating: 0, count: q.count)
        var reference = fast
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            Attention.causal(queries: q, keys: keys, values: values, output: &fast, shape: shape,
                             tokens: tokens, firstPosition: firstPosition, pool: pool)
            ReferenceAttention.causal(queries: q, keys: keys, values: values, output: &reference, shape: shape,
                                      tokens: tokens, firstPosition: firstPosition)
            #expect(normalisedError(fast, reference) < 1e-5)
        }
    }

    @Test func attentionIsCausal() {
        // Changing a key beyond the last token's position must not change the output.
        let shape = AttentionShape(heads: 2, kvHeads: 1, headDimension: 16, capacity: 8, scale: 0.25)
        var g = SeededGenerator(seed: 3)
        let q = [Float].random(count: 2 * 16, using: &g)
        var keys = [Float].random(count: 8 * 16, using: &g)
        let values = [Float].random(count: 8 * 16, using: &g)
        var before = [Float](repeating: 0, count: q.count), after = before
        let pool = ThreadPool(threads: 1)
        Attention.causal(queries: q, keys: keys, values: values, output: &before, shape: shape, tokens: 1,
                         firstPosition: 2, pool: pool)
        for i in 3 * 16..<8 * 16 { keys[i] = 100 }
        Attention.causal(queries: q, keys: keys, values: values, output: &after, shape: shape, tokens: 1,
                         firstPosition: 2, pool: pool)
        #expect(before == after)
    }
}
