import Testing
import QuillKernels

/// `WeightPanels` and the panel kernels: bitwise equal to their plain twin (computed from the
/// file's blocks, so the regrouping is checked too) for every batch size, thread count and row
/// range; every row of a batch bitwise its one-row product; close to the exactly dequantised
/// product; and rows rebuilt from the panels byte for byte the file's.
@Suite struct WeightPanelsTests {
    static let types: [TensorType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0]

    /// A matrix with its panels attached (as `DecoderModel` binds one on the quantised path).
    static func paneled(_ w: RandomWeights) -> WeightMatrix {
        var m = w.matrix
        m.panels = WeightPanels(w.matrix)
        return m
    }

    @Test(arguments: types) func kernelsMatchTheirTwinBitwise(type: TensorType) {
        guard MatVec.hasAVX512Kernels else { return }  // the panel kernels are AVX-512 VNNI only
        var g = SeededGenerator(seed: 900 + UInt64(type.rawValue))
        let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
        // Rows that are not whole panels (a padded last panel) and widths of 1–48 blocks.
        for (rows, columns) in [(5, 32), (37, 576), (70, 1536)] {
            let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
            defer { w.free() }
            let m = Self.paneled(w)
            let maxBatch = 17
            let x = BatchedMatVecTests.activations(count: maxBatch, columns: columns, using: &g)
            var xq = QuantizedActivationBatch(rows: maxBatch, columns: columns)
            for batch in [1, 2, 3, 4, 7, 8, 9, 16, 17] {
                xq.quantize(x, rows: batch, columns: columns)
                var expected = [Float](repeating: .nan, count: batch * rows)
                xq.withQuantizedRows { qs, scales in
                    ReferencePanelMatVec.multiply(w.matrix, qs: qs, scales: scales, count: batch, into: &expected, ldy: rows,
                                                  rows: 0..<rows)
                }
                for pool in pools {
                    var y = [Float](repeating: .nan, count: batch * rows)
                    MatVec.multiply(m, xq, into: &y, pool: pool)
                    #expect(bitwiseEqual(y, expected[...]), "\(type) \(rows)×\(columns) batch \(batch), \(pool.threadCount) threads")
                }
                // Without the interleaved layouts (which the panel kernels do not read): the same.
                var rowMajor = QuantizedActivationBatch(rows: batch, columns: columns)
                rowMajor.quantize(x, rows: batch, columns: columns, rowMajorOnly: true)
                #expect(!rowMajor.hasInterleavedLayouts)
                var y = [Float](repeating: .nan, count: batch * rows)
                MatVec.multiply(m, rowMajor, into: &y, pool: pools[1])
                #expect(bitwiseEqual(y, expected[...]), "\(type) \(rows)×\(columns) batch \(batch), row-major only")
                // Each row alone (the one-row kernel) is the same row of the batch.
                var single = QuantizedActivations(capacity: columns)
                for i in [0, batch - 1] {
                    x.withUnsafeBufferPointer { single.quantize($0.baseAddress! + i * columns, count: columns) }
                    var y = [Float](repeating: .nan, count: rows)
                    MatVec.multiply(m, single, into: &y, pool: pools[1])
                    #expect(bitwiseEqual(y, expected[(i * rows)..<((i + 1) * rows)]), "\(type) row \(i) alone, batch \(batch)")
                }
            }
            // Several matrices sharing one input split their rows across threads at offsets that
            // cut panels: each still equals its own product.
            let other = RandomWeights(type, rows: 19, columns: columns, using: &g)
            defer { other.free() }
            let n = Self.paneled(other)
            var single = QuantizedActivations(capacity: columns)
            x.withUnsafeBufferPointer { single.quantize($0.baseAddress!, count: columns) }
            var y0 = [Float](repeating: .nan, count: rows), y1 = [Float](repeating: .nan, count: 19)
            var e0 = y0, e1 = y1
            y1.withUnsafeMutableBufferPointer { b1 in
                y0.withUnsafeMutableBufferPointer { b0 in
                    MatVec.multiply([(n, b1.baseAddress!), (m, b0.baseAddress!)], single, pool: pools[1])
                }
            }
            MatVec.multiply(m, single, into: &e0, pool: pools[0])
            MatVec.multiply(n, single, into: &e1, pool: pools[0])
            #expect(bitwiseEqual(y0, e0[...]) && bitwiseEqual(y1, e1[...]), "\(type) shared input")
        }
    }

    /// The panel sums are a valid int8 product: against the exactly dequantised weights times the
    /// quantised activations (Double sums), the error is f32 rounding.
    @Test(arguments: types) func closeToTheDequantisedProduct(type: TensorType) {
        guard MatVec.hasAVX512Kernels else { return }
        var g = SeededGenerator(seed: 950 + UInt64(type.rawValue))
        let rows = 45, columns = 1536
        let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
        defer { w.free() }
        let m = Self.paneled(w)
        var fast: [Float] = [], exact: [Float] = []
        var single = QuantizedActivations(capacity: columns)
        for i in 0..<4 {
            let x = BatchedMatVecTests.activations(count: i + 1, columns: columns, using: &g).suffix(columns)
            Array(x).withUnsafeBufferPointer { single.quantize($0.baseAddress!, count: columns) }
            var y = [Float](repeating: .nan, count: rows), e = y
            MatVec.multiply(m, single, into: &y, pool: ThreadPool(threads: 1))
            ReferenceMatVec.multiply(w.matrix, single, into: &e)
            fast += y
            exact += e
        }
        let error = normalisedError(fast, exact)
        #expect(error <= 1e-6, "\(type): normalised error \(error)")
    }

    /// Rows rebuilt from the panels are the file's bytes, and the prompt GEMM (which unpacks rows)
    /// gives bitwise the same result with the panels attached as without.
    @Test(arguments: types) func rowsRebuildExactly(type: TensorType) {
        var g = SeededGenerator(seed: 990 + UInt64(type.rawValue))
        let rows = 21, columns = 96
        let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
        defer { w.free() }
        let m = Self.paneled(w)
        for r in 0..<rows {
            let original = Array(UnsafeRawBufferPointer(start: w.matrix.row(r), count: w.matrix.rowBytes))
            let rebuilt = m.withRow(r) { Array(UnsafeRawBufferPointer(start: $0, count: m.rowBytes)) }
            #expect(rebuilt == original, "\(type) row \(r)")
        }
        guard BlockInt8GEMM.hasFastKernel else { return }
        let tokens = 5
        let x = BatchedMatVecTests.activations(count: tokens, columns: columns, using: &g)
        let pool = ThreadPool(threads: 2)
        var plain = [Float](repeating: .nan, count: tokens * rows), paneled = plain
        x.withUnsafeBufferPointer { xs in
            let activations = InterleavedActivations(xs.baseAddress!, tokens: tokens, columns: columns,
                                                     pool: pool)
            plain.withUnsafeMutableBufferPointer { BlockInt8GEMM.multiply([(w.matrix, $0.baseAddress!)], activations, pool: pool) }
            paneled.withUnsafeMutableBufferPointer { BlockInt8GEMM.multiply([(m, $0.baseAddress!)], activations, pool: pool) }
        }
        #expect(bitwiseEqual(paneled, plain[...]), "\(type) prompt GEMM")
    }

    /// The arena writes panels in place of a copy, and they give the same products.
    @Test func arenaHoldsPanels() {
        guard MatVec.hasAVX512Kernels else { return }
        var g = SeededGenerator(seed: 1001)
        let w = RandomWeights(.q5_1, rows: 40, columns: 64, using: &g)
        defer { w.free() }
        let arena = WeightArena(bytes: WeightArena.bytes(w.matrix, panels: true))
        let m = arena.panels(w.matrix)
        #expect(m.panels?.byteCount == WeightPanels.byteCount(w.matrix))
        var single = QuantizedActivations(capacity: 64)
        let x = BatchedMatVecTests.activations(count: 1, columns: 64, using: &g)
        x.withUnsafeBufferPointer { single.quantize($0.baseAddress!, count: 64) }
        var y = [Float](repeating: .nan, count: 40), e = y
        MatVec.multiply(m, single, into: &y, pool: ThreadPool(threads: 1))
        MatVec.multiply(Self.paneled(w), single, into: &e, pool: ThreadPool(threads: 1))
        #expect(bitwiseEqual(y, e[...]))
    }
}
