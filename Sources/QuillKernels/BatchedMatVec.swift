/// Matrix products for a few to a few dozen activation rows at once (several sequences, beams or
/// sources decoding together): `y[i] = W·x_i` with each weight read from memory once per batch
/// instead of once per row.
///
/// **Batch invariance**: row `i` of every product here is bitwise equal to the one-row product
/// (`MatVec.multiply(_:_:into:pool:)` with `x_i` quantised alone, or `MatVec.multiply(_:_:into:precision:pool:)`
/// with `.f32`), whatever the batch size, the other rows, the thread count or the kernels' grouping:
/// per (weight row, activation row) the same f32 operations run in the same order. A sequence's
/// tokens never depend on what else is in the batch. The portable kernels keep the same promise
/// against the portable one-row kernels.
extension MatVec {
    /// Whether the batched products run int8 kernels for `type` (as the one-row call does), each
    /// weight read from memory once per batch: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 always, the K-quants
    /// with the AVX-512 kernels. Other types (and K-quants on the portable kernels) take the f32 path
    /// on the dequantised activations, again as the one-row call does. (With AVX-512 every one of them
    /// unpacks each weight block once per group of up to 8 rows; the portable kernels run the
    /// one-row kernel per activation row over L1-sized weight tiles.)
    public static func hasBatchedInt8Kernel(_ type: TensorType) -> Bool {
        switch type {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return true
        case .q4_K, .q5_K, .q6_K: return hasAVX512Kernels && !usePortableKernels
        case .f32, .f16, .bf16: return false
        }
    }

    /// `y[i, r] = Σ_c W[r, c]·x_i[c]` for every row `i` of `xq` (`xq.columns == w.columns`).
    /// `y` is `xq.rows × w.rows`, row-major. Row `i` is bitwise `multiply(w, x_i quantised alone, …)`.
    public static func multiply(_ w: WeightMatrix, _ xq: QuantizedActivationBatch, into y: UnsafeMutablePointer<Float>,
                                pool: ThreadPool) {
        multiply([(w, y)], xq, pool: pool)
    }

    /// `y_k = W_k·x_i` for several matrices sharing one batch (Q, K and V; gate and up), in one
    /// parallel region over the rows of all matrices. `output` of product k is `xq.rows × W_k.rows`,
    /// row-major. Results are bitwise those of separate calls (and of the one-row products).
    public static func multiply(_ products: [(matrix: WeightMatrix, output: UnsafeMutablePointer<Float>)],
                                _ xq: QuantizedActivationBatch, pool: ThreadPool) {
        var total = 0
        for (w, _) in products {
            precondition(xq.columns == w.columns, "activation length must equal the matrix column count")
            total += w.rows
        }
        guard xq.rows > 0, total > 0 else { return }
        let batched = products.filter { hasBatchedInt8Kernel($0.matrix.type) }
        let others = products.filter { !hasBatchedInt8Kernel($0.matrix.type) }
        if !others.isEmpty {
            // As the one-row call: the f32 kernel on the dequantised activations.
            let x = UnsafeMutablePointer<Float>.allocate(capacity: max(1, xq.rows * xq.columns))
            defer { x.deallocate() }
            for i in 0..<xq.rows {
                for c in 0..<xq.columns { x[i * xq.columns + c] = xq.dequantized(row: i, column: c) }
            }
            for (w, y) in others { multiply(w, UnsafePointer(x), rows: xq.rows, into: y, precision: .f32, pool: pool) }
        }
        guard !batched.isEmpty else { return }
        let portable = usePortableKernels
        let allRows = batched.reduce(0) { $0 + $1.matrix.rows }
        pool.parallelRanges(total: allRows, minimumChunk: rowAlignment) { rows in
            var start = 0
            for (w, y) in batched {
                let lo = max(rows.lowerBound, start), hi = min(rows.upperBound, start + w.rows)
                if lo < hi { multiplyInt8(w, xq, into: y, rows: (lo - start)..<(hi - start), portable: portable) }
                start += w.rows
            }
        }
    }

    /// `y[i, r] = Σ_c W[r, c]·x[i, c]` for `rows` input rows: `x` is `rows × w.columns`, `y`
    /// `rows × w.rows`, both row-major. With `.int8` (and a quantised type) the rows are quantised
    /// into a temporary batch; with `.f32` each weight tile is dequantised once for up to 8 rows.
    /// Row `i` is bitwise `multiply(w, x_i, into:, precision:, pool:)` with the same precision.
    public static func multiply(_ w: WeightMatrix, _ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
                                precision: MatVecPrecision, pool: ThreadPool) {
        guard rows > 0, w.rows > 0 else { return }
        switch (precision, w.type) {
        case (.int8, let type) where type.blockSize > 1:  // every quantised type, as the one-row call
            var xq = QuantizedActivationBatch(rows: rows, columns: w.columns)
            xq.quantize(x, rows: rows, columns: w.columns, rowMajorOnly: w.panels != nil)
            multiply(w, xq, into: y, pool: pool)
        default:
            let portable = usePortableKernels
            pool.parallelRanges(total: w.rows, minimumChunk: rowAlignment) { range in
                multiplyF32(w, x, count: rows, into: y, ldy: w.rows, rows: range, portable: portable)
            }
        }
    }

    /// Batched int8 kernels for one range of weight rows (on the current thread).
    static func multiplyInt8(_ w: WeightMatrix, _ xq: QuantizedActivationBatch, into y: UnsafeMutablePointer<Float>,
                             rows: Range<Int>, portable: Bool) {
        if xq.rows == 1 {
            // One row: the one-row kernels themselves, without the batch's tiling.
            // (K-quants reach here only with the AVX-512 kernels, see `hasBatchedInt8Kernel`.)
            if KQuants.isKQuant(w.type) {
                multiplyInt8KQuant(w, xq.row(0), into: y, rows: rows)
            } else {
                multiplyInt8(w, xq.row(0), into: y, rows: rows, portable: portable)
            }
            return
        }
        #if canImport(COpenBLAS.AVX512VNNI)
        if !portable {
            BatchedAVX512MatVec.multiplyInt8(w, xq, into: y, ldy: w.rows, rows: rows)
            return
        }
        #endif
        // Portable: the one-row kernel per activation row over L1-sized tiles of weight rows.
        forEachBatchTile(w, rows) { tile in
            for i in 0..<xq.rows { PortableMatVec.multiplyInt8(w, xq.row(i), into: y + i * w.rows, rows: tile) }
        }
    }

    /// Batched f32 kernels for one range of weight rows: `x` is `count × w.columns`, row `i` of the
    /// result goes to `y + i·ldy`.
    static func multiplyF32(_ w: WeightMatrix, _ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>,
                            ldy: Int, rows: Range<Int>, portable: Bool) {
        #if canImport(COpenBLAS.AVX512VNNI)
        if !portable {
            BatchedAVX512MatVec.multiplyF32(w, x, count: count, into: y, ldy: ldy, rows: rows)
            return
        }
        #endif
        forEachBatchTile(w, rows) { tile in
            for i in 0..<count { PortableMatVec.multiplyF32(w, x + i * w.columns, into: y + i * ldy, rows: tile) }
        }
    }

    /// Tiles of weight rows (about 12 KB, an even count) that stay in L1 while every activation
    /// row passes over them.
    @inline(__always)
    static func forEachBatchTile(_ w: WeightMatrix, _ rows: Range<Int>, _ body: (Range<Int>) -> Void) {
        let tileRows = max(2, min(64, (12 << 10) / max(1, w.rowBytes)) & ~1)
        var r0 = rows.lowerBound
        while r0 < rows.upperBound {
            let tile = r0..<min(r0 + tileRows, rows.upperBound)
            body(tile)
            r0 = tile.upperBound
        }
    }
}
