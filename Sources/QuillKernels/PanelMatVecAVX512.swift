#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel

/// The 8 group vectors of one (panel, block) as unsigned bytes: vector `g`, dword `r` = row `r`,
/// columns `4g ..< 4g + 4`.
typealias PanelValues = (__m512i, __m512i, __m512i, __m512i, __m512i, __m512i, __m512i, __m512i)

/// How one panel type's block reads. Sizes and offsets come from `WeightPanels`' layout functions
/// (with `type` fixed at specialisation they fold to constants).
protocol PanelKernel {
    static var type: TensorType { get }
    static func values(_ block: UnsafeRawPointer) -> PanelValues
}

extension PanelKernel {
    @inline(__always) static var blockBytes: Int { WeightPanels.blockBytes(type) }
    @inline(__always) static var scalesOffset: Int { WeightPanels.scalesOffset(type) }
    /// The 16 rows' offsets: their mins, or `zeroPoint·d` from their scales `d`.
    @inline(__always) static func offsets(_ block: UnsafeRawPointer, _ d: __m512) -> __m512 {
        WeightPanels.hasMin(type) ? _mm512_cvtph_ps(block.loadUnaligned(fromByteOffset: scalesOffset + 32, as: __m256i.self))
            : _mm512_mul_ps(d, _mm512_set1_ps(UnsignedWeightRows.zeroPoint(type)))
    }
}

/// Low nibbles of the 4 chunks are groups 0–3, high nibbles groups 4–7.
@inline(__always) func panelNibbles(_ block: UnsafeRawPointer) -> PanelValues {
    let mask = _mm512_set1_epi8(0x0F)
    let c0 = block.loadUnaligned(as: __m512i.self), c1 = block.loadUnaligned(fromByteOffset: 64, as: __m512i.self)
    let c2 = block.loadUnaligned(fromByteOffset: 128, as: __m512i.self), c3 = block.loadUnaligned(fromByteOffset: 192, as: __m512i.self)
    return (_mm512_and_si512(c0, mask), _mm512_and_si512(c1, mask), _mm512_and_si512(c2, mask), _mm512_and_si512(c3, mask),
            _mm512_and_si512(_mm512_srli_epi16(c0, 4), mask), _mm512_and_si512(_mm512_srli_epi16(c1, 4), mask),
            _mm512_and_si512(_mm512_srli_epi16(c2, 4), mask), _mm512_and_si512(_mm512_srli_epi16(c3, 4), mask))
}

/// The nibbles plus 16 where group `g`'s fifth-bit mask (at byte 256 + 8g) has the byte's bit.
@inline(__always) func panelFiveBit(_ block: UnsafeRawPointer) -> PanelValues {
    let v = panelNibbles(block), sixteen = _mm512_set1_epi8(16)
    @inline(__always) func add(_ x: __m512i, _ g: Int) -> __m512i {
        _mm512_mask_add_epi8(x, block.loadUnaligned(fromByteOffset: 256 + 8 * g, as: UInt64.self), x, sixteen)
    }
    return (add(v.0, 0), add(v.1, 1), add(v.2, 2), add(v.3, 3), add(v.4, 4), add(v.5, 5), add(v.6, 6), add(v.7, 7))
}

enum Q40Panel: PanelKernel {
    @inline(__always) static var type: TensorType { .q4_0 }
    @inline(__always) static func values(_ block: UnsafeRawPointer) -> PanelValues { panelNibbles(block) }
}

enum Q41Panel: PanelKernel {
    @inline(__always) static var type: TensorType { .q4_1 }
    @inline(__always) static func values(_ block: UnsafeRawPointer) -> PanelValues { panelNibbles(block) }
}

enum Q50Panel: PanelKernel {
    @inline(__always) static var type: TensorType { .q5_0 }
    @inline(__always) static func values(_ block: UnsafeRawPointer) -> PanelValues { panelFiveBit(block) }
}

enum Q51Panel: PanelKernel {
    @inline(__always) static var type: TensorType { .q5_1 }
    @inline(__always) static func values(_ block: UnsafeRawPointer) -> PanelValues { panelFiveBit(block) }
}

enum Q80Panel: PanelKernel {
    @inline(__always) static var type: TensorType { .q8_0 }
    @inline(__always) static func values(_ b: UnsafeRawPointer) -> PanelValues {
        (b.loadUnaligned(as: __m512i.self), b.loadUnaligned(fromByteOffset: 64, as: __m512i.self),
         b.loadUnaligned(fromByteOffset: 128, as: __m512i.self), b.loadUnaligned(fromByteOffset: 192, as: __m512i.self),
         b.loadUnaligned(fromByteOffset: 256, as: __m512i.self), b.loadUnaligned(fromByteOffset: 320, as: __m512i.self),
         b.loadUnaligned(fromByteOffset: 384, as: __m512i.self), b.loadUnaligned(fromByteOffset: 448, as: __m512i.self))
    }
}

extension WeightPanels {
    /// Rows `r0 ..< r0 + 4` (`r0` a multiple of 4, all inside the matrix) exactly as
    /// `UnsignedWeightRows.unpack` gives them from the file's blocks: values at `q + i·columns`,
    /// block `b`'s scale and offset of row `i` at `[4b + i]` — the prompt GEMM's `RowPanel`, read
    /// straight from the panels (a 4×4 dword transpose per 16 bytes) instead of through rebuilt rows.
    func unpackFourRows(_ r0: Int, q: UnsafeMutablePointer<UInt8>, scales: UnsafeMutablePointer<Float>,
                        offsets: UnsafeMutablePointer<Float>) {
        precondition(r0 % 4 == 0 && r0 + 4 <= rows)
        let lane0 = r0 % 16, p = r0 / 16, blocks = columns / 32
        let hasMin = WeightPanels.hasMin(type), fiveBit = WeightPanels.hasFifthBit(type)
        let zero = UnsignedWeightRows.zeroPoint(type)
        let out = UnsafeMutableRawPointer(q), scalesOffset = WeightPanels.scalesOffset(type)
        for b in 0..<blocks {
            let block = UnsafeRawPointer(data + (p * blocks + b) * blockBytes)
            let sc = block + scalesOffset
            for i in 0..<4 {
                let d = halfBitsToFloat(sc.loadUnaligned(fromByteOffset: 2 * (lane0 + i), as: UInt16.self))
                scales[4 * b + i] = d
                offsets[4 * b + i] = hasMin
                    ? halfBitsToFloat(sc.loadUnaligned(fromByteOffset: 32 + 2 * (lane0 + i), as: UInt16.self)) : zero * d
            }
            // Chunks `c ..< c + 4`, dwords of the four rows → each row's 16 bytes in chunk order.
            @inline(__always) func rowsOfChunks(_ c: Int) -> (__m128i, __m128i, __m128i, __m128i) {
                let x0 = load128(block, 64 * c + 4 * lane0), x1 = load128(block, 64 * (c + 1) + 4 * lane0)
                let x2 = load128(block, 64 * (c + 2) + 4 * lane0), x3 = load128(block, 64 * (c + 3) + 4 * lane0)
                let t0 = _mm_unpacklo_epi32(x0, x1), t1 = _mm_unpackhi_epi32(x0, x1)
                let t2 = _mm_unpacklo_epi32(x2, x3), t3 = _mm_unpackhi_epi32(x2, x3)
                return (_mm_unpacklo_epi64(t0, t2), _mm_unpackhi_epi64(t0, t2), _mm_unpacklo_epi64(t1, t3), _mm_unpackhi_epi64(t1, t3))
            }
            @inline(__always) func row(_ t: (__m128i, __m128i, __m128i, __m128i), _ i: Int) -> __m128i {
                i == 0 ? t.0 : i == 1 ? t.1 : i == 2 ? t.2 : t.3
            }
            if type == .q8_0 {
                let low = rowsOfChunks(0), high = rowsOfChunks(4)
                for i in 0..<4 {
                    out.storeBytes(of: _mm256_set_m128i(row(high, i), row(low, i)), toByteOffset: i * columns + 32 * b, as: __m256i.self)
                }
                continue
            }
            let nibbles = rowsOfChunks(0)
            for i in 0..<4 {
                var v = unpackNibbles256(row(nibbles, i))
                if fiveBit {
                    var qh: UInt32 = 0
                    for g in 0..<8 {
                        let mask = block.loadUnaligned(fromByteOffset: 256 + 8 * g, as: UInt64.self)
                        qh |= UInt32(truncatingIfNeeded: (mask >> (4 * (lane0 + i))) & 0xF) << (4 * g)
                    }
                    v = _mm256_mask_add_epi8(v, qh, v, _mm256_set1_epi8(16))
                }
                out.storeBytes(of: v, toByteOffset: i * columns + 32 * b, as: __m256i.self)
            }
        }
    }
}

/// The activation rows a panel kernel reads: row `i`'s int8 values at `qs + i·qsStride`, its
/// `(d, d·Σq)` pairs at `scales + i·scalesStride`.
struct PanelOperand {
    let qs: UnsafePointer<Int8>, qsStride: Int
    let scales: UnsafePointer<Float>, scalesStride: Int
}

enum PanelMatVec {
    /// How far ahead in the weight stream `pass` prefetches, in blocks (about 5–9 KB). Measured on
    /// SmolLM2, 1 thread, against no prefetch: 8 blocks 1.23×/1.12× (8 rows / 1 row), 16 blocks
    /// 1.29×/1.23×, 32 blocks the same as 16.
    static let prefetchBlocks = 16

    /// `y[i·ldy + r] = W[r]·x_i` for the `count` rows of `x` and the weight rows `rows` (any range:
    /// panels cut by it compute all 16 lanes and store those inside it).
    static func multiply(_ w: WeightPanels, _ x: PanelOperand, count: Int, into y: UnsafeMutablePointer<Float>, ldy: Int,
                         rows: Range<Int>) {
        switch w.type {
        case .q4_0: multiply(Q40Panel.self, w, x, count, y, ldy, rows)
        case .q4_1: multiply(Q41Panel.self, w, x, count, y, ldy, rows)
        case .q5_0: multiply(Q50Panel.self, w, x, count, y, ldy, rows)
        case .q5_1: multiply(Q51Panel.self, w, x, count, y, ldy, rows)
        case .q8_0: multiply(Q80Panel.self, w, x, count, y, ldy, rows)
        default: preconditionFailure("no panel kernel for \(w.type)")
        }
    }

    @inline(__always)
    static func multiply<K: PanelKernel>(_ k: K.Type, _ w: WeightPanels, _ x: PanelOperand, _ count: Int,
                                         _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ rows: Range<Int>) {
        guard !rows.isEmpty else { return }
        // Up to 8 activation rows per pass over a panel: the panel's 8 group vectors stay in
        // registers while every row's 8 `vpdpbusd` use them.
        for p in rows.lowerBound / 16 ..< (rows.upperBound + 15) / 16 {
            var i = 0
            while i < count {
                let left = count - i
                let sub = PanelOperand(qs: x.qs + i * x.qsStride, qsStride: x.qsStride,
                                       scales: x.scales + i * x.scalesStride, scalesStride: x.scalesStride)
                let out = y + i * ldy
                switch left {
                case 8...: pass(k, Count8.self, w, sub, p, out, ldy, rows); i += 8
                case 4...: pass(k, Count4.self, w, sub, p, out, ldy, rows); i += 4
                case 2...: pass(k, Count2.self, w, sub, p, out, ldy, rows); i += 2
                default: pass(k, Count1.self, w, sub, p, out, ldy, rows); i += 1
                }
            }
        }
    }

    /// Panel `p` against `R` activation rows: per block, the exact int32 dot of every (row, weight
    /// row) — two `vpdpbusd` chains of 4, added — then `acc += Float(Σ)·(d_w·d_x)` and
    /// `acc += offset·(d_x·Σq_x)` (`ReferencePanelMatVec`'s two FMAs).
    @inline(__always)
    static func pass<K: PanelKernel, R: StaticCount>(_: K.Type, _: R.Type, _ w: WeightPanels, _ x: PanelOperand, _ p: Int,
                                                     _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ rows: Range<Int>) {
        let n = R.value, blocks = w.columns / 32
        let base = UnsafeRawPointer(w.data) + p * blocks * K.blockBytes
        // One named accumulator per activation row (an array or tuple in memory measured slower:
        // the compiler kept it on the stack and unrolled the row loop only twice).
        var a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0
        for b in 0..<blocks {
            let block = base + b * K.blockBytes
            // The stream `prefetchBlocks` blocks ahead (panels are contiguous, so past the last
            // block this is the next panel's start): on an AMD Zen 5 the hardware prefetchers
            // alone left the batched passes waiting on the weights.
            prefetchStep(block + prefetchBlocks * K.blockBytes, bytes: K.blockBytes)
            let v = K.values(block)
            let d = _mm512_cvtph_ps(block.loadUnaligned(fromByteOffset: K.scalesOffset, as: __m256i.self))
            let offset = K.offsets(block, d)
            @inline(__always) func step(_ j: Int, _ acc: inout __m512) {
                let q = UnsafeRawPointer(x.qs + j * x.qsStride + 32 * b)
                let pair = x.scales + j * x.scalesStride + 2 * b
                @inline(__always) func dword(_ o: Int) -> __m512i { _mm512_set1_epi32(q.loadUnaligned(fromByteOffset: o, as: Int32.self)) }
                let zero = _mm512_setzero_si512()
                var s0 = _mm512_mask_dpbusd_epi32(zero, 0xFFFF, v.0, dword(0))
                var s1 = _mm512_mask_dpbusd_epi32(zero, 0xFFFF, v.1, dword(4))
                s0 = _mm512_mask_dpbusd_epi32(s0, 0xFFFF, v.2, dword(8))
                s1 = _mm512_mask_dpbusd_epi32(s1, 0xFFFF, v.3, dword(12))
                s0 = _mm512_mask_dpbusd_epi32(s0, 0xFFFF, v.4, dword(16))
                s1 = _mm512_mask_dpbusd_epi32(s1, 0xFFFF, v.5, dword(20))
                s0 = _mm512_mask_dpbusd_epi32(s0, 0xFFFF, v.6, dword(24))
                s1 = _mm512_mask_dpbusd_epi32(s1, 0xFFFF, v.7, dword(28))
                let sum = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1))
                let scale = _mm512_mul_ps(d, _mm512_set1_ps(pair[0]))
                acc = _mm512_fmadd_ps(offset, _mm512_set1_ps(pair[1]), _mm512_fmadd_ps(sum, scale, acc))
            }
            step(0, &a0)
            if n > 1 { step(1, &a1) }
            if n > 2 { step(2, &a2); step(3, &a3) }
            if n > 4 { step(4, &a4); step(5, &a5); step(6, &a6); step(7, &a7) }
        }
        // Lanes of rows inside `rows` (and the matrix).
        let first = 16 * p, lo = max(rows.lowerBound, first) - first, hi = min(rows.upperBound, first + 16) - first
        let mask = UInt16(truncatingIfNeeded: ((1 << hi) - 1) & ~((1 << lo) - 1))
        @inline(__always) func store(_ j: Int, _ acc: __m512) { _mm512_mask_storeu_ps(y + j * ldy + first, mask, acc) }
        store(0, a0)
        if n > 1 { store(1, a1) }
        if n > 2 { store(2, a2); store(3, a3) }
        if n > 4 { store(4, a4); store(5, a5); store(6, a6); store(7, a7) }
    }
}
#endif
