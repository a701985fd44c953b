#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// Q5_0 and Q5_1: 32-value blocks of 5-bit values (layouts in `TensorType`). The low 4 bits are
/// nibbles in Q4_0's order and the fifth bits a 32-bit mask, bit j for element j, which AVX-512
/// applies directly as a byte mask (`vpaddb` under `k`) — no shuffling of the bits into bytes.
///
/// The kernels follow Q4_0 / Q4_1: the f32 path dequantises in registers and FMAs with x; the
/// int8 path takes the unsigned values q ∈ [0, 31] into `vpdpbusd` against the int8 activations
/// and folds the zero point (Q5_0's −16) or the min (Q5_1's m) in through the block sum d_x·Σq_x.
public enum FiveBitQuants {
    /// Whether `type` is Q5_0 or Q5_1.
    @inlinable public static func isFiveBit(_ type: TensorType) -> Bool { type == .q5_0 || type == .q5_1 }

    /// Dequantises `count` values (a multiple of 32) of a Q5_0 or Q5_1 row into `out`: SIMD where the
    /// AVX-512 kernels are compiled in, the scalar reference elsewhere. Bitwise the values of
    /// `ReferenceDequantizer` (Q5_0: d·(q − 16), so −0 where d < 0 and q = 16; Q5_1: d·q, then + m).
    public static func dequantize(_ type: TensorType, _ src: UnsafeRawPointer, count: Int,
                                  into out: UnsafeMutablePointer<Float>) {
        precondition(isFiveBit(type) && count % 32 == 0, "dequantize needs a Q5_0 / Q5_1 row of whole blocks")
        #if canImport(COpenBLAS.AVX512VNNI)
        let o = UnsafeMutableRawPointer(out)
        if type == .q5_0 {
            let sixteen = _mm_set1_epi8(16)
            for b in 0..<count / 32 {
                let w = src + 22 * b
                let d = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(as: UInt16.self)))
                let (q0, q1) = fiveBitValues128(w, qhOffset: 2)
                // (q − 16)·d as the reference computes it (fma(q, d, −16d) would give +0 for −0).
                o.storeBytes(of: _mm512_mul_ps(signedBytesToFloats(_mm_sub_epi8(q0, sixteen)), d),
                             toByteOffset: 128 * b, as: __m512.self)
                o.storeBytes(of: _mm512_mul_ps(signedBytesToFloats(_mm_sub_epi8(q1, sixteen)), d),
                             toByteOffset: 128 * b + 64, as: __m512.self)
            }
        } else {
            for b in 0..<count / 32 {
                let w = src + 24 * b
                let d = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(as: UInt16.self)))
                let m = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
                let (q0, q1) = fiveBitValues128(w, qhOffset: 4)
                o.storeBytes(of: _mm512_add_ps(_mm512_mul_ps(bytesToFloats(q0), d), m), toByteOffset: 128 * b, as: __m512.self)
                o.storeBytes(of: _mm512_add_ps(_mm512_mul_ps(bytesToFloats(q1), d), m),
                             toByteOffset: 128 * b + 64, as: __m512.self)
            }
        }
        #else
        ReferenceDequantizer.dequantize(type, src, count: count, into: out)
        #endif
    }

    /// Σ q_j·x_j over one block (q ∈ [0, 31], the stored value before the zero point or min) with
    /// 32 int8 activations: the integer part of the portable int8 kernel.
    @inline(__always)
    static func portableDot(_ block: UnsafeRawPointer, qhOffset: Int, _ x: UnsafePointer<Int8>) -> Int32 {
        let qh = block.loadUnaligned(fromByteOffset: qhOffset, as: UInt32.self).littleEndian
        var dot: Int32 = 0
        for j in 0..<16 {
            let byte = block.load(fromByteOffset: qhOffset + 4 + j, as: UInt8.self)
            let q0 = Int32(byte & 0x0F) | Int32((qh >> j) & 1) << 4
            let q1 = Int32(byte >> 4) | Int32((qh >> (j + 16)) & 1) << 4
            dot += q0 * Int32(x[j]) + q1 * Int32(x[j + 16])
        }
        return dot
    }
}

extension PortableMatVec {
    /// Q5_0 / Q5_1 block against an int8 activation block with scale pair (d_x, d_x·Σq_x):
    /// Q5_0 d·d_x·Σq·q_x − 16·d·(d_x·Σq_x); Q5_1 d·d_x·Σq·q_x + m·(d_x·Σq_x).
    @inline(__always)
    static func fiveBitBlock(_ type: TensorType, _ block: UnsafeRawPointer, _ x: UnsafePointer<Int8>,
                             dx: Float, sx: Float) -> Float {
        let d = halfBitsToFloat(block.loadUnaligned(as: UInt16.self))
        if type == .q5_0 {
            return d * dx * Float(FiveBitQuants.portableDot(block, qhOffset: 2, x)) - 16 * d * sx
        }
        let m = halfBitsToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        return d * dx * Float(FiveBitQuants.portableDot(block, qhOffset: 4, x)) + m * sx
    }
}

#if canImport(COpenBLAS.AVX512VNNI)

/// A block's 32 values as unsigned bytes (elements 0–15, 16–31): the nibbles, plus 16 where the
/// element's bit in `qh` is set. `qs` follows `qh` directly.
@inline(__always) func fiveBitValues128(_ w: UnsafeRawPointer, qhOffset: Int) -> (__m128i, __m128i) {
    let qh = w.loadUnaligned(fromByteOffset: qhOffset, as: UInt32.self)
    let raw = load128(w, qhOffset + 4), mask = _mm_set1_epi8(0x0F), sixteen = _mm_set1_epi8(16)
    let low = _mm_and_si128(raw, mask), high = _mm_and_si128(_mm_srli_epi16(raw, 4), mask)
    return (_mm_mask_add_epi8(low, __mmask16(truncatingIfNeeded: qh), low, sixteen),
            _mm_mask_add_epi8(high, __mmask16(truncatingIfNeeded: qh >> 16), high, sixteen))
}

/// The same 32 values in one 256-bit register, for `vpdpbusd`.
@inline(__always) func fiveBitValues256(_ w: UnsafeRawPointer, qhOffset: Int) -> __m256i {
    let q = unpackNibbles256(load128(w, qhOffset + 4))
    return _mm256_mask_add_epi8(q, w.loadUnaligned(fromByteOffset: qhOffset, as: UInt32.self), q, _mm256_set1_epi8(16))
}

/// `fiveBitValues256` of two rows' blocks in one register (row `a` low, `b` high), for the one-row
/// kernel's paired passes: one nibble unpack and one masked add for both.
@inline(__always) func fiveBitValuesTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, qhOffset: Int) -> __m512i {
    let q = twoRowNibbles(a, b, offset: qhOffset + 4)
    let high = UInt64(a.loadUnaligned(fromByteOffset: qhOffset, as: UInt32.self))
        | UInt64(b.loadUnaligned(fromByteOffset: qhOffset, as: UInt32.self)) << 32
    return _mm512_mask_add_epi8(q, high, q, _mm512_set1_epi8(16))
}

// MARK: - f32 path

/// One block's 32 weights as f32, fma(q, d, offset), shared by Q5_0 and Q5_1 (elements 0–15, 16–31).
@inline(__always) func fiveBitWeights(_ w: UnsafeRawPointer, qhOffset: Int, _ d: __m512, _ offset: __m512) -> (__m512, __m512) {
    let (q0, q1) = fiveBitValues128(w, qhOffset: qhOffset)
    return (_mm512_fmadd_ps(bytesToFloats(q0), d, offset), _mm512_fmadd_ps(bytesToFloats(q1), d, offset))
}

enum Q50Weights: AVX512F32Kernel {
    static var stride: Int { 22 }
    /// fma(q, d, −16d) rounds (q − 16)·d once, like the scalar dequantiser (up to the sign of a zero).
    @inline(__always) static func weights(_ w: UnsafeRawPointer) -> (__m512, __m512) {
        let dh = halfBitsToFloat(w.loadUnaligned(as: UInt16.self))
        return fiveBitWeights(w, qhOffset: 2, _mm512_set1_ps(dh), _mm512_set1_ps(-16 * dh))
    }
    static func element(_ row: UnsafeRawPointer, _ i: Int) -> Float { 0 }
}

enum Q51Weights: AVX512F32Kernel {
    static var stride: Int { 24 }
    /// fma(q, d, m) rounds once where the reference rounds twice (~1 ulp of a weight), as Q4_1.
    @inline(__always) static func weights(_ w: UnsafeRawPointer) -> (__m512, __m512) {
        let d = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(as: UInt16.self)))
        let m = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        return fiveBitWeights(w, qhOffset: 4, d, m)
    }
    static func element(_ row: UnsafeRawPointer, _ i: Int) -> Float { 0 }
}

// MARK: - int8 path

/// One block's int8 step shared by Q5_0 and Q5_1: `dw` = (d_w, ·) or (d_w, m_w), times the
/// activation pair (d_x, d_x·Σq_x); lane 0 scales the integer dot, lane 1 accumulates in `macc`.
@inline(__always) func fiveBitInt8Step(_ w: UnsafeRawPointer, qhOffset: Int, _ dw: __m128, _ xq: __m256i, _ dxs: __m128,
                                       _ acc: inout __m256, _ macc: inout __m128) {
    let isum = dpbusd256(fiveBitValues256(w, qhOffset: qhOffset), xq)
    let prod = _mm_mul_ps(dw, dxs)
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(prod), acc)
    macc = _mm_add_ps(macc, prod)
}

/// Q5_0 · Q8: Σ(q−16)·x = Σq·x − 16·Σx, with d_w·d_x·Σq_x accumulated in `macc` lane 1 (as Q4_0).
enum Q50Int8: AVX512Int8Kernel {
    static var stride: Int { 22 }
    @inline(__always) static func unpackTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> __m512i {
        fiveBitValuesTwoRows(a, b, qhOffset: 2)
    }
    @inline(__always) static func step(_ w: UnsafeRawPointer, _ xq: __m256i, _ dxs: __m128, _ acc: inout __m256, _ macc: inout __m128) {
        let d = _mm_cvtph_ps(_mm_set1_epi16(Int16(bitPattern: w.loadUnaligned(as: UInt16.self))))
        fiveBitInt8Step(w, qhOffset: 2, d, xq, dxs, &acc, &macc)
    }
    /// For the batched kernels: the values, d_w, and d_w again as the zero-point factor.
    @inline(__always) static func unpack(_ w: UnsafeRawPointer) -> (u: __m256i, d: Float, m: Float) {
        let d = halfBitsToFloat(w.loadUnaligned(as: UInt16.self))
        return (fiveBitValues256(w, qhOffset: 2), d, d)
    }
    @inline(__always) static func combine(_ dot: Float, _ minSum: Float) -> Float { dot - 16 * minSum }
    @inline(__always) static func combine16(_ dot: __m512, _ minSum: __m512) -> __m512 {
        _mm512_sub_ps(dot, _mm512_mul_ps(_mm512_set1_ps(16), minSum))
    }
}

/// Q5_1 · Q8: d_w·d_x·Σq·q_x + m_w·(d_x·Σq_x), (d_w, m_w) converted together as in Q4_1.
enum Q51Int8: AVX512Int8Kernel {
    static var stride: Int { 24 }
    @inline(__always) static func unpackTwoRows(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> __m512i {
        fiveBitValuesTwoRows(a, b, qhOffset: 4)
    }
    @inline(__always) static func step(_ w: UnsafeRawPointer, _ xq: __m256i, _ dxs: __m128, _ acc: inout __m256, _ macc: inout __m128) {
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(Int32(bitPattern: w.loadUnaligned(as: UInt32.self))))
        fiveBitInt8Step(w, qhOffset: 4, dm, xq, dxs, &acc, &macc)
    }
    /// For the batched kernels: the values, d_w and the min m_w.
    @inline(__always) static func unpack(_ w: UnsafeRawPointer) -> (u: __m256i, d: Float, m: Float) {
        (fiveBitValues256(w, qhOffset: 4), halfBitsToFloat(w.loadUnaligned(as: UInt16.self)),
         halfBitsToFloat(w.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
    }
    @inline(__always) static func combine(_ dot: Float, _ minSum: Float) -> Float { dot + minSum }
    @inline(__always) static func combine16(_ dot: __m512, _ minSum: __m512) -> __m512 { _mm512_add_ps(dot, minSum) }
    static var hasOwnMinimum: Bool { true }
}
#endif
