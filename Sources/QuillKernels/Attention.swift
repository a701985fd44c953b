import Foundation
#if canImport(COpenBLAS.AVX512VNNI)
import COpenBLAS.AVX512VNNI
import _Builtin_intrinsics.intel
#endif

/// The shape of one attention layer and its key/value cache.
public struct AttentionShape: Sendable {
    /// Query heads.
    public var heads: Int
    /// Key/value heads; each serves `heads / kvHeads` query heads (grouped-query attention).
    public var kvHeads: Int
    public var headDimension: Int
    /// Positions the cache of one layer can hold; the stride between KV heads is `capacity · headDimension`.
    public var capacity: Int
    /// Factor applied to the query–key dot products (usually `1 / sqrt(headDimension)`).
    public var scale: Float

    public init(heads: Int, kvHeads: Int, headDimension: Int, capacity: Int, scale: Float) {
        precondition(heads % kvHeads == 0, "query heads must be a multiple of KV heads")
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDimension = headDimension
        self.capacity = capacity
        self.scale = scale
    }
}

/// Causal self-attention of a batch of new tokens against a key/value cache that already holds them.
///
/// The cache of a layer is laid out (kvHeads, capacity, headDimension), so one query head reads its
/// KV head's keys and values sequentially; query heads of a group share them without copies.
///
/// Prompt batches (several tokens, OpenBLAS loaded) run as two GEMMs per head and block of
/// `blockRows` tokens: scores = Q·Kᵀ, a row-wise masked softmax, then P·V. One token at a time
/// (decoding) runs a fused loop per head: dot products, softmax, and the weighted sum of values
/// kept in registers. Work items never depend on the thread count, so neither do the results.
public enum Attention {
    /// Query rows per GEMM block: small enough that the causal mask wastes little (each block only
    /// multiplies the keys up to its last token), large enough for sgemm to run at speed.
    static let blockRows = 64

    /// - Parameters:
    ///   - queries: (tokens, heads, headDimension), already rotated
    ///   - keys: (kvHeads, capacity, headDimension), positions `0 ..< firstPosition + tokens` filled
    ///   - values: (kvHeads, capacity, headDimension)
    ///   - output: (tokens, heads, headDimension)
    ///   - firstPosition: position of the first new token; token t attends to positions `0 ... firstPosition + t`.
    public static func causal(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                              values: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              shape: AttentionShape, tokens: Int, firstPosition: Int, pool: ThreadPool) {
        run(queries: queries, KVSource(keys: UnsafeRawPointer(keys), values: UnsafeRawPointer(values), half: false,
                                      headStride: shape.capacity * shape.headDimension),
            output: output, shape: shape, tokens: tokens, firstPosition: firstPosition, pool: pool)
    }

    /// The same over a half-precision cache (`keys`, `values`: IEEE half bits, same layout). Each
    /// work item widens the history of its KV head to f32 once, then runs the f32 kernels.
    public static func causal(queries: UnsafePointer<Float>, keyBits: UnsafePointer<UInt16>,
                              valueBits: UnsafePointer<UInt16>, output: UnsafeMutablePointer<Float>,
                              shape: AttentionShape, tokens: Int, firstPosition: Int, pool: ThreadPool) {
        run(queries: queries, KVSource(keys: UnsafeRawPointer(keyBits), values: UnsafeRawPointer(valueBits), half: true,
                                      headStride: shape.capacity * shape.headDimension),
            output: output, shape: shape, tokens: tokens, firstPosition: firstPosition, pool: pool)
    }

    /// Where the keys and values of each KV head live.
    struct KVSource {
        let keys: UnsafeRawPointer, values: UnsafeRawPointer
        let half: Bool
        /// Elements between KV heads (capacity · headDimension).
        let headStride: Int

        /// Calls `body` with f32 keys and values of KV head `g`, positions `0..<length` (rows of `width`).
        @inline(__always)
        func withHead<R>(_ g: Int, length: Int, width: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) -> R) -> R {
            if !half {
                return body(keys.assumingMemoryBound(to: Float.self) + g * headStride,
                            values.assumingMemoryBound(to: Float.self) + g * headStride)
            }
            let n = length * width
            return withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * n) { buffer in
                let k = buffer.baseAddress!, v = k + n
                widenHalves(keys.assumingMemoryBound(to: UInt16.self) + g * headStride, into: k, count: n)
                widenHalves(values.assumingMemoryBound(to: UInt16.self) + g * headStride, into: v, count: n)
                return body(k, v)
            }
        }
    }

    static func run(queries: UnsafePointer<Float>, _ source: KVSource, output: UnsafeMutablePointer<Float>,
                    shape: AttentionShape, tokens: Int, firstPosition: Int, pool: ThreadPool) {
        if tokens > 1, !MatMul.disableBLAS, let blas = BLAS.library {
            blocked(blas, queries: queries, source, output: output, shape: shape,
                    tokens: tokens, firstPosition: firstPosition, pool: pool)
            return
        }
        pool.parallelFor(tokens * shape.heads) { item in
            let t = item / shape.heads, h = item % shape.heads
            head(queries: queries, source, output: output, shape: shape, token: t, head: h,
                 length: firstPosition + t + 1)
        }
    }

    /// One query head of one token: scores, softmax and the weighted sum of values.
    @inline(__always)
    static func head(queries: UnsafePointer<Float>, _ source: KVSource,
                     output: UnsafeMutablePointer<Float>, shape: AttentionShape, token t: Int, head h: Int,
                     length: Int) {
        let hd = shape.headDimension
        let q = queries + (t * shape.heads + h) * hd
        let out = output + (t * shape.heads + h) * hd
        source.withHead(h / (shape.heads / shape.kvHeads), length: length, width: hd) { k, v in
          withUnsafeTemporaryAllocation(of: Float.self, capacity: length) { scores in
            let s = scores.baseAddress!
            Attention.scores(q, k, count: length, width: hd, scale: shape.scale, into: s)
            let inverse = 1 / exponentiateShifted(s, count: length)
            weightedSum(s, v, count: length, width: hd, scale: inverse, into: out)
          }
        }
    }

    /// `s[p] = scale · q·k_p` for `count` consecutive rows `k_p` of `width` floats. Four rows per
    /// pass share the loads of `q` and give four independent FMA chains; when `width` is a
    /// multiple of 16 there is no per-row call or loop tail (`dot` per row cost ~4 % of decoding).
    @inline(__always)
    static func scores(_ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, count: Int, width: Int, scale: Float,
                       into s: UnsafeMutablePointer<Float>) {
        guard width % 16 == 0 else {
            for p in 0..<count { s[p] = dot(q, k + p * width, count: width) * scale }
            return
        }
        let rq = UnsafeRawPointer(q), rk = UnsafeRawPointer(k), rowBytes = 4 * width
        var p = 0
        while p + 4 <= count {
            var a0 = SIMD16<Float>(), a1 = a0, a2 = a0, a3 = a0
            let base = rk + p * rowBytes
            var c = 0
            while c < rowBytes {
                let qv = rq.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self)
                a0.addProduct(qv, base.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self))
                a1.addProduct(qv, base.loadUnaligned(fromByteOffset: c + rowBytes, as: SIMD16<Float>.self))
                a2.addProduct(qv, base.loadUnaligned(fromByteOffset: c + 2 * rowBytes, as: SIMD16<Float>.self))
                a3.addProduct(qv, base.loadUnaligned(fromByteOffset: c + 3 * rowBytes, as: SIMD16<Float>.self))
                c += 64
            }
            s[p] = horizontalSum(a0) * scale
            s[p + 1] = horizontalSum(a1) * scale
            s[p + 2] = horizontalSum(a2) * scale
            s[p + 3] = horizontalSum(a3) * scale
            p += 4
        }
        while p < count {
            var a = SIMD16<Float>()
            var c = 0
            while c < rowBytes {
                a.addProduct(rq.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self),
                             rk.loadUnaligned(fromByteOffset: p * rowBytes + c, as: SIMD16<Float>.self))
                c += 64
            }
            s[p] = horizontalSum(a) * scale
            p += 1
        }
    }

    /// `out[0..<width] = scale · Σ_p weights[p] · rows[p·width ..< (p+1)·width]`, accumulating up to
    /// 64 columns in registers over all rows (rather than loading and storing `out` once per row).
    @inline(__always)
    static func weightedSum(_ weights: UnsafePointer<Float>, _ rows: UnsafePointer<Float>, count: Int, width: Int,
                            scale: Float, into out: UnsafeMutablePointer<Float>) {
        let raw = UnsafeRawPointer(rows), ro = UnsafeMutableRawPointer(out)
        var c = 0
        while c + 64 <= width {
            var a0 = SIMD16<Float>(), a1 = a0, a2 = a0, a3 = a0
            for p in 0..<count {
                let w = SIMD16<Float>(repeating: weights[p]), o = 4 * (p * width + c)
                a0.addProduct(w, raw.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
                a1.addProduct(w, raw.loadUnaligned(fromByteOffset: o + 64, as: SIMD16<Float>.self))
                a2.addProduct(w, raw.loadUnaligned(fromByteOffset: o + 128, as: SIMD16<Float>.self))
                a3.addProduct(w, raw.loadUnaligned(fromByteOffset: o + 192, as: SIMD16<Float>.self))
            }
            ro.storeBytes(of: a0 * scale, toByteOffset: 4 * c, as: SIMD16<Float>.self)
            ro.storeBytes(of: a1 * scale, toByteOffset: 4 * c + 64, as: SIMD16<Float>.self)
            ro.storeBytes(of: a2 * scale, toByteOffset: 4 * c + 128, as: SIMD16<Float>.self)
            ro.storeBytes(of: a3 * scale, toByteOffset: 4 * c + 192, as: SIMD16<Float>.self)
            c += 64
        }
        while c + 16 <= width {
            var a = SIMD16<Float>()
            for p in 0..<count {
                a.addProduct(SIMD16(repeating: weights[p]), raw.loadUnaligned(fromByteOffset: 4 * (p * width + c), as: SIMD16<Float>.self))
            }
            ro.storeBytes(of: a * scale, toByteOffset: 4 * c, as: SIMD16<Float>.self)
            c += 16
        }
        while c < width {
            var a: Float = 0
            for p in 0..<count { a += weights[p] * rows[p * width + c] }
            out[c] = a * scale
            c += 1
        }
    }

    /// The GEMM formulation for prompt batches.
    static func blocked(_ blas: BLAS.Library, queries: UnsafePointer<Float>, _ source: KVSource,
                        output: UnsafeMutablePointer<Float>,
                        shape: AttentionShape, tokens: Int, firstPosition: Int, pool: ThreadPool) {
        let hd = shape.headDimension, heads = shape.heads, group = heads / shape.kvHeads
        let blocks = (tokens + blockRows - 1) / blockRows
        let rowStride = Int32(heads * hd)
        // Later blocks see more keys. Ordering blocks 0, n−1, 1, n−2, … gives the contiguous shares
        // of `parallelFor` similar amounts of work.
        pool.parallelFor(blocks * heads) { item in
            let i = item / heads, h = item % heads
            let b = i % 2 == 0 ? i / 2 : blocks - 1 - i / 2
            let t0 = b * blockRows, rows = min(blockRows, tokens - t0)
            let length = firstPosition + t0 + rows
            source.withHead(h / group, length: length, width: hd) { keys, values in
              withUnsafeTemporaryAllocation(of: Float.self, capacity: rows * length) { buffer in
                let s = buffer.baseAddress!
                blas.sgemm(BLAS.rowMajor, BLAS.noTrans, BLAS.trans, Int32(rows), Int32(length), Int32(hd),
                           shape.scale, queries + (t0 * heads + h) * hd, rowStride, keys, Int32(hd),
                           0, s, Int32(length))
                for r in 0..<rows {
                    let row = s + r * length, valid = firstPosition + t0 + r + 1
                    let total = exponentiateShifted(row, count: valid)
                    scale(row, by: 1 / total, count: valid)
                    (row + valid).update(repeating: 0, count: length - valid)
                }
                blas.sgemm(BLAS.rowMajor, BLAS.noTrans, BLAS.noTrans, Int32(rows), Int32(hd), Int32(length),
                           1, s, Int32(length), values, Int32(hd), 0, output + (t0 * heads + h) * hd, rowStride)
              }
            }
        }
    }
}

/// Widens `count` IEEE half floats (bits) to f32 (F16C `vcvtph2ps` where compiled in).
@inline(__always)
func widenHalves(_ source: UnsafePointer<UInt16>, into destination: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    #if canImport(COpenBLAS.AVX512VNNI)
    let rs = UnsafeRawPointer(source), rd = UnsafeMutableRawPointer(destination)
    while i + 16 <= count {
        rd.storeBytes(of: _mm512_cvtph_ps(rs.loadUnaligned(fromByteOffset: 2 * i, as: __m256i.self)),
                      toByteOffset: 4 * i, as: __m512.self)
        i += 16
    }
    #endif
    while i < count { destination[i] = halfBitsToFloat(source[i]); i += 1 }
}

/// The plain twin of `Attention.causal`, in Double, one head at a time.
public enum ReferenceAttention {
    public static func causal(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                              values: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              shape: AttentionShape, tokens: Int, firstPosition: Int) {
        let hd = shape.headDimension
        let group = shape.heads / shape.kvHeads
        for t in 0..<tokens {
            for h in 0..<shape.heads {
                let length = firstPosition + t + 1
                let kvBase = (h / group) * shape.capacity * hd
                var scores = [Double](repeating: 0, count: length)
                for p in 0..<length {
                    var s = 0.0
                    for i in 0..<hd {
                        s += Double(queries[(t * shape.heads + h) * hd + i]) * Double(keys[kvBase + p * hd + i])
                    }
                    scores[p] = s * Double(shape.scale)
                }
                let m = scores.max()!
                let e = scores.map { Foundation.exp($0 - m) }
                let total = e.reduce(0, +)
                for i in 0..<hd {
                    var acc = 0.0
                    for p in 0..<length { acc += e[p] / total * Double(values[kvBase + p * hd + i]) }
                    output[(t * shape.heads + h) * hd + i] = Float(acc)
                }
            }
        }
    }
}
