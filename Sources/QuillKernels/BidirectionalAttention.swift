import Foundation

/// An additive attention bias that depends only on the relative position `key − query` (T5's
/// bucketed relative position bias), expanded per head so the kernel needs no bucket logic.
public struct RelativePositionBias: @unchecked Sendable {
    /// (heads, 2·span + 1): the bias of head h for relative position r is at `h·(2·span+1) + r + span`.
    public let values: UnsafePointer<Float>
    /// Largest |key − query| with its own entry; larger distances use the entry at ±span (T5's buckets
    /// saturate at `relative_attention_max_distance`, so clamping there is exact).
    public let span: Int

    public init(values: UnsafePointer<Float>, span: Int) {
        self.values = values
        self.span = span
    }

    @inline(__always) func row(head: Int) -> UnsafePointer<Float> { values + head * (2 * span + 1) + span }
}

/// Where the keys and values of one sequence of an attention batch are.
public struct AttentionKeys: @unchecked Sendable {
    /// (heads, keyStride, headDimension)
    public var keys: UnsafePointer<Float>
    /// (heads, keyStride, headDimension)
    public var values: UnsafePointer<Float>
    /// Valid key positions `0 ..< keyCount`; later ones (padding) are masked out.
    public var keyCount: Int
    /// Position of the first query token: it matters for `causal` and for a relative bias.
    public var firstPosition: Int

    public init(keys: UnsafePointer<Float>, values: UnsafePointer<Float>, keyCount: Int, firstPosition: Int) {
        self.keys = keys
        self.values = values
        self.keyCount = keyCount
        self.firstPosition = firstPosition
    }
}

/// Multi-head attention for encoder-decoder models: bidirectional or causal, over a padded key range,
/// with an optional relative position bias — encoder self-attention, decoder self-attention over its
/// cache, and cross-attention over cached encoder keys/values. (`Attention.causal` stays the
/// decoder-only kernel.) Queries and keys have the same number of heads.
public enum BidirectionalAttention {
    /// - Parameters:
    ///   - queries: (sequences, tokens, heads, headDimension)
    ///   - output: (sequences, tokens, heads, headDimension)
    ///   - keyStride: positions between two heads in the key/value buffers
    ///   - causal: token t of a sequence sees keys `0 ... firstPosition + t` only (within `keyCount`).
    ///   - scale: factor on the query–key products (1 for T5, `1/sqrt(hd)` for BART/Marian)
    ///   - keysOf: the keys and values of sequence s
    public static func attend(queries: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              sequences: Int, tokens: Int, heads: Int, headDimension hd: Int, keyStride: Int,
                              causal: Bool, scale: Float, bias: RelativePositionBias?, pool: ThreadPool,
                              keysOf: (Int) -> AttentionKeys) {
        if bias == nil, !causal, !MatMul.disableBLAS, let blas = BLAS.library {
            if tokens >= gemmTokens {
                return attendWithGEMM(queries: queries, output: output, sequences: sequences, tokens: tokens, heads: heads,
                                      headDimension: hd, keyStride: keyStride, scale: scale, pool: pool, blas: blas, keysOf: keysOf)
            }
            // One query per sequence, all over the same long keys (the beams of one utterance in
            // cross-attention): the queries form one (sequences × hd) block per head for sgemm.
            // (A single row gained nothing measurable over the dot-product loop.)
            if tokens == 1, sequences > 1, let shared = sharedKeys(sequences, keysOf), shared.keyCount >= gemmTokens {
                return attendWithGEMM(queries: queries, output: output, sequences: 1, tokens: sequences, heads: heads,
                                      headDimension: hd, keyStride: keyStride, scale: scale, pool: pool, blas: blas) { _ in shared }
            }
        }
        pool.parallelFor(sequences * tokens * heads) { item in
            let h = item % heads, t = (item / heads) % tokens, s = item / (heads * tokens)
            let source = keysOf(s)
            let query = source.firstPosition + t
            let length = causal ? min(source.keyCount, query + 1) : source.keyCount
            let q = queries + item * hd
            let out = output + item * hd
            let k = source.keys + h * keyStride * hd, v = source.values + h * keyStride * hd
            guard length > 0 else {
                out.update(repeating: 0, count: hd)
                return
            }
            withUnsafeTemporaryAllocation(of: Float.self, capacity: length) { scores in
                let p = scores.baseAddress!
                var maximum = -Float.infinity
                let biasRow = bias.map { $0.row(head: h) }
                let span = bias?.span ?? 0
                for j in 0..<length {
                    var score = dot(q, k + j * hd, count: hd) * scale
                    if let biasRow { score += biasRow[min(max(j - query, -span), span)] }
                    p[j] = score
                    maximum = max(maximum, score)
                }
                var total: Float = 0
                for j in 0..<length {
                    let e = expf(p[j] - maximum)
                    p[j] = e
                    total += e
                }
                out.update(repeating: 0, count: hd)
                let inverse = 1 / total
                for j in 0..<length { addScaled(v + j * hd, scale: p[j] * inverse, into: out, count: hd) }
            }
        }
    }
}

extension BidirectionalAttention {
    /// From this many query tokens on, bidirectional attention without a bias runs as two sgemm calls
    /// per head (long encoder inputs: Whisper's 1500 audio frames spent ~3× longer in the per-query
    /// dot products than in all the encoder's projections together).
    public static let gemmTokens = 256

    /// The keys of every sequence when they are all the same buffers and length, else nil.
    static func sharedKeys(_ sequences: Int, _ keysOf: (Int) -> AttentionKeys) -> AttentionKeys? {
        let first = keysOf(0)
        for s in 1..<sequences {
            let other = keysOf(s)
            guard other.keys == first.keys, other.values == first.values, other.keyCount == first.keyCount else { return nil }
        }
        return first
    }

    /// Per (sequence, head), for blocks of `blockRows` queries: scores = scale·Q·Kᵀ (sgemm), row
    /// softmax, output = P·V (sgemm). Work is split over (sequence, head, block), so the result does not
    /// depend on the thread count.
    static func attendWithGEMM(queries: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                               sequences: Int, tokens: Int, heads: Int, headDimension hd: Int, keyStride: Int, scale: Float,
                               pool: ThreadPool, blas: BLAS.Library, keysOf: (Int) -> AttentionKeys) {
        let blockRows = 128
        let blocks = (tokens + blockRows - 1) / blockRows
        let rowStride = heads * hd
        pool.parallelFor(sequences * heads * blocks) { item in
            let block = item % blocks, h = (item / blocks) % heads, s = item / (blocks * heads)
            let source = keysOf(s)
            let length = source.keyCount
            let t0 = block * blockRows, rows = min(blockRows, tokens - t0)
            let q = queries + (s * tokens + t0) * rowStride + h * hd
            let out = output + (s * tokens + t0) * rowStride + h * hd
            guard length > 0 else {
                for r in 0..<rows { (out + r * rowStride).update(repeating: 0, count: hd) }
                return
            }
            withUnsafeTemporaryAllocation(of: Float.self, capacity: rows * length) { buffer in
                let p = buffer.baseAddress!
                let keys = source.keys + h * keyStride * hd, values = source.values + h * keyStride * hd
                blas.sgemm(BLAS.rowMajor, BLAS.noTrans, BLAS.trans, Int32(rows), Int32(length), Int32(hd),
                           scale, q, Int32(rowStride), keys, Int32(hd), 0, p, Int32(length))
                for r in 0..<rows {
                    let row = p + r * length
                    QuillKernels.scale(row, by: 1 / exponentiateShifted(row, count: length), count: length)
                }
                blas.sgemm(BLAS.rowMajor, BLAS.noTrans, BLAS.noTrans, Int32(rows), Int32(hd), Int32(length),
                           1, p, Int32(length), values, Int32(hd), 0, out, Int32(rowStride))
            }
        }
    }
}

/// The plain twin of `BidirectionalAttention`, in Double, one head at a time.
public enum ReferenceBidirectionalAttention {
    public static func attend(queries: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              sequences: Int, tokens: Int, heads: Int, headDimension hd: Int, keyStride: Int,
                              causal: Bool, scale: Float, bias: RelativePositionBias?,
                              keysOf: (Int) -> AttentionKeys) {
        for s in 0..<sequences {
            let source = keysOf(s)
            for t in 0..<tokens {
                let query = source.firstPosition + t
                let length = causal ? min(source.keyCount, query + 1) : source.keyCount
                for h in 0..<heads {
                    let base = ((s * tokens + t) * heads + h) * hd
                    var scores = [Double](repeating: 0, count: length)
                    for j in 0..<length {
                        var sum = 0.0
                        for i in 0..<hd { sum += Double(queries[base + i]) * Double(source.keys[(h * keyStride + j) * hd + i]) }
                        scores[j] = sum * Double(scale)
                        if let bias {
                            scores[j] += Double(bias.values[h * (2 * bias.span + 1) + bias.span + min(max(j - query, -bias.span), bias.span)])
                        }
                    }
                    let m = scores.max() ?? 0
                    let e = scores.map { Foundation.exp($0 - m) }
                    let total = e.reduce(0, +)
                    for i in 0..<hd {
                        var acc = 0.0
                        for j in 0..<length { acc += e[j] / total * Double(source.values[(h * keyStride + j) * hd + i]) }
                        output[base + i] = length > 0 ? Float(acc) : 0
                    }
                }
            }
        }
    }
}
