#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel

// Q5_K: Q4_K (same d, dmin and 12 packed scale bytes, same nibble order) plus a fifth bit per value:
// the 32 values of sub-block j have theirs in bit j of qh[0..<32] (value 32j + l in qh[l]). AVX-512
// tests that bit across the 32 bytes (`vptestmb`) and adds 16 under the resulting mask, so the
// kernels are Q4_K's with two more instructions per 32 values.

/// The 16 nibbles `q` (values l0…l0+15 of a sub-block) with 16 added where `bit` is set in `qh`.
@inline(__always) func addFifthBit(_ q: __m128i, _ qh: __m128i, _ bit: __m128i) -> __m128i {
    _mm_mask_add_epi8(q, _mm_test_epi8_mask(qh, bit), q, _mm_set1_epi8(16))
}

@inline(__always) func addFifthBit256(_ q: __m256i, _ qh: __m256i, _ bit: __m256i) -> __m256i {
    _mm256_mask_add_epi8(q, _mm256_test_epi8_mask(qh, bit), q, _mm256_set1_epi8(16))
}

/// The byte with bit `j` set, in every lane (j < 8).
@inline(__always) func bitMask128(_ j: Int) -> __m128i { _mm_set1_epi8(Int8(truncatingIfNeeded: 1 << j)) }

enum Q5KWeights: KQuantF32Kernel {
    static var stride: Int { 176 }

    /// Sub-blocks 2c and 2c + 1 as four 16-value halves of 5-bit values: (2c: 0–15, 16–31; 2c+1: 0–15, 16–31).
    @inline(__always) static func values(_ w: UnsafeRawPointer, _ c: Int, _ qh0: __m128i, _ qh1: __m128i)
        -> (__m128i, __m128i, __m128i, __m128i) {
        let r0 = load128(w, 48 + 32 * c), r1 = load128(w, 64 + 32 * c), mask = _mm_set1_epi8(0x0F)
        let b1 = bitMask128(2 * c), b2 = bitMask128(2 * c + 1)
        return (addFifthBit(_mm_and_si128(r0, mask), qh0, b1), addFifthBit(_mm_and_si128(r1, mask), qh1, b1),
                addFifthBit(_mm_and_si128(_mm_srli_epi16(r0, 4), mask), qh0, b2),
                addFifthBit(_mm_and_si128(_mm_srli_epi16(r1, 4), mask), qh1, b2))
    }

    @inline(__always) static func step(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, _ a0: inout __m512, _ a1: inout __m512) {
        let dm = Q4KWeights.scales(w)  // same header as Q4_K
        let qh0 = load128(w, 16), qh1 = load128(w, 32)
        for c in 0..<4 {
            let d1 = broadcastLane(dm, Int32(2 * c)), m1 = broadcastLane(dm, Int32(2 * c + 8))
            let d2 = broadcastLane(dm, Int32(2 * c + 1)), m2 = broadcastLane(dm, Int32(2 * c + 9))
            let (l0, l1, h0, h1) = values(w, c, qh0, qh1)
            let xo = x + 256 * c
            // fmsub rounds d·q − m once (the reference rounds twice; ~1 ulp of a weight), as Q4_K.
            a0 = _mm512_fmadd_ps(_mm512_fmsub_ps(bytesToFloats(l0), d1, m1), xo.loadUnaligned(as: __m512.self), a0)
            a1 = _mm512_fmadd_ps(_mm512_fmsub_ps(bytesToFloats(l1), d1, m1),
                                 xo.loadUnaligned(fromByteOffset: 64, as: __m512.self), a1)
            a0 = _mm512_fmadd_ps(_mm512_fmsub_ps(bytesToFloats(h0), d2, m2),
                                 xo.loadUnaligned(fromByteOffset: 128, as: __m512.self), a0)
            a1 = _mm512_fmadd_ps(_mm512_fmsub_ps(bytesToFloats(h1), d2, m2),
                                 xo.loadUnaligned(fromByteOffset: 192, as: __m512.self), a1)
        }
    }

    /// 256 floats to `out`, bitwise equal to the reference (separate multiply and subtract).
    @inline(__always) static func dequantize(_ w: UnsafeRawPointer, _ out: UnsafeMutableRawPointer) {
        let dm = Q4KWeights.scales(w)
        let qh0 = load128(w, 16), qh1 = load128(w, 32)
        for c in 0..<4 {
            let d1 = broadcastLane(dm, Int32(2 * c)), m1 = broadcastLane(dm, Int32(2 * c + 8))
            let d2 = broadcastLane(dm, Int32(2 * c + 1)), m2 = broadcastLane(dm, Int32(2 * c + 9))
            let (l0, l1, h0, h1) = values(w, c, qh0, qh1)
            let o = 256 * c
            out.storeBytes(of: _mm512_sub_ps(_mm512_mul_ps(bytesToFloats(l0), d1), m1), toByteOffset: o, as: __m512.self)
            out.storeBytes(of: _mm512_sub_ps(_mm512_mul_ps(bytesToFloats(l1), d1), m1), toByteOffset: o + 64, as: __m512.self)
            out.storeBytes(of: _mm512_sub_ps(_mm512_mul_ps(bytesToFloats(h0), d2), m2), toByteOffset: o + 128, as: __m512.self)
            out.storeBytes(of: _mm512_sub_ps(_mm512_mul_ps(bytesToFloats(h1), d2), m2), toByteOffset: o + 192, as: __m512.self)
        }
    }
}

/// Q5_K against int8 activations: Q4_K's kernel with 5-bit values,
/// (d·sc_j)·d_x·Σq·q_x − (dmin·m_j)·(d_x·Σq_x) per 32-value sub-block j.
enum Q5KInt8: KQuantInt8Kernel {
    static var stride: Int { 176 }

    @inline(__always) static func activation(_ aux: UnsafeRawPointer, _ s: Int) -> (__m512, __m512) {
        Q4KInt8.activation(aux, s)
    }

    @inline(__always) static func step(_ w: UnsafeRawPointer, _ xb: UnsafeRawPointer, _ xs: __m512, _: __m512,
                                       _ acc: inout __m256, _ macc: inout __m512) {
        let prod = _mm512_mul_ps(Q4KWeights.scales(w), xs)  // d·sc_j·d_x | dmin·m_j·d_x·Σq_x
        macc = _mm512_add_ps(macc, prod)
        let mask = _mm256_set1_epi8(0x0F), qh = w.loadUnaligned(fromByteOffset: 16, as: __m256i.self)
        for c in 0..<4 {
            let raw = w.loadUnaligned(fromByteOffset: 48 + 32 * c, as: __m256i.self)
            let low = addFifthBit256(_mm256_and_si256(raw, mask), qh, _mm256_set1_epi8(Int8(truncatingIfNeeded: 1 << (2 * c))))
            let high = addFifthBit256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), mask), qh,
                                      _mm256_set1_epi8(Int8(truncatingIfNeeded: 2 << (2 * c))))
            let i0 = dpbusd256(low, xb.loadUnaligned(fromByteOffset: 64 * c, as: __m256i.self))
            let i1 = dpbusd256(high, xb.loadUnaligned(fromByteOffset: 64 * c + 32, as: __m256i.self))
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm512_castps512_ps256(broadcastLane(prod, Int32(2 * c))), acc)
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), _mm512_castps512_ps256(broadcastLane(prod, Int32(2 * c + 1))), acc)
        }
    }

    @inline(__always) static func finish(_ acc: __m256, _ macc: __m512) -> Float { Q4KInt8.finish(acc, macc) }
}
#endif
