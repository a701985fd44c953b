#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// A weight matrix quantised to int8 with one scale per output row, CTranslate2's int8 format:
/// `q[n, k] = round(w[n, k] / s[n])`, `s[n] = max_k |w[n, k]| / 127`. Made once at load time for
/// the GEMMs of an encoder over hundreds of tokens (`RowScaledInt8GEMM`), where Q8_0's per-32-value
/// scales would cost a conversion and an FMA per block and output.
///
/// Packed for `vpdpbusd`: blocks of 16 output rows; within a block, for every 4 columns, 64 bytes
/// holding the 4 values of each of the 16 rows (`((block · columns/4 + k/4) · 16 + n%16) · 4 + k%4`).
public final class RowScaledInt8Matrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    /// (rows): `s[n]`
    public let scales: [Float]
    /// (rows): `Σ_k q[n, k]`, which the kernel needs because it feeds activations as unsigned bytes
    /// `q_x + 128` (see `RowScaledInt8GEMM`).
    public let rowSums: [Int32]
    let packed: UnsafeMutableRawPointer

    /// Whether a matrix of this shape can be packed (rows in blocks of 16, columns in groups of 4).
    public static func supports(rows: Int, columns: Int) -> Bool { rows > 0 && rows % 16 == 0 && columns > 0 && columns % 4 == 0 }

    /// Quantises `w` (any type, dequantised row by row); nil when `supports` is false.
    public init?(_ w: WeightMatrix) {
        guard Self.supports(rows: w.rows, columns: w.columns) else { return nil }
        rows = w.rows
        columns = w.columns
        packed = .allocate(byteCount: w.rows * w.columns, alignment: 64)
        var scales = [Float](repeating: 0, count: w.rows), sums = [Int32](repeating: 0, count: w.rows)
        let row = UnsafeMutablePointer<Float>.allocate(capacity: w.columns)
        defer { row.deallocate() }
        let groups = w.columns / 4
        for n in 0..<w.rows {
            ReferenceDequantizer.dequantize(w.type, w.row(n), count: w.columns, into: row)
            var amax: Float = 0
            for k in 0..<w.columns { amax = max(amax, abs(row[k])) }
            let scale = amax / 127, inverse: Float = scale != 0 ? 1 / scale : 0
            var sum: Int32 = 0
            for k in 0..<w.columns {
                let q = Int8(max(-127, min(127, (row[k] * inverse).rounded(.toNearestOrEven))))
                sum += Int32(q)
                let offset = (((n / 16) * groups + k / 4) * 16 + n % 16) * 4 + k % 4
                packed.storeBytes(of: q, toByteOffset: offset, as: Int8.self)
            }
            scales[n] = scale
            sums[n] = sum
        }
        self.scales = scales
        rowSums = sums
    }

    deinit { packed.deallocate() }

    /// The quantised value `q[n, k]`.
    public func value(row n: Int, column k: Int) -> Int8 {
        packed.load(fromByteOffset: (((n / 16) * (columns / 4) + k / 4) * 16 + n % 16) * 4 + k % 4, as: Int8.self)
    }
}

/// Activation rows quantised to int8 with one scale per row, as CTranslate2 quantises inputs of its
/// int8 GEMMs: `s[t] = max_k |x[t, k]| / 127`, `q = round(x / s)`, stored as `q + 128` (unsigned, the
/// operand `vpdpbusd` multiplies as unsigned bytes).
public struct RowScaledActivations {
    public let rows: Int
    public let columns: Int
    public private(set) var scales: [Float]
    public private(set) var bytes: [UInt8]

    public init(_ x: UnsafePointer<Float>, rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
        scales = [Float](repeating: 0, count: rows)
        bytes = [UInt8](repeating: 128, count: rows * columns)
        bytes.withUnsafeMutableBufferPointer { out in
            for t in 0..<rows {
                let row = UnsafeRawPointer(x + t * columns)
                // 16 lanes at a time: this runs over every input of every encoder product.
                var lanes = SIMD16<Float>(repeating: 0)
                var k = 0
                while k + 16 <= columns {
                    let v = row.loadUnaligned(fromByteOffset: 4 * k, as: SIMD16<Float>.self)
                    let magnitude = unsafeBitCast(unsafeBitCast(v, to: SIMD16<UInt32>.self) & 0x7FFF_FFFF, to: SIMD16<Float>.self)
                    lanes.replace(with: magnitude, where: magnitude .> lanes)
                    k += 16
                }
                var amax = lanes.max()
                while k < columns { amax = max(amax, abs(x[t * columns + k])); k += 1 }
                let scale = amax / 127, inverse: Float = scale != 0 ? 1 / scale : 0
                scales[t] = scale
                let destination = UnsafeMutableRawPointer(out.baseAddress! + t * columns)
                k = 0
                #if canImport(COpenBLAS.AVX512VNNI)
                // Round to nearest even (the default rounding mode), saturate to int8, flip the sign
                // bit (q + 128): the same bytes as the loop below, without its per-lane conversions.
                let factor = _mm512_set1_ps(inverse), flip = _mm_set1_epi8(-128)
                while k + 16 <= columns {
                    let v = _mm512_mul_ps(row.loadUnaligned(fromByteOffset: 4 * k, as: __m512.self), factor)
                    let q = _mm_xor_si128(_mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)), flip)
                    destination.storeBytes(of: q, toByteOffset: k, as: __m128i.self)
                    k += 16
                }
                #endif
                while k + 16 <= columns {
                    let v = row.loadUnaligned(fromByteOffset: 4 * k, as: SIMD16<Float>.self) * inverse
                    let q = SIMD16<Int32>(v, rounding: .toNearestOrEven).clamped(lowerBound: .init(repeating: -127),
                                                                                upperBound: .init(repeating: 127))
                    destination.storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: q &+ 128), toByteOffset: k, as: SIMD16<UInt8>.self)
                    k += 16
                }
                while k < columns {
                    let q = max(-127, min(127, Int((x[t * columns + k] * inverse).rounded(.toNearestOrEven))))
                    out[t * columns + k] = UInt8(q + 128)
                    k += 1
                }
            }
        }
    }
}

/// `y[t, n] = s_x[t]·s_w[n]·Σ_k q_x[t, k]·q_w[n, k]` (no bias) for many tokens: an int8 GEMM with
/// AVX-512 VNNI (`vpdpbusd`: 64 byte products per instruction, 4× an f32 FMA's 16). The sums are
/// exact int32 (|Σ| ≤ 255·127·columns < 2³¹ up to 66,000 columns), so the split over threads and
/// tiles never changes a result: every output is bitwise `ReferenceRowScaledInt8GEMM`'s.
///
/// Activations enter as `q_x + 128`; `128·Σ_k q_w[n, k]` is subtracted again before scaling.
public enum RowScaledInt8GEMM {
    /// Tokens per parallel work item: their quantised rows (≤ 96 × 2048 bytes) stay in L2 while every
    /// weight tile passes over them.
    static let chunkTokens = 96

    /// Whether the VNNI kernel runs here (else `multiply` falls back to the plain twin, far slower than
    /// an f32 sgemm: callers should keep their float path then).
    public static var hasFastKernel: Bool {
        #if canImport(COpenBLAS.AVX512VNNI)
        return !MatVec.usePortableKernels
        #else
        return false
        #endif
    }

    /// - Parameters:
    ///   - x: (tokens, w.columns) row-major
    ///   - y: (tokens, ldy) row-major; columns `0..<w.rows` are written
    public static func multiply(_ w: RowScaledInt8Matrix, _ x: UnsafePointer<Float>, tokens: Int,
                                into y: UnsafeMutablePointer<Float>, ldy: Int, pool: ThreadPool) {
        guard tokens > 0 else { return }
        let chunks = (tokens + chunkTokens - 1) / chunkTokens
        let portable = MatVec.usePortableKernels
        pool.parallelFor(chunks) { c in
            let t0 = c * chunkTokens, count = min(chunkTokens, tokens - t0)
            let xq = RowScaledActivations(x + t0 * w.columns, rows: count, columns: w.columns)
            #if canImport(COpenBLAS.AVX512VNNI)
            if !portable {
                multiplyAVX512(w, xq, into: y + t0 * ldy, ldy: ldy)
                return
            }
            #endif
            ReferenceRowScaledInt8GEMM.multiply(w, xq, into: y + t0 * ldy, ldy: ldy)
        }
    }

    #if canImport(COpenBLAS.AVX512VNNI)
    /// Tiles of 6 tokens × 64 outputs (24 accumulators, 4 weight loads and 6 broadcasts per 4
    /// columns), remainders in smaller tiles.
    static func multiplyAVX512(_ w: RowScaledInt8Matrix, _ xq: RowScaledActivations, into y: UnsafeMutablePointer<Float>, ldy: Int) {
        let blocks = w.rows / 16
        xq.bytes.withUnsafeBufferPointer { xb in
            let x = UnsafeRawPointer(xb.baseAddress!)
            var b0 = 0
            while b0 < blocks {
                let wide = blocks - b0 >= 4
                var t0 = 0
                while t0 < xq.rows {
                    let left = xq.rows - t0
                    switch (wide, min(left, 6)) {
                    case (true, 6): tile6x4(w, x, xq, t0, b0, y, ldy)
                    case (true, 5): tile(5, 4, w, x, xq, t0, b0, y, ldy)
                    case (true, 4): tile(4, 4, w, x, xq, t0, b0, y, ldy)
                    case (true, 3): tile(3, 4, w, x, xq, t0, b0, y, ldy)
                    case (true, 2): tile(2, 4, w, x, xq, t0, b0, y, ldy)
                    case (true, _): tile(1, 4, w, x, xq, t0, b0, y, ldy)
                    case (false, 6): tile(6, 1, w, x, xq, t0, b0, y, ldy)
                    case (false, 5): tile(5, 1, w, x, xq, t0, b0, y, ldy)
                    case (false, 4): tile(4, 1, w, x, xq, t0, b0, y, ldy)
                    case (false, 3): tile(3, 1, w, x, xq, t0, b0, y, ldy)
                    case (false, 2): tile(2, 1, w, x, xq, t0, b0, y, ldy)
                    default: tile(1, 1, w, x, xq, t0, b0, y, ldy)
                    }
                    t0 += min(left, 6)
                }
                b0 += wide ? 4 : 1
            }
        }
    }

    /// The full 6 tokens × 64 outputs tile with its 24 accumulators as named locals, which the
    /// compiler keeps in registers (the generic `tile` spilled them to the stack every step and ran at
    /// a third of this speed).
    @inline(__always)
    static func tile6x4(_ w: RowScaledInt8Matrix, _ x: UnsafeRawPointer, _ xq: RowScaledActivations,
                        _ t0: Int, _ b0: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let groups = w.columns / 4, n = w.columns
        let weights = UnsafeRawPointer(w.packed) + b0 * groups * 64
        let z = _mm512_setzero_si512()
        var a00 = z
        var a01 = z
        var a02 = z
        var a03 = z
        var a10 = z
        var a11 = z
        var a12 = z
        var a13 = z
        var a20 = z
        var a21 = z
        var a22 = z
        var a23 = z
        var a30 = z
        var a31 = z
        var a32 = z
        var a33 = z
        var a40 = z
        var a41 = z
        var a42 = z
        var a43 = z
        var a50 = z
        var a51 = z
        var a52 = z
        var a53 = z
        for g in 0..<groups {
            let w0 = weights.load(fromByteOffset: (0 * groups + g) * 64, as: __m512i.self)
            let w1 = weights.load(fromByteOffset: (1 * groups + g) * 64, as: __m512i.self)
            let w2 = weights.load(fromByteOffset: (2 * groups + g) * 64, as: __m512i.self)
            let w3 = weights.load(fromByteOffset: (3 * groups + g) * 64, as: __m512i.self)
            let x0 = _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: (t0 + 0) * n + 4 * g, as: Int32.self))
            a00 = _mm512_mask_dpbusd_epi32(a00, 0xFFFF, x0, w0)
            a01 = _mm512_mask_dpbusd_epi32(a01, 0xFFFF, x0, w1)
            a02 = _mm512_mask_dpbusd_epi32(a02, 0xFFFF, x0, w2)
            a03 = _mm512_mask_dpbusd_epi32(a03, 0xFFFF, x0, w3)
            let x1 = _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: (t0 + 1) * n + 4 * g, as: Int32.self))
            a10 = _mm512_mask_dpbusd_epi32(a10, 0xFFFF, x1, w0)
            a11 = _mm512_mask_dpbusd_epi32(a11, 0xFFFF, x1, w1)
            a12 = _mm512_mask_dpbusd_epi32(a12, 0xFFFF, x1, w2)
            a13 = _mm512_mask_dpbusd_epi32(a13, 0xFFFF, x1, w3)
            let x2 = _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: (t0 + 2) * n + 4 * g, as: Int32.self))
            a20 = _mm512_mask_dpbusd_epi32(a20, 0xFFFF, x2, w0)
            a21 = _mm512_mask_dpbusd_epi32(a21, 0xFFFF, x2, w1)
            a22 = _mm512_mask_dpbusd_epi32(a22, 0xFFFF, x2, w2)
            a23 = _mm512_mask_dpbusd_epi32(a23, 0xFFFF, x2, w3)
            let x3 = _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: (t0 + 3) * n + 4 * g, as: Int32.self))
            a30 = _mm512_mask_dpbusd_epi32(a30, 0xFFFF, x3, w0)
            a31 = _mm512_mask_dpbusd_epi32(a31, 0xFFFF, x3, w1)
            a32 = _mm512_mask_dpbusd_epi32(a32, 0xFFFF, x3, w2)
            a33 = _mm512_mask_dpbusd_epi32(a33, 0xFFFF, x3, w3)
            let x4 = _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: (t0 + 4) * n + 4 * g, as: Int32.self))
            a40 = _mm512_mask_dpbusd_epi32(a40, 0xFFFF, x4, w0)
            a41 = _mm512_mask_dpbusd_epi32(a41, 0xFFFF, x4, w1)
            a42 = _mm512_mask_dpbusd_epi32(a42, 0xFFFF, x4, w2)
            a43 = _mm512_mask_dpbusd_epi32(a43, 0xFFFF, x4, w3)
            let x5 = _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: (t0 + 5) * n + 4 * g, as: Int32.self))
            a50 = _mm512_mask_dpbusd_epi32(a50, 0xFFFF, x5, w0)
            a51 = _mm512_mask_dpbusd_epi32(a51, 0xFFFF, x5, w1)
            a52 = _mm512_mask_dpbusd_epi32(a52, 0xFFFF, x5, w2)
            a53 = _mm512_mask_dpbusd_epi32(a53, 0xFFFF, x5, w3)
        }
        let sums: [(__m512i, __m512i, __m512i, __m512i)] = [(a00, a01, a02, a03), (a10, a11, a12, a13), (a20, a21, a22, a23), (a30, a31, a32, a33), (a40, a41, a42, a43), (a50, a51, a52, a53)]
        finish(w, xq, t0, b0, y, ldy, sums)
    }

    /// Subtracts `128·rowSum`, converts and scales the accumulators of a `sums.count` × 4-block tile.
    @inline(__always)
    static func finish(_ w: RowScaledInt8Matrix, _ xq: RowScaledActivations, _ t0: Int, _ b0: Int,
                       _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ sums: [(__m512i, __m512i, __m512i, __m512i)]) {
        w.scales.withUnsafeBufferPointer { scales in
            w.rowSums.withUnsafeBufferPointer { rowSums in
                for (t, row) in sums.enumerated() {
                    for b in 0..<4 {
                        let first = (b0 + b) * 16
                        let ws = UnsafeRawPointer(scales.baseAddress! + first).loadUnaligned(as: __m512.self)
                        let offset = _mm512_slli_epi32(UnsafeRawPointer(rowSums.baseAddress! + first).loadUnaligned(as: __m512i.self), 7)
                        let acc = b == 0 ? row.0 : b == 1 ? row.1 : b == 2 ? row.2 : row.3
                        let scale = _mm512_mul_ps(_mm512_set1_ps(xq.scales[t0 + t]), ws)
                        UnsafeMutableRawPointer(y + (t0 + t) * ldy + first)
                            .storeBytes(of: _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, offset)), scale), as: __m512.self)
                    }
                }
            }
        }
    }

    /// `T` tokens from `t0` × `B` blocks of 16 outputs from block `b0`, over all columns.
    @inline(__always)
    static func tile(_ T: Int, _ B: Int, _ w: RowScaledInt8Matrix, _ x: UnsafeRawPointer, _ xq: RowScaledActivations,
                     _ t0: Int, _ b0: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let groups = w.columns / 4, n = w.columns
        let weights = UnsafeRawPointer(w.packed) + b0 * groups * 64
        var acc = (zeros512i(), zeros512i(), zeros512i(), zeros512i(), zeros512i(), zeros512i(),
                   zeros512i(), zeros512i(), zeros512i(), zeros512i(), zeros512i(), zeros512i(),
                   zeros512i(), zeros512i(), zeros512i(), zeros512i(), zeros512i(), zeros512i(),
                   zeros512i(), zeros512i(), zeros512i(), zeros512i(), zeros512i(), zeros512i())
        withUnsafeMutableBytes(of: &acc) { a in
            for g in 0..<groups {
                var wv = (zeros512i(), zeros512i(), zeros512i(), zeros512i())
                withUnsafeMutableBytes(of: &wv) { wb in
                    for b in 0..<B {
                        wb.storeBytes(of: weights.load(fromByteOffset: (b * groups + g) * 64, as: __m512i.self),
                                      toByteOffset: 64 * b, as: __m512i.self)
                    }
                    for t in 0..<T {
                        let xv = _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: (t0 + t) * n + 4 * g, as: Int32.self))
                        for b in 0..<B {
                            let o = 64 * (t * 4 + b)
                            a.storeBytes(of: _mm512_mask_dpbusd_epi32(a.load(fromByteOffset: o, as: __m512i.self), 0xFFFF, xv,
                                                                      wb.load(fromByteOffset: 64 * b, as: __m512i.self)),
                                         toByteOffset: o, as: __m512i.self)
                        }
                    }
                }
            }
            w.scales.withUnsafeBufferPointer { scales in
                w.rowSums.withUnsafeBufferPointer { sums in
                    for b in 0..<B {
                        let first = (b0 + b) * 16
                        let ws = UnsafeRawPointer(scales.baseAddress! + first).loadUnaligned(as: __m512.self)
                        let offset = _mm512_slli_epi32(UnsafeRawPointer(sums.baseAddress! + first).loadUnaligned(as: __m512i.self), 7)
                        for t in 0..<T {
                            let total = _mm512_sub_epi32(a.load(fromByteOffset: 64 * (t * 4 + b), as: __m512i.self), offset)
                            let scale = _mm512_mul_ps(_mm512_set1_ps(xq.scales[t0 + t]), ws)
                            UnsafeMutableRawPointer(y + (t0 + t) * ldy + first)
                                .storeBytes(of: _mm512_mul_ps(_mm512_cvtepi32_ps(total), scale), as: __m512.self)
                        }
                    }
                }
            }
        }
    }
    #endif
}

#if canImport(COpenBLAS.AVX512VNNI)
@inline(__always) func zeros512i() -> __m512i { _mm512_setzero_si512() }
#endif

/// The plain twin of `RowScaledInt8GEMM`: the same int32 sums and the same final rounding
/// (`Float(Σ − 128·rowSum) · (s_x·s_w)`), so the fast kernel must match it bitwise.
public enum ReferenceRowScaledInt8GEMM {
    public static func multiply(_ w: RowScaledInt8Matrix, _ xq: RowScaledActivations, into y: UnsafeMutablePointer<Float>, ldy: Int) {
        for t in 0..<xq.rows {
            for n in 0..<w.rows {
                var sum: Int32 = 0
                for k in 0..<w.columns { sum += Int32(xq.bytes[t * w.columns + k]) * Int32(w.value(row: n, column: k)) }
                y[t * ldy + n] = Float(sum - 128 * w.rowSums[n]) * (xq.scales[t] * w.scales[n])
            }
        }
    }
}
