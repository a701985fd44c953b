#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel

// Batched AVX-512 / VNNI kernels: one weight matrix times several activation rows.
//
// Loop nest per thread: tiles of weight rows small enough to stay in L1, then groups of up to 8
// activation rows, then 2 (or 1) weight rows at a time over all blocks. Each weight block is
// loaded and unpacked once per group and meets every row of the group; the tile is read from
// memory once for the whole batch. A group of one row runs the one-row kernel itself.
//
// Batch invariance: for every (weight row, activation row) pair the kernels perform the one-row
// kernel's f32 operations in the same order — the same per-block products, the same accumulator
// lanes, the same horizontal sum — so each row's result is bitwise what it gets alone, whatever
// the batch size, the grouping or the thread count.
//
// K-quant passes first compute the per-block scales of all their pairs into a small buffer, so
// that the main loop costs per pair and sub-block only `vpdpbusd`, an int→float conversion and an
// FMA whose scale is a broadcast load. Accumulators live in fixed-size tuples indexed through a
// pointer with constant offsets (the group loops have constant trip counts after inlining), which
// LLVM promotes to registers.
//
// Types: the 32-block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) conform to `AVX512Int8Kernel` (`unpack`
// gives the block as unsigned bytes, d_w and the min factor; `combine` the final correction, e.g.
// −16·Σ for Q5_0) and run two activation rows per 512-bit vector (BatchedPairedInt8AVX512.swift);
// the K-quants with 8 sub-blocks of 32 (Q4_K, Q5_K) to `BatchedKQuantKernel`.
// Q6_K's scales cover 16 values and its zero-point term needs per-16 activation sums, so it has
// its own pass (BatchedQ6K.swift).

/// A K-quant super-block (256 values) made of 8 sub-blocks of 32 with a scale and a min each
/// (Q4_K, Q5_K), for the batched int8 kernel; its one-row kernel (`KQuantInt8Kernel`) runs groups
/// of one activation row.
protocol BatchedKQuantKernel: KQuantInt8Kernel {
    /// Lanes 0–7: `d·sc_j`; lanes 8–15: `dmin·m_j` (the min is subtracted).
    static func scales(_ w: UnsafeRawPointer) -> __m512
    /// The weights of sub-block `j` as unsigned bytes, sub-blocks in order.
    static func unpack(_ w: UnsafeRawPointer) -> Int8x8
}

/// Eight 32-byte vectors (the sub-blocks of a K-quant super-block).
typealias Int8x8 = (__m256i, __m256i, __m256i, __m256i, __m256i, __m256i, __m256i, __m256i)
typealias Float8x8 = (__m256, __m256, __m256, __m256, __m256, __m256, __m256, __m256)

/// The activation rows a batched kernel reads: `qs` of row g at `qs + g·columns`.
struct BatchOperand {
    let qs: UnsafeRawPointer
    let scales: UnsafePointer<Float>
    let transposed: UnsafePointer<Float>
    let rowStride: Int
    let columns: Int

    init(_ xq: QuantizedActivationBatch) {
        qs = UnsafeRawPointer(xq.qs)
        scales = xq.scales
        transposed = xq.transposedScales
        rowStride = xq.rowStride
        columns = xq.columns
    }

    func row(_ g: Int) -> QuantizedRow {
        QuantizedRow(qs: (qs + g * columns).assumingMemoryBound(to: Int8.self), scales: scales + 2 * g * (columns / 32))
    }
}

@inline(__always) func zeros8() -> Float8x8 {
    let z = _mm256_setzero_ps()
    return (z, z, z, z, z, z, z, z)
}

enum BatchedAVX512MatVec {
    /// `y[g·ldy + r] = W[r]·x_g` for all batch rows g and weight rows `rows`: batched kernels for
    /// every quantised type (Q6_K's in BatchedQ6K.swift).
    static func multiplyInt8(_ w: WeightMatrix, _ xq: QuantizedActivationBatch, into y: UnsafeMutablePointer<Float>,
                             ldy: Int, rows: Range<Int>) {
        if let panels = w.panels {
            let x = PanelOperand(qs: xq.qs, qsStride: xq.columns, scales: xq.scales, scalesStride: 2 * (xq.columns / 32))
            PanelMatVec.multiply(panels, x, count: xq.rows, into: y, ldy: ldy, rows: rows)
            return
        }
        precondition(xq.hasInterleavedLayouts, "a batch quantised row-major only needs matrices with WeightPanels")
        let x = BatchOperand(xq)
        switch w.type {
        case .q4_0: pairedInt8Batch(Q40Int8.self, w, xq, y, ldy, rows)
        case .q4_1: pairedInt8Batch(Q41Int8.self, w, xq, y, ldy, rows)
        case .q5_0: pairedInt8Batch(Q50Int8.self, w, xq, y, ldy, rows)
        case .q5_1: pairedInt8Batch(Q51Int8.self, w, xq, y, ldy, rows)
        case .q8_0: pairedInt8Batch(Q80Int8.self, w, xq, y, ldy, rows)
        case .q4_K: kquantBatch(Q4KInt8.self, w, x, xq.rows, y, ldy, rows)
        case .q5_K: kquantBatch(Q5KInt8.self, w, x, xq.rows, y, ldy, rows)
        case .q6_K: q6KBatch(w, xq, y, ldy, rows)
        case .f32, .f16, .bf16: preconditionFailure("no int8 kernel for \(w.type)")
        }
    }

    /// f32 path for the 32-column kernel types; K-quants run the one-row kernel per row over tiles.
    static func multiplyF32(_ w: WeightMatrix, _ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>,
                            ldy: Int, rows: Range<Int>) {
        switch w.type {
        case .f32: f32Batch(F32Weights.self, w, x, count, y, ldy, rows)
        case .f16: f32Batch(F16Weights.self, w, x, count, y, ldy, rows)
        case .bf16: f32Batch(BF16Weights.self, w, x, count, y, ldy, rows)
        case .q4_0: f32Batch(Q40Weights.self, w, x, count, y, ldy, rows)
        case .q4_1: f32Batch(Q41Weights.self, w, x, count, y, ldy, rows)
        case .q5_0: f32Batch(Q50Weights.self, w, x, count, y, ldy, rows)
        case .q5_1: f32Batch(Q51Weights.self, w, x, count, y, ldy, rows)
        case .q8_0: f32Batch(Q80Weights.self, w, x, count, y, ldy, rows)
        case .q4_K, .q5_K, .q6_K:
            forEachRowwiseTile(w, rows) { tile in
                for g in 0..<count { KQuantMatVec.multiplyF32(w, x + g * w.columns, into: y + g * ldy, rows: tile) }
            }
        }
    }

    @inline(__always) static func forEachTile(_ w: WeightMatrix, _ rows: Range<Int>, _ body: (Range<Int>) -> Void) {
        MatVec.forEachBatchTile(w, rows, body)
    }

    /// Tiles for running a one-row kernel per activation row (the K-quants' f32 path): a multiple
    /// of its 4-row pass and about 32 KB, so the tile stays in L1 across the rows while each pass
    /// still shares its activation loads among 4 weight rows (`forEachTile`'s ~12 KB gave 2-row
    /// tiles at Qwen's 4864-wide Q6_K rows, where a per-row path ran at ~0.6× the one-row calls).
    @inline(__always) static func forEachRowwiseTile(_ w: WeightMatrix, _ rows: Range<Int>, _ body: (Range<Int>) -> Void) {
        let tileRows = max(4, min(64, (32 << 10) / max(1, w.rowBytes)) & ~3)
        var r0 = rows.lowerBound
        while r0 < rows.upperBound {
            let tile = r0..<min(r0 + tileRows, rows.upperBound)
            body(tile)
            r0 = tile.upperBound
        }
    }

    /// Requests the tile after `tile` while this one is computed: the batch spends long enough on
    /// a tile for its successor to arrive from DRAM, which the hardware prefetcher alone does not
    /// fetch early enough (large matrices ran at half the DRAM bandwidth without this).
    @inline(__always) static func prefetchNextTile(_ w: WeightMatrix, after tile: Range<Int>, within rows: Range<Int>) {
        let next = tile.upperBound, end = min(rows.upperBound, next + tile.count)
        guard next < end else { return }
        prefetchStep(w.row(next), bytes: (end - next) * w.rowBytes, streaming: w.streaming)
    }

    /// Splits `count` activation rows into groups of 8, then 4, 2, 1 and calls `body(first, size)`.
    @inline(__always) static func forEachGroup(_ count: Int, _ body: (Int, Int) -> Void) {
        var g0 = 0
        while g0 < count {
            let left = count - g0
            let size = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1
            body(g0, size)
            g0 += size
        }
    }

    // MARK: K-quants (8 sub-blocks of 32 per super-block)

    static func kquantBatch<K: BatchedKQuantKernel>(_ k: K.Type, _ w: WeightMatrix, _ x: BatchOperand, _ count: Int,
                                                 _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ rows: Range<Int>) {
        // Per super-block, 8 activation rows × 8 sub-block scales (see kquantPass).
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 64 * (w.columns / 256) + 16) { buffer in
            let products = buffer.baseAddress!
            forEachTile(w, rows) { tile in
                prefetchNextTile(w, after: tile, within: rows)
                forEachGroup(count) { g0, size in
                    switch size {
                    case 8: for r in tile { kquantPass(k, 8, w, x, g0, r, y, ldy, products) }
                    case 4: for r in tile { kquantPass(k, 4, w, x, g0, r, y, ldy, products) }
                    case 2: for r in tile { kquantPass(k, 2, w, x, g0, r, y, ldy, products) }
                    default: KQuantMatVec.int8Rows(k, w, x.row(g0), UnsafeRawPointer(x.row(g0).scales), y + g0 * ldy, tile)
                    }
                }
            }
        }
    }

    /// One weight row `r` against `G` activation rows from `g0`, with the one-row step's values
    /// (`Q4KInt8.step`): per super-block and row `prod = scales(w)·(d_x ×8 | d_x·Σq_x ×8)`, whose
    /// high half accumulates the min terms and whose lane j scales sub-block j's integer sum.
    /// A first loop computes every `prod` (storing the low halves in `products`) and the min
    /// sums; the main loop unpacks each super-block once and costs per row and sub-block
    /// `vpdpbusd`, a conversion and an FMA with a broadcast-load scale.
    @inline(__always)
    static func kquantPass<K: BatchedKQuantKernel>(_: K.Type, _ G: Int, _ w: WeightMatrix, _ x: BatchOperand,
                                                _ g0: Int, _ r: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int,
                                                _ products: UnsafeMutablePointer<Float>) {
        let steps = w.columns / 256, n = x.columns, p = w.row(r)
        let qs = x.qs + g0 * n, scales = UnsafeRawPointer(x.scales + 2 * g0 * (n / 32))
        // The activation scales of 8 blocks come as (d_x, d_x·Σq) pairs; reorder to d_x ×8, d_x·Σq ×8.
        let split = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0)
        let out = UnsafeMutableRawPointer(products)
        var acc = zeros8(), macc = zeros8()
        withUnsafeMutableBytes(of: &macc) { m in
            for s in 0..<steps {
                let ws = K.scales(p + K.stride * s)
                for g in 0..<G {
                    let xs = _mm512_permutexvar_ps(split, scales.loadUnaligned(fromByteOffset: 4 * g * (n / 16) + 64 * s,
                                                                               as: __m512.self))
                    let prod = _mm512_mul_ps(ws, xs)
                    m.storeBytes(of: _mm256_add_ps(m.load(fromByteOffset: 32 * g, as: __m256.self), high256(prod)),
                                 toByteOffset: 32 * g, as: __m256.self)
                    out.storeBytes(of: _mm512_castps512_ps256(prod), toByteOffset: 32 * (8 * s + g), as: __m256.self)
                }
            }
        }
        withUnsafeMutableBytes(of: &acc) { a in
            for s in 0..<steps {
                let u = K.unpack(p + K.stride * s)
                // Two rows at a time: each row's 8 FMAs form one dependent chain (the one-row
                // order), so interleaving two rows keeps two chains in flight.
                var g = 0
                while g + 2 <= G {
                    let o = 32 * g
                    let xa = qs + g * n + 256 * s, xb = xa + n
                    let sa = products + 8 * (8 * s + g), sb = sa + 8
                    var a0 = a.load(fromByteOffset: o, as: __m256.self), a1 = a.load(fromByteOffset: o + 32, as: __m256.self)
                    a0 = subBlock(u.0, xa, 0, sa, a0); a1 = subBlock(u.0, xb, 0, sb, a1)
                    a0 = subBlock(u.1, xa, 1, sa, a0); a1 = subBlock(u.1, xb, 1, sb, a1)
                    a0 = subBlock(u.2, xa, 2, sa, a0); a1 = subBlock(u.2, xb, 2, sb, a1)
                    a0 = subBlock(u.3, xa, 3, sa, a0); a1 = subBlock(u.3, xb, 3, sb, a1)
                    a0 = subBlock(u.4, xa, 4, sa, a0); a1 = subBlock(u.4, xb, 4, sb, a1)
                    a0 = subBlock(u.5, xa, 5, sa, a0); a1 = subBlock(u.5, xb, 5, sb, a1)
                    a0 = subBlock(u.6, xa, 6, sa, a0); a1 = subBlock(u.6, xb, 6, sb, a1)
                    a0 = subBlock(u.7, xa, 7, sa, a0); a1 = subBlock(u.7, xb, 7, sb, a1)
                    a.storeBytes(of: a0, toByteOffset: o, as: __m256.self)
                    a.storeBytes(of: a1, toByteOffset: o + 32, as: __m256.self)
                    g += 2
                }
                if g < G {  // an odd group (only the one-row fallback of K-quants without their own)
                    let xa = qs + g * n + 256 * s, sa = products + 8 * (8 * s + g)
                    var a0 = a.load(fromByteOffset: 32 * g, as: __m256.self)
                    a0 = subBlock(u.0, xa, 0, sa, a0)
                    a0 = subBlock(u.1, xa, 1, sa, a0)
                    a0 = subBlock(u.2, xa, 2, sa, a0)
                    a0 = subBlock(u.3, xa, 3, sa, a0)
                    a0 = subBlock(u.4, xa, 4, sa, a0)
                    a0 = subBlock(u.5, xa, 5, sa, a0)
                    a0 = subBlock(u.6, xa, 6, sa, a0)
                    a0 = subBlock(u.7, xa, 7, sa, a0)
                    a.storeBytes(of: a0, toByteOffset: 32 * g, as: __m256.self)
                }
            }
        }
        withUnsafeBytes(of: &acc) { a in
            withUnsafeBytes(of: &macc) { m in
                for g in 0..<G {
                    y[(g0 + g) * ldy + r] = hsum256(a.load(fromByteOffset: 32 * g, as: __m256.self))
                        - hsum256(m.load(fromByteOffset: 32 * g, as: __m256.self))
                }
            }
        }
    }

    @inline(__always) static func subBlock(_ u: __m256i, _ xb: UnsafeRawPointer, _ j: Int, _ scale: UnsafePointer<Float>,
                                           _ acc: __m256) -> __m256 {
        let i = dpbusd256(u, xb.loadUnaligned(fromByteOffset: 32 * j, as: __m256i.self))
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_set1_ps(scale[j]), acc)
    }

    // MARK: f32 path

    static func f32Batch<K: AVX512F32Kernel>(_ k: K.Type, _ w: WeightMatrix, _ x: UnsafePointer<Float>, _ count: Int,
                                             _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ rows: Range<Int>) {
        forEachTile(w, rows) { tile in
            forEachGroup(count) { g0, size in
                switch size {
                case 8: for r in tile { f32Pass(k, 8, w, x, g0, r, y, ldy) }
                case 4: for r in tile { f32Pass(k, 4, w, x, g0, r, y, ldy) }
                case 2: for r in tile { f32Pass(k, 2, w, x, g0, r, y, ldy) }
                default: AVX512MatVec.f32Rows(k, w, x + g0 * w.columns, y + g0 * ldy, tile)
                }
            }
        }
    }

    /// Weight row `r` against `G` f32 rows from `g0`: each 32-column step dequantised once, then
    /// the one-row kernel's two FMAs per row (`AVX512F32Kernel.step`) and its `f32Finish`.
    @inline(__always)
    static func f32Pass<K: AVX512F32Kernel>(_ k: K.Type, _ G: Int, _ w: WeightMatrix, _ x: UnsafePointer<Float>,
                                            _ g0: Int, _ r: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let n = w.columns, steps = n / 32, p = w.row(r)
        let xs = UnsafeRawPointer(x + g0 * n)
        var acc = (zeros16(), zeros16())
        withUnsafeMutableBytes(of: &acc) { a in
            for s in 0..<steps {
                // As the one-row kernel: the rows ahead at the rate this pass reads them (the next
                // tile all at once, as before, left F16 rows from L3 at 9 GB/s; this gives 13).
                prefetchStep(p + prefetchDistance + s * K.stride, bytes: K.stride)
                let (w0, w1) = K.weights(p + s * K.stride)
                for g in 0..<G {
                    let xo = xs + 4 * (g * n + 32 * s), o = 128 * g
                    a.storeBytes(of: _mm512_fmadd_ps(w0, xo.loadUnaligned(as: __m512.self), a.load(fromByteOffset: o, as: __m512.self)),
                                 toByteOffset: o, as: __m512.self)
                    a.storeBytes(of: _mm512_fmadd_ps(w1, xo.loadUnaligned(fromByteOffset: 64, as: __m512.self),
                                                     a.load(fromByteOffset: o + 64, as: __m512.self)),
                                 toByteOffset: o + 64, as: __m512.self)
                }
            }
            for g in 0..<G {
                let a0 = a.load(fromByteOffset: 128 * g, as: __m512.self), a1 = a.load(fromByteOffset: 128 * g + 64, as: __m512.self)
                y[(g0 + g) * ldy + r] = AVX512MatVec.f32Finish(k, a0, a1, p, x + (g0 + g) * n, 32 * steps, n)
            }
        }
    }
}

typealias Float16x8 = (__m512, __m512, __m512, __m512, __m512, __m512, __m512, __m512)

@inline(__always) func zeros16() -> Float16x8 {
    let z = _mm512_setzero_ps()
    return (z, z, z, z, z, z, z, z)
}

/// Lanes 8–15 of `v`.
@inline(__always) func high256(_ v: __m512) -> __m256 {
    unsafeBitCast(unsafeBitCast(v, to: SIMD16<Float>.self).highHalf, to: __m256.self)
}

extension Q4KInt8: BatchedKQuantKernel {
    @inline(__always) static func scales(_ w: UnsafeRawPointer) -> __m512 { Q4KWeights.scales(w) }
    @inline(__always) static func unpack(_ w: UnsafeRawPointer) -> Int8x8 {
        let mask = _mm256_set1_epi8(0x0F)
        func low(_ c: Int) -> __m256i { _mm256_and_si256(w.loadUnaligned(fromByteOffset: 16 + 32 * c, as: __m256i.self), mask) }
        func high(_ c: Int) -> __m256i {
            _mm256_and_si256(_mm256_srli_epi16(w.loadUnaligned(fromByteOffset: 16 + 32 * c, as: __m256i.self), 4), mask)
        }
        return (low(0), high(0), low(1), high(1), low(2), high(2), low(3), high(3))
    }
}
extension Q5KInt8: BatchedKQuantKernel {
    @inline(__always) static func scales(_ w: UnsafeRawPointer) -> __m512 { Q4KWeights.scales(w) }
    /// Q4_K's nibbles plus 16 where the sub-block's bit is set in qh (as `Q5KInt8.step`).
    @inline(__always) static func unpack(_ w: UnsafeRawPointer) -> Int8x8 {
        let mask = _mm256_set1_epi8(0x0F), qh = w.loadUnaligned(fromByteOffset: 16, as: __m256i.self)
        func low(_ c: Int) -> __m256i {
            addFifthBit256(_mm256_and_si256(w.loadUnaligned(fromByteOffset: 48 + 32 * c, as: __m256i.self), mask), qh,
                           _mm256_set1_epi8(Int8(truncatingIfNeeded: 1 << (2 * c))))
        }
        func high(_ c: Int) -> __m256i {
            addFifthBit256(_mm256_and_si256(_mm256_srli_epi16(w.loadUnaligned(fromByteOffset: 48 + 32 * c, as: __m256i.self), 4), mask),
                           qh, _mm256_set1_epi8(Int8(truncatingIfNeeded: 2 << (2 * c))))
        }
        return (low(0), high(0), low(1), high(1), low(2), high(2), low(3), high(3))
    }
}
#endif
