import Foundation
import QuillKernels

/// `kernel-bench gemm [threads...]`: f32 products of the seq2seq models, `MatMul` (the batched f32
/// mat-vec up to 16 rows, OpenBLAS sgemm on dequantised panels beyond) against `PackedF32GEMM`
/// (weights repacked once), in GFLOP/s (2·tokens·rows·columns). Shapes: Whisper-base's encoder over
/// 1500 frames (f16 weights, packed as f32), its decoder's steps of 1 and 5 rows (f16 weights kept
/// f16 in the packed layout), and a Marian decoder step of 1, 5, 16 and 64 rows (f32 weights,
/// including its 58,101-row output projection).
func benchGEMM(threads: [Int]) {
    let cases: [(String, TensorType, Int, Int, [Int])] = [
        ("whisper encoder q/k/v/o", .f16, 512, 512, [1500]),
        ("whisper encoder ffn up", .f16, 2048, 512, [1500]),
        ("whisper encoder ffn down", .f16, 512, 2048, [1500]),
        ("whisper decoder ffn up (f16 kept)", .f16, 2048, 512, [1, 5]),
        ("whisper output projection (f16 kept)", .f16, 51865, 512, [1, 5]),
        ("marian decoder ffn up", .f32, 2048, 512, [1, 5, 16, 64]),
        ("marian output projection", .f32, 58101, 512, [1, 5, 16, 64]),
    ]
    row(["product", "rows × columns", "tokens", "threads", "MatMul µs", "packed µs", "MatMul GFLOPS", "packed GFLOPS", "speed-up"])
    row(["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"])
    for (name, type, rows, columns, tokenCounts) in cases {
        // Random f32 bits would hold denormals (microcode assists): real values instead.
        let w = type != .f32 ? randomMatrix(type, rows: rows, columns: columns) : {
            let values = UnsafeMutablePointer<Float>.allocate(capacity: rows * columns)
            for i in 0..<(rows * columns) { values[i] = Float.random(in: -0.1...0.1) }
            return WeightMatrix(type: .f32, rows: rows, columns: columns, data: UnsafeRawPointer(values))
        }()
        let packed = PackedF32Matrix(w, keepingHalfPrecision: name.hasSuffix("(f16 kept)"))!
        for tokens in tokenCounts {
            let x = (0..<(tokens * columns)).map { _ in Float.random(in: -1...1) }
            var y = [Float](repeating: 0, count: tokens * rows)
            let iterations = max(1, 20_000_000 / (tokens * rows * columns / 16 + 1))
            for t in threads {
                let pool = ThreadPool(threads: t)
                let plain = time(iterations) { MatMul.multiply(w, x, tokens: tokens, into: &y, pool: pool) }
                let fast = time(iterations) { PackedF32GEMM.multiply(packed, x, tokens: tokens, into: &y, ldy: rows, pool: pool) }
                let flops = 2.0 * Double(tokens * rows * columns)
                row([name, "\(rows) × \(columns)", "\(tokens)", "\(t)", f(plain * 1e6, 0), f(fast * 1e6, 0),
                     f(flops / plain / 1e9), f(flops / fast / 1e9), f(plain / fast, 2) + "×"])
            }
        }
    }
}

/// `kernel-bench int8gemm [threads...]`: `RowScaledInt8GEMM` (the seq2seq int8 path) on a Marian decoder
/// step's products at 16 and 64 rows (greedy and beam 4 over 16 sources), in GOPS (2·tokens·rows·columns).
func benchInt8GEMM(threads: [Int]) {
    let cases: [(String, Int, Int)] = [
        ("marian attention projection", 512, 512),
        ("marian ffn up", 2048, 512),
        ("marian ffn down", 512, 2048),
        ("marian output projection", 58101, 512),
    ]
    row(["product", "rows × columns", "tokens", "threads", "µs", "GOPS"])
    row(["---", "---", "---:", "---:", "---:", "---:"])
    for (name, rows, columns) in cases {
        let values = UnsafeMutablePointer<Float>.allocate(capacity: rows * columns)
        for i in 0..<(rows * columns) { values[i] = Float.random(in: -0.1...0.1) }
        let w = RowScaledInt8Matrix(WeightMatrix(type: .f32, rows: rows, columns: columns, data: UnsafeRawPointer(values)))!
        for tokens in [16, 64] {
            let x = (0..<(tokens * columns)).map { _ in Float.random(in: -1...1) }
            var y = [Float](repeating: 0, count: tokens * rows)
            let iterations = max(1, 40_000_000 / (tokens * rows * columns / 16 + 1))
            for t in threads {
                let pool = ThreadPool(threads: t)
                let seconds = time(iterations) { RowScaledInt8GEMM.multiply(w, x, tokens: tokens, into: &y, ldy: rows, pool: pool) }
                row([name, "\(rows) × \(columns)", "\(tokens)", "\(t)", f(seconds * 1e6, 0), f(2.0 * Double(tokens * rows * columns) / seconds / 1e9)])
            }
        }
        values.deallocate()
    }
}
