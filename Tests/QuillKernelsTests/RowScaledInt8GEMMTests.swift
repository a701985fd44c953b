import Testing
import QuillKernels

@Suite struct RowScaledInt8GEMMTests {
    /// The VNNI kernel against its plain twin: the same exact int32 sums and final rounding, so
    /// bitwise equal, for every tile remainder (tokens not a multiple of 6, rows not of 64 or of 16,
    /// the last block padded) at 1 and 2 threads (few tokens split the outputs, many the tokens),
    /// and with the portable path; with a bias, the product plus the bias in one rounding.
    @Test func matchesTheReferenceBitwise() {
        var g = SeededGenerator(seed: 4100)
        let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
        for (rows, columns) in [(16, 4), (64, 240), (80, 512), (48, 100), (20, 8), (101, 100)] {
            let weights = RandomWeights(.f16, rows: rows, columns: columns, using: &g)
            defer { weights.free() }
            let w = RowScaledInt8Matrix(weights.matrix)!
            for tokens in [1, 5, 7, 13, 100, 200] {
                let x = [Float].random(count: tokens * columns, in: -3...3, using: &g)
                var expected = [Float](repeating: .nan, count: tokens * rows)
                for c in stride(from: 0, to: tokens, by: 96) {
                    // The kernel quantises per chunk of rows; per-row scales make that the same as whole.
                    let count = min(96, tokens - c)
                    let xq = x.withUnsafeBufferPointer { RowScaledActivations($0.baseAddress! + c * columns, rows: count, columns: columns) }
                    expected.withUnsafeMutableBufferPointer {
                        ReferenceRowScaledInt8GEMM.multiply(w, xq, into: $0.baseAddress! + c * rows, ldy: rows)
                    }
                }
                let bias = [Float].random(count: rows, in: -1...1, using: &g)
                let biased = expected.indices.map { expected[$0] + bias[$0 % rows] }
                for pool in pools {
                    for portable in [false, true] {
                        var y = [Float](repeating: .nan, count: tokens * rows), z = y
                        MatVec.$usePortableKernels.withValue(portable) {
                            RowScaledInt8GEMM.multiply(w, x, tokens: tokens, into: &y, ldy: rows, pool: pool)
                            bias.withUnsafeBufferPointer {
                                RowScaledInt8GEMM.multiply(w, x, tokens: tokens, into: &z, ldy: rows, bias: $0.baseAddress!, pool: pool)
                            }
                        }
                        #expect(y == expected, "\(rows)×\(columns), \(tokens) tokens, \(pool.threadCount) threads, portable \(portable)")
                        #expect(z == biased, "with bias: \(rows)×\(columns), \(tokens) tokens, \(pool.threadCount) threads, portable \(portable)")
                    }
                }
            }
        }
    }

    /// Per-row int8 scales on both sides keep the product within about 1% of the exact f32 one
    /// (CTranslate2's int8 GEMMs quantise the same way).
    @Test func isCloseToTheFloatProduct() {
        var g = SeededGenerator(seed: 4200)
        let rows = 64, columns = 512, tokens = 50
        let weights = RandomWeights(.f32, rows: rows, columns: columns, using: &g)
        defer { weights.free() }
        let w = RowScaledInt8Matrix(weights.matrix)!
        let x = [Float].random(count: tokens * columns, using: &g)
        var exact = [Float](repeating: 0, count: tokens * rows)
        let values = weights.matrix.data.assumingMemoryBound(to: Float.self)
        for t in 0..<tokens {
            for n in 0..<rows {
                var sum = 0.0
                for k in 0..<columns { sum += Double(x[t * columns + k]) * Double(values[n * columns + k]) }
                exact[t * rows + n] = Float(sum)
            }
        }
        var y = [Float](repeating: .nan, count: tokens * rows)
        RowScaledInt8GEMM.multiply(w, x, tokens: tokens, into: &y, ldy: rows, pool: ThreadPool(threads: 1))
        let error = normalisedError(y, exact)
        #expect(error < 0.01, "normalised error \(error)")
        #expect(error > 0, "int8 quantisation cannot be exact on random floats")
    }

    /// Any row count packs (the last block of 16 padded with zero rows); columns must come in fours.
    @Test func packsAnyRowCountButNotColumnsOutOfFour() {
        var g = SeededGenerator(seed: 4300)
        let weights = RandomWeights(.f32, rows: 20, columns: 8, using: &g), odd = RandomWeights(.f32, rows: 16, columns: 6, using: &g)
        defer { weights.free(); odd.free() }
        let w = RowScaledInt8Matrix(weights.matrix)
        #expect(w?.rows == 20 && w?.blocks == 2)
        #expect(RowScaledInt8Matrix(odd.matrix) == nil)
        #expect(!RowScaledInt8Matrix.supports(rows: 16, columns: 6))
        #expect(RowScaledInt8Matrix.supports(rows: 33, columns: 8))
    }
}
