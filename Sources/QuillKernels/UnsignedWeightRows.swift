#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// Quantised weight rows rewritten as unsigned bytes with one scale and one offset per group:
/// `w[k] = scale[g]·q[k] + offset[g]`, `q[k] ∈ [0, 255]`, `g = k / groupSize`.
///
/// Every quantised type fits this form with its own integers unchanged: Q4_0's nibbles with offset
/// −8d, Q5_0's 5-bit values with −16d, Q8_0's bytes + 128 with −128d, Q4_1/Q5_1's with their min,
/// Q4_K/Q5_K's per-32 sub-block scale and −dmin·m, Q6_K's 6-bit values with −32·scale per 16. The
/// unsigned values are what `vpdpbusd` multiplies as its unsigned operand, and the offsets fold in
/// through the activations' block sums (`Σ_k w·x = scale·Σ q·x + offset·Σ x`), so `BlockInt8GEMM`
/// needs no per-row integer correction and no repacking across rows.
public enum UnsignedWeightRows {
    /// Whether `type` can be unpacked (every quantised type).
    public static func supports(_ type: TensorType) -> Bool { !type.isFloat }

    /// Elements sharing one scale and offset: 16 for Q6_K (its sub-block), 32 otherwise.
    public static func groupSize(_ type: TensorType) -> Int { type == .q6_K ? 16 : 32 }

    /// Unpacks one row of `columns` elements (whole blocks of `type`).
    /// - Parameters:
    ///   - q: (columns) unsigned values
    ///   - scales: `scale[g]` at `scales[g · stride]`, g < columns / groupSize
    ///   - offsets: `offset[g]` at `offsets[g · stride]`
    ///   - stride: distance between consecutive groups' scales (a panel of rows interleaves them)
    ///   - portable: the scalar code (the reference) instead of the AVX-512 one; both give the same bytes and floats.
    public static func unpack(_ type: TensorType, _ row: UnsafeRawPointer, columns: Int, q: UnsafeMutablePointer<UInt8>,
                              scales: UnsafeMutablePointer<Float>, offsets: UnsafeMutablePointer<Float>, stride: Int = 1,
                              portable: Bool) {
        precondition(supports(type) && columns % type.blockSize == 0, "unpack needs a quantised row of whole blocks")
        unpackScales(type, row, columns: columns, scales: scales, offsets: offsets, stride: stride)
        #if canImport(COpenBLAS.AVX512VNNI)
        if !portable {
            unpackValuesAVX512(type, row, columns: columns, q: q)
            return
        }
        #endif
        unpackValuesPortable(type, row, columns: columns, q: q)
    }

    /// The integer that stands for 0 in the types whose offset is a multiple of their scale
    /// (`offset = zeroPoint·d`): −8 for Q4_0, −16 for Q5_0, −128 for Q8_0 (after its +128).
    @inline(__always)
    static func zeroPoint(_ type: TensorType) -> Float { type == .q8_0 ? -128 : type == .q4_0 ? -8 : -16 }

    /// The per-group scale and offset (scalar in both variants: one pair per 16 or 32 values).
    static func unpackScales(_ type: TensorType, _ row: UnsafeRawPointer, columns: Int,
                             scales: UnsafeMutablePointer<Float>, offsets: UnsafeMutablePointer<Float>, stride s: Int) {
        let bytes = type.bytesPerBlock, blocks = columns / type.blockSize
        func half(_ b: Int, _ offset: Int) -> Float { halfBitsToFloat(row.loadUnaligned(fromByteOffset: b * bytes + offset, as: UInt16.self)) }
        switch type {
        case .q8_0, .q4_0, .q5_0:
            let zero = zeroPoint(type)
            for b in 0..<blocks {
                let d = half(b, 0)
                scales[b * s] = d
                offsets[b * s] = zero * d
            }
        case .q4_1, .q5_1:
            for b in 0..<blocks {
                scales[b * s] = half(b, 0)
                offsets[b * s] = half(b, 2)
            }
        case .q4_K, .q5_K:
            for b in 0..<blocks {
                let d = half(b, 0), dmin = half(b, 2)
                for j in 0..<8 {
                    let (sc, m) = ReferenceDequantizer.q4KScaleMin(row + b * bytes + 4, j)
                    scales[(8 * b + j) * s] = d * Float(sc)
                    offsets[(8 * b + j) * s] = -(dmin * Float(m))
                }
            }
        case .q6_K:
            for b in 0..<blocks {
                let d = half(b, 208)
                for j in 0..<16 {
                    let scale = d * Float(row.load(fromByteOffset: b * bytes + 192 + j, as: Int8.self))
                    scales[(16 * b + j) * s] = scale
                    offsets[(16 * b + j) * s] = -32 * scale
                }
            }
        case .f32, .f16, .bf16: preconditionFailure("not a quantised type")
        }
    }

    /// The reference: every value from the block layouts in `ReferenceDequantizer`, one at a time.
    static func unpackValuesPortable(_ type: TensorType, _ row: UnsafeRawPointer, columns: Int, q: UnsafeMutablePointer<UInt8>) {
        let stride = type.bytesPerBlock
        for b in 0..<columns / type.blockSize {
            let block = row + b * stride
            let out = q + b * type.blockSize
            switch type {
            case .q8_0:
                for j in 0..<32 { out[j] = UInt8(Int(block.load(fromByteOffset: 2 + j, as: Int8.self)) + 128) }
            case .q4_0, .q4_1:
                let start = type == .q4_0 ? 2 : 4
                for j in 0..<16 {
                    let byte = block.load(fromByteOffset: start + j, as: UInt8.self)
                    out[j] = byte & 0x0F
                    out[j + 16] = byte >> 4
                }
            case .q5_0, .q5_1:
                let start = type == .q5_0 ? 2 : 4
                let qh = block.loadUnaligned(fromByteOffset: start, as: UInt32.self).littleEndian
                for j in 0..<16 {
                    let byte = block.load(fromByteOffset: start + 4 + j, as: UInt8.self)
                    out[j] = (byte & 0x0F) | UInt8((qh >> j) & 1) << 4
                    out[j + 16] = (byte >> 4) | UInt8((qh >> (j + 16)) & 1) << 4
                }
            case .q4_K, .q5_K:
                let nibbles = block + (type == .q5_K ? 48 : 16), qh = block + 16
                for chunk in 0..<4 {
                    for l in 0..<32 {
                        let byte = nibbles.load(fromByteOffset: 32 * chunk + l, as: UInt8.self)
                        let high = type == .q5_K ? qh.load(fromByteOffset: l, as: UInt8.self) : 0
                        out[64 * chunk + l] = (byte & 0x0F) | ((high >> (2 * chunk)) & 1) << 4
                        out[64 * chunk + 32 + l] = (byte >> 4) | ((high >> (2 * chunk + 1)) & 1) << 4
                    }
                }
            case .q6_K:
                for half in 0..<2 {
                    let ql = block + 64 * half, qh = block + 128 + 32 * half
                    let y = out + 128 * half
                    for l in 0..<32 {
                        let lo = ql.load(fromByteOffset: l, as: UInt8.self), hi = ql.load(fromByteOffset: l + 32, as: UInt8.self)
                        let h = qh.load(fromByteOffset: l, as: UInt8.self)
                        y[l] = (lo & 0x0F) | (h & 3) << 4
                        y[l + 32] = (hi & 0x0F) | ((h >> 2) & 3) << 4
                        y[l + 64] = (lo >> 4) | ((h >> 4) & 3) << 4
                        y[l + 96] = (hi >> 4) | ((h >> 6) & 3) << 4
                    }
                }
            case .f32, .f16, .bf16: preconditionFailure("not a quantised type")
            }
        }
    }

    #if canImport(COpenBLAS.AVX512VNNI)
    /// 32 values per step: nibbles split with one shift and mask, fifth bits added under a byte mask.
    static func unpackValuesAVX512(_ type: TensorType, _ row: UnsafeRawPointer, columns: Int, q: UnsafeMutablePointer<UInt8>) {
        let stride = type.bytesPerBlock, out = UnsafeMutableRawPointer(q)
        let low4 = _mm256_set1_epi8(0x0F), sixteen = _mm256_set1_epi8(16)
        for b in 0..<columns / type.blockSize {
            let block = row + b * stride
            let o = out + b * type.blockSize
            switch type {
            case .q8_0:
                let v = block.loadUnaligned(fromByteOffset: 2, as: __m256i.self)
                o.storeBytes(of: _mm256_xor_si256(v, _mm256_set1_epi8(-128)), as: __m256i.self)
            case .q4_0:
                o.storeBytes(of: unpackNibbles256(load128(block, 2)), as: __m256i.self)
            case .q4_1:
                o.storeBytes(of: unpackNibbles256(load128(block, 4)), as: __m256i.self)
            case .q5_0:
                o.storeBytes(of: fiveBitValues256(block, qhOffset: 2), as: __m256i.self)
            case .q5_1:
                o.storeBytes(of: fiveBitValues256(block, qhOffset: 4), as: __m256i.self)
            case .q4_K, .q5_K:
                let nibbles = block + (type == .q5_K ? 48 : 16)
                let qh = block.loadUnaligned(fromByteOffset: 16, as: __m256i.self)
                for chunk in 0..<4 {
                    let raw = nibbles.loadUnaligned(fromByteOffset: 32 * chunk, as: __m256i.self)
                    var lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4)
                    if type == .q5_K {
                        let loBits = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(Int8(truncatingIfNeeded: 1 << (2 * chunk))))
                        let hiBits = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(Int8(truncatingIfNeeded: 2 << (2 * chunk))))
                        lo = _mm256_mask_add_epi8(lo, loBits, lo, sixteen)
                        hi = _mm256_mask_add_epi8(hi, hiBits, hi, sixteen)
                    }
                    o.storeBytes(of: lo, toByteOffset: 64 * chunk, as: __m256i.self)
                    o.storeBytes(of: hi, toByteOffset: 64 * chunk + 32, as: __m256i.self)
                }
            case .q6_K:
                let bits = _mm256_set1_epi8(0x30)
                for half in 0..<2 {
                    let l0 = block.loadUnaligned(fromByteOffset: 64 * half, as: __m256i.self)
                    let l1 = block.loadUnaligned(fromByteOffset: 64 * half + 32, as: __m256i.self)
                    let h = block.loadUnaligned(fromByteOffset: 128 + 32 * half, as: __m256i.self)
                    let y = o + 128 * half
                    // Bits 4–5 of each value come from bit pairs 0–1, 2–3, 4–5, 6–7 of h.
                    y.storeBytes(of: _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_and_si256(_mm256_slli_epi16(h, 4), bits)),
                                 as: __m256i.self)
                    y.storeBytes(of: _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_and_si256(_mm256_slli_epi16(h, 2), bits)),
                                 toByteOffset: 32, as: __m256i.self)
                    y.storeBytes(of: _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_and_si256(h, bits)),
                                 toByteOffset: 64, as: __m256i.self)
                    y.storeBytes(of: _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                                     _mm256_and_si256(_mm256_srli_epi16(h, 2), bits)),
                                 toByteOffset: 96, as: __m256i.self)
                }
            case .f32, .f16, .bf16: preconditionFailure("not a quantised type")
            }
        }
    }
    #endif
}
