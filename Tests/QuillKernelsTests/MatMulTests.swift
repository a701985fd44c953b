import Testing
import QuillKernels

@Suite(.serialized) struct MatMulTests {
    @Test func openBLASLoads() {
        // libopenblas is installed on the development machines; the fallback is tested below.
        #expect(MatMul.blasAvailable)
    }

    @Test(arguments: TensorType.allCases)
    func matchesReference(type: TensorType) {
        var g = SeededGenerator(seed: 1000 + UInt64(type.rawValue))
        let pool = ThreadPool(threads: 2)
        for columns in type.blockSize == 256 ? [256, 1536] : type.blockSize == 32 ? [32, 96, 576] : [7, 32, 100] {
            for rows in [1, 17, 300] {
                let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
                defer { w.free() }
                for tokens in [1, 2, 7, 33] {
                    let x = [Float].random(count: tokens * columns, using: &g)
                    var expected = [Float](repeating: 0, count: tokens * rows)
                    ReferenceMatMul.multiply(w.matrix, x, tokens: tokens, into: &expected)
                    for blas in [true, false] {
                        var y = [Float](repeating: .nan, count: tokens * rows)
                        MatMul.$disableBLAS.withValue(!blas) {
                            MatMul.multiply(w.matrix, x, tokens: tokens, into: &y, pool: pool)
                        }
                        let error = normalisedError(y, expected)
                        #expect(error <= 1e-5, "\(type) \(rows)×\(columns) tokens \(tokens) blas=\(blas): \(error)")
                    }
                }
            }
        }
    }

    /// A few tokens (decoder rows: beams × sources, up to 16) take the batched f32 mat-vec:
    /// bitwise the per-token f32 mat-vec results, and the same at 1 and 2 threads.
    @Test(arguments: [TensorType.f32, .f16, .q8_0, .q4_0])
    func fewTokensAreMatVecsPerToken(type: TensorType) {
        var g = SeededGenerator(seed: 2000 + UInt64(type.rawValue))
        let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
        for (rows, columns) in [(17, 64), (300, 512), (1000, 2048)] {
            let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
            defer { w.free() }
            for tokens in [2, 3, 5, 8, 9, 13, 16] {
                let x = [Float].random(count: tokens * columns, using: &g)
                var perToken = [Float](repeating: 0, count: tokens * rows)
                x.withUnsafeBufferPointer { xb in
                    perToken.withUnsafeMutableBufferPointer { yb in
                        for t in 0..<tokens {
                            MatVec.multiply(w.matrix, xb.baseAddress! + t * columns, into: yb.baseAddress! + t * rows,
                                            precision: .f32, pool: pools[1])
                        }
                    }
                }
                for pool in pools {
                    var y = [Float](repeating: .nan, count: tokens * rows)
                    MatMul.multiply(w.matrix, x, tokens: tokens, into: &y, pool: pool)
                    #expect(y == perToken, "\(type) \(rows)×\(columns) tokens \(tokens) threads \(pool.threadCount)")
                }
            }
        }
    }
}
