import Foundation
import QuillKernels
import Testing

@Suite struct BidirectionalAttentionTests {
    func random(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) * 2 - 1
        }
    }

    /// Padding (keyCount < stride), causal masking from a first position, and a relative bias, against the Double twin.
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matchesReference(causal: Bool, withBias: Bool) {
        let sequences = 3, tokens = 4, heads = 2, hd = 40, stride = 9, span = 5
        let q = random(sequences * tokens * heads * hd, seed: 1)
        let k = random(sequences * heads * stride * hd, seed: 2), v = random(sequences * heads * stride * hd, seed: 3)
        let biasValues = random(heads * (2 * span + 1), seed: 4)
        let keyCounts = [9, 6, 4], firsts = [5, 2, 0]
        var fast = [Float](repeating: 0, count: q.count), slow = fast
        k.withUnsafeBufferPointer { kb in
            v.withUnsafeBufferPointer { vb in
                biasValues.withUnsafeBufferPointer { bb in
                    let bias = withBias ? RelativePositionBias(values: bb.baseAddress!, span: span) : nil
                    let keysOf = { (s: Int) in
                        AttentionKeys(keys: kb.baseAddress! + s * heads * stride * hd, values: vb.baseAddress! + s * heads * stride * hd,
                                      keyCount: keyCounts[s], firstPosition: firsts[s])
                    }
                    BidirectionalAttention.attend(queries: q, output: &fast, sequences: sequences, tokens: tokens, heads: heads,
                                                  headDimension: hd, keyStride: stride, causal: causal, scale: 0.3, bias: bias,
                                                  pool: ThreadPool(threads: 2), keysOf: keysOf)
                    ReferenceBidirectionalAttention.attend(queries: q, output: &slow, sequences: sequences, tokens: tokens,
                                                           heads: heads, headDimension: hd, keyStride: stride, causal: causal,
                                                           scale: 0.3, bias: bias, keysOf: keysOf)
                }
            }
        }
        let worst = zip(fast, slow).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-5, "max error \(worst)")
    }
}

extension BidirectionalAttentionTests {
    /// Without bias or causal mask, head dimensions that are whole vectors take the fused kernel: long
    /// inputs (blocks of 32 queries and a partial one, padding in one sequence) match the Double twin,
    /// and 1 and 2 threads give the same bits. hd 48 mixes the kernel's two- and one-vector columns.
    @Test(arguments: [16, 48, 64])
    func longInputsThroughFusedKernelMatchReference(headDimension hd: Int) {
        let sequences = 2, tokens = 300, heads = 2, stride = tokens
        let q = random(sequences * tokens * heads * hd, seed: 11)
        let k = random(sequences * heads * stride * hd, seed: 12), v = random(sequences * heads * stride * hd, seed: 13)
        let keyCounts = [tokens, tokens - 50]
        var fast = [Float](repeating: 0, count: q.count), slow = fast, oneThread = fast
        k.withUnsafeBufferPointer { kb in
            v.withUnsafeBufferPointer { vb in
                let keysOf = { (s: Int) in
                    AttentionKeys(keys: kb.baseAddress! + s * heads * stride * hd, values: vb.baseAddress! + s * heads * stride * hd,
                                  keyCount: keyCounts[s], firstPosition: 0)
                }
                for (threads, out) in [(2, 0), (1, 1)] {
                    var result = [Float](repeating: 0, count: q.count)
                    BidirectionalAttention.attend(queries: q, output: &result, sequences: sequences, tokens: tokens, heads: heads,
                                                  headDimension: hd, keyStride: stride, causal: false, scale: 0.25, bias: nil,
                                                  pool: ThreadPool(threads: threads), keysOf: keysOf)
                    if out == 0 { fast = result } else { oneThread = result }
                }
                ReferenceBidirectionalAttention.attend(queries: q, output: &slow, sequences: sequences, tokens: tokens,
                                                       heads: heads, headDimension: hd, keyStride: stride, causal: false,
                                                       scale: 0.25, bias: nil, keysOf: keysOf)
            }
        }
        let worst = zip(fast, slow).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-5, "max error \(worst)")
        #expect(fast == oneThread)
    }

    /// Cross-attention's case: decoder rows (one query each) over one source's keys stored transposed
    /// (`AttentionKeys.transposed`, as `EncoderStates` keeps them). Every row matches the Double twin
    /// over the plain keys, and gets the same bits alone as among 1–9 rows sharing the keys (beams) or
    /// with keys of its own — a row's result never depends on the others.
    @Test(arguments: [16, 64, 80])
    func transposedKeysGiveEveryRowItsOwnResult(headDimension hd: Int) {
        let heads = 3, count = 45, stride = BidirectionalAttention.transposedKeyStride(count), rows = 9
        let k = random(heads * count * hd, seed: 21), v = random(heads * stride * hd, seed: 22)
        let q = random(rows * heads * hd, seed: 23)
        var transposed = [Float](repeating: 0, count: heads * hd * stride)
        for h in 0..<heads {
            for j in 0..<count {
                for d in 0..<hd {
                    transposed[h * hd * stride + BidirectionalAttention.transposedKeyOffset(key: j, dimension: d, headDimension: hd)] =
                        k[(h * count + j) * hd + d]
                }
            }
        }
        let pool = ThreadPool(threads: 2)
        func attend(_ queries: ArraySlice<Float>, rows: Int) -> [Float] {
            var out = [Float](repeating: 0, count: rows * heads * hd)
            BidirectionalAttention.attend(queries: Array(queries), output: &out, sequences: rows, tokens: 1, heads: heads,
                                          headDimension: hd, keyStride: stride, causal: false, scale: 0.3, bias: nil, pool: pool) { _ in
                AttentionKeys(keys: transposed, values: v, keyCount: count, firstPosition: 0, transposed: true)
            }
            return out
        }
        let together = attend(q[...], rows: rows)
        let width = heads * hd
        for r in 0..<rows {
            let alone = attend(q[(r * width)..<((r + 1) * width)], rows: 1)
            #expect(alone == Array(together[(r * width)..<((r + 1) * width)]), "row \(r)")
        }
        var plainValues = [Float](repeating: 0, count: heads * count * hd)
        for h in 0..<heads { for j in 0..<count { for d in 0..<hd { plainValues[(h * count + j) * hd + d] = v[(h * stride + j) * hd + d] } } }
        var slow = [Float](repeating: 0, count: together.count)
        ReferenceBidirectionalAttention.attend(queries: q, output: &slow, sequences: rows, tokens: 1, heads: heads, headDimension: hd,
                                               keyStride: count, causal: false, scale: 0.3, bias: nil) { _ in
            AttentionKeys(keys: k, values: plainValues, keyCount: count, firstPosition: 0)
        }
        let worst = zip(together, slow).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-5, "max error \(worst)")
    }
}
