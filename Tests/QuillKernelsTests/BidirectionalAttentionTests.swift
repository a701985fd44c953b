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
    /// Long inputs take the sgemm path (≥ gemmTokens queries, no bias, not causal): same results as the
    /// Double twin, with padding in one sequence, and the same with 1 and 2 threads.
    @Test func longInputsThroughGEMMMatchReference() {
        let sequences = 2, tokens = BidirectionalAttention.gemmTokens + 37, heads = 2, hd = 16, stride = tokens
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
}
