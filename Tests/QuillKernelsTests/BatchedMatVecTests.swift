import Testing
import QuillKernels

/// Batched products: every row bitwise equal to the one-row product (batch invariance), at 1 and
/// 2 threads, AVX-512 and portable kernels; and close to the reference twin.
@Suite struct BatchedMatVecTests {
    static let batchSizes = [1, 2, 3, 7, 8, 16, 17, 32]

    /// Widths of the SmolLM2 / Marian shapes that the type's blocks allow.
    static func widths(_ type: TensorType) -> [Int] {
        type.blockSize == 256 ? [256, 1536, 2048] : [576, 1536, 2048]
    }

    /// `count` activation rows of different magnitudes, one of them all zero (scale 0).
    static func activations(count: Int, columns: Int, using g: inout SeededGenerator) -> [Float] {
        var x: [Float] = []
        for i in 0..<count {
            let scale: Float = i == 5 ? 0 : Float(1 + i % 4) * 0.5
            x += [Float].random(count: columns, using: &g).map { $0 * scale }
        }
        return x
    }

    func checkInt8(_ type: TensorType, portable: Bool) {
        MatVec.$usePortableKernels.withValue(portable) {
            var g = SeededGenerator(seed: UInt64(type.rawValue) * 7 + (portable ? 1 : 0))
            let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
            let maxBatch = Self.batchSizes.max()!
            for columns in Self.widths(type) {
                var allY: [Float] = [], allTwin: [Float] = []
                for rows in [5, 67] {
                    let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
                    defer { w.free() }
                    let x = Self.activations(count: maxBatch, columns: columns, using: &g)
                    // Each row alone through the one-row kernel, and through the reference twin.
                    var alone = [Float](repeating: .nan, count: maxBatch * rows)
                    var twin = alone
                    var single = QuantizedActivations(capacity: columns)
                    for i in 0..<maxBatch {
                        x.withUnsafeBufferPointer { single.quantize($0.baseAddress! + i * columns, count: columns) }
                        alone.withUnsafeMutableBufferPointer { y in
                            MatVec.multiply(w.matrix, single, into: y.baseAddress! + i * rows, pool: pools[0])
                        }
                        twin.withUnsafeMutableBufferPointer { y in
                            ReferenceMatVec.multiply(w.matrix, single, into: y.baseAddress! + i * rows)
                        }
                    }
                    allY += alone
                    allTwin += twin
                    var xq = QuantizedActivationBatch(rows: maxBatch, columns: columns)
                    for batch in Self.batchSizes {
                        xq.quantize(x, rows: batch, columns: columns)
                        for pool in pools {
                            var y = [Float](repeating: .nan, count: batch * rows)
                            MatVec.multiply(w.matrix, xq, into: &y, pool: pool)
                            #expect(bitwiseEqual(y, alone[0..<(batch * rows)]),
                                    "\(type) \(rows)×\(columns) batch \(batch), \(pool.threadCount) threads, portable=\(portable)")
                        }
                    }
                    // The float-input form agrees with the one-row float-input call (which quantises
                    // for quantised types and takes the f32 path for float types).
                    var y = [Float](repeating: .nan, count: 7 * rows), expected = y
                    MatVec.multiply(w.matrix, x, rows: 7, into: &y, precision: .int8, pool: pools[1])
                    x.withUnsafeBufferPointer { xs in
                        expected.withUnsafeMutableBufferPointer { e in
                            for i in 0..<7 {
                                MatVec.multiply(w.matrix, xs.baseAddress! + i * columns, into: e.baseAddress! + i * rows,
                                                precision: .int8, pool: pools[0])
                            }
                        }
                    }
                    #expect(bitwiseEqual(y, expected[...]), "\(type) float-input batch")
                }
                // Against the same quantised activations the kernels differ by f32 rounding only.
                let e = normalisedError(allY, allTwin)
                #expect(e <= 1e-5, "\(type) ×\(columns) portable=\(portable) vs quantised twin: \(e)")
            }
        }
    }

    @Test(arguments: TensorType.allCases) func int8(type: TensorType) { checkInt8(type, portable: false) }
    @Test(arguments: TensorType.allCases) func portableInt8(type: TensorType) { checkInt8(type, portable: true) }

    func checkF32(_ type: TensorType, portable: Bool) {
        MatVec.$usePortableKernels.withValue(portable) {
            var g = SeededGenerator(seed: UInt64(type.rawValue) * 11 + (portable ? 1 : 0))
            let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
            let maxBatch = Self.batchSizes.max()!
            // Float types also get a ragged width (a column tail after the 32-column steps).
            let widths = type.blockSize == 1 ? [45] + Self.widths(type) : Self.widths(type)
            for columns in widths {
                var allY: [Float] = [], allExpected: [Float] = []
                let rows = 37
                let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
                defer { w.free() }
                let x = Self.activations(count: maxBatch, columns: columns, using: &g)
                var alone = [Float](repeating: .nan, count: maxBatch * rows), expected = alone
                x.withUnsafeBufferPointer { xs in
                    for i in 0..<maxBatch {
                        alone.withUnsafeMutableBufferPointer { y in
                            MatVec.multiply(w.matrix, xs.baseAddress! + i * columns, into: y.baseAddress! + i * rows,
                                            precision: .f32, pool: pools[0])
                        }
                        expected.withUnsafeMutableBufferPointer { y in
                            ReferenceMatVec.multiply(w.matrix, xs.baseAddress! + i * columns, into: y.baseAddress! + i * rows)
                        }
                    }
                }
                allY += alone
                allExpected += expected
                for batch in Self.batchSizes {
                    for pool in pools {
                        var y = [Float](repeating: .nan, count: batch * rows)
                        MatVec.multiply(w.matrix, x, rows: batch, into: &y, precision: .f32, pool: pool)
                        #expect(bitwiseEqual(y, alone[0..<(batch * rows)]),
                                "\(type) \(rows)×\(columns) f32 batch \(batch), \(pool.threadCount) threads, portable=\(portable)")
                    }
                }
                let e = normalisedError(allY, allExpected)
                #expect(e <= 1e-5, "\(type) ×\(columns) f32 portable=\(portable) vs reference: \(e)")
            }
        }
    }

    @Test(arguments: TensorType.allCases) func f32(type: TensorType) { checkF32(type, portable: false) }
    @Test(arguments: TensorType.allCases) func portableF32(type: TensorType) { checkF32(type, portable: true) }

    /// Several matrices sharing one batch (mixed types, one without a batched int8 kernel) give
    /// bitwise the separate products.
    @Test func sharedInput() {
        var g = SeededGenerator(seed: 4242)
        let pool = ThreadPool(threads: 2)
        let columns = 1536
        let matrices = [RandomWeights(.q4_0, rows: 70, columns: columns, using: &g),
                        RandomWeights(.q8_0, rows: 33, columns: columns, using: &g),
                        RandomWeights(.q4_K, rows: 40, columns: columns, using: &g),
                        RandomWeights(.q6_K, rows: 9, columns: columns, using: &g)]
        defer { for m in matrices { m.free() } }
        let batch = 11
        var xq = QuantizedActivationBatch(rows: 16, columns: 2048)
        xq.quantize(Self.activations(count: batch, columns: columns, using: &g), rows: batch, columns: columns)
        #expect(xq.rows == batch && xq.columns == columns && xq.rowCapacity == 16 && xq.columnCapacity == 2048)
        let fused = matrices.map { UnsafeMutablePointer<Float>.allocate(capacity: batch * $0.matrix.rows) }
        defer { for p in fused { p.deallocate() } }
        MatVec.multiply(zip(matrices, fused).map { (matrix: $0.matrix, output: $1) }, xq, pool: pool)
        for (m, out) in zip(matrices, fused) {
            var separate = [Float](repeating: .nan, count: batch * m.matrix.rows)
            MatVec.multiply(m.matrix, xq, into: &separate, pool: ThreadPool(threads: 1))
            let f = UnsafeBufferPointer(start: out, count: separate.count)
            #expect(bitwiseEqual(Array(f), separate[...]), "\(m.matrix.type) fused vs separate")
        }
    }

    /// A batch row holds exactly what `QuantizedActivations` holds for that row alone.
    @Test func quantisationMatchesOneRow() {
        var g = SeededGenerator(seed: 17)
        let columns = 576, count = 9
        let x = Self.activations(count: count, columns: columns, using: &g)
        var xq = QuantizedActivationBatch(rows: count, columns: columns)
        xq.quantize(x, rows: count, columns: columns)
        var single = QuantizedActivations(capacity: columns)
        for i in 0..<count {
            x.withUnsafeBufferPointer { single.quantize($0.baseAddress! + i * columns, count: columns) }
            let a = (0..<columns).map { xq.dequantized(row: i, column: $0).bitPattern }
            let b = (0..<columns).map { single.dequantized($0).bitPattern }
            #expect(a == b, "row \(i)")
        }
        // Copies keep their values when the original is re-quantised (copy-on-write storage).
        let copy = xq
        xq.quantize([Float](repeating: 0, count: columns), rows: 1, columns: columns)
        #expect(copy.rows == count && xq.rows == 1 && (0..<columns).contains { copy.dequantized(row: 1, column: $0) != 0 })
    }
}

/// Whether `a` and `b` hold the same bits (NaN-safe, and short failure messages).
func bitwiseEqual(_ a: [Float], _ b: ArraySlice<Float>) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}
