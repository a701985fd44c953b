#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel

// AVX-512 / VNNI mat-vec kernels. Written with intrinsics rather than Swift SIMD because integer
// width conversions and horizontal sums on Swift SIMD types lower to slow generic code.
//
// Both drivers process 4 rows per pass so each activation load feeds 4 rows and there are enough
// independent FMA / dpbusd chains to hide latency; leftover rows run through the same per-row
// instruction sequence, so results are bitwise independent of how rows are grouped.
//
// Software prefetch: a 4-row pass walks its 4·rowBytes of weights at ~12 uops per 20-byte block,
// so the out-of-order window only covers ~10 cache lines — about 6 GB/s from DRAM at ~100 ns
// latency, while one core can stream 20 GB/s. Each block step therefore prefetches the bytes
// `prefetchDistance` ahead at the rate the pass consumes them (the row groups are contiguous).
let prefetchDistance = 4096

/// One 32-column step of the f32 path: dequantise in registers, FMA into two accumulators.
protocol AVX512F32Kernel {
    /// Weight bytes per 32 columns.
    static var stride: Int { get }
    /// The 32 weights of one step as f32 (elements 0–15 and 16–31), exactly dequantised. Kept apart
    /// from the FMAs so the batched kernels dequantise once for several activation rows.
    static func weights(_ w: UnsafeRawPointer) -> (__m512, __m512)
    /// Element `i` of a row, for the column tail of float types (quantised rows have no tail).
    static func element(_ row: UnsafeRawPointer, _ i: Int) -> Float
}

extension AVX512F32Kernel {
    @inline(__always) static func step(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, _ a0: inout __m512, _ a1: inout __m512) {
        let (w0, w1) = weights(w)
        a0 = _mm512_fmadd_ps(w0, x.loadUnaligned(as: __m512.self), a0)
        a1 = _mm512_fmadd_ps(w1, x.loadUnaligned(fromByteOffset: 64, as: __m512.self), a1)
    }
}

/// One 32-column block of the int8 path. `dxs` = (d_x, d_x·Σq_x, ·, ·).
///
/// Per block a row adds `(d_w·d_x)·Σ u·q_x` to `acc` (`u` the weights as unsigned bytes, the sum
/// from `vpdpbusd`) and `m_w·(d_x·Σq_x)` to lane 1 of `macc`; `combine` turns the two sums into the
/// result. `step` does it for one activation row; the batched kernels call `unpack` once per block
/// and do the same f32 operations for each of several rows (bitwise the same results).
protocol AVX512Int8Kernel {
    static var stride: Int { get }
    static func step(_ w: UnsafeRawPointer, _ xq: __m256i, _ dxs: __m128, _ acc: inout __m256, _ macc: inout __m128)
    /// The block's weights as unsigned bytes `u`, its scale `d_w` (always the f16 at offset 0) and
    /// its min-term factor `m_w`.
    static func unpack(_ w: UnsafeRawPointer) -> (u: __m256i, d: Float, m: Float)
    /// The row's result from `hsum256(acc)` and `Σ m_w·d_x·Σq_x`.
    static func combine(_ dot: Float, _ minSum: Float) -> Float
    /// `combine` of 16 pairs at once, with the same operations.
    static func combine16(_ dot: __m512, _ minSum: __m512) -> __m512
    /// Whether `m_w` is its own f16 at offset 2 (Q4_1, Q5_1); otherwise it is `d_w`.
    static var hasOwnMinimum: Bool { get }
    /// `unpack(w).u` with every dword twice (dwords 2j and 2j + 1 hold group j), for the paired
    /// batched kernel (BatchedPairedInt8AVX512.swift).
    static func unpackPaired(_ w: UnsafeRawPointer) -> __m512i
    /// Two rows' blocks in one register: `unpack(a).u` in the low 256 bits, `unpack(b).u` in the high
    /// (for the one-row kernel's four-row passes).
    static func unpackTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> __m512i
    /// Whether the one-row kernel runs two rows per 512-bit register (`int8Rows`): a gain where
    /// unpacking is arithmetic-bound (4- and 5-bit types), not for Q8_0, whose rows stream from memory
    /// (paired, Gemma 3's 171 MiB of Q8_0 decoded at 105 tok/s against 113 side by side).
    static var pairsRows: Bool { get }
}

extension AVX512Int8Kernel {
    @inline(__always) static func minFactor(_ w: UnsafeRawPointer) -> Float { unpack(w).m }
    @inline(__always) static func finish(_ acc: __m256, _ macc: __m128) -> Float { combine(hsum256(acc), lane1(macc)) }
    @inline(__always) static func unpackTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> __m512i {
        concat256(unpack(a).u, unpack(b).u)
    }
    static var pairsRows: Bool { true }
    /// (d_w, m_w) of four rows' blocks as [d₀, m₀, d₁, m₁, d₂, m₂, d₃, m₃], converted as `step` does
    /// (m_w is d_w again for the types without their own minimum).
    @inline(__always) static func fourRowScales(_ p0: UnsafeRawPointer, _ p1: UnsafeRawPointer,
                                                _ p2: UnsafeRawPointer, _ p3: UnsafeRawPointer) -> __m256 {
        @inline(__always) func pair(_ p: UnsafeRawPointer) -> Int32 {
            if hasOwnMinimum { return Int32(bitPattern: p.loadUnaligned(as: UInt32.self)) }
            let d = UInt32(p.loadUnaligned(as: UInt16.self))
            return Int32(bitPattern: d | d << 16)
        }
        return _mm256_cvtph_ps(_mm_set_epi32(pair(p3), pair(p2), pair(p1), pair(p0)))
    }
}

enum AVX512MatVec {
    static func multiplyF32(_ w: WeightMatrix, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                            rows: Range<Int>) {
        switch w.type {
        case .f32: f32Rows(F32Weights.self, w, x, y, rows)
        case .f16: f32Rows(F16Weights.self, w, x, y, rows)
        case .bf16: f32Rows(BF16Weights.self, w, x, y, rows)
        case .q4_0: f32Rows(Q40Weights.self, w, x, y, rows)
        case .q4_1: f32Rows(Q41Weights.self, w, x, y, rows)
        case .q5_0: f32Rows(Q50Weights.self, w, x, y, rows)
        case .q5_1: f32Rows(Q51Weights.self, w, x, y, rows)
        case .q8_0: f32Rows(Q80Weights.self, w, x, y, rows)
        case .q4_K, .q5_K, .q6_K: KQuantMatVec.multiplyF32(w, x, into: y, rows: rows)
        }
    }

    static func multiplyInt8(_ w: WeightMatrix, _ xq: QuantizedRow, into y: UnsafeMutablePointer<Float>,
                             rows: Range<Int>) {
        switch w.type {
        case .q4_0: int8Rows(Q40Int8.self, w, xq, y, rows)
        case .q4_1: int8Rows(Q41Int8.self, w, xq, y, rows)
        case .q5_0: int8Rows(Q50Int8.self, w, xq, y, rows)
        case .q5_1: int8Rows(Q51Int8.self, w, xq, y, rows)
        case .q8_0: int8Rows(Q80Int8.self, w, xq, y, rows)
        default: preconditionFailure("int8 path needs a quantised type")
        }
    }

    @inline(__always)
    static func f32Finish<K: AVX512F32Kernel>(_: K.Type, _ a0: __m512, _ a1: __m512, _ row: UnsafeRawPointer,
                                              _ x: UnsafePointer<Float>, _ from: Int, _ n: Int) -> Float {
        var sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
        var c = from
        while c < n { sum += K.element(row, c) * x[c]; c += 1 }
        return sum
    }

    @inline(__always)
    static func f32Rows<K: AVX512F32Kernel>(_ k: K.Type, _ w: WeightMatrix, _ x: UnsafePointer<Float>,
                                            _ y: UnsafeMutablePointer<Float>, _ rows: Range<Int>) {
        let steps = w.columns / 32, n = w.columns, tail = steps * 32
        let xs = UnsafeRawPointer(x), rb = w.rowBytes, stride = K.stride
        var r = rows.lowerBound
        while r + 4 <= rows.upperBound {
            let p0 = w.row(r), p1 = p0 + rb, p2 = p1 + rb, p3 = p2 + rb
            let z = _mm512_setzero_ps()
            var a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z
            let ahead = p0 + prefetchDistance
            for s in 0..<steps {
                let xo = xs + 128 * s, wo = s * stride
                prefetchStep(ahead + 4 * wo, bytes: 4 * stride)
                K.step(p0 + wo, xo, &a00, &a01)
                K.step(p1 + wo, xo, &a10, &a11)
                K.step(p2 + wo, xo, &a20, &a21)
                K.step(p3 + wo, xo, &a30, &a31)
            }
            y[r] = f32Finish(k, a00, a01, p0, x, tail, n)
            y[r + 1] = f32Finish(k, a10, a11, p1, x, tail, n)
            y[r + 2] = f32Finish(k, a20, a21, p2, x, tail, n)
            y[r + 3] = f32Finish(k, a30, a31, p3, x, tail, n)
            r += 4
        }
        while r < rows.upperBound {
            let p0 = w.row(r)
            var a00 = _mm512_setzero_ps(), a01 = _mm512_setzero_ps()
            for s in 0..<steps { K.step(p0 + s * stride, xs + 128 * s, &a00, &a01) }
            y[r] = f32Finish(k, a00, a01, p0, x, tail, n)
            r += 1
        }
    }

    @inline(__always)
    static func scalePair(_ scales: UnsafeRawPointer, _ b: Int) -> __m128 {
        _mm_castsi128_ps(_mm_cvtsi64_si128(Int64(bitPattern: scales.loadUnaligned(fromByteOffset: 8 * b, as: UInt64.self))))
    }

    @inline(__always)
    static func int8Rows<K: AVX512Int8Kernel>(_ k: K.Type, _ w: WeightMatrix, _ xq: QuantizedRow,
                                              _ y: UnsafeMutablePointer<Float>, _ rows: Range<Int>) {
        let blocks = w.columns / 32
        let qs = UnsafeRawPointer(xq.qs), scales = UnsafeRawPointer(xq.scales)
        let rb = w.rowBytes, stride = K.stride, streaming = w.streaming
        var r = rows.lowerBound
        // Four rows per pass, two per 512-bit register: lanes 0–7 are one row's `step` lanes and
        // 8–15 the next row's, with the activations in both halves, and the four rows' scales
        // converted and multiplied together. Every lane sees exactly `step`'s operations in the same
        // order (so each row is bitwise its one-row and batched result), at about half the
        // instructions per block: one dpbusd, convert and FMA for two rows.
        let lowHalf = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0)
        let highHalf = _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4)
        while K.pairsRows && r + 4 <= rows.upperBound {
            let p0 = w.row(r), p1 = p0 + rb, p2 = p1 + rb, p3 = p2 + rb
            var a01 = _mm512_setzero_ps(), a23 = _mm512_setzero_ps(), minSums = _mm256_setzero_ps()
            let ahead = p0 + prefetchDistance
            for b in 0..<blocks {
                let x2 = _mm512_broadcast_i64x4(qs.loadUnaligned(fromByteOffset: 32 * b, as: __m256i.self))
                // (d_x, d_x·Σq_x) four times.
                let dxs = _mm256_castsi256_ps(_mm256_set1_epi64x(scales.loadUnaligned(fromByteOffset: 8 * b, as: Int64.self)))
                let wo = b * stride
                prefetchStep(ahead + 4 * wo, bytes: 4 * stride, streaming: streaming)
                // [d₀d_x, m₀·d_xΣq_x, d₁d_x, …]: lanes 2i of `step`'s `prod` for row i, lanes 2i + 1 its min term.
                let prod = _mm256_mul_ps(K.fourRowScales(p0 + wo, p1 + wo, p2 + wo, p3 + wo), dxs)
                let wide = _mm512_castps256_ps512(prod)
                let i01 = dpbusd512(K.unpackTwoRows(p0 + wo, p1 + wo), x2)
                let i23 = dpbusd512(K.unpackTwoRows(p2 + wo, p3 + wo), x2)
                a01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i01), _mm512_permutexvar_ps(lowHalf, wide), a01)
                a23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i23), _mm512_permutexvar_ps(highHalf, wide), a23)
                minSums = _mm256_add_ps(minSums, prod)
            }
            y[r] = K.combine(hsum256(_mm512_castps512_ps256(a01)), minSums[1])
            y[r + 1] = K.combine(hsum256(upper256(a01)), minSums[3])
            y[r + 2] = K.combine(hsum256(_mm512_castps512_ps256(a23)), minSums[5])
            y[r + 3] = K.combine(hsum256(upper256(a23)), minSums[7])
            r += 4
        }
        while r + 4 <= rows.upperBound {
            let p0 = w.row(r), p1 = p0 + rb, p2 = p1 + rb, p3 = p2 + rb
            let z = _mm256_setzero_ps(), zm = _mm_setzero_ps()
            var a0 = z, a1 = z, a2 = z, a3 = z, m0 = zm, m1 = zm, m2 = zm, m3 = zm
            let ahead = p0 + prefetchDistance
            for b in 0..<blocks {
                let xv = qs.loadUnaligned(fromByteOffset: 32 * b, as: __m256i.self)
                let dxs = scalePair(scales, b)
                let wo = b * stride
                prefetchStep(ahead + 4 * wo, bytes: 4 * stride, streaming: streaming)
                K.step(p0 + wo, xv, dxs, &a0, &m0)
                K.step(p1 + wo, xv, dxs, &a1, &m1)
                K.step(p2 + wo, xv, dxs, &a2, &m2)
                K.step(p3 + wo, xv, dxs, &a3, &m3)
            }
            y[r] = K.finish(a0, m0)
            y[r + 1] = K.finish(a1, m1)
            y[r + 2] = K.finish(a2, m2)
            y[r + 3] = K.finish(a3, m3)
            r += 4
        }
        while r < rows.upperBound {
            let p0 = w.row(r)
            var a0 = _mm256_setzero_ps(), m0 = _mm_setzero_ps()
            for b in 0..<blocks {
                K.step(p0 + b * stride, qs.loadUnaligned(fromByteOffset: 32 * b, as: __m256i.self),
                       scalePair(scales, b), &a0, &m0)
            }
            y[r] = K.finish(a0, m0)
            r += 1
        }
    }
}

// MARK: - Helpers

@inline(__always) func hsum256(_ v: __m256) -> Float {
    let h = unsafeBitCast(v, to: SIMD8<Float>.self)
    let s = unsafeBitCast(h.lowHalf + h.highHalf, to: __m128.self)
    let s2 = _mm_add_ps(s, _mm_movehl_ps(s, s))
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// vpdpbusd from a zero accumulator. (`_mm256_dpbusd_epi32` is a C macro Swift cannot import; the
/// all-ones mask of the function form folds away.)
@inline(__always) func dpbusd256(_ a: __m256i, _ b: __m256i) -> __m256i {
    _mm256_mask_dpbusd_epi32(_mm256_setzero_si256(), 0xFF, a, b)
}

/// `a` in the low 256 bits, `b` in the high (vinserti64x4; the intrinsic is a macro Swift cannot import).
@inline(__always) func concat256(_ a: __m256i, _ b: __m256i) -> __m512i {
    unsafeBitCast(SIMD16<Int32>(lowHalf: unsafeBitCast(a, to: SIMD8<Int32>.self), highHalf: unsafeBitCast(b, to: SIMD8<Int32>.self)),
                  to: __m512i.self)
}

/// The high 256 bits of `v` (`__m512` is `SIMD16<Float>` in Swift).
@inline(__always) func upper256(_ v: __m512) -> __m256 { v.highHalf }

/// vpdpbusd from a zero accumulator, 512 bits.
@inline(__always) func dpbusd512(_ a: __m512i, _ b: __m512i) -> __m512i {
    _mm512_mask_dpbusd_epi32(_mm512_setzero_si512(), 0xFFFF, a, b)
}

/// Lane 1 of a 4-float vector.
@inline(__always) func lane1(_ v: __m128) -> Float { _mm_cvtss_f32(_mm_movehdup_ps(v)) }

/// 16 nibbles → 32 unsigned bytes in ggml order (low nibbles are elements 0–15, high 16–31).
@inline(__always) func unpackNibbles256(_ raw: __m128i) -> __m256i {
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F))
}

/// `unpackNibbles256` of two rows' blocks in one register (row `a` low, `b` high): the two 16-byte
/// blocks spread to [a, a, b, b], the second copy of each shifted down a nibble, then masked.
@inline(__always) func twoRowNibbles(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, offset: Int) -> __m512i {
    let raw = _mm512_castsi256_si512(_mm256_set_m128i(load128(b, offset), load128(a, offset)))
    let spread = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), raw)
    return _mm512_and_si512(_mm512_mask_srli_epi16(spread, 0xFF00_FF00, spread, 4), _mm512_set1_epi8(0x0F))
}

/// 16 unsigned bytes → 16 floats.
@inline(__always) func bytesToFloats(_ v: __m128i) -> __m512 { _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)) }

@inline(__always) func load128(_ p: UnsafeRawPointer, _ offset: Int) -> __m128i {
    p.loadUnaligned(fromByteOffset: offset, as: __m128i.self)
}

/// Writes the 32 floats of one 4-bit block, `scale·q + offset`: elements 0–15 from the low nibbles
/// of `raw`, 16–31 from the high ones (ggml's order), to `out` (128 bytes).
@inline(__always) func storeNibbles(_ raw: __m128i, scale: __m512, offset: __m512, mask: __m128i,
                                    into out: UnsafeMutableRawPointer) {
    out.storeBytes(of: _mm512_fmadd_ps(bytesToFloats(_mm_and_si128(raw, mask)), scale, offset), as: __m512.self)
    out.storeBytes(of: _mm512_fmadd_ps(bytesToFloats(_mm_and_si128(_mm_srli_epi16(raw, 4), mask)), scale, offset),
                   toByteOffset: 64, as: __m512.self)
}

// MARK: - f32 path kernels

enum F32Weights: AVX512F32Kernel {
    static var stride: Int { 128 }
    @inline(__always) static func weights(_ w: UnsafeRawPointer) -> (__m512, __m512) {
        (w.loadUnaligned(as: __m512.self), w.loadUnaligned(fromByteOffset: 64, as: __m512.self))
    }
    @inline(__always) static func element(_ row: UnsafeRawPointer, _ i: Int) -> Float {
        row.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
    }
}

enum F16Weights: AVX512F32Kernel {
    static var stride: Int { 64 }
    @inline(__always) static func weights(_ w: UnsafeRawPointer) -> (__m512, __m512) {
        (_mm512_cvtph_ps(w.loadUnaligned(as: __m256i.self)), _mm512_cvtph_ps(w.loadUnaligned(fromByteOffset: 32, as: __m256i.self)))
    }
    @inline(__always) static func element(_ row: UnsafeRawPointer, _ i: Int) -> Float {
        halfBitsToFloat(row.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
    }
}

enum BF16Weights: AVX512F32Kernel {
    static var stride: Int { 64 }
    /// bf16 is the top half of an f32: widen to 32 bits and shift left by 16.
    @inline(__always) static func widen(_ v: __m256i) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16))
    }
    @inline(__always) static func weights(_ w: UnsafeRawPointer) -> (__m512, __m512) {
        (widen(w.loadUnaligned(as: __m256i.self)), widen(w.loadUnaligned(fromByteOffset: 32, as: __m256i.self)))
    }
    @inline(__always) static func element(_ row: UnsafeRawPointer, _ i: Int) -> Float {
        Float(bitPattern: UInt32(row.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
    }
}

enum Q80Weights: AVX512F32Kernel {
    static var stride: Int { 34 }
    @inline(__always) static func weights(_ w: UnsafeRawPointer) -> (__m512, __m512) {
        let d = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(as: UInt16.self)))
        let q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load128(w, 2)))
        let q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load128(w, 18)))
        return (_mm512_mul_ps(q0, d), _mm512_mul_ps(q1, d))
    }
    static func element(_ row: UnsafeRawPointer, _ i: Int) -> Float { 0 }
}

enum Q40Weights: AVX512F32Kernel {
    static var stride: Int { 18 }
    @inline(__always) static func weights(_ w: UnsafeRawPointer) -> (__m512, __m512) {
        let dh = halfBitsToFloat(w.loadUnaligned(as: UInt16.self))
        let d = _mm512_set1_ps(dh), off = _mm512_set1_ps(-8 * dh)
        let raw = load128(w, 2), mask = _mm_set1_epi8(0x0F)
        // fma(q, d, −8d) rounds (q − 8)·d once, exactly like the scalar dequantiser.
        return (_mm512_fmadd_ps(bytesToFloats(_mm_and_si128(raw, mask)), d, off),
                _mm512_fmadd_ps(bytesToFloats(_mm_and_si128(_mm_srli_epi16(raw, 4), mask)), d, off))
    }
    static func element(_ row: UnsafeRawPointer, _ i: Int) -> Float { 0 }
}

enum Q41Weights: AVX512F32Kernel {
    static var stride: Int { 20 }
    @inline(__always) static func weights(_ w: UnsafeRawPointer) -> (__m512, __m512) {
        let d = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(as: UInt16.self)))
        let m = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        let raw = load128(w, 4), mask = _mm_set1_epi8(0x0F)
        return (_mm512_fmadd_ps(bytesToFloats(_mm_and_si128(raw, mask)), d, m),
                _mm512_fmadd_ps(bytesToFloats(_mm_and_si128(_mm_srli_epi16(raw, 4), mask)), d, m))
    }
    static func element(_ row: UnsafeRawPointer, _ i: Int) -> Float { 0 }
}

// MARK: - int8 path kernels

/// Q4_1 · Q8: d_w·d_x·Σq_w·q_x + m_w·(d_x·Σq_x). One 32-bit load + vcvtph2ps gives (d_w, m_w);
/// multiplied by (d_x, d_x·Σq_x) lane 0 is the block scale and lane 1 the min term, which
/// accumulates in `macc` lane 1.
enum Q41Int8: AVX512Int8Kernel {
    static var stride: Int { 20 }
    @inline(__always) static func step(_ w: UnsafeRawPointer, _ xq: __m256i, _ dxs: __m128, _ acc: inout __m256, _ macc: inout __m128) {
        let isum = dpbusd256(unpackNibbles256(load128(w, 4)), xq)
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(Int32(bitPattern: w.loadUnaligned(as: UInt32.self))))
        let prod = _mm_mul_ps(dm, dxs)
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(prod), acc)
        macc = _mm_add_ps(macc, prod)
    }
    @inline(__always) static func unpack(_ w: UnsafeRawPointer) -> (u: __m256i, d: Float, m: Float) {
        (unpackNibbles256(load128(w, 4)), halfBitsToFloat(w.loadUnaligned(as: UInt16.self)),
         halfBitsToFloat(w.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
    }
    @inline(__always) static func combine(_ dot: Float, _ minSum: Float) -> Float { dot + minSum }
    @inline(__always) static func combine16(_ dot: __m512, _ minSum: __m512) -> __m512 { _mm512_add_ps(dot, minSum) }
    static var hasOwnMinimum: Bool { true }
    @inline(__always) static func unpackPaired(_ w: UnsafeRawPointer) -> __m512i { pairedNibbles(w, offset: 4) }
    @inline(__always) static func unpackTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> __m512i {
        twoRowNibbles(a, b, offset: 4)
    }
}

/// Q4_0 · Q8: vpdpbusd multiplies unsigned × signed, so use the raw nibbles q ∈ [0, 15] and
/// correct: Σ(q−8)·x = Σq·x − 8·Σx, with d_w·d_x·Σq_x accumulated in `macc` lane 1.
enum Q40Int8: AVX512Int8Kernel {
    static var stride: Int { 18 }
    @inline(__always) static func step(_ w: UnsafeRawPointer, _ xq: __m256i, _ dxs: __m128, _ acc: inout __m256, _ macc: inout __m128) {
        let isum = dpbusd256(unpackNibbles256(load128(w, 2)), xq)
        let d = _mm_cvtph_ps(_mm_set1_epi16(Int16(bitPattern: w.loadUnaligned(as: UInt16.self))))
        let prod = _mm_mul_ps(d, dxs)
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(prod), acc)
        macc = _mm_add_ps(macc, prod)
    }
    @inline(__always) static func unpack(_ w: UnsafeRawPointer) -> (u: __m256i, d: Float, m: Float) {
        let d = halfBitsToFloat(w.loadUnaligned(as: UInt16.self))
        return (unpackNibbles256(load128(w, 2)), d, d)
    }
    @inline(__always) static func combine(_ dot: Float, _ minSum: Float) -> Float { dot - 8 * minSum }
    @inline(__always) static func combine16(_ dot: __m512, _ minSum: __m512) -> __m512 {
        _mm512_sub_ps(dot, _mm512_mul_ps(_mm512_set1_ps(8), minSum))
    }
    @inline(__always) static func unpackPaired(_ w: UnsafeRawPointer) -> __m512i { pairedNibbles(w, offset: 2) }
    @inline(__always) static func unpackTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> __m512i {
        twoRowNibbles(a, b, offset: 2)
    }
}

/// Q8_0 · Q8: signed × signed has no VNNI instruction; flipping the sign bit turns w into the
/// unsigned w + 128, and Σ(w+128)·x − 128·Σx = Σw·x (one XOR instead of ggml's two vpsignb).
enum Q80Int8: AVX512Int8Kernel {
    static var stride: Int { 34 }
    static var pairsRows: Bool { false }
    @inline(__always) static func step(_ w: UnsafeRawPointer, _ xq: __m256i, _ dxs: __m128, _ acc: inout __m256, _ macc: inout __m128) {
        let wu = _mm256_xor_si256(w.loadUnaligned(fromByteOffset: 2, as: __m256i.self), _mm256_set1_epi8(-128))
        let isum = dpbusd256(wu, xq)
        let d = _mm_cvtph_ps(_mm_set1_epi16(Int16(bitPattern: w.loadUnaligned(as: UInt16.self))))
        let prod = _mm_mul_ps(d, dxs)
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(prod), acc)
        macc = _mm_add_ps(macc, prod)
    }
    @inline(__always) static func unpack(_ w: UnsafeRawPointer) -> (u: __m256i, d: Float, m: Float) {
        let d = halfBitsToFloat(w.loadUnaligned(as: UInt16.self))
        return (_mm256_xor_si256(w.loadUnaligned(fromByteOffset: 2, as: __m256i.self), _mm256_set1_epi8(-128)), d, d)
    }
    @inline(__always) static func combine(_ dot: Float, _ minSum: Float) -> Float { dot - 128 * minSum }
    @inline(__always) static func combine16(_ dot: __m512, _ minSum: __m512) -> __m512 {
        _mm512_sub_ps(dot, _mm512_mul_ps(_mm512_set1_ps(128), minSum))
    }
}
#endif
