#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A weight matrix repacked once at load time for `PackedF32GEMM`: blocks of 16 output rows (the last
/// padded with zero rows), and within a block, for every column `k`, the 16 rows' values side by side
/// (`(block · columns + k) · 16 + n % 16`). One aligned load then gives 16 outputs' weights for one
/// input value, so a tile of tokens × outputs is a chain of broadcast FMAs with no horizontal sums
/// and no packing at multiply time (OpenBLAS packs every panel again on every call).
///
/// Values are f32, or f16 when the source is f16 and the caller keeps that (`keepingHalfPrecision`):
/// the same values at half the bytes, widened exactly as they are loaded — for decoders, whose few
/// rows per step are bound by reading the weights.
public final class PackedF32Matrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    /// Blocks of 16 rows, the last one padded.
    public var blocks: Int { (rows + 15) / 16 }
    /// Whether the values are stored as f16 (else f32).
    public let halfPrecision: Bool
    let packed: UnsafeMutableRawPointer

    /// Packs `w` (any type: dequantised row by row to f32, or f16 kept as it is); nil for an empty matrix.
    /// - Parameters:
    ///   - keepingHalfPrecision: store an f16 source's values as f16 (other types are widened anyway)
    ///   - done: called with each run of rows (256 at a time) once they are packed, so that a caller
    ///     can drop their source pages while the rest is read.
    public init?(_ w: WeightMatrix, keepingHalfPrecision: Bool = false, afterRows done: (Range<Int>) -> Void = { _ in }) {
        guard w.rows > 0, w.columns > 0 else { return nil }
        rows = w.rows
        columns = w.columns
        halfPrecision = keepingHalfPrecision && w.type == .f16
        let padded = (w.rows + 15) / 16 * 16, byteCount = (halfPrecision ? 2 : 4) * padded * w.columns
        // Large matrices on transparent huge pages: decoding streams them every step, and 4 KB pages
        // cost a TLB miss per page (as for the GGUF decoder's WeightArena).
        let hugePage = 2 << 20
        packed = .allocate(byteCount: byteCount, alignment: byteCount >= 2 * hugePage ? hugePage : 64)
        #if os(Linux)
        if byteCount >= 2 * hugePage { _ = madvise(packed, byteCount / hugePage * hugePage, 14) }  // MADV_HUGEPAGE
        #endif
        // A block of 16 source rows at a time, read row by row into `rows16` and written out column by
        // column, so the packed copy is written front to back (values scattered 64 bytes apart made
        // loading the Marian F32 checkpoint take 0.8 s). Rows past `w.rows` in the last block are zero.
        let columns = w.columns, rowFloats = halfPrecision ? (columns + 1) / 2 : columns
        let rows16 = UnsafeMutablePointer<Float>.allocate(capacity: 16 * rowFloats)
        defer { rows16.deallocate() }
        for block in 0..<(padded / 16) {
            let first = block * 16, count = min(16, w.rows - first)
            if count < 16 { rows16.update(repeating: 0, count: 16 * rowFloats) }
            for r in 0..<count {
                if halfPrecision {
                    UnsafeMutableRawPointer(rows16 + r * rowFloats).copyMemory(from: w.row(first + r), byteCount: 2 * columns)
                } else {
                    MatMul.dequantizeRow(w.type, w.row(first + r), count: columns, into: rows16 + r * rowFloats, portable: false)
                }
            }
            if halfPrecision {
                let source = UnsafeRawPointer(rows16), out = packed.assumingMemoryBound(to: UInt16.self) + first * columns
                for k in 0..<columns {
                    for r in 0..<16 { out[16 * k + r] = source.load(fromByteOffset: r * 4 * rowFloats + 2 * k, as: UInt16.self) }
                }
            } else {
                let out = packed.assumingMemoryBound(to: Float.self) + first * columns
                for k in 0..<columns {
                    for r in 0..<16 { out[16 * k + r] = rows16[r * rowFloats + k] }
                }
            }
            let end = first + count
            if end % 256 == 0 || end == w.rows { done(((end - 1) / 256 * 256)..<end) }
        }
    }

    deinit { packed.deallocate() }

    /// The weight `w[n, k]` (widened exactly when stored as f16).
    public func value(row n: Int, column k: Int) -> Float {
        let i = ((n / 16) * columns + k) * 16 + n % 16
        return halfPrecision ? halfBitsToFloat(packed.load(fromByteOffset: 2 * i, as: UInt16.self))
            : packed.load(fromByteOffset: 4 * i, as: Float.self)
    }
}

/// `y[t, n] = Σ_k x[t, k]·w[n, k]` (no bias) for any number of tokens over a `PackedF32Matrix`.
///
/// Every output is one chain of fused multiply-adds in column order, starting from zero, whatever
/// tile, thread or batch it falls in: a row's result is bitwise the same alone, among beams, among
/// other sources and at any thread count, and bitwise `ReferencePackedF32GEMM`'s. (sgemm's rounding
/// depends on the panel shapes it picks for the row count, and the dot-product mat-vec sums in 16
/// lanes, so neither could promise that across 1, 16 and 64 rows.)
public enum PackedF32GEMM {
    /// Tokens per pass over a thread's outputs: their rows (≤ 96 × 2048 floats, 768 KB) stay in L2
    /// while every run of 4 weight blocks passes over them.
    static let chunkTokens = 96

    /// Whether the AVX-512 kernel runs here (else `multiply` falls back to the plain twin, far slower
    /// than the unpacked paths: callers should not pack then).
    public static var hasFastKernel: Bool { MatVec.hasAVX512Kernels && !MatVec.usePortableKernels }

    /// - Parameters:
    ///   - x: (tokens, w.columns) row-major
    ///   - y: (tokens, ldy) row-major; columns `0..<w.rows` are written
    public static func multiply(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, tokens: Int,
                                into y: UnsafeMutablePointer<Float>, ldy: Int, pool: ThreadPool) {
        guard tokens > 0 else { return }
        #if canImport(COpenBLAS.AVX512VNNI)
        if !MatVec.usePortableKernels {
            // The outputs split over the threads in runs of 64, each thread passing over all tokens:
            // splitting the tokens instead made both threads stream every weight (0.75× at 1500 tokens).
            let parts = outputBlockParts(w.blocks, threads: pool.threadCount)
            pool.parallelFor(parts) { p in
                let blocks = outputBlocks(part: p, of: parts, blocks: w.blocks)
                for t0 in stride(from: 0, to: tokens, by: chunkTokens) {
                    multiplyAVX512(w, x + t0 * w.columns, tokens: min(chunkTokens, tokens - t0), into: y + t0 * ldy, ldy: ldy,
                                   blocks: blocks)
                }
            }
            return
        }
        #endif
        ReferencePackedF32GEMM.multiply(w, x, tokens: tokens, into: y, ldy: ldy)
    }

    #if canImport(COpenBLAS.AVX512VNNI)
    /// Tiles of 6 tokens × 64 outputs (24 accumulators, 4 weight loads and 6 broadcasts per column)
    /// over the output blocks `blocks`, every token tile passing over one run of 4 blocks while its
    /// weights are hot; a last token alone gets a one-token tile, and blocks past the last whole four
    /// go one at a time.
    static func multiplyAVX512(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, tokens: Int,
                               into y: UnsafeMutablePointer<Float>, ldy: Int, blocks: Range<Int>) {
        var b0 = blocks.lowerBound
        if tokens == 1 {
            // One row (greedy decoding): 8 blocks at a time, 8 independent FMA chains to cover the
            // FMA latency (4 chains left the one-token tile latency-bound); the rest below.
            while blocks.upperBound - b0 >= 8 && (b0 + 8) * 16 <= w.rows {
                tile1x8(w, x, b0, y)
                b0 += 8
            }
        }
        while b0 < blocks.upperBound {
            let wide = blocks.upperBound - b0 >= 4
            var t0 = 0
            while t0 < tokens {
                let left = tokens - t0
                // Constant tile sizes, so that each call inlines to a loop over named registers;
                // 2–6 tokens take the 6-token tile with the last row repeated (computed, not stored).
                switch (wide, min(left, 6)) {
                case (true, 1): tile1x4(w, x, t0, 1, b0, y, ldy)
                case (true, let rows): tile6x4(w, x, t0, rows, b0, y, ldy)
                case (false, 1): tile1x1(w, x, t0, 1, b0, y, ldy)
                case (false, let rows): tile6x1(w, x, t0, rows, b0, y, ldy)
                }
                t0 += min(left, 6)
            }
            b0 += wide ? 4 : 1
        }
    }

    // One function per tile shape and storage, each with a single call of `tile` so that it is
    // compiled with its constants (a call left to the inliner was outlined with T, B and the storage
    // as variables — two calls in one wrapper already did that: branches in the inner loop and
    // accumulators spilled, 0.6× the speed).
    static func tile6x4(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                        _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        if w.halfPrecision { tile6x4Half(w, x, t0, rows, b0, y, ldy) } else { tile6x4Single(w, x, t0, rows, b0, y, ldy) }
    }
    static func tile1x4(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                        _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        if w.halfPrecision { tile1x4Half(w, x, t0, rows, b0, y, ldy) } else { tile1x4Single(w, x, t0, rows, b0, y, ldy) }
    }
    static func tile6x1(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                        _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        if w.halfPrecision { tile6x1Half(w, x, t0, rows, b0, y, ldy) } else { tile6x1Single(w, x, t0, rows, b0, y, ldy) }
    }
    static func tile1x1(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                        _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        if w.halfPrecision { tile1x1Half(w, x, t0, rows, b0, y, ldy) } else { tile1x1Single(w, x, t0, rows, b0, y, ldy) }
    }
    @inline(never) static func tile6x4Single(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                                             _ y: UnsafeMutablePointer<Float>, _ ldy: Int) { tile(6, 4, false, w, x, t0, rows, b0, y, ldy) }
    @inline(never) static func tile6x4Half(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                                           _ y: UnsafeMutablePointer<Float>, _ ldy: Int) { tile(6, 4, true, w, x, t0, rows, b0, y, ldy) }
    @inline(never) static func tile1x4Single(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                                             _ y: UnsafeMutablePointer<Float>, _ ldy: Int) { tile(1, 4, false, w, x, t0, rows, b0, y, ldy) }
    @inline(never) static func tile1x4Half(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                                           _ y: UnsafeMutablePointer<Float>, _ ldy: Int) { tile(1, 4, true, w, x, t0, rows, b0, y, ldy) }
    @inline(never) static func tile6x1Single(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                                             _ y: UnsafeMutablePointer<Float>, _ ldy: Int) { tile(6, 1, false, w, x, t0, rows, b0, y, ldy) }
    @inline(never) static func tile6x1Half(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                                           _ y: UnsafeMutablePointer<Float>, _ ldy: Int) { tile(6, 1, true, w, x, t0, rows, b0, y, ldy) }
    @inline(never) static func tile1x1Single(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                                             _ y: UnsafeMutablePointer<Float>, _ ldy: Int) { tile(1, 1, false, w, x, t0, rows, b0, y, ldy) }
    @inline(never) static func tile1x1Half(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ t0: Int, _ rows: Int, _ b0: Int,
                                           _ y: UnsafeMutablePointer<Float>, _ ldy: Int) { tile(1, 1, true, w, x, t0, rows, b0, y, ldy) }

    static func tile1x8(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ b0: Int, _ y: UnsafeMutablePointer<Float>) {
        if w.halfPrecision { tile1x8Half(w, x, b0, y) } else { tile1x8Single(w, x, b0, y) }
    }
    @inline(never) static func tile1x8Single(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ b0: Int, _ y: UnsafeMutablePointer<Float>) {
        oneRowEightBlocks(false, w, x, b0, y)
    }
    @inline(never) static func tile1x8Half(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ b0: Int, _ y: UnsafeMutablePointer<Float>) {
        oneRowEightBlocks(true, w, x, b0, y)
    }

    /// One token × 8 blocks of 16 outputs from block `b0` (none padded): the same FMA chain per output
    /// as `tile`, with 8 of them in flight.
    @inline(__always)
    static func oneRowEightBlocks(_ half: Bool, _ w: PackedF32Matrix, _ x: UnsafePointer<Float>, _ b0: Int,
                                  _ y: UnsafeMutablePointer<Float>) {
        let n = w.columns, size = half ? 2 : 4, blockBytes = n * 16 * size
        let weights = UnsafeRawPointer(w.packed) + b0 * blockBytes
        let z = _mm512_setzero_ps()
        var a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z
        for k in 0..<n {
            let offset = k * 16 * size, xv = _mm512_set1_ps(x[k])
            a0 = _mm512_fmadd_ps(xv, load(half, weights, offset), a0)
            a1 = _mm512_fmadd_ps(xv, load(half, weights, blockBytes + offset), a1)
            a2 = _mm512_fmadd_ps(xv, load(half, weights, 2 * blockBytes + offset), a2)
            a3 = _mm512_fmadd_ps(xv, load(half, weights, 3 * blockBytes + offset), a3)
            a4 = _mm512_fmadd_ps(xv, load(half, weights, 4 * blockBytes + offset), a4)
            a5 = _mm512_fmadd_ps(xv, load(half, weights, 5 * blockBytes + offset), a5)
            a6 = _mm512_fmadd_ps(xv, load(half, weights, 6 * blockBytes + offset), a6)
            a7 = _mm512_fmadd_ps(xv, load(half, weights, 7 * blockBytes + offset), a7)
        }
        let out = UnsafeMutableRawPointer(y + b0 * 16)
        for (i, sums) in [a0, a1, a2, a3, a4, a5, a6, a7].enumerated() { out.storeBytes(of: sums, toByteOffset: 64 * i, as: __m512.self) }
    }

    /// `rows` (≤ `T` ≤ 6) tokens from `t0` × `B` (≤ 4) blocks of 16 outputs from block `b0`, over all
    /// columns, f16 weights widened as they are loaded when `half`. `T`, `B` and `half` are constants
    /// at every call, so the unused accumulators fold away and the rest stay in registers (as in
    /// `RowScaledInt8GEMM.tile`).
    @inline(__always)
    static func tile(_ T: Int, _ B: Int, _ half: Bool, _ w: PackedF32Matrix, _ x: UnsafePointer<Float>,
                     _ t0: Int, _ rows: Int, _ b0: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let last = rows - 1, n = w.columns, size = half ? 2 : 4
        let x0 = x + t0 * n, x1 = x + (t0 + min(1, last)) * n, x2 = x + (t0 + min(2, last)) * n
        let x3 = x + (t0 + min(3, last)) * n, x4 = x + (t0 + min(4, last)) * n, x5 = x + (t0 + min(5, last)) * n
        let weights = UnsafeRawPointer(w.packed) + b0 * n * 16 * size, blockBytes = n * 16 * size
        let z = _mm512_setzero_ps()
        var a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z
        var a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z
        var a40 = z, a41 = z, a42 = z, a43 = z, a50 = z, a51 = z, a52 = z, a53 = z
        for k in 0..<n {
            let offset = k * 16 * size
            let w0 = load(half, weights, offset)
            let w1 = B > 1 ? load(half, weights, blockBytes + offset) : z
            let w2 = B > 2 ? load(half, weights, 2 * blockBytes + offset) : z
            let w3 = B > 3 ? load(half, weights, 3 * blockBytes + offset) : z
            step(B, &a00, &a01, &a02, &a03, x0[k], w0, w1, w2, w3)
            if T > 1 { step(B, &a10, &a11, &a12, &a13, x1[k], w0, w1, w2, w3) }
            if T > 2 { step(B, &a20, &a21, &a22, &a23, x2[k], w0, w1, w2, w3) }
            if T > 3 { step(B, &a30, &a31, &a32, &a33, x3[k], w0, w1, w2, w3) }
            if T > 4 { step(B, &a40, &a41, &a42, &a43, x4[k], w0, w1, w2, w3) }
            if T > 5 { step(B, &a50, &a51, &a52, &a53, x5[k], w0, w1, w2, w3) }
        }
        store(B, w, t0, b0, a00, a01, a02, a03, y, ldy)
        if T > 1 && rows > 1 { store(B, w, t0 + 1, b0, a10, a11, a12, a13, y, ldy) }
        if T > 2 && rows > 2 { store(B, w, t0 + 2, b0, a20, a21, a22, a23, y, ldy) }
        if T > 3 && rows > 3 { store(B, w, t0 + 3, b0, a30, a31, a32, a33, y, ldy) }
        if T > 4 && rows > 4 { store(B, w, t0 + 4, b0, a40, a41, a42, a43, y, ldy) }
        if T > 5 && rows > 5 { store(B, w, t0 + 5, b0, a50, a51, a52, a53, y, ldy) }
    }

    /// 16 weights: f32, or f16 widened (`vcvtph2ps`, exact).
    @inline(__always)
    static func load(_ half: Bool, _ weights: UnsafeRawPointer, _ offset: Int) -> __m512 {
        half ? _mm512_cvtph_ps(weights.load(fromByteOffset: offset, as: __m256i.self)) : weights.load(fromByteOffset: offset, as: __m512.self)
    }

    /// One token's step over one column: its value times each block's 16 weights.
    @inline(__always)
    static func step(_ B: Int, _ a0: inout __m512, _ a1: inout __m512, _ a2: inout __m512, _ a3: inout __m512,
                     _ value: Float, _ w0: __m512, _ w1: __m512, _ w2: __m512, _ w3: __m512) {
        let xv = _mm512_set1_ps(value)
        a0 = _mm512_fmadd_ps(xv, w0, a0)
        if B > 1 { a1 = _mm512_fmadd_ps(xv, w1, a1) }
        if B > 2 { a2 = _mm512_fmadd_ps(xv, w2, a2) }
        if B > 3 { a3 = _mm512_fmadd_ps(xv, w3, a3) }
    }

    /// Token `t`'s sums for blocks `b0 ..< b0 + B`: all 16 outputs of a block, or those before
    /// `w.rows` in a padded last block.
    @inline(__always)
    static func store(_ B: Int, _ w: PackedF32Matrix, _ t: Int, _ b0: Int,
                      _ a0: __m512, _ a1: __m512, _ a2: __m512, _ a3: __m512, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        storeBlock(w, t, b0, a0, y, ldy)
        if B > 1 { storeBlock(w, t, b0 + 1, a1, y, ldy) }
        if B > 2 { storeBlock(w, t, b0 + 2, a2, y, ldy) }
        if B > 3 { storeBlock(w, t, b0 + 3, a3, y, ldy) }
    }

    @inline(__always)
    static func storeBlock(_ w: PackedF32Matrix, _ t: Int, _ b: Int, _ sums: __m512, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let first = b * 16, out = y + t * ldy + first
        if first + 16 <= w.rows {
            UnsafeMutableRawPointer(out).storeBytes(of: sums, as: __m512.self)
        } else {
            withUnsafeBytes(of: sums) { out.update(from: $0.bindMemory(to: Float.self).baseAddress!, count: w.rows - first) }
        }
    }
    #endif
}

/// The plain twin of `PackedF32GEMM`: each output one fused multiply-add chain in column order from
/// zero, so the fast kernel must match it bitwise.
public enum ReferencePackedF32GEMM {
    /// - Parameters:
    ///   - x: (tokens, w.columns) row-major
    ///   - y: (tokens, ldy) row-major; columns `0..<w.rows` are written
    public static func multiply(_ w: PackedF32Matrix, _ x: UnsafePointer<Float>, tokens: Int,
                                into y: UnsafeMutablePointer<Float>, ldy: Int) {
        for t in 0..<tokens {
            for n in 0..<w.rows {
                var sum: Float = 0
                for k in 0..<w.columns { sum.addProduct(x[t * w.columns + k], w.value(row: n, column: k)) }
                y[t * ldy + n] = sum
            }
        }
    }
}
