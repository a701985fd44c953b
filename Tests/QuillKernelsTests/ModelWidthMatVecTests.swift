import Testing
import QuillKernels

// The quant types of real Q4_K_M files (Gemma 3 270M: width 640; Qwen2.5-Coder 0.5B: width 896,
// feed-forward 4864) at those widths: every fast mat-vec path against its reference twin.

/// Types whose kernels were added for these files, beside the ones they share layers with.
let modelFileTypes: [TensorType] = [.q5_0, .q5_1, .q5_K, .q6_K, .q4_K, .q8_0]

/// Row widths of the two models' matrices that a type's blocks can tile.
private func widths(_ type: TensorType) -> [Int] {
    [640, 896, 2048, 4864].filter { $0 % type.blockSize == 0 }
}

@Test(arguments: modelFileTypes) func matVecAtModelWidths(type: TensorType) {
    var g = SeededGenerator(seed: 1300 + UInt64(type.rawValue))
    let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
    for columns in widths(type) {
        // 70 rows: two 32-row chunks for the threads, 4-row passes and a leftover row or two.
        let w = RandomWeights(type, rows: 70, columns: columns, using: &g)
        defer { w.free() }
        let x = [Float].random(count: columns, using: &g)
        var exact = [Float](repeating: 0, count: 70), twin = exact
        ReferenceMatVec.multiply(w.matrix, x, into: &exact)
        var xq = QuantizedActivations(capacity: columns)
        xq.quantize(x, count: columns)
        ReferenceMatVec.multiply(w.matrix, xq, into: &twin)
        for precision in [MatVecPrecision.f32, .int8] {
            for portable in [false, true] {
                let outputs = pools.map { pool in
                    var y = [Float](repeating: .nan, count: 70)
                    MatVec.$usePortableKernels.withValue(portable) {
                        MatVec.multiply(w.matrix, x, into: &y, precision: precision, pool: pool)
                    }
                    return y
                }
                let label = "\(type) 70×\(columns) \(precision) portable=\(portable)"
                #expect(outputs[0].map(\.bitPattern) == outputs[1].map(\.bitPattern), "\(label): threads differ")
                let error = normalisedError(outputs[0], exact)
                // f32: rounding only. int8: the activation quantisation (~0.3–0.5 % normalised).
                #expect(error <= (precision == .f32 ? 1e-5 : 1e-2), "\(label): \(error)")
                if precision == .int8 {
                    let e = normalisedError(outputs[0], twin)
                    #expect(e <= 1e-5, "\(label) vs quantised twin: \(e)")
                }
            }
        }
    }
}

/// The GEMM path (dequantised panels, with and without BLAS) at the models' widths.
@Test(arguments: [TensorType.q5_0, .q5_1, .q5_K]) func matMulAtModelWidths(type: TensorType) {
    var g = SeededGenerator(seed: 1400 + UInt64(type.rawValue))
    let pool = ThreadPool(threads: 2)
    for columns in widths(type) {
        let w = RandomWeights(type, rows: 40, columns: columns, using: &g)
        defer { w.free() }
        let x = [Float].random(count: 12 * columns, using: &g)
        var expected = [Float](repeating: 0, count: 12 * 40)
        ReferenceMatMul.multiply(w.matrix, x, tokens: 12, into: &expected)
        for blas in [true, false] {
            for portable in [false, true] {
                var y = [Float](repeating: .nan, count: 12 * 40)
                MatMul.$disableBLAS.withValue(!blas) {
                    MatVec.$usePortableKernels.withValue(portable) {
                        MatMul.multiply(w.matrix, x, tokens: 12, into: &y, pool: pool)
                    }
                }
                let error = normalisedError(y, expected)
                #expect(error <= 1e-5, "\(type) 40×\(columns) blas=\(blas) portable=\(portable): \(error)")
            }
        }
    }
}

/// Gemma 3's residual activations reach ~1e5 (beyond float16). Per-block int8 quantisation scales
/// each block by its own max, so large blocks neither overflow nor swamp small ones: every element
/// stays within half a step of its block, and the int8 kernels still match their twins.
@Test func int8ActivationsOfLargeMagnitude() {
    var g = SeededGenerator(seed: 1500)
    let columns = 2048
    var x = [Float].random(count: columns, using: &g)
    for i in 0..<256 { x[i] *= 1e5 }                    // blocks 0–7: ±1e5
    x[300] = 2.5e5                                        // one spike in a block of ±1
    for i in 512..<544 { x[i] = -3e5 + Float(i) }        // a block of near-equal large values
    for i in 544..<576 { x[i] = 0 }                       // an all-zero block
    for i in 1024..<1056 { x[i] *= 1e-4 }                // and a tiny one
    var xq = QuantizedActivations(capacity: columns)
    xq.quantize(x, count: columns)
    for b in 0..<columns / 32 {
        let amax = x[(32 * b)..<(32 * b + 32)].map { abs($0) }.max()!
        for i in (32 * b)..<(32 * b + 32) {
            let v = xq.dequantized(i)
            #expect(v.isFinite && abs(v - x[i]) <= amax / 254 * 1.0001, "element \(i): \(x[i]) → \(v)")
        }
    }
    let pool = ThreadPool(threads: 2)
    for type in [TensorType.q8_0, .q4_0, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K] {
        let w = RandomWeights(type, rows: 40, columns: columns, using: &g)
        defer { w.free() }
        var y = [Float](repeating: .nan, count: 40), twin = y, exact = y
        MatVec.multiply(w.matrix, xq, into: &y, pool: pool)
        ReferenceMatVec.multiply(w.matrix, xq, into: &twin)
        ReferenceMatVec.multiply(w.matrix, x, into: &exact)
        #expect(y.allSatisfy(\.isFinite) && y.contains { abs($0) > 1e4 }, "\(type): \(y.prefix(4))")
        #expect(normalisedError(y, twin) <= 1e-5, "\(type) vs quantised twin: \(normalisedError(y, twin))")
        #expect(normalisedError(y, exact) <= 1e-2, "\(type) vs exact: \(normalisedError(y, exact))")
    }
}
