#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel

// Batched Q6_K int8 kernel. Q6_K's scales cover 16 values and its zero-point term needs per-16
// activation sums, so it does not fit `BatchedKQuantKernel`; this pass follows `Q6KInt8.step`
// instead: per weight row and super-block the 6-bit values are unpacked once, then every activation
// row of the group gets the one-row step's operations in its order — `prod = ds·xa`,
// `macc = fma(ds, xc, macc)`, and 8 × (`vpdpbusd`, convert, FMA with `groupPair(prod, ·)`) — and
// `Q6KInt8.finish`. So each row is bitwise its one-row result.

extension Q6KInt8 {
    /// The 256 values of a super-block as unsigned bytes q ∈ [0, 63], in the order `step` feeds
    /// them to `vpdpbusd`: half 0's four 32-value quarters, then half 1's.
    @inline(__always) static func unpack(_ w: UnsafeRawPointer) -> Int8x8 {
        let m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3)
        func half(_ h: Int) -> (__m256i, __m256i, __m256i, __m256i) {
            let ql0 = w.loadUnaligned(fromByteOffset: 64 * h, as: __m256i.self)
            let ql1 = w.loadUnaligned(fromByteOffset: 64 * h + 32, as: __m256i.self)
            let qh = w.loadUnaligned(fromByteOffset: 128 + 32 * h, as: __m256i.self)
            return (_mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4)),
                    _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4)))
        }
        let (a0, a1, a2, a3) = half(0), (b0, b1, b2, b3) = half(1)
        return (a0, a1, a2, a3, b0, b1, b2, b3)
    }
}

extension BatchedAVX512MatVec {
    /// Q6_K rows `rows` against every row of `xq`: groups of 8, 4 and 2 activation rows share each
    /// unpacked super-block; a group of one runs the one-row kernel.
    static func q6KBatch(_ w: WeightMatrix, _ xq: QuantizedActivationBatch, _ y: UnsafeMutablePointer<Float>,
                         _ ldy: Int, _ rows: Range<Int>) {
        let tableSize = max(1, w.columns / 8), count = xq.rows
        withUnsafeTemporaryAllocation(of: Float.self, capacity: tableSize * max(1, count)) { buffer in
            // Each row's activation table, as the one-row call builds it.
            let tables = buffer.baseAddress!
            for g in 0..<count { Q6KInt8.activationTable(xq.row(g), columns: w.columns, into: tables + g * tableSize) }
            let x = BatchOperand(xq)
            forEachTile(w, rows) { tile in
                prefetchNextTile(w, after: tile, within: rows)
                forEachGroup(count) { g0, size in
                    switch size {
                    case 8: for r in tile { q6KPass(8, w, x, tables, tableSize, g0, r, y, ldy) }
                    case 4: for r in tile { q6KPass(4, w, x, tables, tableSize, g0, r, y, ldy) }
                    case 2: for r in tile { q6KPass(2, w, x, tables, tableSize, g0, r, y, ldy) }
                    default:
                        KQuantMatVec.int8Rows(Q6KInt8.self, w, x.row(g0), UnsafeRawPointer(tables + g0 * tableSize),
                                              y + g0 * ldy, tile)
                    }
                }
            }
        }
    }

    /// Weight row `r` against `G` activation rows from `g0` (see the file comment).
    @inline(__always)
    static func q6KPass(_ G: Int, _ w: WeightMatrix, _ x: BatchOperand, _ tables: UnsafePointer<Float>, _ tableSize: Int,
                        _ g0: Int, _ r: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let steps = w.columns / 256, n = x.columns, p = w.row(r)
        var acc = zeros8(), macc = zeros16()
        withUnsafeMutableBytes(of: &acc) { a in
            withUnsafeMutableBytes(of: &macc) { m in
                for s in 0..<steps {
                    let block = p + Q6KInt8.stride * s
                    let ds = Q6KWeights.scales(block)
                    let u = Q6KInt8.unpack(block)
                    for g in 0..<G {
                        let (xa, xc) = Q6KInt8.activation(UnsafeRawPointer(tables + (g0 + g) * tableSize), s)
                        let prod = _mm512_mul_ps(ds, xa)
                        m.storeBytes(of: _mm512_fmadd_ps(ds, xc, m.load(fromByteOffset: 64 * g, as: __m512.self)),
                                     toByteOffset: 64 * g, as: __m512.self)
                        let xb = x.qs + (g0 + g) * n + 256 * s
                        var sum = a.load(fromByteOffset: 32 * g, as: __m256.self)
                        sum = q6KQuarter(u.0, xb, 0, prod, 0, sum)
                        sum = q6KQuarter(u.1, xb, 32, prod, 2, sum)
                        sum = q6KQuarter(u.2, xb, 64, prod, 4, sum)
                        sum = q6KQuarter(u.3, xb, 96, prod, 6, sum)
                        sum = q6KQuarter(u.4, xb, 128, prod, 8, sum)
                        sum = q6KQuarter(u.5, xb, 160, prod, 10, sum)
                        sum = q6KQuarter(u.6, xb, 192, prod, 12, sum)
                        sum = q6KQuarter(u.7, xb, 224, prod, 14, sum)
                        a.storeBytes(of: sum, toByteOffset: 32 * g, as: __m256.self)
                    }
                }
                for g in 0..<G {
                    y[(g0 + g) * ldy + r] = Q6KInt8.finish(a.load(fromByteOffset: 32 * g, as: __m256.self),
                                                           m.load(fromByteOffset: 64 * g, as: __m512.self))
                }
            }
        }
    }

    /// One 32-value quarter: `vpdpbusd` with the activations at `xb + offset`, scaled by the
    /// scales of its two 16-groups `group`, `group + 1` (as `Q6KInt8.step`).
    @inline(__always) static func q6KQuarter(_ u: __m256i, _ xb: UnsafeRawPointer, _ offset: Int, _ prod: __m512,
                                             _ group: Int32, _ acc: __m256) -> __m256 {
        let i = dpbusd256(u, xb.loadUnaligned(fromByteOffset: offset, as: __m256i.self))
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), Q6KInt8.groupPair(prod, group), acc)
    }
}
#endif
