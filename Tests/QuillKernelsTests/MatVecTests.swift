import Testing
import QuillKernels

/// Random weights built directly as bytes in each type's block layout. Scales are random halves
/// of realistic magnitude; nibbles and int8 values cover their full ranges.
struct RandomWeights {
    let matrix: WeightMatrix
    private let bytes: UnsafeMutableRawPointer

    init(_ type: TensorType, rows: Int, columns: Int, using g: inout SeededGenerator) {
        let size = type.byteCount(elements: rows * columns)!
        bytes = .allocate(byteCount: max(size, 1), alignment: 64)
        func half(_ range: ClosedRange<Float>) -> UInt16 { Float16(Float.random(in: range, using: &g)).bitPattern }
        let p = bytes
        switch type {
        case .f32:
            for i in 0..<rows * columns { p.storeBytes(of: Float.random(in: -1...1, using: &g), toByteOffset: 4 * i, as: Float.self) }
        case .f16:
            for i in 0..<rows * columns { p.storeBytes(of: half(-1...1), toByteOffset: 2 * i, as: UInt16.self) }
        case .bf16:
            for i in 0..<rows * columns {
                let bits = Float.random(in: -1...1, using: &g).bitPattern >> 16
                p.storeBytes(of: UInt16(bits), toByteOffset: 2 * i, as: UInt16.self)
            }
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0:
            for b in 0..<rows * columns / 32 {
                let block = p + b * type.bytesPerBlock
                block.storeBytes(of: half(0.001...0.05), as: UInt16.self)
                var payload = 2
                if type == .q4_1 || type == .q5_1 { block.storeBytes(of: half(-0.2...0.2), toByteOffset: 2, as: UInt16.self); payload = 4 }
                for j in payload..<type.bytesPerBlock {
                    block.storeBytes(of: UInt8.random(in: 0...255, using: &g), toByteOffset: j, as: UInt8.self)
                }
            }
        case .q4_K, .q5_K, .q6_K:
            // Random bytes everywhere (6-bit scales and mins, nibbles, high bits, int8 scales), then
            // the f16 super-block scales: d·sc·q reaches ~±1.
            for i in 0..<size { p.storeBytes(of: UInt8.random(in: 0...255, using: &g), toByteOffset: i, as: UInt8.self) }
            for b in 0..<rows * columns / 256 {
                let block = p + b * type.bytesPerBlock
                if type == .q4_K {
                    block.storeBytes(of: half(0.0002...0.002), as: UInt16.self)
                    block.storeBytes(of: half(0.0002...0.02), toByteOffset: 2, as: UInt16.self)
                } else if type == .q5_K {
                    block.storeBytes(of: half(0.0001...0.001), as: UInt16.self)
                    block.storeBytes(of: half(0.0002...0.02), toByteOffset: 2, as: UInt16.self)
                } else {
                    block.storeBytes(of: half(0.0002...0.001), toByteOffset: 208, as: UInt16.self)
                }
            }
        }
        matrix = WeightMatrix(type: type, rows: rows, columns: columns, data: UnsafeRawPointer(bytes))
    }

    func free() { bytes.deallocate() }
}

let quantisedTypes: [TensorType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0]

/// Column counts: whole blocks (quantised types, 32 or 256) plus, for float types, ragged tails.
func testColumns(_ type: TensorType) -> [Int] {
    switch type.blockSize {
    case 32: return [32, 64, 96, 576, 1536]
    case 256: return [256, 512, 1536]
    default: return [1, 7, 32, 45, 100, 576, 1000]
    }
}

@Suite struct MatVecTests {
    func check(_ type: TensorType, precision: MatVecPrecision, portable: Bool) {
        MatVec.$usePortableKernels.withValue(portable) { check(type, precision: precision) }
    }

    private func check(_ type: TensorType, precision: MatVecPrecision) {
        var g = SeededGenerator(seed: UInt64(type.rawValue) * 31 + (precision == .f32 ? 0 : 1))
        let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
        for columns in testColumns(type) {
            // Errors are normalised over all outputs for one column count: a single short dot
            // product can cancel to near zero, which makes its own relative error meaningless.
            var allY: [Float] = [], allExpected: [Float] = [], allTwin: [Float] = []
            for rows in [1, 3, 4, 17, 33, 70] {
                let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
                defer { w.free() }
                let x = [Float].random(count: columns, using: &g)
                var expected = [Float](repeating: 0, count: rows)
                ReferenceMatVec.multiply(w.matrix, x, into: &expected)
                var outputs: [[Float]] = []
                for pool in pools {
                    var y = [Float](repeating: .nan, count: rows)
                    MatVec.multiply(w.matrix, x, into: &y, precision: precision, pool: pool)
                    outputs.append(y)
                }
                allY += outputs[0]
                allExpected += expected
                #expect(outputs[0].map(\.bitPattern) == outputs[1].map(\.bitPattern),
                        "\(type) \(rows)×\(columns): 1 and 2 threads differ")
                if precision == .int8 && type.blockSize > 1 {
                    // The exact product with the same quantised activations.
                    var xq = QuantizedActivations(capacity: columns)
                    xq.quantize(x, count: columns)
                    var twin = [Float](repeating: 0, count: rows)
                    ReferenceMatVec.multiply(w.matrix, xq, into: &twin)
                    allTwin += twin
                }
            }
            let error = normalisedError(allY, allExpected)
            // f32 path: f32 rounding only (~1e-7). int8 path: each activation is rounded to
            // 1/254 of its block's max |x|; over a dot product that averages to ~0.3–0.5%.
            let tolerance = precision == .f32 || type.blockSize == 1 ? 1e-5 : 1e-2
            #expect(error <= tolerance, "\(type) ×\(columns) \(precision) portable=\(MatVec.usePortableKernels): \(error)")
            if !allTwin.isEmpty {
                // Against the same quantised activations the int8 kernels differ by f32 rounding only.
                let e = normalisedError(allY, allTwin)
                #expect(e <= 1e-5, "\(type) ×\(columns) int8 vs quantised twin: \(e)")
            }
        }
    }

    @Test(arguments: TensorType.allCases) func f32Path(type: TensorType) { check(type, precision: .f32, portable: false) }
    @Test(arguments: TensorType.allCases) func int8Path(type: TensorType) { check(type, precision: .int8, portable: false) }
    @Test(arguments: TensorType.allCases) func portableF32(type: TensorType) { check(type, precision: .f32, portable: true) }
    @Test(arguments: TensorType.allCases) func portableInt8(type: TensorType) { check(type, precision: .int8, portable: true) }

    @Test func quantisedActivationsAreReusable() {
        var g = SeededGenerator(seed: 99)
        let pool = ThreadPool(threads: 2)
        let a = RandomWeights(.q4_1, rows: 576, columns: 576, using: &g), b = RandomWeights(.q8_0, rows: 192, columns: 576, using: &g)
        defer { a.free(); b.free() }
        let x = [Float].random(count: 576, using: &g)
        var xq = QuantizedActivations(capacity: 1536)
        xq.quantize(x, count: 576)
        #expect(xq.count == 576 && xq.capacity == 1536)
        for w in [a.matrix, b.matrix] {
            var shared = [Float](repeating: 0, count: w.rows), direct = shared
            MatVec.multiply(w, xq, into: &shared, pool: pool)
            MatVec.multiply(w, x, into: &direct, precision: .int8, pool: pool)
            #expect(shared == direct)
        }
        // Quantisation matches the documented rule: d = amax/127, q = round(x/d), |d·q − x| ≤ d/2.
        let amax = x[0..<32].map { abs($0) }.max()!
        for i in 0..<32 { #expect(abs(xq.dequantized(i) - x[i]) <= amax / 254 * 1.0001) }
        // A copy keeps its values when the original is re-quantised (copy-on-write storage).
        let copy = xq
        xq.quantize([Float](repeating: 0, count: 64), count: 64)
        #expect(copy.count == 576 && xq.count == 64 && copy.dequantized(5) != 0 || x[5] == 0)
    }
}
