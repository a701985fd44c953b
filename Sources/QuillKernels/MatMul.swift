#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// Matrix products for prompt processing: `Y = X·Wᵀ` for many tokens at once, with exactly
/// dequantised f32 weights.
///
/// `W` is dequantised one panel of `panelRows` rows at a time into a per-thread scratch buffer
/// (never the whole matrix: the 49152-row output matrix would need 113 MB) and multiplied with
/// OpenBLAS `cblas_sgemm`. Panels are spread over the `ThreadPool`; OpenBLAS itself runs
/// single-threaded, which on this 2-core machine was faster than handing it both cores per panel
/// and keeps exactly one set of threads busy.
public enum MatMul {
    /// Rows of `W` dequantised per panel: 256 × 1536 floats = 1.5 MB, about one L2.
    static let panelRows = 256

    /// Up to this many tokens `multiply` runs the batched f32 mat-vec (`MatVec.multiply(_:_:rows:…)`)
    /// instead of dequantised panels and sgemm: every weight read once and dequantised in registers
    /// once per 8 rows. Kernel bench, 1536×576, 1 thread, 16 rows: Q8_0 1.3×, Q4_1 1.6×, F32 1.45× the
    /// former path (at 32 rows sgemm is as fast or faster).
    static let smallTokens = 16

    /// Whether OpenBLAS could be loaded; without it a slower built-in GEMM is used.
    public static var blasAvailable: Bool { BLAS.library != nil }

    /// Forces the built-in GEMM even when OpenBLAS is available, for tests and benchmarks:
    /// `MatMul.$disableBLAS.withValue(true) { … }`. Task-local, like `MatVec.usePortableKernels`.
    @TaskLocal public static var disableBLAS = false

    /// `y[t, r] = Σ_c W[r, c]·x[t, c]`: `x` is `tokens × w.columns` row-major, `y` receives
    /// `tokens × w.rows` row-major. One token is delegated to `MatVec` (`.f32`).
    public static func multiply(_ w: WeightMatrix, _ x: UnsafePointer<Float>, tokens: Int,
                                into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        guard tokens > 0, w.rows > 0 else { return }
        if tokens == 1 {
            MatVec.multiply(w, x, into: y, precision: .f32, pool: pool)
            return
        }
        if tokens <= smallTokens {
            // A few rows (beams × sources while decoding): each row bitwise its own f32 mat-vec, rows
            // split as MatVec splits them, so independent of the thread count and the batch.
            MatVec.multiply(w, x, rows: tokens, into: y, precision: .f32, pool: pool)
            return
        }
        // Panels of at most `panelRows` rows, an even number of them so that 1, 2 or 4 threads get
        // equal work (576 rows: 4 × 144, not 256 + 256 + 64). The split depends on the matrix
        // alone, never on the thread count: sgemm's rounding depends on the panel's shape, and the
        // same input must give bitwise the same output at -t 1 and -t 2 (seeded sampling relies on it).
        let minimumPanels = (w.rows + panelRows - 1) / panelRows
        let evenPanels = (minimumPanels + 1) / 2 * 2
        let rowsPerPanel = ((w.rows + evenPanels - 1) / evenPanels + 15) / 16 * 16
        let panels = (w.rows + rowsPerPanel - 1) / rowsPerPanel
        let threads = min(pool.threadCount, panels)
        let scratchFloats = rowsPerPanel * w.columns
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, threads * scratchFloats))
        defer { scratch.deallocate() }
        let blas = disableBLAS ? nil : BLAS.library
        let portable = MatVec.usePortableKernels
        // One contiguous run of panels per thread; each thread owns one scratch panel.
        pool.parallelFor(threads) { thread in
            let panel = scratch + thread * scratchFloats
            for p in (thread * panels / threads)..<((thread + 1) * panels / threads) {
                let r0 = p * rowsPerPanel, count = min(rowsPerPanel, w.rows - r0)
                if let blas {
                    // F32 weights go to sgemm where they lie (a copy cost as much as the packing
                    // sgemm does anyway); the panel shape, and so the rounding, is the same.
                    let weights: UnsafePointer<Float>
                    if w.type == .f32 {
                        weights = w.row(r0).assumingMemoryBound(to: Float.self)
                    } else {
                        dequantizeRows(w, rows: r0..<(r0 + count), into: panel, portable: portable)
                        weights = UnsafePointer(panel)
                    }
                    blas.sgemm(BLAS.rowMajor, BLAS.noTrans, BLAS.trans, Int32(tokens), Int32(count), Int32(w.columns),
                               1, x, Int32(w.columns), weights, Int32(w.columns), 0, y + r0, Int32(w.rows))
                } else {
                    dequantizeRows(w, rows: r0..<(r0 + count), into: panel, portable: portable)
                    fallbackGEMM(panel, rows: count, columns: w.columns, x, tokens: tokens,
                                 into: y + r0, ldy: w.rows, portable: portable)
                }
            }
        }
    }

    /// Built-in GEMM for a dequantised panel: per token an f32 mat-vec over the panel, which is
    /// hot in L2, so this runs at FMA speed rather than memory speed (but without sgemm's
    /// register blocking across tokens).
    static func fallbackGEMM(_ panel: UnsafePointer<Float>, rows: Int, columns: Int, _ x: UnsafePointer<Float>,
                             tokens: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, portable: Bool) {
        let pw = WeightMatrix(type: .f32, rows: rows, columns: columns, data: UnsafeRawPointer(panel))
        for t in 0..<tokens {
            MatVec.multiplyF32(pw, x + t * columns, into: y + t * ldy, rows: 0..<rows, portable: portable)
        }
    }

    /// Dequantises `rows` of `w` back to back into `out` (SIMD where available).
    static func dequantizeRows(_ w: WeightMatrix, rows: Range<Int>, into out: UnsafeMutablePointer<Float>,
                               portable: Bool) {
        for (i, r) in rows.enumerated() {
            dequantizeRow(w.type, w.row(r), count: w.columns, into: out + i * w.columns, portable: portable)
        }
    }

    static func dequantizeRow(_ type: TensorType, _ src: UnsafeRawPointer, count: Int,
                              into out: UnsafeMutablePointer<Float>, portable: Bool) {
        #if canImport(COpenBLAS.AVX512VNNI)
        if !portable {
            let o = UnsafeMutableRawPointer(out)
            let mask = _mm_set1_epi8(0x0F)
            switch type {
            case .q4_1:
                for b in 0..<count / 32 {
                    let w = src + 20 * b
                    let d = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(as: UInt16.self)))
                    let m = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
                    storeNibbles(load128(w, 4), scale: d, offset: m, mask: mask, into: o + 128 * b)
                }
                return
            case .q4_0:
                for b in 0..<count / 32 {
                    let w = src + 18 * b
                    let dh = halfBitsToFloat(w.loadUnaligned(as: UInt16.self))
                    let d = _mm512_set1_ps(dh), off = _mm512_set1_ps(-8 * dh)
                    storeNibbles(load128(w, 2), scale: d, offset: off, mask: mask, into: o + 128 * b)
                }
                return
            case .q8_0:
                for b in 0..<count / 32 {
                    let w = src + 34 * b
                    let d = _mm512_set1_ps(halfBitsToFloat(w.loadUnaligned(as: UInt16.self)))
                    o.storeBytes(of: _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load128(w, 2))), d),
                                 toByteOffset: 128 * b, as: __m512.self)
                    o.storeBytes(of: _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load128(w, 18))), d),
                                 toByteOffset: 128 * b + 64, as: __m512.self)
                }
                return
            case .f16:
                var c = 0
                while c + 16 <= count {
                    o.storeBytes(of: _mm512_cvtph_ps(src.loadUnaligned(fromByteOffset: 2 * c, as: __m256i.self)),
                                 toByteOffset: 4 * c, as: __m512.self)
                    c += 16
                }
                while c < count { out[c] = halfBitsToFloat(src.loadUnaligned(fromByteOffset: 2 * c, as: UInt16.self)); c += 1 }
                return
            case .q5_0, .q5_1:
                FiveBitQuants.dequantize(type, src, count: count, into: out)
                return
            case .q4_K, .q5_K, .q6_K:
                KQuants.dequantize(type, src, count: count, into: out)
                return
            case .f32, .bf16:
                break
            }
        }
        #endif
        if type == .f32 {
            UnsafeMutableRawPointer(out).copyMemory(from: src, byteCount: 4 * count)
        } else {
            ReferenceDequantizer.dequantize(type, src, count: count, into: out)
        }
    }
}

/// Obviously-correct twin of `MatMul`: scalar dequantisation and Double-accumulated loops.
public enum ReferenceMatMul {
    /// `y[t, r] = Σ_c W[r, c]·x[t, c]` (`x`: tokens × columns, `y`: tokens × rows, row-major).
    public static func multiply(_ w: WeightMatrix, _ x: UnsafePointer<Float>, tokens: Int,
                                into y: UnsafeMutablePointer<Float>) {
        let row = UnsafeMutablePointer<Float>.allocate(capacity: max(w.columns, 1))
        defer { row.deallocate() }
        for r in 0..<w.rows {
            ReferenceDequantizer.dequantize(w.type, w.row(r), count: w.columns, into: row)
            for t in 0..<tokens {
                let xt = x + t * w.columns
                var sum: Double = 0
                for c in 0..<w.columns { sum += Double(row[c]) * Double(xt[c]) }
                y[t * w.rows + r] = Float(sum)
            }
        }
    }
}
