#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// A weight matrix quantised to int8 with one scale per output row, CTranslate2's int8 format:
/// `q[n, k] = round(w[n, k] / s[n])`, `s[n] = max_k |w[n, k]| / 127`. Made once at load time for
/// the GEMMs of an encoder over hundreds of tokens and for decoders stepping many rows at once
/// (`RowScaledInt8GEMM`), where Q8_0's per-32-value scales would cost a conversion and an FMA per
/// block and output.
///
/// Packed for `vpdpbusd`: blocks of 16 output rows (the last padded with zero rows); within a block,
/// for every 4 columns, 64 bytes holding the 4 values of each of the 16 rows
/// (`((block · columns/4 + k/4) · 16 + n%16) · 4 + k%4`).
public final class RowScaledInt8Matrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    /// Blocks of 16 rows, the last one padded.
    public var blocks: Int { (rows + 15) / 16 }
    /// (blocks·16): `s[n]`, 0 for padding rows
    public let scales: [Float]
    /// (blocks·16): `Σ_k q[n, k]`, which the kernel needs because it feeds activations as unsigned
    /// bytes `q_x + 128` (see `RowScaledInt8GEMM`).
    public let rowSums: [Int32]
    let packed: UnsafeMutableRawPointer

    /// Whether a matrix of this shape can be packed (columns in groups of 4; rows are padded).
    public static func supports(rows: Int, columns: Int) -> Bool { rows > 0 && columns > 0 && columns % 4 == 0 }

    /// Quantises `w` (any type, dequantised row by row); nil when `supports` is false.
    /// - Parameter done: called with each run of rows (256 at a time) once they are quantised, so that
    ///   a caller can drop their source pages while the rest is read.
    public init?(_ w: WeightMatrix, afterRows done: (Range<Int>) -> Void = { _ in }) {
        guard Self.supports(rows: w.rows, columns: w.columns) else { return nil }
        rows = w.rows
        columns = w.columns
        let padded = (w.rows + 15) / 16 * 16
        packed = .allocate(byteCount: padded * w.columns, alignment: 64)
        packed.initializeMemory(as: UInt8.self, repeating: 0, count: padded * w.columns)
        var scales = [Float](repeating: 0, count: padded), sums = [Int32](repeating: 0, count: padded)
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
            if (n + 1) % 256 == 0 || n + 1 == w.rows { done((n / 256 * 256)..<(n + 1)) }
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
    public static var hasFastKernel: Bool { MatVec.hasAVX512Kernels && !MatVec.usePortableKernels }

    /// - Parameters:
    ///   - x: (tokens, w.columns) row-major
    ///   - y: (tokens, ldy) row-major; columns `0..<w.rows` are written
    ///   - bias: (w.rows), added to every token's outputs while they are still in cache (after each run of
    ///     output blocks), with the one rounding a separate pass would give: a pass after the product
    ///     read Marian's 58,101 logits × 64 rows (15 MB) back from memory every step
    public static func multiply(_ w: RowScaledInt8Matrix, _ x: UnsafePointer<Float>, tokens: Int,
                                into y: UnsafeMutablePointer<Float>, ldy: Int, bias: UnsafePointer<Float>? = nil,
                                pool: ThreadPool) {
        guard tokens > 0 else { return }
        let chunks = (tokens + chunkTokens - 1) / chunkTokens
        let portable = MatVec.usePortableKernels
        #if canImport(COpenBLAS.AVX512VNNI)
        if !portable, chunks < pool.threadCount {
            // A few rows (decoding): quantised once, the outputs split over the threads in runs of
            // 64 (the sums are exact, so the split never changes a result).
            let xq = RowScaledActivations(x, rows: tokens, columns: w.columns)
            let parts = outputBlockParts(w.blocks, threads: pool.threadCount)
            pool.parallelFor(parts) { p in
                multiplyAVX512(w, xq, into: y, ldy: ldy, bias: bias, blocks: outputBlocks(part: p, of: parts, blocks: w.blocks))
            }
            return
        }
        #endif
        pool.parallelFor(chunks) { c in
            let t0 = c * chunkTokens, count = min(chunkTokens, tokens - t0)
            let xq = RowScaledActivations(x + t0 * w.columns, rows: count, columns: w.columns)
            #if canImport(COpenBLAS.AVX512VNNI)
            if !portable {
                multiplyAVX512(w, xq, into: y + t0 * ldy, ldy: ldy, bias: bias, blocks: 0..<w.blocks)
                return
            }
            #endif
            ReferenceRowScaledInt8GEMM.multiply(w, xq, into: y + t0 * ldy, ldy: ldy, bias: bias)
        }
    }

    #if canImport(COpenBLAS.AVX512VNNI)
    /// Tiles of 6 tokens × 64 outputs (24 accumulators, 4 weight loads and 6 broadcasts per 4 columns)
    /// over the output blocks `blocks`; a last token alone gets a one-token tile, and blocks past the
    /// last whole four go one at a time.
    static func multiplyAVX512(_ w: RowScaledInt8Matrix, _ xq: RowScaledActivations, into y: UnsafeMutablePointer<Float>, ldy: Int,
                               bias: UnsafePointer<Float>?, blocks: Range<Int>) {
        xq.bytes.withUnsafeBufferPointer { xb in
            let x = UnsafeRawPointer(xb.baseAddress!)
            var b0 = blocks.lowerBound
            while b0 < blocks.upperBound {
                let wide = blocks.upperBound - b0 >= 4
                var t0 = 0
                while t0 < xq.rows {
                    let left = xq.rows - t0
                    // Constant tile sizes, so that each call inlines to a loop over named registers;
                    // 2–6 tokens take the 6-token tile (missing rows repeat the last, computed and not
                    // stored), the only size of several tokens the compiler kept in registers.
                    // The first tile over these blocks reads their weights from memory; it also
                    // requests the next four blocks' (as many bytes, spread over its loop), which
                    // the hardware prefetcher alone brought in at 13 GB/s.
                    let next = t0 == 0 && blocks.upperBound - b0 > 4 ? UnsafeRawPointer(w.packed) + (b0 + 4) * w.columns * 16 : nil
                    switch (wide, min(left, 6)) {
                    case (true, 1): tile(1, 4, w, x, xq, t0, 1, b0, y, ldy, prefetching: next)
                    case (true, let rows): tile(6, 4, w, x, xq, t0, rows, b0, y, ldy, prefetching: next)
                    case (false, 1): tile(1, 1, w, x, xq, t0, 1, b0, y, ldy, prefetching: nil)
                    case (false, let rows): tile(6, 1, w, x, xq, t0, rows, b0, y, ldy, prefetching: nil)
                    }
                    t0 += min(left, 6)
                }
                if let bias {
                    let first = b0 * 16, count = min(w.rows, (b0 + (wide ? 4 : 1)) * 16) - first
                    for t in 0..<xq.rows { addInPlace(bias + first, into: y + t * ldy + first, count: count) }
                }
                b0 += wide ? 4 : 1
            }
        }
    }

    /// `rows` (≤ `T` ≤ 6) tokens from `t0` × `B` (≤ 4) blocks of 16 outputs from block `b0`, over all
    /// columns; rows past `rows` repeat the last one and are not stored. Its 24 accumulators are named
    /// locals and `T`, `B` constants at every call, so the unused ones fold away and the rest stay in
    /// registers (a tile over an accumulator array spilled them to the stack every step and ran at a
    /// third of the speed; constant T of 2–5 spilled too, hence the repeated rows).
    @inline(__always)
    static func tile(_ T: Int, _ B: Int, _ w: RowScaledInt8Matrix, _ x: UnsafeRawPointer, _ xq: RowScaledActivations,
                     _ t0: Int, _ rows: Int, _ b0: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int,
                     prefetching next: UnsafeRawPointer?) {
        let last = rows - 1
        let r1 = t0 + min(1, last), r2 = t0 + min(2, last), r3 = t0 + min(3, last), r4 = t0 + min(4, last), r5 = t0 + min(5, last)
        let groups = w.columns / 4, n = w.columns
        let weights = UnsafeRawPointer(w.packed) + b0 * groups * 64
        let z = _mm512_setzero_si512()
        var a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z
        var a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z
        var a40 = z, a41 = z, a42 = z, a43 = z, a50 = z, a51 = z, a52 = z, a53 = z
        for g in 0..<groups {
            let w0 = weights.load(fromByteOffset: g * 64, as: __m512i.self)
            let w1 = B > 1 ? weights.load(fromByteOffset: (groups + g) * 64, as: __m512i.self) : z
            let w2 = B > 2 ? weights.load(fromByteOffset: (2 * groups + g) * 64, as: __m512i.self) : z
            let w3 = B > 3 ? weights.load(fromByteOffset: (3 * groups + g) * 64, as: __m512i.self) : z
            if let next {
                // B blocks' worth of lines: B per step over the `groups` steps.
                for l in 0 ..< B { quill_prefetch(next + (B * g + l) * 64) }
            }
            let column = 4 * g
            step(B, &a00, &a01, &a02, &a03, x, (t0 + 0) * n + column, w0, w1, w2, w3)
            if T > 1 { step(B, &a10, &a11, &a12, &a13, x, r1 * n + column, w0, w1, w2, w3) }
            if T > 2 { step(B, &a20, &a21, &a22, &a23, x, r2 * n + column, w0, w1, w2, w3) }
            if T > 3 { step(B, &a30, &a31, &a32, &a33, x, r3 * n + column, w0, w1, w2, w3) }
            if T > 4 { step(B, &a40, &a41, &a42, &a43, x, r4 * n + column, w0, w1, w2, w3) }
            if T > 5 { step(B, &a50, &a51, &a52, &a53, x, r5 * n + column, w0, w1, w2, w3) }
        }
        finish(B, w, xq, t0, b0, a00, a01, a02, a03, y, ldy)
        if T > 1 && rows > 1 { finish(B, w, xq, t0 + 1, b0, a10, a11, a12, a13, y, ldy) }
        if T > 2 && rows > 2 { finish(B, w, xq, t0 + 2, b0, a20, a21, a22, a23, y, ldy) }
        if T > 3 && rows > 3 { finish(B, w, xq, t0 + 3, b0, a30, a31, a32, a33, y, ldy) }
        if T > 4 && rows > 4 { finish(B, w, xq, t0 + 4, b0, a40, a41, a42, a43, y, ldy) }
        if T > 5 && rows > 5 { finish(B, w, xq, t0 + 5, b0, a50, a51, a52, a53, y, ldy) }
    }

    /// One token's step over 4 columns: its 4 activation bytes times each block's weights.
    @inline(__always)
    static func step(_ B: Int, _ a0: inout __m512i, _ a1: inout __m512i, _ a2: inout __m512i, _ a3: inout __m512i,
                     _ x: UnsafeRawPointer, _ offset: Int, _ w0: __m512i, _ w1: __m512i, _ w2: __m512i, _ w3: __m512i) {
        let xv = _mm512_set1_epi32(x.loadUnaligned(fromByteOffset: offset, as: Int32.self))
        a0 = _mm512_mask_dpbusd_epi32(a0, 0xFFFF, xv, w0)
        if B > 1 { a1 = _mm512_mask_dpbusd_epi32(a1, 0xFFFF, xv, w1) }
        if B > 2 { a2 = _mm512_mask_dpbusd_epi32(a2, 0xFFFF, xv, w2) }
        if B > 3 { a3 = _mm512_mask_dpbusd_epi32(a3, 0xFFFF, xv, w3) }
    }

    /// Token `t`'s sums for blocks `b0 ..< b0 + B` through `finishBlock`.
    @inline(__always)
    static func finish(_ B: Int, _ w: RowScaledInt8Matrix, _ xq: RowScaledActivations, _ t: Int, _ b0: Int,
                       _ a0: __m512i, _ a1: __m512i, _ a2: __m512i, _ a3: __m512i, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        finishBlock(w, xq, t, b0, a0, y, ldy)
        if B > 1 { finishBlock(w, xq, t, b0 + 1, a1, y, ldy) }
        if B > 2 { finishBlock(w, xq, t, b0 + 2, a2, y, ldy) }
        if B > 3 { finishBlock(w, xq, t, b0 + 3, a3, y, ldy) }
    }

    /// Subtracts `128·rowSum` from token `t`'s sums for block `b`, converts, scales and stores them:
    /// all 16 outputs, or those before `w.rows` in a padded last block.
    @inline(__always)
    static func finishBlock(_ w: RowScaledInt8Matrix, _ xq: RowScaledActivations, _ t: Int, _ b: Int, _ acc: __m512i,
                            _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let first = b * 16
        let value = w.scales.withUnsafeBufferPointer { scales in
            w.rowSums.withUnsafeBufferPointer { rowSums in
                let ws = UnsafeRawPointer(scales.baseAddress! + first).loadUnaligned(as: __m512.self)
                let offset = _mm512_slli_epi32(UnsafeRawPointer(rowSums.baseAddress! + first).loadUnaligned(as: __m512i.self), 7)
                let scale = _mm512_mul_ps(_mm512_set1_ps(xq.scales[t]), ws)
                return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, offset)), scale)
            }
        }
        let out = y + t * ldy + first
        if first + 16 <= w.rows {
            UnsafeMutableRawPointer(out).storeBytes(of: value, as: __m512.self)
        } else {
            withUnsafeBytes(of: value) { out.update(from: $0.bindMemory(to: Float.self).baseAddress!, count: w.rows - first) }
        }
    }
    #endif
}

/// The plain twin of `RowScaledInt8GEMM`: the same int32 sums and the same final rounding
/// (`Float(Σ − 128·rowSum) · (s_x·s_w)`), so the fast kernel must match it bitwise.
public enum ReferenceRowScaledInt8GEMM {
    public static func multiply(_ w: RowScaledInt8Matrix, _ xq: RowScaledActivations, into y: UnsafeMutablePointer<Float>, ldy: Int,
                                bias: UnsafePointer<Float>? = nil) {
        for t in 0..<xq.rows {
            for n in 0..<w.rows {
                var sum: Int32 = 0
                for k in 0..<w.columns { sum += Int32(xq.bytes[t * w.columns + k]) * Int32(w.value(row: n, column: k)) }
                let product = Float(sum - 128 * w.rowSums[n]) * (xq.scales[t] * w.scales[n])
                y[t * ldy + n] = bias.map { product + $0[n] } ?? product
            }
        }
    }
}

/// How many parts the blocks of 16 outputs of the tiled GEMMs split into over `threads` (whole runs of
/// 4 blocks, the tiles' width; at most one part per run).
func outputBlockParts(_ blocks: Int, threads: Int) -> Int { min(threads, (blocks + 3) / 4) }

/// Part `p` of `parts` of `blocks` output blocks: consecutive runs of 4, as evenly as they divide.
func outputBlocks(part p: Int, of parts: Int, blocks: Int) -> Range<Int> {
    let runs = (blocks + 3) / 4
    return (p * runs / parts * 4)..<min(blocks, (p + 1) * runs / parts * 4)
}
