/// Arithmetic used by `MatVec.multiply` for quantised weights.
public enum MatVecPrecision: Sendable {
    /// Weights dequantised exactly on the fly (in SIMD registers), f32 activations, f32 FMA.
    /// Agrees with `ReferenceMatVec` to f32 rounding (normalised error ~1e-7).
    case f32
    /// Activations quantised per 32-block to int8 (ggml Q8_0/Q8_1 style, see `QuantizedActivations`)
    /// and integer dot products (AVX-512 VNNI `vpdpbusd` where available). Roughly 2× faster for
    /// Q4 weights; adds the activation quantisation error (normalised ~0.3–1%).
    /// Float weight types (F32/F16/BF16) always use the `.f32` path.
    case int8
}

/// Matrix-vector products `y[rows] = W·x[columns]` for decoding one token, parallelised over rows.
///
/// Results do not depend on the pool's thread count (bitwise): row ranges are split on multiples
/// of `rowAlignment`, and every row is computed by the same instruction sequence.
public enum MatVec {
    /// Row-range granularity for threading.
    static let rowAlignment = 32

    /// Forces the portable Swift kernels even where the AVX-512 VNNI ones are compiled in, for tests
    /// and benchmarks: `MatVec.$usePortableKernels.withValue(true) { … }`. Task-local, so one test
    /// choosing the portable kernels cannot change the kernels (and the bits) of another running
    /// at the same time. Read on the calling thread, before work is handed to the pool.
    @TaskLocal public static var usePortableKernels = false

    /// Whether the AVX-512 VNNI kernels were compiled in (needs a build for such a CPU, which
    /// Quill's default `-target-cpu native` provides).
    public static var hasAVX512Kernels: Bool {
        #if canImport(COpenBLAS.AVX512VNNI)
        return true
        #else
        return false
        #endif
    }

    /// `y = W·x`. `x` has `w.columns` elements, `y` receives `w.rows`.
    /// With `.int8` this quantises `x` into a temporary; when several matrices share one input,
    /// quantise once into a `QuantizedActivations` and use `multiply(_:_:into:pool:)` instead.
    public static func multiply(_ w: WeightMatrix, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                                precision: MatVecPrecision, pool: ThreadPool) {
        switch (precision, w.type) {
        case (.int8, let type) where type.blockSize > 1:  // every quantised type
            var xq = QuantizedActivations(capacity: w.columns)
            xq.quantize(x, count: w.columns)
            multiply(w, xq, into: y, pool: pool)
        default:
            let portable = usePortableKernels
            pool.parallelRanges(total: w.rows, minimumChunk: rowAlignment) { rows in
                multiplyF32(w, x, into: y, rows: rows, portable: portable)
            }
        }
    }

    /// `y = W·x` with pre-quantised activations (`xq.count == w.columns`), integer dot products.
    /// Float weight types (and the K-quants without the AVX-512 kernels) fall back to the f32 path on
    /// the dequantised activations.
    public static func multiply(_ w: WeightMatrix, _ xq: QuantizedActivations, into y: UnsafeMutablePointer<Float>,
                                pool: ThreadPool) {
        precondition(xq.count == w.columns, "activation length must equal the matrix column count")
        switch w.type {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0:
            let portable = usePortableKernels
            pool.parallelRanges(total: w.rows, minimumChunk: rowAlignment) { rows in
                multiplyInt8(w, xq.quantizedRow, into: y, rows: rows, portable: portable)
            }
        case _ where KQuants.isKQuant(w.type) && hasAVX512Kernels && !usePortableKernels:
            pool.parallelRanges(total: w.rows, minimumChunk: rowAlignment) { rows in
                multiplyInt8KQuant(w, xq.quantizedRow, into: y, rows: rows)
            }
        case .f32, .f16, .bf16, .q4_K, .q5_K, .q6_K:
            // K-quants without the AVX-512 kernels: the f32 kernel on the dequantised activations.
            let x = UnsafeMutablePointer<Float>.allocate(capacity: max(w.columns, 1))
            defer { x.deallocate() }
            for c in 0..<w.columns { x[c] = xq.dequantized(c) }
            multiply(w, UnsafePointer(x), into: y, precision: .f32, pool: pool)
        }
    }

    /// `y_i = W_i·x` for several matrices that share one quantised input (Q, K and V; gate and up),
    /// in one parallel region: the rows of all matrices are split as one range, which halves the
    /// fork-join rounds of a decode step and keeps both threads busy on small matrices.
    /// Results are bitwise those of separate `multiply(_:_:into:pool:)` calls (every row runs the
    /// same instruction sequence however rows are grouped).
    public static func multiply(_ products: [(matrix: WeightMatrix, output: UnsafeMutablePointer<Float>)],
                                _ xq: QuantizedActivations, pool: ThreadPool) {
        let quantised = products.allSatisfy { [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0].contains($0.matrix.type) }
        guard quantised, products.count > 1 else {
            for (w, y) in products { multiply(w, xq, into: y, pool: pool) }
            return
        }
        var total = 0
        for (w, _) in products {
            precondition(xq.count == w.columns, "activation length must equal the matrix column count")
            total += w.rows
        }
        let portable = usePortableKernels
        pool.parallelRanges(total: total, minimumChunk: rowAlignment) { rows in
            var start = 0
            for (w, y) in products {
                let lo = max(rows.lowerBound, start), hi = min(rows.upperBound, start + w.rows)
                if lo < hi { multiplyInt8(w, xq.quantizedRow, into: y, rows: (lo - start)..<(hi - start), portable: portable) }
                start += w.rows
            }
        }
    }

    /// f32 kernels for one range of rows (on the current thread).
    static func multiplyF32(_ w: WeightMatrix, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                            rows: Range<Int>, portable: Bool) {
        #if canImport(COpenBLAS.AVX512VNNI)
        if !portable {
            AVX512MatVec.multiplyF32(w, x, into: y, rows: rows)
            return
        }
        #endif
        PortableMatVec.multiplyF32(w, x, into: y, rows: rows)
    }

    /// Int8 kernel for one range of rows of a K-quant matrix (AVX-512 VNNI builds only).
    static func multiplyInt8KQuant(_ w: WeightMatrix, _ xq: QuantizedRow, into y: UnsafeMutablePointer<Float>,
                                   rows: Range<Int>) {
        #if canImport(COpenBLAS.AVX512VNNI)
        KQuantMatVec.multiplyInt8(w, xq, into: y, rows: rows)
        #else
        preconditionFailure("the K-quant int8 kernels need AVX-512 VNNI")
        #endif
    }

    /// Int8 kernels for one range of rows of a Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 matrix.
    static func multiplyInt8(_ w: WeightMatrix, _ xq: QuantizedRow, into y: UnsafeMutablePointer<Float>,
                             rows: Range<Int>, portable: Bool) {
        #if canImport(COpenBLAS.AVX512VNNI)
        if !portable, let panels = w.panels {
            PanelMatVec.multiply(panels, PanelOperand(qs: xq.qs, qsStride: 0, scales: xq.scales, scalesStride: 0), count: 1,
                                 into: y, ldy: 0, rows: rows)
            return
        }
        if !portable {
            AVX512MatVec.multiplyInt8(w, xq, into: y, rows: rows)
            return
        }
        #endif
        PortableMatVec.multiplyInt8(w, xq, into: y, rows: rows)
    }
}

/// Kernels in plain Swift (SIMD types where they lower well on every target): used on CPUs
/// without AVX-512 VNNI and as a cross-check of the intrinsic kernels.
enum PortableMatVec {
    static func multiplyF32(_ w: WeightMatrix, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
                            rows: Range<Int>) {
        let n = w.columns
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(n, 1)) { buffer in
            let row = buffer.baseAddress!
            let xs = UnsafeRawPointer(x)
            for r in rows {
                // Dequantise the row (scalar, cached in L1), then a 4-way unrolled SIMD dot.
                ReferenceDequantizer.dequantize(w.type, w.row(r), count: n, into: row)
                let rs = UnsafeRawPointer(row)
                var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
                var c = 0
                while c + 32 <= n {
                    let o = 4 * c
                    a0.addProduct(rs.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self),
                                  xs.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
                    a1.addProduct(rs.loadUnaligned(fromByteOffset: o + 32, as: SIMD8<Float>.self),
                                  xs.loadUnaligned(fromByteOffset: o + 32, as: SIMD8<Float>.self))
                    a2.addProduct(rs.loadUnaligned(fromByteOffset: o + 64, as: SIMD8<Float>.self),
                                  xs.loadUnaligned(fromByteOffset: o + 64, as: SIMD8<Float>.self))
                    a3.addProduct(rs.loadUnaligned(fromByteOffset: o + 96, as: SIMD8<Float>.self),
                                  xs.loadUnaligned(fromByteOffset: o + 96, as: SIMD8<Float>.self))
                    c += 32
                }
                let a = (a0 + a1) + (a2 + a3)
                let h = a.lowHalf + a.highHalf
                var sum = (h[0] + h[2]) + (h[1] + h[3])
                while c < n { sum += row[c] * x[c]; c += 1 }
                y[r] = sum
            }
        }
    }

    static func multiplyInt8(_ w: WeightMatrix, _ xq: QuantizedRow, into y: UnsafeMutablePointer<Float>,
                             rows: Range<Int>) {
        let qs = xq.qs, scales = xq.scales
        let blocks = w.columns / 32
        for r in rows {
            let row = w.row(r)
            var sum: Float = 0
            for b in 0..<blocks {
                let xb = qs + 32 * b
                let dx = scales[2 * b], sx = scales[2 * b + 1]
                var dot: Int32 = 0
                switch w.type {
                case .q4_0, .q4_1:
                    let block = row + b * w.type.bytesPerBlock
                    let q = block + (w.type == .q4_0 ? 2 : 4)
                    for j in 0..<16 {
                        let byte = q.load(fromByteOffset: j, as: UInt8.self)
                        dot += Int32(byte & 0x0F) * Int32(xb[j]) + Int32(byte >> 4) * Int32(xb[j + 16])
                    }
                    let d = halfBitsToFloat(block.loadUnaligned(as: UInt16.self))
                    if w.type == .q4_0 {
                        // Σ(q−8)·x = Σq·x − 8Σx
                        sum += d * dx * Float(dot) - 8 * d * sx
                    } else {
                        let m = halfBitsToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                        sum += d * dx * Float(dot) + m * sx
                    }
                case .q5_0, .q5_1:
                    sum += fiveBitBlock(w.type, row + b * w.type.bytesPerBlock, xb, dx: dx, sx: sx)
                default: // .q8_0
                    let block = row + b * 34
                    for j in 0..<32 { dot += Int32(block.load(fromByteOffset: 2 + j, as: Int8.self)) * Int32(xb[j]) }
                    sum += halfBitsToFloat(block.loadUnaligned(as: UInt16.self)) * dx * Float(dot)
                }
            }
            y[r] = sum
        }
    }
}

/// IEEE half bits to Float (hardware conversion where the target has it).
@inline(__always) func halfBitsToFloat(_ bits: UInt16) -> Float {
    #if arch(arm64) || (arch(x86_64) && !os(macOS))  // Float16 is unavailable on Intel macOS
    return Float(Float16(bitPattern: bits))
    #else
    return halfToFloat(bits)
    #endif
}
