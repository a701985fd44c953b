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
}
