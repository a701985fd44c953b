import Testing
import QuillKernels

@Suite struct BlockInt8GEMMTests {
    static let quantisedTypes: [TensorType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]

    /// The unsigned form reproduces every weight: `scale·q + offset` equals the reference
    /// dequantiser's value up to float rounding, and the AVX-512 unpacking gives the scalar one's bytes.
    @Test(arguments: quantisedTypes)
    func unsignedRowsReproduceTheWeights(_ type: TensorType) {
        var g = SeededGenerator(seed: 5100 + UInt64(type.rawValue))
        let columns = 512, rows = 3
        let weights = RandomWeights(type, rows: rows, columns: columns, using: &g)
        defer { weights.free() }
        let size = UnsignedWeightRows.groupSize(type)
        var reference = [Float](repeating: 0, count: columns)
        for r in 0..<rows {
            var unpacked: [(q: [UInt8], scales: [Float], offsets: [Float])] = []
            for portable in [true, false] {
                var q = [UInt8](repeating: 0, count: columns)
                var scales = [Float](repeating: 0, count: columns / size), offsets = scales
                UnsignedWeightRows.unpack(type, weights.matrix.row(r), columns: columns, q: &q, scales: &scales,
                                          offsets: &offsets, portable: portable)
                unpacked.append((q, scales, offsets))
            }
            #expect(unpacked[0].q == unpacked[1].q && unpacked[0].scales == unpacked[1].scales
                    && unpacked[0].offsets == unpacked[1].offsets, "\(type) row \(r): AVX-512 vs scalar")
            ReferenceDequantizer.dequantize(type, weights.matrix.row(r), count: columns, into: &reference)
            let (q, scales, offsets) = unpacked[0]
            let largest = reference.map(abs).max()!
            var worst: Float = 0
            for k in 0..<columns {
                let value = scales[k / size] * Float(q[k]) + offsets[k / size]
                worst = max(worst, abs(value - reference[k]))
            }
            // One rounding of the product and one of the sum, relative to the row's magnitude.
            #expect(worst <= 4e-7 * largest * 64, "\(type) row \(r): max |Δw| \(worst) of \(largest)")
        }
    }

    /// The VNNI kernel against its plain twin, bitwise: rows not a multiple of 4, tokens not a
    /// multiple of 32 (a single token and 40 end on an odd 16-token vector, which the one-vector tile
    /// computes; 17 fills a pair), several products sharing activations, 1 and 2 threads.
    @Test(arguments: quantisedTypes)
    func matchesTheReferenceBitwise(_ type: TensorType) throws {
        try #require(BlockInt8GEMM.hasFastKernel, "the VNNI kernel is what this test checks")
        var g = SeededGenerator(seed: 5200 + UInt64(type.rawValue))
        let columns = 512
        let first = RandomWeights(type, rows: 37, columns: columns, using: &g)
        let second = RandomWeights(type, rows: 8, columns: columns, using: &g)
        defer { first.free(); second.free() }
        for tokens in [1, 17, 40] {
            let x = [Float].random(count: tokens * columns, in: -3...3, using: &g)
            let activations = x.withUnsafeBufferPointer {
                InterleavedActivations($0.baseAddress!, tokens: tokens, columns: columns, pool: ThreadPool(threads: 1))
            }
            var expected1 = [Float](repeating: .nan, count: tokens * 37), expected2 = [Float](repeating: .nan, count: tokens * 8)
            ReferenceBlockInt8GEMM.multiply(first.matrix, activations, into: &expected1)
            ReferenceBlockInt8GEMM.multiply(second.matrix, activations, into: &expected2)
            for threads in [1, 2] {
                var y1 = [Float](repeating: .nan, count: tokens * 37), y2 = [Float](repeating: .nan, count: tokens * 8)
                y1.withUnsafeMutableBufferPointer { p1 in
                    y2.withUnsafeMutableBufferPointer { p2 in
                        BlockInt8GEMM.multiply([(first.matrix, p1.baseAddress!), (second.matrix, p2.baseAddress!)], activations,
                                               pool: ThreadPool(threads: threads))
                    }
                }
                #expect(y1 == expected1 && y2 == expected2, "\(type), \(tokens) tokens, \(threads) threads")
            }
        }
    }

    /// A token's outputs depend on that token alone: the same bits whether it is quantised and
    /// multiplied alone or in the middle of a 45-token chunk (what lets a prompt chunk's results be
    /// shared by the prefix cache whatever the chunk around them).
    @Test func eachTokenIsIndependentOfTheChunk() {
        var g = SeededGenerator(seed: 5300)
        let columns = 256, rows = 12, tokens = 45
        let weights = RandomWeights(.q4_K, rows: rows, columns: columns, using: &g)
        defer { weights.free() }
        let x = [Float].random(count: tokens * columns, in: -2...2, using: &g)
        let pool = ThreadPool(threads: 2)
        var whole = [Float](repeating: .nan, count: tokens * rows)
        x.withUnsafeBufferPointer { xp in
            whole.withUnsafeMutableBufferPointer { yp in
                BlockInt8GEMM.multiply([(weights.matrix, yp.baseAddress!)],
                                       InterleavedActivations(xp.baseAddress!, tokens: tokens, columns: columns, pool: pool), pool: pool)
            }
        }
        for t in [0, 16, 31, 44] {
            var alone = [Float](repeating: .nan, count: rows)
            x.withUnsafeBufferPointer { xp in
                alone.withUnsafeMutableBufferPointer { yp in
                    BlockInt8GEMM.multiply([(weights.matrix, yp.baseAddress!)],
                                           InterleavedActivations(xp.baseAddress! + t * columns, tokens: 1, columns: columns, pool: pool),
                                           pool: pool)
                }
            }
            #expect(alone == Array(whole[(t * rows)..<((t + 1) * rows)]), "token \(t)")
        }
    }

    /// Against the exact product of the dequantised weights (Double sums): int8 activations in blocks
    /// of 32 keep the normalised error under 1 % for every type, and above 0 (it is not the f32 path).
    @Test(arguments: quantisedTypes)
    func isCloseToTheExactProduct(_ type: TensorType) {
        var g = SeededGenerator(seed: 5400 + UInt64(type.rawValue))
        let rows = 20, columns = 768, tokens = 33
        let weights = RandomWeights(type, rows: rows, columns: columns, using: &g)
        defer { weights.free() }
        let x = [Float].random(count: tokens * columns, in: -2...2, using: &g)
        var exact = [Float](repeating: 0, count: tokens * rows), y = exact
        ReferenceMatMul.multiply(weights.matrix, x, tokens: tokens, into: &exact)
        let pool = ThreadPool(threads: 2)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                BlockInt8GEMM.multiply([(weights.matrix, yp.baseAddress!)],
                                       InterleavedActivations(xp.baseAddress!, tokens: tokens, columns: columns, pool: pool), pool: pool)
            }
        }
        let error = normalisedError(y, exact)
        #expect(error < 0.01 && error > 0, "\(type): normalised error \(error)")
    }

    /// Float weights have no integers to multiply: the caller keeps its f32 path.
    @Test func supportsQuantisedTypesOnly() {
        var g = SeededGenerator(seed: 5500)
        for type in [TensorType.f32, .f16, .bf16] {
            let weights = RandomWeights(type, rows: 4, columns: 64, using: &g)
            defer { weights.free() }
            #expect(!BlockInt8GEMM.supports(weights.matrix))
        }
        let q4 = RandomWeights(.q4_0, rows: 4, columns: 64, using: &g)
        defer { q4.free() }
        #expect(BlockInt8GEMM.supports(q4.matrix))
    }
}
