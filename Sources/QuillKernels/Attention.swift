#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COpenBLAS.Hints
#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
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
/// Decoding tokens run a fused loop per KV head (dot products, softmax, weighted sum of values kept
/// in registers); prompt chunks run tiles of up to 32 tokens through `FusedAttention` (register-blocked
/// scores over transposed keys, a per-row masked softmax, register-blocked weighted values), which
/// computes every row on its own: a token's result depends on its position and history only, not on
/// its chunk, its tile or the thread count. The kernels read paged KV memory
/// (`paged(queries:kv:sequences:…)`); `causal` runs them over one contiguous history.
public enum Attention {
    /// - Parameters:
    ///   - queries: (tokens, heads, headDimension), already rotated
    ///   - keys: (kvHeads, capacity, headDimension), positions `0 ..< firstPosition + tokens` filled
    ///   - values: (kvHeads, capacity, headDimension)
    ///   - output: (tokens, heads, headDimension)
    ///   - firstPosition: position of the first new token; token t attends to positions `0 ... firstPosition + t`.
    public static func causal(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                              values: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              shape: AttentionShape, tokens: Int, firstPosition: Int, pool: ThreadPool) {
        contiguous(queries: queries, keys: UnsafeRawPointer(keys), values: UnsafeRawPointer(values), half: false,
                   output: output, shape: shape, tokens: tokens, firstPosition: firstPosition, pool: pool)
    }

    /// The same over a half-precision cache (`keys`, `values`: IEEE half bits, same layout).
    public static func causal(queries: UnsafePointer<Float>, keyBits: UnsafePointer<UInt16>,
                              valueBits: UnsafePointer<UInt16>, output: UnsafeMutablePointer<Float>,
                              shape: AttentionShape, tokens: Int, firstPosition: Int, pool: ThreadPool) {
        contiguous(queries: queries, keys: UnsafeRawPointer(keyBits), values: UnsafeRawPointer(valueBits), half: true,
                   output: output, shape: shape, tokens: tokens, firstPosition: firstPosition, pool: pool)
    }

    /// A contiguous (kvHeads, capacity, headDimension) history is a paged one with a single block
    /// of `capacity` positions.
    static func contiguous(queries: UnsafePointer<Float>, keys: UnsafeRawPointer, values: UnsafeRawPointer, half: Bool,
                           output: UnsafeMutablePointer<Float>, shape: AttentionShape, tokens: Int,
                           firstPosition: Int, pool: ThreadPool) {
        let view = PagedKVView(base: UnsafeMutableRawPointer(mutating: keys), blockBytes: 0,
                               valueOffset: values - keys, blockTokens: shape.capacity, kvHeads: shape.kvHeads,
                               headDimension: shape.headDimension, half: half)
        withUnsafePointer(to: Int32(0)) { table in
            paged(queries: queries, kv: view,
                  sequences: [AttentionSequence(firstRow: 0, tokens: tokens, firstPosition: firstPosition, blocks: table)],
                  output: output, shape: shape, window: nil, pool: pool)
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
        #if canImport(COpenBLAS.AVX512VNNI)
        while p + 16 <= count {
            scoresSixteen(rq, rk + p * rowBytes, rowBytes: rowBytes, scale: scale, into: UnsafeMutableRawPointer(s + p))
            p += 16
        }
        #endif
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
}

#if canImport(COpenBLAS.AVX512VNNI)
extension Attention {
    /// `s[0 ..< 16] = scale · q·k_p` for 16 consecutive key rows of `rowBytes` (a multiple of 64): one
    /// accumulator per key over the row, then the 16 accumulators summed together — four levels of
    /// two-source permutes and one add, each halving the lanes per key (47 instructions for 16 scores
    /// where a horizontal sum per key took ~7 each, most of a decoding token's attention at depth).
    @inline(__always)
    static func scoresSixteen(_ q: UnsafeRawPointer, _ k: UnsafeRawPointer, rowBytes: Int, scale: Float,
                              into s: UnsafeMutableRawPointer) {
        scoresSixteen(q, k, half: false, rowBytes: rowBytes, scale: scale, into: s, prefetching: nil, nil)
    }

    /// The same over F16 key rows of `rowBytes` (a multiple of 32), each widened in registers: the
    /// same floats and operations. With `prefetching`, requests `16·rowBytes` bytes of each stream,
    /// spread over the loop.
    @inline(__always)
    static func scoresSixteen(_ q: UnsafeRawPointer, halfKeys k: UnsafeRawPointer, rowBytes: Int, scale: Float,
                              into s: UnsafeMutableRawPointer, prefetching first: UnsafeRawPointer?, _ second: UnsafeRawPointer?) {
        scoresSixteen(q, k, half: true, rowBytes: rowBytes, scale: scale, into: s, prefetching: first, second)
    }

    @inline(__always)
    static func scoresSixteen(_ q: UnsafeRawPointer, _ k: UnsafeRawPointer, half: Bool, rowBytes: Int, scale: Float,
                              into s: UnsafeMutableRawPointer, prefetching first: UnsafeRawPointer?, _ second: UnsafeRawPointer?) {
        var a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0
        var a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0
        var c = 0
        // f32 bytes of one row; an F16 row is half as long.
        let width = half ? 2 * rowBytes : rowBytes
        let streamBytes = 16 * rowBytes, chunks = width / 64
        let linesPerChunk = (streamBytes / 64 + chunks - 1) / chunks
        while c < width {
            let x = q.loadUnaligned(fromByteOffset: c, as: __m512.self)
            if first != nil || second != nil {
                let line0 = (c / 64) * linesPerChunk
                for l in line0 ..< min(line0 + linesPerChunk, streamBytes / 64) {
                    if let first { quill_prefetch(first + 64 * l) }
                    if let second { quill_prefetch(second + 64 * l) }
                }
            }
            @inline(__always) func key(_ j: Int) -> __m512 {
                half ? _mm512_cvtph_ps(k.loadUnaligned(fromByteOffset: j * rowBytes + c / 2, as: __m256i.self))
                    : k.loadUnaligned(fromByteOffset: j * rowBytes + c, as: __m512.self)
            }
            a0 = _mm512_fmadd_ps(x, key(0), a0); a1 = _mm512_fmadd_ps(x, key(1), a1)
            a2 = _mm512_fmadd_ps(x, key(2), a2); a3 = _mm512_fmadd_ps(x, key(3), a3)
            a4 = _mm512_fmadd_ps(x, key(4), a4); a5 = _mm512_fmadd_ps(x, key(5), a5)
            a6 = _mm512_fmadd_ps(x, key(6), a6); a7 = _mm512_fmadd_ps(x, key(7), a7)
            a8 = _mm512_fmadd_ps(x, key(8), a8); a9 = _mm512_fmadd_ps(x, key(9), a9)
            a10 = _mm512_fmadd_ps(x, key(10), a10); a11 = _mm512_fmadd_ps(x, key(11), a11)
            a12 = _mm512_fmadd_ps(x, key(12), a12); a13 = _mm512_fmadd_ps(x, key(13), a13)
            a14 = _mm512_fmadd_ps(x, key(14), a14); a15 = _mm512_fmadd_ps(x, key(15), a15)
            c += 64
        }
        // Level 1: 128-bit granules 0+2 and 1+3 of two keys → [key i (8 lanes), key i+1 (8 lanes)].
        let lo1 = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 7, 6, 5, 4, 3, 2, 1, 0)
        let hi1 = _mm512_set_epi32(31, 30, 29, 28, 27, 26, 25, 24, 15, 14, 13, 12, 11, 10, 9, 8)
        @inline(__always) func fold(_ x: __m512, _ y: __m512, _ lo: __m512i, _ hi: __m512i) -> __m512 {
            _mm512_add_ps(_mm512_permutex2var_ps(x, lo, y), _mm512_permutex2var_ps(x, hi, y))
        }
        let b0 = fold(a0, a1, lo1, hi1), b1 = fold(a2, a3, lo1, hi1), b2 = fold(a4, a5, lo1, hi1), b3 = fold(a6, a7, lo1, hi1)
        let b4 = fold(a8, a9, lo1, hi1), b5 = fold(a10, a11, lo1, hi1), b6 = fold(a12, a13, lo1, hi1)
        let b7 = fold(a14, a15, lo1, hi1)
        // Level 2: granule g of the result is key 4m + g (4 lanes).
        let lo2 = _mm512_set_epi32(27, 26, 25, 24, 19, 18, 17, 16, 11, 10, 9, 8, 3, 2, 1, 0)
        let hi2 = _mm512_set_epi32(31, 30, 29, 28, 23, 22, 21, 20, 15, 14, 13, 12, 7, 6, 5, 4)
        let c0 = fold(b0, b1, lo2, hi2), c1 = fold(b2, b3, lo2, hi2), c2 = fold(b4, b5, lo2, hi2), c3 = fold(b6, b7, lo2, hi2)
        // Level 3, within granules: [key g (2 lanes), key g+4 (2 lanes)], then [key g+8, key g+12].
        let lo3 = _mm512_set_epi32(29, 28, 13, 12, 25, 24, 9, 8, 21, 20, 5, 4, 17, 16, 1, 0)
        let hi3 = _mm512_set_epi32(31, 30, 15, 14, 27, 26, 11, 10, 23, 22, 7, 6, 19, 18, 3, 2)
        let d0 = fold(c0, c1, lo3, hi3), d1 = fold(c2, c3, lo3, hi3)
        // Level 4: lane 4g + j holds key g + 4j.
        let lo4 = _mm512_set_epi32(30, 28, 14, 12, 26, 24, 10, 8, 22, 20, 6, 4, 18, 16, 2, 0)
        let hi4 = _mm512_set_epi32(31, 29, 15, 13, 27, 25, 11, 9, 23, 21, 7, 5, 19, 17, 3, 1)
        let e = fold(d0, d1, lo4, hi4)
        let order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0)
        let sums = _mm512_permutexvar_ps(order, e)
        s.storeBytes(of: _mm512_mul_ps(sums, _mm512_set1_ps(scale)), as: __m512.self)
    }
}
#endif

/// Widens `count` IEEE half floats (bits) to f32 (F16C `vcvtph2ps` where compiled in).
/// - Parameter prefetching: up to two other arrays of at least `2·count` bytes whose lines are
///   requested at the pace this loop reads its own: one line of each per 64 bytes of `source`, so
///   the requests never pile up in the miss buffers the way one burst per block did.
@inline(__always)
func widenHalves(_ source: UnsafePointer<UInt16>, into destination: UnsafeMutablePointer<Float>, count: Int,
                 prefetching first: UnsafeRawPointer? = nil, _ second: UnsafeRawPointer? = nil) {
    var i = 0
    #if canImport(COpenBLAS.AVX512VNNI)
    let rs = UnsafeRawPointer(source), rd = UnsafeMutableRawPointer(destination)
    while i + 32 <= count {
        if let first { quill_prefetch(first + 2 * i) }
        if let second { quill_prefetch(second + 2 * i) }
        rd.storeBytes(of: _mm512_cvtph_ps(rs.loadUnaligned(fromByteOffset: 2 * i, as: __m256i.self)),
                      toByteOffset: 4 * i, as: __m512.self)
        rd.storeBytes(of: _mm512_cvtph_ps(rs.loadUnaligned(fromByteOffset: 2 * i + 32, as: __m256i.self)),
                      toByteOffset: 4 * i + 64, as: __m512.self)
        i += 32
    }
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
    /// - Parameter window: when set, the token at position p attends to positions `p − window + 1 ... p` only.
    public static func causal(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                              values: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              shape: AttentionShape, tokens: Int, firstPosition: Int, window: Int? = nil) {
        let hd = shape.headDimension
        let group = shape.heads / shape.kvHeads
        for t in 0..<tokens {
            for h in 0..<shape.heads {
                let position = firstPosition + t
                let start = window.map { max(0, position - $0 + 1) } ?? 0
                let kvBase = (h / group) * shape.capacity * hd
                var scores = [Double](repeating: 0, count: position + 1 - start)
                for p in start ... position {
                    var s = 0.0
                    for i in 0..<hd {
                        s += Double(queries[(t * shape.heads + h) * hd + i]) * Double(keys[kvBase + p * hd + i])
                    }
                    scores[p - start] = s * Double(shape.scale)
                }
                let m = scores.max()!
                let e = scores.map { Glibc.exp($0 - m) }
                let total = e.reduce(0, +)
                for i in 0..<hd {
                    var acc = 0.0
                    for p in start ... position { acc += e[p - start] / total * Double(values[kvBase + p * hd + i]) }
                    output[(t * shape.heads + h) * hd + i] = Float(acc)
                }
            }
        }
    }
}
