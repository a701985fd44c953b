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

    /// Cross-attention's case: decoder rows (one query each) over sources' keys stored transposed
    /// (`AttentionKeys.transposed`, as `EncoderStates` keeps them), in runs as beams are (rows 0–2 over
    /// source A, 3–6 over B, 7–8 over A again). Every row matches the Double twin over the plain keys,
    /// and gets the same bits alone as among the others — a row's result never depends on the rest.
    @Test(arguments: [16, 64, 80])
    func transposedKeysGiveEveryRowItsOwnResult(headDimension hd: Int) {
        let heads = 3, counts = [45, 70], rows = 9, rowSources = [0, 0, 0, 1, 1, 1, 1, 0, 0]
        let stride = BidirectionalAttention.transposedKeyStride(counts.max()!)
        let keys = counts.indices.map { random(heads * counts[$0] * hd, seed: 21 + UInt64($0)) }   // (heads, count, hd)
        let values = counts.indices.map { random(heads * stride * hd, seed: 31 + UInt64($0)) }     // (heads, stride, hd)
        let q = random(rows * heads * hd, seed: 23)
        let transposed = counts.indices.map { i in
            var t = [Float](repeating: 0, count: heads * hd * stride)
            for h in 0..<heads {
                for j in 0..<counts[i] {
                    for d in 0..<hd {
                        t[h * hd * stride + BidirectionalAttention.transposedKeyOffset(key: j, dimension: d, headDimension: hd)] =
                            keys[i][(h * counts[i] + j) * hd + d]
                    }
                }
            }
            return t
        }
        let pool = ThreadPool(threads: 2)
        func attend(_ queries: ArraySlice<Float>, sources: [Int]) -> [Float] {
            var out = [Float](repeating: 0, count: sources.count * heads * hd)
            transposed[0].withUnsafeBufferPointer { k0 in
                transposed[1].withUnsafeBufferPointer { k1 in
                    values[0].withUnsafeBufferPointer { v0 in
                        values[1].withUnsafeBufferPointer { v1 in
                            BidirectionalAttention.attend(queries: Array(queries), output: &out, sequences: sources.count, tokens: 1,
                                                          heads: heads, headDimension: hd, keyStride: stride, causal: false,
                                                          scale: 0.3, bias: nil, pool: pool) { r in
                                let i = sources[r]
                                return AttentionKeys(keys: (i == 0 ? k0 : k1).baseAddress!, values: (i == 0 ? v0 : v1).baseAddress!,
                                                     keyCount: counts[i], firstPosition: 0, transposed: true)
                            }
                        }
                    }
                }
            }
            return out
        }
        let together = attend(q[...], sources: rowSources)
        let width = heads * hd
        for r in 0..<rows {
            let alone = attend(q[(r * width)..<((r + 1) * width)], sources: [rowSources[r]])
            #expect(alone == Array(together[(r * width)..<((r + 1) * width)]), "row \(r)")
            var slow = [Float](repeating: 0, count: width)
            let i = rowSources[r]
            var plainValues = [Float](repeating: 0, count: heads * counts[i] * hd)   // (heads, count, hd)
            for h in 0..<heads {
                for j in 0..<counts[i] { for d in 0..<hd { plainValues[(h * counts[i] + j) * hd + d] = values[i][(h * stride + j) * hd + d] } }
            }
            ReferenceBidirectionalAttention.attend(queries: Array(q[(r * width)..<((r + 1) * width)]), output: &slow, sequences: 1,
                                                   tokens: 1, heads: heads, headDimension: hd, keyStride: counts[i], causal: false,
                                                   scale: 0.3, bias: nil) { _ in
                AttentionKeys(keys: keys[i], values: plainValues, keyCount: counts[i], firstPosition: 0)
            }
            let worst = zip(alone, slow).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-5, "row \(r): max error \(worst)")
        }
    }
}
