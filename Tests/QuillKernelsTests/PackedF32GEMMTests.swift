import Testing
import QuillKernels

@Suite struct PackedF32GEMMTests {
    /// The AVX-512 kernel against its plain twin (one FMA chain per output in column order), bitwise,
    /// for every tile remainder (tokens not a multiple of 6, rows not of 64 or of 16, the last block
    /// padded, odd column counts, tokens past one chunk of 96), at 1 and 2 threads
    /// and with the portable path.
    @Test func matchesTheReferenceBitwise() {
        var g = SeededGenerator(seed: 5100)
        let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
        for (type, rows, columns, half) in [(TensorType.f32, 16, 4, false), (.f32, 64, 240, false), (.f16, 80, 512, false),
                                            (.f16, 80, 512, true), (.f32, 48, 100, true), (.f32, 20, 7, false),
                                            (.bf16, 101, 100, false), (.f16, 3, 33, true), (.f16, 272, 64, true), (.f32, 129, 16, false)] {
            let weights = RandomWeights(type, rows: rows, columns: columns, using: &g)
            defer { weights.free() }
            let w = PackedF32Matrix(weights.matrix, keepingHalfPrecision: half)!
            #expect(w.rows == rows && w.columns == columns && w.blocks == (rows + 15) / 16)
            #expect(w.halfPrecision == (half && type == .f16))
            for tokens in [1, 2, 5, 7, 13, 100, 200] {
                let x = [Float].random(count: tokens * columns, in: -3...3, using: &g)
                var expected = [Float](repeating: .nan, count: tokens * rows)
                ReferencePackedF32GEMM.multiply(w, x, tokens: tokens, into: &expected, ldy: rows)
                for pool in pools {
                    for portable in [false, true] {
                        var y = [Float](repeating: .nan, count: tokens * rows)
                        MatVec.$usePortableKernels.withValue(portable) {
                            PackedF32GEMM.multiply(w, x, tokens: tokens, into: &y, ldy: rows, pool: pool)
                        }
                        #expect(y == expected, "\(type) \(half ? "kept " : "")\(rows)×\(columns), \(tokens) tokens, \(pool.threadCount) threads, portable \(portable)")
                    }
                }
            }
        }
    }

    /// Packing keeps every weight (widened exactly from f16, or kept f16), and the product is the f32
    /// product up to rounding: normalised error against a Double-accumulated product of the source.
    @Test(arguments: [false, true])
    func isTheFloatProductOfTheSourceWeights(keepingHalfPrecision: Bool) {
        var g = SeededGenerator(seed: 5200)
        let rows = 70, columns = 300, tokens = 9
        let weights = RandomWeights(.f16, rows: rows, columns: columns, using: &g)
        defer { weights.free() }
        let w = PackedF32Matrix(weights.matrix, keepingHalfPrecision: keepingHalfPrecision)!
        var row = [Float](repeating: 0, count: columns)
        var exact = [Float](repeating: 0, count: tokens * rows)
        let x = [Float].random(count: tokens * columns, using: &g)
        for n in 0..<rows {
            ReferenceDequantizer.dequantize(.f16, weights.matrix.row(n), count: columns, into: &row)
            for k in 0..<columns { #expect(w.value(row: n, column: k) == row[k]) }
            for t in 0..<tokens {
                var sum = 0.0
                for k in 0..<columns { sum += Double(x[t * columns + k]) * Double(row[k]) }
                exact[t * rows + n] = Float(sum)
            }
        }
        var y = [Float](repeating: .nan, count: tokens * rows)
        PackedF32GEMM.multiply(w, x, tokens: tokens, into: &y, ldy: rows, pool: ThreadPool(threads: 2))
        let error = normalisedError(y, exact)
        #expect(error < 1e-6, "normalised error \(error)")
    }

    /// A row's outputs do not depend on the rows around it: each of 64 rows multiplied alone gives
    /// bitwise its row of the 64-row product (the batch invariance the f32 seq2seq path relies on).
    @Test func aRowAloneIsItsRowInABatch() {
        var g = SeededGenerator(seed: 5300)
        let rows = 200, columns = 128, tokens = 64
        let weights = RandomWeights(.f32, rows: rows, columns: columns, using: &g)
        defer { weights.free() }
        let w = PackedF32Matrix(weights.matrix)!
        let x = [Float].random(count: tokens * columns, using: &g)
        var batch = [Float](repeating: .nan, count: tokens * rows)
        PackedF32GEMM.multiply(w, x, tokens: tokens, into: &batch, ldy: rows, pool: ThreadPool(threads: 2))
        for t in 0..<tokens {
            var alone = [Float](repeating: .nan, count: rows)
            x.withUnsafeBufferPointer { PackedF32GEMM.multiply(w, $0.baseAddress! + t * columns, tokens: 1, into: &alone, ldy: rows,
                                                                pool: ThreadPool(threads: 1)) }
            #expect(alone == Array(batch[(t * rows)..<((t + 1) * rows)]), "row \(t)")
        }
    }
}
