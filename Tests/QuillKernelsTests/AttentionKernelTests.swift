import Foundation
import Testing
import QuillKernels

/// The prompt (`FusedAttention` tiles) and decoding (fused per-head loop) attention paths and the vector exp they rely on.
struct AttentionKernelTests {
    @Test(arguments: [(70, 0, 64), (130, 3, 64), (33, 11, 40), (2, 0, 72), (1, 90, 40)])
    func attentionMatchesReferenceOnOddShapes(tokens: Int, firstPosition: Int, headDimension: Int) {
        let capacity = firstPosition + tokens + 5
        let shape = AttentionShape(heads: 9, kvHeads: 3, headDimension: headDimension, capacity: capacity,
                                   scale: 1 / Float(headDimension).squareRoot())
        var g = SeededGenerator(seed: UInt64(tokens * 1000 + firstPosition * 10 + headDimension))
        let q = [Float].random(count: tokens * shape.heads * headDimension, in: -2...2, using: &g)
        let kv = shape.kvHeads * capacity * headDimension
        let keys = [Float].random(count: kv, in: -2...2, using: &g)
        let values = [Float].random(count: kv, using: &g)
        var reference = [Float](repeating: 0, count: q.count)
        ReferenceAttention.causal(queries: q, keys: keys, values: values, output: &reference, shape: shape,
                                  tokens: tokens, firstPosition: firstPosition)
        var outputs: [[Float]] = []
        for threads in [1, 2] {
            var fast = [Float](repeating: .nan, count: q.count)
            Attention.causal(queries: q, keys: keys, values: values, output: &fast, shape: shape,
                             tokens: tokens, firstPosition: firstPosition, pool: ThreadPool(threads: threads))
            #expect(normalisedError(fast, reference) < 1e-5)
            outputs.append(fast)
        }
        #expect(outputs[0] == outputs[1], "results must not depend on the thread count")
    }

    @Test func exp16MatchesExp() {
        var worst = 0.0
        var x: Float = -87
        while x < 87.9 {
            let lanes = SIMD16<Float>((0..<16).map { min(x + Float($0) * 0.0037, 87.9) })
            let e = exp16(lanes)
            for i in 0..<16 {
                let exact = Foundation.exp(Double(lanes[i]))
                worst = max(worst, abs(Double(e[i]) - exact) / exact)
            }
            x += 0.061
        }
        #expect(worst < 3e-7)
        #expect(exp16(SIMD16(repeating: 0))[0] == 1)
    }

    @Test(arguments: [1, 15, 16, 17, 100, 1536])
    func swigluMatchesDouble(count: Int) {
        var g = SeededGenerator(seed: UInt64(count))
        var gate = [Float].random(count: count, in: -12...12, using: &g)
        let up = [Float].random(count: count, using: &g)
        let expected = zip(gate, up).map { gv, u in Float(Double(gv) / (1 + Foundation.exp(-Double(gv))) * Double(u)) }
        SwiGLU.apply(gate: &gate, up: up, count: count)
        #expect(normalisedError(gate, expected) < 1e-6)
    }
}

/// The half-precision cache path equals the f32 path on the same (half-rounded) keys and values.
struct HalfCacheAttentionTests {
    @Test(arguments: [(1, 40), (70, 0), (3, 9)])
    func halfCacheMatchesF32OnRoundedValues(tokens: Int, firstPosition: Int) {
        let shape = AttentionShape(heads: 9, kvHeads: 3, headDimension: 64, capacity: tokens + firstPosition + 3, scale: 0.125)
        var g = SeededGenerator(seed: UInt64(tokens + 7 * firstPosition))
        let q = [Float].random(count: tokens * 9 * 64, in: -2...2, using: &g)
        let n = 3 * shape.capacity * 64
        let keyBits = [Float].random(count: n, in: -2...2, using: &g).map { Float16($0).bitPattern }
        let valueBits = [Float].random(count: n, using: &g).map { Float16($0).bitPattern }
        let keys = keyBits.map { Float(Float16(bitPattern: $0)) }, values = valueBits.map { Float(Float16(bitPattern: $0)) }
        var reference = [Float](repeating: 0, count: q.count), half = reference
        ReferenceAttention.causal(queries: q, keys: keys, values: values, output: &reference, shape: shape,
                                  tokens: tokens, firstPosition: firstPosition)
        Attention.causal(queries: q, keyBits: keyBits, valueBits: valueBits, output: &half, shape: shape,
                         tokens: tokens, firstPosition: firstPosition, pool: ThreadPool(threads: 2))
        #expect(normalisedError(half, reference) < 1e-5)
    }
}
