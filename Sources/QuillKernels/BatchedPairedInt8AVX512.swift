#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel

// Batched int8 kernel of the 32-block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): two activation rows
// per 16-lane vector.
//
// The one-row kernel keeps, per weight row, 8 f32 lanes (lane j: the 4-byte group j of every
// block) and per block adds `float(vpdpbusd lane j)·(d_w·d_x)` to lane j. Here one zmm holds that
// state for two activation rows at once: lane 2j is lane j of row g, lane 2j + 1 lane j of row
// g + 1. The activations come pre-interleaved that way (`QuantizedActivationBatch.paired`), the
// weight block is unpacked once and its dwords duplicated (lane 2j and 2j + 1 get group j), so per
// block and pair of rows the work is one 512-bit `vpdpbusd`, one conversion and one FMA (whose
// scale operand is a 64-bit broadcast load) — half the vector instructions of running two 256-bit
// rows. (Converting by accumulating onto the bits of 1.5·2²³ and subtracting it measured the same.)
//
// The per-block scales `d_w·d_x` of 16 rows come from one multiply per weight row and block (a
// first loop stores them); the main loop broadcasts each pair's two scales with a 64-bit load.
// The min terms `Σ m_w·(d_x·Σq_x)` are 16 lanes (one per row) added per block in block order.
// At the end, each row's 8 lanes are summed with the one-row kernel's horizontal-sum tree (for a
// full set of 16 accumulators, 32 results side by side: `pairedFinish16`), then `combine`d with its
// min sum: every value, and every operation's order, is the one-row kernel's, so each row's result
// is bitwise what it gets alone.
//
// Limit: bitwise equality with the one-row kernel fixes the arithmetic at one int→f32 conversion
// and one FMA per 8-lane group per block, so per pair of rows and block three 512-bit operations
// remain (plus each weight block's unpack and scales, shared by up to 16 rows). With two 512-bit
// ports that is ~0.75 cycle per 32 multiply-adds at best, against ~3 for the one-row kernel.
// Matrices bound with `WeightPanels` (a GGUF decoder's on the quantised path) leave this limit
// behind: their one-row and batched products both run `PanelMatVec`, whose arithmetic sums a
// whole block in int32 first. This kernel serves the matrices without panels.

/// The activation rows as the paired kernel reads them.
struct PairedOperand {
    let paired: UnsafeRawPointer
    let transposed: UnsafePointer<Float>
    let rowStride: Int

    init(_ xq: QuantizedActivationBatch) {
        paired = xq.paired
        transposed = xq.transposedScales
        rowStride = xq.rowStride
    }
}

extension AVX512Int8Kernel {
    static var hasOwnMinimum: Bool { false }
    @inline(__always) static func unpackPaired(_ w: UnsafeRawPointer) -> __m512i {
        _mm512_permutexvar_epi32(_mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0),
                                 _mm512_castsi256_si512(unpack(w).u))
    }
}

/// The 16 nibble bytes at `offset` of a Q4_0/Q4_1 block as `unpackPaired` gives them: each
/// 128-bit lane shuffles its groups' bytes from the broadcast raw bytes (lanes 0–1 the low
/// nibbles, elements 0–15; lanes 2–3 the high nibbles, shifted down), then masks.
@inline(__always) func pairedNibbles(_ w: UnsafeRawPointer, offset: Int) -> __m512i {
    let raw = _mm512_broadcast_i32x4(w.loadUnaligned(fromByteOffset: offset, as: __m128i.self))
    let a: Int32 = 0x0302_0100, b: Int32 = 0x0706_0504, c: Int32 = 0x0B0A_0908, d: Int32 = 0x0F0E_0D0C
    let order = _mm512_set_epi32(d, d, c, c, b, b, a, a, d, d, c, c, b, b, a, a)
    let shifts = _mm512_set_epi32(0x0004_0004, 0x0004_0004, 0x0004_0004, 0x0004_0004, 0x0004_0004, 0x0004_0004,
                                  0x0004_0004, 0x0004_0004, 0, 0, 0, 0, 0, 0, 0, 0)
    return _mm512_and_si512(_mm512_srlv_epi16(_mm512_shuffle_epi8(raw, order), shifts), _mm512_set1_epi8(0x0F))
}

/// A count known at specialisation (generic parameters rather than arguments, so the loops over
/// accumulators unroll and the accumulators stay in registers whatever the inliner decides).
protocol StaticCount { static var value: Int { get } }
enum Count1: StaticCount { @inline(__always) static var value: Int { 1 } }
enum Count2: StaticCount { @inline(__always) static var value: Int { 2 } }
enum Count4: StaticCount { @inline(__always) static var value: Int { 4 } }
enum Count8: StaticCount { @inline(__always) static var value: Int { 8 } }

extension BatchedAVX512MatVec {
    /// `y[g·ldy + r] = W[r]·x_g` for `count ≥ 2` activation rows and weight rows `rows`.
    static func pairedInt8Batch<K: AVX512Int8Kernel>(_ k: K.Type, _ w: WeightMatrix, _ xq: QuantizedActivationBatch,
                                                     _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ rows: Range<Int>) {
        let x = PairedOperand(xq), count = xq.rows
        // Per weight row of a pass (at most 4) and block, the scales d_w·d_x of 16 activation rows.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 4 * 16 * (w.columns / 32)) { buffer in
            let products = buffer.baseAddress!
            forEachTile(w, rows) { tile in
                var pair0 = 0
                let pairs = (count + 1) / 2
                while pair0 < pairs {
                    let left = pairs - pair0
                    let size = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1
                    switch size {
                    case 8: pairedGroup(k, Count8.self, wide: false, w, x, count, pair0, y, ldy, tile, products)
                    case 4: pairedGroup(k, Count4.self, wide: true, w, x, count, pair0, y, ldy, tile, products)
                    case 2: pairedGroup(k, Count2.self, wide: true, w, x, count, pair0, y, ldy, tile, products)
                    default: pairedGroup(k, Count1.self, wide: true, w, x, count, pair0, y, ldy, tile, products)
                    }
                    pair0 += size
                }
            }
        }
    }

    /// Row pairs `pair0 ..< pair0 + P` against the tile's weight rows, 2 rows per pass (4 if `wide`,
    /// for at most 4 pairs: 16 accumulators either way), then 1.
    @inline(__always)
    static func pairedGroup<K: AVX512Int8Kernel, P: StaticCount>(_ k: K.Type, _ p: P.Type, wide: Bool, _ w: WeightMatrix,
                                                                 _ x: PairedOperand, _ count: Int, _ pair0: Int,
                                                                 _ y: UnsafeMutablePointer<Float>, _ ldy: Int,
                                                                 _ tile: Range<Int>, _ products: UnsafeMutablePointer<Float>) {
        var r = tile.lowerBound
        if wide {
            while r + 4 <= tile.upperBound { pairedPass(k, p, Count4.self, w, x, count, pair0, r, y, ldy, products); r += 4 }
        }
        while r + 2 <= tile.upperBound { pairedPass(k, p, Count2.self, w, x, count, pair0, r, y, ldy, products); r += 2 }
        if r < tile.upperBound { pairedPass(k, p, Count1.self, w, x, count, pair0, r, y, ldy, products) }
    }

    /// One block of one weight row (`u`, dwords duplicated) against one row pair (`xv`): the
    /// accumulator at byte `o` of `a` gains `Float(Σ)·scale`, the scale pair at byte `so` of `scales`.
    @inline(__always)
    static func pairedStep(_ a: UnsafeMutableRawBufferPointer, _ o: Int, _ scales: UnsafeRawPointer, _ so: Int,
                           _ u: __m512i, _ xv: __m512i) {
        let sum = _mm512_cvtepi32_ps(_mm512_mask_dpbusd_epi32(_mm512_setzero_si512(), 0xFFFF, u, xv))
        let s = _mm512_castpd_ps(_mm512_set1_pd(scales.loadUnaligned(fromByteOffset: so, as: Double.self)))
        a.storeBytes(of: _mm512_fmadd_ps(sum, s, a.load(fromByteOffset: o, as: __m512.self)), toByteOffset: o, as: __m512.self)
    }

    /// `R` weight rows from `r` against the `P` row pairs from `pair0`, over the whole row.
    @inline(__always)
    static func pairedPass<K: AVX512Int8Kernel, PairCount: StaticCount, RowCount: StaticCount>(
        _: K.Type, _: PairCount.Type, _: RowCount.Type, _ w: WeightMatrix, _ x: PairedOperand, _ count: Int, _ pair0: Int,
        _ r: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ products: UnsafeMutablePointer<Float>
    ) {
        let P = PairCount.value, R = RowCount.value
        let blocks = w.columns / 32, stride = K.stride, rb = w.rowBytes, p = w.row(r)
        let g0 = 2 * pair0
        let ts = x.transposed + g0, ts2 = 2 * x.rowStride
        let out = UnsafeMutableRawPointer(products)
        // Per block and weight row: d_w·d_x for the 16 activation rows into `products` (the main
        // loop broadcasts each pair's two), and lane g of msum_i: Σ_b m_w·(d_x·Σq_x) of weight row
        // r + i and activation row g0 + g. This loop is the first to read the pass's rows.
        let zero = _mm512_setzero_ps()
        var msum = (zero, zero, zero, zero)
        withUnsafeMutableBytes(of: &msum) { m in
            for b in 0..<blocks {
                let dx = UnsafeRawPointer(ts + b * ts2)
                let dxv = dx.loadUnaligned(as: __m512.self)
                let sx = dx.loadUnaligned(fromByteOffset: 4 * x.rowStride, as: __m512.self)
                for i in 0..<R {
                    // d_w (and m_w, the f16 after it) converted exactly, as the one-row kernel does.
                    let halves = (p + i * rb).loadUnaligned(fromByteOffset: b * stride, as: UInt32.self)
                    // The same block 4 passes ahead, so its line arrives before that pass's first
                    // load (on an AMD Zen 5 this loop waited on the weights: without it 8 rows ran
                    // 1.4x slower end to end, prefetching 1 pass ahead gained 1.38x, 2 and 4 1.5x;
                    // a whole tile issued at once had stalled on the line-fill buffers).
                    prefetchStep(p + (4 * R + i) * rb + b * stride, bytes: 1)
                    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(Int32(bitPattern: halves)))
                    let d = _mm512_broadcastss_ps(dm)
                    let mw = K.hasOwnMinimum ? _mm512_broadcastss_ps(_mm_movehdup_ps(dm)) : d
                    out.storeBytes(of: _mm512_mul_ps(d, dxv), toByteOffset: 64 * (R * b + i), as: __m512.self)
                    m.storeBytes(of: _mm512_add_ps(m.load(fromByteOffset: 64 * i, as: __m512.self), _mm512_mul_ps(mw, sx)),
                                 toByteOffset: 64 * i, as: __m512.self)
                }
            }
        }
        let xs = x.paired + 64 * pair0, pairStride = 32 * x.rowStride
        var acc = (zeros16(), zeros16())
        withUnsafeMutableBytes(of: &acc) { a in
            for b in 0..<blocks {
                let u0 = K.unpackPaired(p + b * stride)
                let u1 = R > 1 ? K.unpackPaired(p + rb + b * stride) : u0
                let u2 = R > 2 ? K.unpackPaired(p + 2 * rb + b * stride) : u0
                let u3 = R > 3 ? K.unpackPaired(p + 3 * rb + b * stride) : u0
                let scales = UnsafeRawPointer(products + 16 * R * b)
                let xb = xs + b * pairStride
                for j in 0..<P {
                    let xv = xb.loadUnaligned(fromByteOffset: 64 * j, as: __m512i.self)
                    pairedStep(a, 64 * j, scales, 8 * j, u0, xv)
                    if R > 1 { pairedStep(a, 64 * (P + j), scales + 64, 8 * j, u1, xv) }
                    if R > 2 { pairedStep(a, 64 * (2 * P + j), scales + 128, 8 * j, u2, xv) }
                    if R > 3 { pairedStep(a, 64 * (3 * P + j), scales + 192, 8 * j, u3, xv) }
                }
            }
        }
        if R * P == 16 {
            pairedFinish16(K.self, P, acc, msum, count, g0, r, y, ldy)
            return
        }
        let even = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0)
        withUnsafeBytes(of: &acc) { a in
            withUnsafeBytes(of: &msum) { m in
                for i in 0..<R {
                    let mins = unsafeBitCast(m.load(fromByteOffset: 64 * i, as: __m512.self), to: SIMD16<Float>.self)
                    for j in 0..<P {
                        // Lanes 0–7: row g0 + 2j's lanes in order; 8–15: row g0 + 2j + 1's.
                        let split = _mm512_permutexvar_ps(even, a.load(fromByteOffset: 64 * (P * i + j), as: __m512.self))
                        let g = g0 + 2 * j
                        y[g * ldy + r + i] = K.combine(hsum256(_mm512_castps512_ps256(split)), mins[2 * j])
                        if g + 1 < count { y[(g + 1) * ldy + r + i] = K.combine(hsum256(high256(split)), mins[2 * j + 1]) }
                    }
                }
            }
        }
    }

    /// The horizontal sums of 16 accumulators (k = P·i + j: weight row r + i, rows g0 + 2j, +1) at
    /// once, with `hsum256`'s additions: lanes l + (l + 4), then (0 + 2), (1 + 3), then the two
    /// halves — each step adding the same two values, just for 32 results side by side. Then the
    /// min sums are permuted into the same lanes and `combine16` (the scalar `combine`'s operations)
    /// finishes; the 32 results are stored one by one.
    @inline(__always)
    static func pairedFinish16<K: AVX512Int8Kernel>(_: K.Type, _ P: Int, _ acc: (Float16x8, Float16x8),
                                                    _ msum: (__m512, __m512, __m512, __m512), _ count: Int, _ g0: Int,
                                                    _ r: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        // Two-source permutes pick the operands (lanes 16–31 are the second source).
        @inline(__always) func lanes(_ f: (Int32) -> Int32) -> __m512i {
            _mm512_set_epi32(f(15), f(14), f(13), f(12), f(11), f(10), f(9), f(8), f(7), f(6), f(5), f(4), f(3), f(2), f(1), f(0))
        }
        @inline(__always) func add(_ a: __m512, _ b: __m512, _ lo: __m512i, _ hi: __m512i) -> __m512 {
            _mm512_add_ps(_mm512_permutex2var_ps(a, lo, b), _mm512_permutex2var_ps(a, hi, b))
        }
        let acc0 = acc.0, acc1 = acc.1
        // Step 1: 128-bit granules [A.s01, A.s23, B.s01, B.s23], s_l = v_l + v_(l+4) (both rows):
        // A's lanes 0–7 and B's, plus A's lanes 8–15 and B's.
        let lo1 = lanes { $0 < 8 ? $0 : $0 + 8 }, hi1 = lanes { $0 < 8 ? $0 + 8 : $0 + 16 }
        let t0 = add(acc0.0, acc0.1, lo1, hi1), t1 = add(acc0.2, acc0.3, lo1, hi1)
        let t2 = add(acc0.4, acc0.5, lo1, hi1), t3 = add(acc0.6, acc0.7, lo1, hi1)
        let t4 = add(acc1.0, acc1.1, lo1, hi1), t5 = add(acc1.2, acc1.3, lo1, hi1)
        let t6 = add(acc1.4, acc1.5, lo1, hi1), t7 = add(acc1.6, acc1.7, lo1, hi1)
        // Step 2: granule c of u_n is accumulator 4n + c: [q0 h0, q0 h1, q1 h0, q1 h1], q0 = s0 + s2,
        // q1 = s1 + s3 (granules 0 and 2 of each source, plus granules 1 and 3).
        let lo2 = lanes { ($0 / 4) * 8 + $0 % 4 }, hi2 = lanes { ($0 / 4) * 8 + 4 + $0 % 4 }
        let u0 = add(t0, t1, lo2, hi2), u1 = add(t2, t3, lo2, hi2)
        let u2 = add(t4, t5, lo2, hi2), u3 = add(t6, t7, lo2, hi2)
        // Step 3: lane 4c + 2f + h of d_p is q0 + q1 of accumulator 8p + 4f + c, row h.
        let lo3 = lanes { ($0 / 4) * 4 + ($0 % 4 >= 2 ? 16 : 0) + $0 % 2 }
        let hi3 = lanes { ($0 / 4) * 4 + ($0 % 4 >= 2 ? 16 : 0) + 2 + $0 % 2 }
        let d0 = add(u0, u1, lo3, hi3), d1 = add(u2, u3, lo3, hi3)
        // Min sums into the same lanes: accumulator k = 8p + 4f + c is weight row i = k / P, pair
        // j = k % P, whose min sum is lane 2j + h of msum_i. P = 8: msum_p alone (j = 4f + c);
        // P = 4: msum_2p for f = 0 and msum_(2p+1) for f = 1 (j = c).
        let m0: __m512, m1: __m512
        if P == 8 {
            let index = _mm512_set_epi32(15, 14, 7, 6, 13, 12, 5, 4, 11, 10, 3, 2, 9, 8, 1, 0)
            m0 = _mm512_permutexvar_ps(index, msum.0)
            m1 = _mm512_permutexvar_ps(index, msum.1)
        } else {
            let index = _mm512_set_epi32(23, 22, 7, 6, 21, 20, 5, 4, 19, 18, 3, 2, 17, 16, 1, 0)
            m0 = _mm512_permutex2var_ps(msum.0, index, msum.1)
            m1 = _mm512_permutex2var_ps(msum.2, index, msum.3)
        }
        var results = (K.combine16(d0, m0), K.combine16(d1, m1))
        withUnsafeBytes(of: &results) { out in
            for lane in 0..<32 {
                let c = (lane & 15) >> 2, f = (lane >> 1) & 1, h = lane & 1
                let k = 8 * (lane >> 4) + 4 * f + c
                let g = g0 + 2 * (k % P) + h
                if g < count { y[g * ldy + r + k / P] = out.load(fromByteOffset: 4 * lane, as: Float.self) }
            }
        }
    }
}
#endif
