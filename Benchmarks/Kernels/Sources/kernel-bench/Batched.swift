import Foundation
import QuillKernels

/// Batched mat-vec (`MatVec.multiply` over a `QuantizedActivationBatch`) against the one-row kernel
/// run once per row, side by side, for the SmolLM2-135M shapes: µs per call, the weight bytes
/// streamed per second times the rows served ("rows·GB/s": what one-row mat-vecs would need to
/// match), int8 GOPS-equivalent (2·rows·columns·batch / s), and the speed-up over the per-row loop.
func benchBatched(threads t: Int, types: [TensorType]) {
    let pool = ThreadPool(threads: t)
    // SmolLM2-135M's shapes and Qwen2.5-0.5B's feed-forward down projection (K-quant-sized).
    let shapes = [(576, 576), (1536, 576), (576, 1536), (49152, 576), (896, 4864)]
    for type in [TensorType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K] where types.isEmpty || types.contains(type) {
        // K-quant rows are whole 256-blocks: SmolLM2's 576-wide matrices cannot be Q4_K.
        for (rows, columns) in shapes where columns % type.blockSize == 0 {
            let w = randomMatrix(type, rows: rows, columns: columns)
            defer { w.data.deallocate() }
            let bytes = Double(w.rowBytes * rows)
            for batch in [1, 4, 8, 16, 32] {
                let x = (0..<batch * columns).map { _ in Float.random(in: -1...1) }
                var y = [Float](repeating: 0, count: batch * rows)
                var xq = QuantizedActivationBatch(rows: batch, columns: columns)
                xq.quantize(x, rows: batch, columns: columns)
                var singles: [QuantizedActivations] = []
                for i in 0..<batch {
                    var s = QuantizedActivations(capacity: columns)
                    x.withUnsafeBufferPointer { s.quantize($0.baseAddress! + i * columns, count: columns) }
                    singles.append(s)
                }
                let n = max(3, Int(3e7 / (bytes * Double(batch))))
                let batched = time(n) { MatVec.multiply(w, xq, into: &y, pool: pool) }
                let perRow = time(n) {
                    y.withUnsafeMutableBufferPointer { out in
                        for i in 0..<batch { MatVec.multiply(w, singles[i], into: out.baseAddress! + i * rows, pool: pool) }
                    }
                }
                let ops = 2 * Double(rows * columns * batch)
                row(["batched int8", "\(type) \(rows)×\(columns)", "\(batch)", "\(t)", f(batched * 1e6), f(perRow * 1e6),
                     f(bytes * Double(batch) / batched / 1e9), f(ops / batched / 1e9), f(perRow / batched, 2) + "×"])
            }
        }
    }
    // f32 precision: the batched f32 kernel (MatMul's path for up to 16 rows) against one f32
    // mat-vec per row; both give bitwise the same rows.
    // F16: Whisper-base's decoder (f16 weights used in place, 5 beams), its feed-forward and output head.
    let f32Cases: [(TensorType, Int, Int)] = [(.q8_0, 1536, 576), (.q4_1, 1536, 576), (.f32, 1536, 576),
                                              (.f16, 2048, 512), (.f16, 51865, 512)]
    for (type, rows, columns) in f32Cases where types.isEmpty || types.contains(type) {
        let w = type == .f32 ? randomF32Matrix(rows: rows, columns: columns)
            : type == .f16 ? randomF16Matrix(rows: rows, columns: columns) : randomMatrix(type, rows: rows, columns: columns)
        defer { w.data.deallocate() }
        let bytes = Double(w.rowBytes * rows)
        for batch in type == .f16 ? [1, 4, 5, 8] : [2, 4, 8, 16, 32] {
            let x = (0..<batch * columns).map { _ in Float.random(in: -1...1) }
            var y = [Float](repeating: 0, count: batch * rows)
            let n = max(3, Int(3e7 / (bytes * Double(batch))))
            let batched = time(n) { MatVec.multiply(w, x, rows: batch, into: &y, precision: .f32, pool: pool) }
            let perRow = time(n) {
                x.withUnsafeBufferPointer { xs in
                    y.withUnsafeMutableBufferPointer { out in
                        for i in 0..<batch {
                            MatVec.multiply(w, xs.baseAddress! + i * columns, into: out.baseAddress! + i * rows,
                                            precision: .f32, pool: pool)
                        }
                    }
                }
            }
            let ops = 2 * Double(rows * columns * batch)
            row(["batched f32", "\(type) \(rows)×\(columns)", "\(batch)", "\(t)", f(batched * 1e6), f(perRow * 1e6),
                 f(bytes * Double(batch) / batched / 1e9), f(ops / batched / 1e9), f(perRow / batched, 2) + "×"])
        }
    }
}

/// F16 weights in [-1, 1].
func randomF16Matrix(rows: Int, columns: Int) -> WeightMatrix {
    let data = UnsafeMutableRawPointer.allocate(byteCount: 2 * rows * columns, alignment: 64)
    for i in 0..<rows * columns { data.storeBytes(of: Float16(Float.random(in: -1...1)), toByteOffset: 2 * i, as: Float16.self) }
    return WeightMatrix(type: .f16, rows: rows, columns: columns, data: UnsafeRawPointer(data))
}

/// F32 weights in [-1, 1] (random bytes would be NaNs and subnormals, which time differently).
func randomF32Matrix(rows: Int, columns: Int) -> WeightMatrix {
    let data = UnsafeMutableRawPointer.allocate(byteCount: 4 * rows * columns, alignment: 64)
    for i in 0..<rows * columns { data.storeBytes(of: Float.random(in: -1...1), toByteOffset: 4 * i, as: Float.self) }
    return WeightMatrix(type: .f32, rows: rows, columns: columns, data: UnsafeRawPointer(data))
}
