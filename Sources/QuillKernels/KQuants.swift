#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// llama.cpp's K-quant super-block formats, Q4_K, Q5_K and Q6_K (256 values per block, layouts in
/// `TensorType`): SIMD dequantisation of whole rows and the kernels `MatVec` uses for them
/// (Q5_K in KQuantQ5K.swift, Q6_K's int8 kernel in KQuantQ6KInt8.swift).
///
/// Both formats carry one scale per 16 or 32 values inside the block, so the kernels decode a
/// block's scales into one 16-lane vector and broadcast lane j (`vpermps`) to each group.
public enum KQuants {
    /// Whether `type` is a K-quant (256-value super-blocks).
    @inlinable public static func isKQuant(_ type: TensorType) -> Bool { type == .q4_K || type == .q5_K || type == .q6_K }

    /// Dequantises `count` values (a multiple of 256) of a K-quant row into `out`: SIMD where
    /// the AVX-512 kernels are compiled in, the scalar reference elsewhere. The values are bitwise
    /// those of `ReferenceDequantizer` (the same f32 operations in the same order).
    public static func dequantize(_ type: TensorType, _ src: UnsafeRawPointer, count: Int,
                                  into out: UnsafeMutablePointer<Float>) {
        precondition(isKQuant(type) && count % 256 == 0, "dequantize needs a K-quant row of whole blocks")
        #if canImport(COpenBLAS.AVX512VNNI)
        let o = UnsafeMutableRawPointer(out)
        switch type {
        case .q4_K: for b in 0..<count / 256 { Q4KWeights.dequantize(src + 144 * b, o + 1024 * b) }
        case .q5_K: for b in 0..<count / 256 { Q5KWeights.dequantize(src + 176 * b, o + 1024 * b) }
        default: for b in 0..<count / 256 { Q6KWeights.dequantize(src + 210 * b, o + 1024 * b) }
        }
        #else
        ReferenceDequantizer.dequantize(type, src, count: count, into: out)
        #endif
    }
}

#if canImport(COpenBLAS.AVX512VNNI)

/// One 256-value super-block of the f32 path: dequantise in registers, FMA into two accumulators.
protocol KQuantF32Kernel {
    /// Bytes per block.
    static var stride: Int { get }
    static func step(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, _ a0: inout __m512, _ a1: inout __m512)
}

enum KQuantMatVec {
    static func multiplyF32(_ w: WeightMatrix, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                            rows: Range<Int>) {
        switch w.type {
        case .q4_K: f32Rows(Q4KWeights.self, w, x, y, rows)
        case .q5_K: f32Rows(Q5KWeights.self, w, x, y, rows)
        case .q6_K: f32Rows(Q6KWeights.self, w, x, y, rows)
        default: preconditionFailure("not a K-quant type")
        }
    }

    /// Same structure as `AVX512MatVec.f32Rows`: 4 rows per pass sharing the activation loads,
    /// leftover rows through the same per-row sequence (results independent of row grouping).
    @inline(__always)
    static func f32Rows<K: KQuantF32Kernel>(_: K.Type, _ w: WeightMatrix, _ x: UnsafePointer<Float>,
                                            _ y: UnsafeMutablePointer<Float>, _ rows: Range<Int>) {
        let steps = w.columns / 256
        let xs = UnsafeRawPointer(x), rb = w.rowBytes, stride = K.stride, streaming = w.streaming
        var r = rows.lowerBound
        while r + 4 <= rows.upperBound {
            let p0 = w.row(r), p1 = p0 + rb, p2 = p1 + rb, p3 = p2 + rb
            let z = _mm512_setzero_ps()
            var a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z
            let ahead = p0 + prefetchDistance
            for s in 0..<steps {
                let xo = xs + 1024 * s, wo = s * stride
                prefetchStep(ahead + 4 * wo, bytes: 4 * stride, streaming: streaming)
                K.step(p0 + wo, xo, &a00, &a01)
                K.step(p1 + wo, xo, &a10, &a11)
                K.step(p2 + wo, xo, &a20, &a21)
                K.step(p3 + wo, xo, &a30, &a31)
            }
            y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a00, a01))
            y[r + 1] = _mm512_reduce_add_ps(_mm512_add_ps(a10, a11))
            y[r + 2] = _mm512_reduce_add_ps(_mm512_add_ps(a20, a21))
            y[r + 3] = _mm512_reduce_add_ps(_mm512_add_ps(a30, a31))
            r += 4
        }
        while r < rows.upperBound {
            let p0 = w.row(r)
            var a00 = _mm512_setzero_ps(), a01 = _mm512_setzero_ps()
            for s in 0..<steps { K.step(p0 + s * stride, xs + 1024 * s, &a00, &a01) }
            y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a00, a01))
            r += 1
        }
    }
}

/// One 256-value super-block of the int8 path against 256 int8 activations (`QuantizedActivations`'
/// 32-blocks): integer dot products per 32 values, scaled in an 8-lane accumulator `acc`; the
/// zero-point / min terms, which need only the activations' block sums, in the 16-lane `macc`.
protocol KQuantInt8Kernel {
    /// Bytes per block.
    static var stride: Int { get }
    /// The activation scales of super-block `s`, loaded once and shared by the rows of a pass, from
    /// `aux` (the activations' (d_x, d_x·Σq_x) pairs, or a per-kernel table).
    static func activation(_ aux: UnsafeRawPointer, _ s: Int) -> (__m512, __m512)
    static func step(_ w: UnsafeRawPointer, _ xb: UnsafeRawPointer, _ xa: __m512, _ xc: __m512,
                     _ acc: inout __m256, _ macc: inout __m512)
    static func finish(_ acc: __m256, _ macc: __m512) -> Float
    /// Whether `stepTwoRows` exists: the one-row kernel then runs two rows per 512-bit register.
    static var pairsRows: Bool { get }
    /// `step` for rows `a` and `b` at once: `acc`'s lanes 0–7 are row a's `step` accumulator and
    /// 8–15 row b's, with exactly `step`'s operations per lane.
    static func stepTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ xb: UnsafeRawPointer, _ xa: __m512,
                            _ xc: __m512, _ acc: inout __m512, _ maccA: inout __m512, _ maccB: inout __m512)
}

extension KQuantInt8Kernel {
    static var pairsRows: Bool { false }
    static func stepTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ xb: UnsafeRawPointer, _ xa: __m512,
                            _ xc: __m512, _ acc: inout __m512, _ maccA: inout __m512, _ maccB: inout __m512) {
        preconditionFailure("\(Self.self) does not pair rows")
    }
}

extension KQuantMatVec {
    /// K-quant rows against one int8 activation row (a `QuantizedActivations` or one row of a
    /// `QuantizedActivationBatch`, 32-blocks), `vpdpbusd` per 32 values (weights unsigned,
    /// activations signed).
    static func multiplyInt8(_ w: WeightMatrix, _ xq: QuantizedRow, into y: UnsafeMutablePointer<Float>,
                             rows: Range<Int>) {
        let scales = UnsafeRawPointer(xq.scales)
        switch w.type {
        case .q4_K: int8Rows(Q4KInt8.self, w, xq, scales, y, rows)
        case .q5_K: int8Rows(Q5KInt8.self, w, xq, scales, y, rows)
        case .q6_K:
            withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, w.columns / 8)) { table in
                Q6KInt8.activationTable(xq, columns: w.columns, into: table.baseAddress!)
                int8Rows(Q6KInt8.self, w, xq, UnsafeRawPointer(table.baseAddress!), y, rows)
            }
        default: preconditionFailure("not a K-quant type")
        }
    }

    /// Same structure as `f32Rows`: 4 rows per pass sharing the activation loads, leftover rows
    /// through the same per-row sequence (results independent of row grouping).
    @inline(__always)
    static func int8Rows<K: KQuantInt8Kernel>(_: K.Type, _ w: WeightMatrix, _ xq: QuantizedRow,
                                              _ aux: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>,
                                              _ rows: Range<Int>) {
        let steps = w.columns / 256
        let qs = UnsafeRawPointer(xq.qs), stride = K.stride
        let rb = w.rowBytes, streaming = w.streaming
        var r = rows.lowerBound
        // Two rows per 512-bit accumulator where the kernel can (`stepTwoRows`): each lane's
        // operations are `step`'s, so every row is bitwise its one-row and batched result.
        while K.pairsRows && r + 4 <= rows.upperBound {
            let p0 = w.row(r), p1 = p0 + rb, p2 = p1 + rb, p3 = p2 + rb
            let zm = _mm512_setzero_ps()
            var a01 = zm, a23 = zm, m0 = zm, m1 = zm, m2 = zm, m3 = zm
            let ahead = p0 + prefetchDistance
            for s in 0..<steps {
                let (xa, xc) = K.activation(aux, s)
                let xb = qs + 256 * s, wo = stride * s
                prefetchStep(ahead + 4 * wo, bytes: 4 * stride, streaming: streaming)
                K.stepTwoRows(p0 + wo, p1 + wo, xb, xa, xc, &a01, &m0, &m1)
                K.stepTwoRows(p2 + wo, p3 + wo, xb, xa, xc, &a23, &m2, &m3)
            }
            y[r] = K.finish(_mm512_castps512_ps256(a01), m0)
            y[r + 1] = K.finish(upper256(a01), m1)
            y[r + 2] = K.finish(_mm512_castps512_ps256(a23), m2)
            y[r + 3] = K.finish(upper256(a23), m3)
            r += 4
        }
        while r + 4 <= rows.upperBound {
            let p0 = w.row(r), p1 = p0 + rb, p2 = p1 + rb, p3 = p2 + rb
            let z = _mm256_setzero_ps(), zm = _mm512_setzero_ps()
            var a0 = z, a1 = z, a2 = z, a3 = z, m0 = zm, m1 = zm, m2 = zm, m3 = zm
            let ahead = p0 + prefetchDistance
            for s in 0..<steps {
                let (xa, xc) = K.activation(aux, s)
                let xb = qs + 256 * s, wo = stride * s
                prefetchStep(ahead + 4 * wo, bytes: 4 * stride, streaming: streaming)
                K.step(p0 + wo, xb, xa, xc, &a0, &m0)
                K.step(p1 + wo, xb, xa, xc, &a1, &m1)
                K.step(p2 + wo, xb, xa, xc, &a2, &m2)
                K.step(p3 + wo, xb, xa, xc, &a3, &m3)
            }
            y[r] = K.finish(a0, m0)
            y[r + 1] = K.finish(a1, m1)
            y[r + 2] = K.finish(a2, m2)
            y[r + 3] = K.finish(a3, m3)
            r += 4
        }
        while r < rows.upperBound {
            let p0 = w.row(r)
            var a0 = _mm256_setzero_ps(), m0 = _mm512_setzero_ps()
            for s in 0..<steps {
                let (xa, xc) = K.activation(aux, s)
                K.step(p0 + stride * s, qs + 256 * s, xa, xc, &a0, &m0)
            }
            y[r] = K.finish(a0, m0)
            r += 1
        }
    }
}

/// Q4_K against int8 activations: each 32-value sub-block of a super-block meets one activation
/// block, so per sub-block j the row gets (d·sc_j)·d_x·Σq·q_x − (dmin·m_j)·(d_x·Σq_x).
enum Q4KInt8: KQuantInt8Kernel {
    static var stride: Int { 144 }

    /// The activation scales of 8 blocks come as (d_x, d_x·Σq) pairs; reordered to d_x ×8, d_x·Σq ×8
    /// they line up with Q4KWeights.scales' (d·sc ×8, dmin·m ×8). (Q5_K shares this.)
    @inline(__always) static func activation(_ aux: UnsafeRawPointer, _ s: Int) -> (__m512, __m512) {
        let split = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0)
        return (_mm512_permutexvar_ps(split, aux.loadUnaligned(fromByteOffset: 64 * s, as: __m512.self)), _mm512_setzero_ps())
    }

    /// One super-block: `xb` its 256 int8 activations, `xs` = (d_x ×8, d_x·Σq_x ×8) of its 8 blocks.
    @inline(__always) static func step(_ w: UnsafeRawPointer, _ xb: UnsafeRawPointer, _ xs: __m512, _: __m512,
                                       _ acc: inout __m256, _ macc: inout __m512) {
        let prod = _mm512_mul_ps(Q4KWeights.scales(w), xs)  // d·sc_j·d_x | dmin·m_j·d_x·Σq_x
        macc = _mm512_add_ps(macc, prod)
        let mask = _mm256_set1_epi8(0x0F)
        for c in 0..<4 {
            let raw = w.loadUnaligned(fromByteOffset: 16 + 32 * c, as: __m256i.self)
            let i0 = dpbusd256(_mm256_and_si256(raw, mask), xb.loadUnaligned(fromByteOffset: 64 * c, as: __m256i.self))
            let i1 = dpbusd256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), mask),
                               xb.loadUnaligned(fromByteOffset: 64 * c + 32, as: __m256i.self))
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm512_castps512_ps256(broadcastLane(prod, Int32(2 * c))), acc)
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), _mm512_castps512_ps256(broadcastLane(prod, Int32(2 * c + 1))), acc)
        }
    }

    @inline(__always) static func finish(_ acc: __m256, _ macc: __m512) -> Float {
        hsum256(acc) - hsum256(unsafeBitCast(unsafeBitCast(macc, to: SIMD16<Float>.self).highHalf, to: __m256.self))
    }

    static var pairsRows: Bool { true }

    /// `step` for two rows: each 32-byte load of nibbles becomes one 512-bit register (row a low,
    /// row b high) against the activations in both halves, and each sub-block's scale pair comes
    /// from one two-source permute, so a dpbusd, convert and FMA serve both rows.
    @inline(__always) static func stepTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ xb: UnsafeRawPointer,
                                              _ xs: __m512, _: __m512, _ acc: inout __m512,
                                              _ maccA: inout __m512, _ maccB: inout __m512) {
        let prodA = _mm512_mul_ps(Q4KWeights.scales(a), xs), prodB = _mm512_mul_ps(Q4KWeights.scales(b), xs)
        maccA = _mm512_add_ps(maccA, prodA)
        maccB = _mm512_add_ps(maccB, prodB)
        let mask = _mm512_set1_epi8(0x0F)
        for c in 0..<4 {
            let raw = concat256(a.loadUnaligned(fromByteOffset: 16 + 32 * c, as: __m256i.self),
                                b.loadUnaligned(fromByteOffset: 16 + 32 * c, as: __m256i.self))
            let x0 = _mm512_broadcast_i64x4(xb.loadUnaligned(fromByteOffset: 64 * c, as: __m256i.self))
            let x1 = _mm512_broadcast_i64x4(xb.loadUnaligned(fromByteOffset: 64 * c + 32, as: __m256i.self))
            let i0 = dpbusd512(_mm512_and_si512(raw, mask), x0)
            let i1 = dpbusd512(_mm512_and_si512(_mm512_srli_epi16(raw, 4), mask), x1)
            // Lanes 0–7: row a's scale of sub-block 2c (+1), lanes 8–15: row b's.
            let s0 = _mm512_permutex2var_ps(prodA, _mm512_set_epi32(
                16 + Int32(2 * c), 16 + Int32(2 * c), 16 + Int32(2 * c), 16 + Int32(2 * c),
                16 + Int32(2 * c), 16 + Int32(2 * c), 16 + Int32(2 * c), 16 + Int32(2 * c),
                Int32(2 * c), Int32(2 * c), Int32(2 * c), Int32(2 * c), Int32(2 * c), Int32(2 * c), Int32(2 * c), Int32(2 * c)), prodB)
            let s1 = _mm512_permutex2var_ps(prodA, _mm512_set_epi32(
                17 + Int32(2 * c), 17 + Int32(2 * c), 17 + Int32(2 * c), 17 + Int32(2 * c),
                17 + Int32(2 * c), 17 + Int32(2 * c), 17 + Int32(2 * c), 17 + Int32(2 * c),
                Int32(2 * c + 1), Int32(2 * c + 1), Int32(2 * c + 1), Int32(2 * c + 1),
                Int32(2 * c + 1), Int32(2 * c + 1), Int32(2 * c + 1), Int32(2 * c + 1)), prodB)
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), s0, acc)
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), s1, acc)
        }
    }
}

/// Lane `i` of `v` in every lane.
@inline(__always) func broadcastLane(_ v: __m512, _ i: Int32) -> __m512 {
    _mm512_permutexvar_ps(_mm512_set1_epi32(i), v)
}

/// 16 signed bytes → 16 floats.
@inline(__always) func signedBytesToFloats(_ v: __m128i) -> __m512 { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)) }

enum Q4KWeights: KQuantF32Kernel {
    static var stride: Int { 144 }

    /// The 8 scales and 8 mins of a block, unpacked from the 12 bytes with ggml's 32-bit mask trick
    /// (what `get_scale_min_k4` does byte by byte): bytes sc0…sc7, m0…m7.
    @inline(__always) static func unpackedScales(_ block: UnsafeRawPointer) -> __m128i {
        let u0 = block.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        let u1 = block.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        let u2 = block.loadUnaligned(fromByteOffset: 12, as: UInt32.self)
        let low6: UInt32 = 0x3F3F_3F3F, low4: UInt32 = 0x0F0F_0F0F, low2: UInt32 = 0x0303_0303
        let sc03 = u0 & low6, m03 = u1 & low6
        let sc47 = (u2 & low4) | (((u0 >> 6) & low2) << 4)
        let m47 = ((u2 >> 4) & low4) | (((u1 >> 6) & low2) << 4)
        return _mm_set_epi32(Int32(bitPattern: m47), Int32(bitPattern: m03),
                             Int32(bitPattern: sc47), Int32(bitPattern: sc03))
    }

    /// Lanes 0–7: d·sc_j; lanes 8–15: dmin·m_j (each one f32 product, as in the reference).
    @inline(__always) static func scales(_ block: UnsafeRawPointer) -> __m512 {
        let d = _mm512_set1_ps(halfBitsToFloat(block.loadUnaligned(as: UInt16.self)))
        let dmin = _mm512_set1_ps(halfBitsToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        return _mm512_mul_ps(bytesToFloats(unpackedScales(block)), _mm512_mask_blend_ps(0xFF00, d, dmin))
    }

    @inline(__always) static func step(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, _ a0: inout __m512, _ a1: inout __m512) {
        let dm = scales(w), mask = _mm_set1_epi8(0x0F)
        for c in 0..<4 {
            let d1 = broadcastLane(dm, Int32(2 * c)), m1 = broadcastLane(dm, Int32(2 * c + 8))
            let d2 = broadcastLane(dm, Int32(2 * c + 1)), m2 = broadcastLane(dm, Int32(2 * c + 9))
            let r0 = load128(w, 16 + 32 * c), r1 = load128(w, 32 + 32 * c)
            let xo = x + 256 * c
            // fmsub rounds d·q − m once (the reference rounds twice; ~1 ulp of a weight).
            a0 = _mm512_fmadd_ps(_mm512_fmsub_ps(bytesToFloats(_mm_and_si128(r0, mask)), d1, m1),
                                 xo.loadUnaligned(as: __m512.self), a0)
            a1 = _mm512_fmadd_ps(_mm512_fmsub_ps(bytesToFloats(_mm_and_si128(r1, mask)), d1, m1),
                                 xo.loadUnaligned(fromByteOffset: 64, as: __m512.self), a1)
            a0 = _mm512_fmadd_ps(_mm512_fmsub_ps(bytesToFloats(_mm_and_si128(_mm_srli_epi16(r0, 4), mask)), d2, m2),
                                 xo.loadUnaligned(fromByteOffset: 128, as: __m512.self), a0)
            a1 = _mm512_fmadd_ps(_mm512_fmsub_ps(bytesToFloats(_mm_and_si128(_mm_srli_epi16(r1, 4), mask)), d2, m2),
                                 xo.loadUnaligned(fromByteOffset: 192, as: __m512.self), a1)
        }
    }

    /// 256 floats to `out`, bitwise equal to the reference (separate multiply and subtract).
    @inline(__always) static func dequantize(_ w: UnsafeRawPointer, _ out: UnsafeMutableRawPointer) {
        let dm = scales(w), mask = _mm_set1_epi8(0x0F)
        for c in 0..<4 {
            let d1 = broadcastLane(dm, Int32(2 * c)), m1 = broadcastLane(dm, Int32(2 * c + 8))
            let d2 = broadcastLane(dm, Int32(2 * c + 1)), m2 = broadcastLane(dm, Int32(2 * c + 9))
            let r0 = load128(w, 16 + 32 * c), r1 = load128(w, 32 + 32 * c)
            let o = 256 * c
            out.storeBytes(of: _mm512_sub_ps(_mm512_mul_ps(bytesToFloats(_mm_and_si128(r0, mask)), d1), m1),
                           toByteOffset: o, as: __m512.self)
            out.storeBytes(of: _mm512_sub_ps(_mm512_mul_ps(bytesToFloats(_mm_and_si128(r1, mask)), d1), m1),
                           toByteOffset: o + 64, as: __m512.self)
            out.storeBytes(of: _mm512_sub_ps(_mm512_mul_ps(bytesToFloats(_mm_and_si128(_mm_srli_epi16(r0, 4), mask)), d2), m2),
                           toByteOffset: o + 128, as: __m512.self)
            out.storeBytes(of: _mm512_sub_ps(_mm512_mul_ps(bytesToFloats(_mm_and_si128(_mm_srli_epi16(r1, 4), mask)), d2), m2),
                           toByteOffset: o + 192, as: __m512.self)
        }
    }
}

enum Q6KWeights: KQuantF32Kernel {
    static var stride: Int { 210 }

    /// Lane g: d·scales[g], the scale of values 16g…16g+15.
    @inline(__always) static func scales(_ block: UnsafeRawPointer) -> __m512 {
        let d = _mm512_set1_ps(halfBitsToFloat(block.loadUnaligned(fromByteOffset: 208, as: UInt16.self)))
        return _mm512_mul_ps(d, signedBytesToFloats(load128(block, 192)))
    }

    /// The signed 6-bit values q − 32 of columns `l0..<l0+16` of each quarter of half `h`:
    /// (values 128h + l0 + 32k for k = 0…3).
    @inline(__always) static func values(_ w: UnsafeRawPointer, _ h: Int, _ l0: Int)
        -> (__m128i, __m128i, __m128i, __m128i) {
        let ql0 = load128(w, 64 * h + l0), ql1 = load128(w, 64 * h + 32 + l0), qh = load128(w, 128 + 32 * h + l0)
        let m4 = _mm_set1_epi8(0x0F), m2 = _mm_set1_epi8(3), bias = _mm_set1_epi8(32)
        // Each 2-bit field is masked before the 16-bit shift left by 4, so no bits cross bytes.
        let q1 = _mm_or_si128(_mm_and_si128(ql0, m4), _mm_slli_epi16(_mm_and_si128(qh, m2), 4))
        let q2 = _mm_or_si128(_mm_and_si128(ql1, m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 2), m2), 4))
        let q3 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(ql0, 4), m4),
                              _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 4), m2), 4))
        let q4 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(ql1, 4), m4),
                              _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 6), m2), 4))
        return (_mm_sub_epi8(q1, bias), _mm_sub_epi8(q2, bias), _mm_sub_epi8(q3, bias), _mm_sub_epi8(q4, bias))
    }

    @inline(__always) static func step(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, _ a0: inout __m512, _ a1: inout __m512) {
        let ds = scales(w)
        for h in 0..<2 {
            for half in 0..<2 {
                let l0 = 16 * half, g = Int32(8 * h + half)
                let (q1, q2, q3, q4) = values(w, h, l0)
                let xo = x + 512 * h + 4 * l0
                // (d·sc)·q exactly as the reference, then FMA with x.
                let w1 = _mm512_mul_ps(signedBytesToFloats(q1), broadcastLane(ds, g))
                let w2 = _mm512_mul_ps(signedBytesToFloats(q2), broadcastLane(ds, g + 2))
                let w3 = _mm512_mul_ps(signedBytesToFloats(q3), broadcastLane(ds, g + 4))
                let w4 = _mm512_mul_ps(signedBytesToFloats(q4), broadcastLane(ds, g + 6))
                a0 = _mm512_fmadd_ps(w1, xo.loadUnaligned(as: __m512.self), a0)
                a1 = _mm512_fmadd_ps(w2, xo.loadUnaligned(fromByteOffset: 128, as: __m512.self), a1)
                a0 = _mm512_fmadd_ps(w3, xo.loadUnaligned(fromByteOffset: 256, as: __m512.self), a0)
                a1 = _mm512_fmadd_ps(w4, xo.loadUnaligned(fromByteOffset: 384, as: __m512.self), a1)
            }
        }
    }

    @inline(__always) static func dequantize(_ w: UnsafeRawPointer, _ out: UnsafeMutableRawPointer) {
        let ds = scales(w)
        for h in 0..<2 {
            for half in 0..<2 {
                let l0 = 16 * half, g = Int32(8 * h + half)
                let (q1, q2, q3, q4) = values(w, h, l0)
                let o = 512 * h + 4 * l0
                out.storeBytes(of: _mm512_mul_ps(signedBytesToFloats(q1), broadcastLane(ds, g)), toByteOffset: o, as: __m512.self)
                out.storeBytes(of: _mm512_mul_ps(signedBytesToFloats(q2), broadcastLane(ds, g + 2)), toByteOffset: o + 128, as: __m512.self)
                out.storeBytes(of: _mm512_mul_ps(signedBytesToFloats(q3), broadcastLane(ds, g + 4)), toByteOffset: o + 256, as: __m512.self)
                out.storeBytes(of: _mm512_mul_ps(signedBytesToFloats(q4), broadcastLane(ds, g + 6)), toByteOffset: o + 384, as: __m512.self)
            }
        }
    }
}
#endif
