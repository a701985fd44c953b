#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel

/// Q6_K against int8 activations. Q6_K has a scale per 16 values and the activations one per 32,
/// and its values are q − 32 with q ∈ [0, 63]: `vpdpbusd` takes the unsigned q, and per 16-group g
///   Σ(q − 32)·q_x = Σq·q_x − 32·S_g,   S_g = Σ q_x over the group,
/// so the row gets Σ_g (d·sc_g)·d_x·Σq·q_x − 32·Σ_g (d·sc_g)·(d_x·S_g). The second sum needs the
/// activations' per-16 sums, which are the same for every row: `activationTable` computes them once
/// per call, and each super-block adds one 16-lane product to `macc`.
enum Q6KInt8: KQuantInt8Kernel {
    static var stride: Int { 210 }

    /// Per super-block 32 floats: lanes 0–15 d_x of group g's block, lanes 16–31 d_x·S_g
    /// (`columns / 8` floats in all) of the activation row `xq` of `columns` values.
    static func activationTable(_ xq: QuantizedRow, columns: Int, into table: UnsafeMutablePointer<Float>) {
        let qs = xq.qs, scales = xq.scales
        for s in 0..<columns / 256 {
            for g in 0..<16 {
                let block = 8 * s + g / 2, x = qs + 256 * s + 16 * g
                var sum: Int32 = 0
                for i in 0..<16 { sum += Int32(x[i]) }
                table[32 * s + g] = scales[2 * block]
                table[32 * s + 16 + g] = scales[2 * block] * Float(sum)
            }
        }
    }

    @inline(__always) static func activation(_ aux: UnsafeRawPointer, _ s: Int) -> (__m512, __m512) {
        (aux.loadUnaligned(fromByteOffset: 128 * s, as: __m512.self),
         aux.loadUnaligned(fromByteOffset: 128 * s + 64, as: __m512.self))
    }

    /// Lanes 0–3 of the result: lane g of `v`; lanes 4–7: lane g + 1 (the scales of the two 16-value
    /// halves of a 32-value `vpdpbusd`, whose 8 lanes sum 4 values each).
    @inline(__always) static func groupPair(_ v: __m512, _ g: Int32) -> __m256 {
        _mm512_castps512_ps256(_mm512_permutexvar_ps(
            _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, g + 1, g + 1, g + 1, g + 1, g, g, g, g), v))
    }

    /// One super-block. `xa` lanes: d_x per 16-group; `xc`: d_x·S_g (see `activationTable`).
    @inline(__always) static func step(_ w: UnsafeRawPointer, _ xb: UnsafeRawPointer, _ xa: __m512, _ xc: __m512,
                                       _ acc: inout __m256, _ macc: inout __m512) {
        let ds = Q6KWeights.scales(w)  // d·sc_g, one f32 product as in the reference
        let prod = _mm512_mul_ps(ds, xa)
        macc = _mm512_fmadd_ps(ds, xc, macc)
        let m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3)
        for h in 0..<2 {
            // Values 128h + 32k + l (l < 32): low 4 bits from ql (k = 0, 1 low nibbles of the two
            // 32-byte rows, k = 2, 3 their high nibbles), top 2 from bits 2k…2k+1 of qh[l].
            let ql0 = w.loadUnaligned(fromByteOffset: 64 * h, as: __m256i.self)
            let ql1 = w.loadUnaligned(fromByteOffset: 64 * h + 32, as: __m256i.self)
            let qh = w.loadUnaligned(fromByteOffset: 128 + 32 * h, as: __m256i.self)
            // Each 2-bit field is masked before the 16-bit shift left by 4, so no bits cross bytes.
            let q0 = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4))
            let q1 = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4))
            let q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4))
            let q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4))
            let x = xb + 128 * h
            let i0 = dpbusd256(q0, x.loadUnaligned(as: __m256i.self))
            let i1 = dpbusd256(q1, x.loadUnaligned(fromByteOffset: 32, as: __m256i.self))
            let i2 = dpbusd256(q2, x.loadUnaligned(fromByteOffset: 64, as: __m256i.self))
            let i3 = dpbusd256(q3, x.loadUnaligned(fromByteOffset: 96, as: __m256i.self))
            let g = Int32(8 * h)
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), groupPair(prod, g), acc)
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), groupPair(prod, g + 2), acc)
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i2), groupPair(prod, g + 4), acc)
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i3), groupPair(prod, g + 6), acc)
        }
    }

    @inline(__always) static func finish(_ acc: __m256, _ macc: __m512) -> Float {
        hsum256(acc) - 32 * _mm512_reduce_add_ps(macc)
    }

    static var pairsRows: Bool { true }

    /// `groupPair` of two rows' products: lanes 0–7 row a's, 8–15 row b's.
    @inline(__always) static func groupPairs(_ a: __m512, _ b: __m512, _ g: Int32) -> __m512 {
        _mm512_permutex2var_ps(a, _mm512_set_epi32(17 + g, 17 + g, 17 + g, 17 + g, 16 + g, 16 + g, 16 + g, 16 + g,
                                                   g + 1, g + 1, g + 1, g + 1, g, g, g, g), b)
    }

    /// `step` for rows `a` and `b` in one 512-bit accumulator (row a in lanes 0–7): the same value
    /// assembly on both rows' bytes at once, one dpbusd, convert and FMA per 32 values for the two.
    @inline(__always) static func stepTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ xb: UnsafeRawPointer,
                                              _ xa: __m512, _ xc: __m512, _ acc: inout __m512,
                                              _ maccA: inout __m512, _ maccB: inout __m512) {
        let dsA = Q6KWeights.scales(a), dsB = Q6KWeights.scales(b)
        let prodA = _mm512_mul_ps(dsA, xa), prodB = _mm512_mul_ps(dsB, xa)
        maccA = _mm512_fmadd_ps(dsA, xc, maccA)
        maccB = _mm512_fmadd_ps(dsB, xc, maccB)
        let m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3)
        @inline(__always) func both(_ offset: Int) -> __m512i {
            concat256(a.loadUnaligned(fromByteOffset: offset, as: __m256i.self), b.loadUnaligned(fromByteOffset: offset, as: __m256i.self))
        }
        for h in 0..<2 {
            let ql0 = both(64 * h), ql1 = both(64 * h + 32), qh = both(128 + 32 * h)
            let q0 = _mm512_or_si512(_mm512_and_si512(ql0, m4), _mm512_slli_epi16(_mm512_and_si512(qh, m2), 4))
            let q1 = _mm512_or_si512(_mm512_and_si512(ql1, m4),
                                     _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 2), m2), 4))
            let q2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql0, 4), m4),
                                     _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m2), 4))
            let q3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql1, 4), m4),
                                     _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 6), m2), 4))
            let x = xb + 128 * h
            @inline(__always) func activations(_ offset: Int) -> __m512i {
                _mm512_broadcast_i64x4(x.loadUnaligned(fromByteOffset: offset, as: __m256i.self))
            }
            let i0 = dpbusd512(q0, activations(0)), i1 = dpbusd512(q1, activations(32))
            let i2 = dpbusd512(q2, activations(64)), i3 = dpbusd512(q3, activations(96))
            let g = Int32(8 * h)
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), groupPairs(prodA, prodB, g), acc)
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), groupPairs(prodA, prodB, g + 2), acc)
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i2), groupPairs(prodA, prodB, g + 4), acc)
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i3), groupPairs(prodA, prodB, g + 6), acc)
        }
    }
}
#endif
