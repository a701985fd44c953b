import Testing
import QuillKernels

// Batch invariance at the widths of the Q4_K_M model files (Gemma 3 270M: 640; Qwen2.5-Coder 0.5B:
// 896, feed-forward 4864; and 2048) for every quantised type, including those whose batched int8
// product runs the one-row kernel per activation row (Q6_K; all types on the portable kernels):
// every row of a batched product bitwise its one-row product, at 1 and 2 threads.

/// Every quantised type (the float types have no int8 path).
let allQuantisedTypes = TensorType.allCases.filter { $0.blockSize > 1 }

@Suite struct BatchedModelWidthTests {
    static let batchSizes = [1, 2, 3, 8, 17]

    static func widths(_ type: TensorType) -> [Int] {
        [640, 896, 2048, 4864].filter { $0 % type.blockSize == 0 }
    }

    /// One-row products of the first `count` rows of `x`, each through the one-row entry point.
    static func oneRow(_ w: WeightMatrix, _ x: [Float], count: Int, precision: MatVecPrecision, pool: ThreadPool) -> [Float] {
        let columns = w.columns, rows = w.rows
        var y = [Float](repeating: .nan, count: count * rows)
        var single = QuantizedActivations(capacity: columns)
        x.withUnsafeBufferPointer { xs in
            y.withUnsafeMutableBufferPointer { ys in
                for i in 0..<count {
                    let xi = xs.baseAddress! + i * columns, yi = ys.baseAddress! + i * rows
                    if precision == .int8 {
                        single.quantize(xi, count: columns)
                        MatVec.multiply(w, single, into: yi, pool: pool)
                    } else {
                        MatVec.multiply(w, xi, into: yi, precision: .f32, pool: pool)
                    }
                }
            }
        }
        return y
    }

    func check(_ type: TensorType, portable: Bool) {
        MatVec.$usePortableKernels.withValue(portable) {
            var g = SeededGenerator(seed: 2600 + UInt64(type.rawValue) * 2 + (portable ? 1 : 0))
            let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
            let maxBatch = Self.batchSizes.max()!
            for columns in Self.widths(type) {
                // 70 rows: two 32-row chunks for the threads, 2- and 4-row passes and leftover rows.
                let w = RandomWeights(type, rows: 70, columns: columns, using: &g)
                defer { w.free() }
                let x = BatchedMatVecTests.activations(count: maxBatch, columns: columns, using: &g)
                let label = "\(type) 70×\(columns) portable=\(portable)"

                // int8: pre-quantised batch and float input, against the one-row int8 products.
                let alone = Self.oneRow(w.matrix, x, count: maxBatch, precision: .int8, pool: pools[0])
                var twin = [Float](repeating: .nan, count: maxBatch * 70)
                var single = QuantizedActivations(capacity: columns)
                for i in 0..<maxBatch {
                    x.withUnsafeBufferPointer { single.quantize($0.baseAddress! + i * columns, count: columns) }
                    twin.withUnsafeMutableBufferPointer { ReferenceMatVec.multiply(w.matrix, single, into: $0.baseAddress! + i * 70) }
                }
                let e = normalisedError(alone, twin)
                #expect(e <= 1e-5, "\(label) one-row int8 vs quantised twin: \(e)")
                var xq = QuantizedActivationBatch(rows: maxBatch, columns: columns)
                for batch in Self.batchSizes {
                    xq.quantize(x, rows: batch, columns: columns)
                    for pool in pools {
                        var y = [Float](repeating: .nan, count: batch * 70)
                        MatVec.multiply(w.matrix, xq, into: &y, pool: pool)
                        #expect(bitwiseEqual(y, alone[0..<(batch * 70)]), "\(label) int8 batch \(batch), \(pool.threadCount) threads")
                        var z = [Float](repeating: .nan, count: batch * 70)
                        MatVec.multiply(w.matrix, x, rows: batch, into: &z, precision: .int8, pool: pool)
                        #expect(bitwiseEqual(z, alone[0..<(batch * 70)]), "\(label) float-input int8 batch \(batch), \(pool.threadCount) threads")
                    }
                }

                // f32: the batched f32 product against the one-row f32 products.
                let aloneF32 = Self.oneRow(w.matrix, x, count: maxBatch, precision: .f32, pool: pools[0])
                for batch in Self.batchSizes {
                    for pool in pools {
                        var y = [Float](repeating: .nan, count: batch * 70)
                        MatVec.multiply(w.matrix, x, rows: batch, into: &y, precision: .f32, pool: pool)
                        #expect(bitwiseEqual(y, aloneF32[0..<(batch * 70)]), "\(label) f32 batch \(batch), \(pool.threadCount) threads")
                    }
                }
            }
        }
    }

    @Test(arguments: allQuantisedTypes) func batchInvariance(type: TensorType) { check(type, portable: false) }
    @Test(arguments: allQuantisedTypes) func portableBatchInvariance(type: TensorType) { check(type, portable: true) }

    /// All quantised types sharing one batch in one fused call give bitwise the one-row products.
    @Test(arguments: [false, true]) func sharedInputAllTypes(portable: Bool) {
        MatVec.$usePortableKernels.withValue(portable) {
            var g = SeededGenerator(seed: 2700 + (portable ? 1 : 0))
            let pool = ThreadPool(threads: 2), columns = 2048, batch = 17
            let matrices = allQuantisedTypes.enumerated().map { i, type in
                RandomWeights(type, rows: 33 + 7 * i, columns: columns, using: &g)
            }
            defer { for m in matrices { m.free() } }
            let x = BatchedMatVecTests.activations(count: batch, columns: columns, using: &g)
            var xq = QuantizedActivationBatch(rows: batch, columns: columns)
            xq.quantize(x, rows: batch, columns: columns)
            let fused = matrices.map { UnsafeMutablePointer<Float>.allocate(capacity: batch * $0.matrix.rows) }
            defer { for p in fused { p.deallocate() } }
            MatVec.multiply(zip(matrices, fused).map { (matrix: $0.matrix, output: $1) }, xq, pool: pool)
            for (m, out) in zip(matrices, fused) {
                let alone = Self.oneRow(m.matrix, x, count: batch, precision: .int8, pool: ThreadPool(threads: 1))
                let f = Array(UnsafeBufferPointer(start: out, count: batch * m.matrix.rows))
                #expect(bitwiseEqual(f, alone[...]), "\(m.matrix.type) fused batch vs one-row, portable=\(portable)")
            }
        }
    }

    /// Which types take int8 arithmetic in the batched products: the same types as the one-row call.
    @Test func batchedInt8Coverage() {
        for type in TensorType.allCases {
            let expected = type.blockSize > 1 && (!KQuants.isKQuant(type) || MatVec.hasAVX512Kernels)
            #expect(MatVec.hasBatchedInt8Kernel(type) == expected, "\(type)")
            MatVec.$usePortableKernels.withValue(true) {
                #expect(MatVec.hasBatchedInt8Kernel(type) == (type.blockSize > 1 && !KQuants.isKQuant(type)), "\(type) portable")
            }
        }
    }
}
