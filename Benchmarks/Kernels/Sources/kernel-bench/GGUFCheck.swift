// `kernel-bench gguf FILE...`: every quantised matrix of real model files through the fast kernels,
// against the reference twins, and timed. Random weights exercise every bit pattern; a real file
// adds real scale distributions and real shapes (Gemma 3's width 640, Qwen2.5's 896 and 4864).
import Foundation
import QuillKernels
import QuillModels

struct TypeTally {
    var tensors = 0, bytes = 0.0, int8Seconds = 0.0, f32Seconds = 0.0
    var f32VsExact = 0.0, int8VsTwin = 0.0, int8VsExact = 0.0, portableF32 = 0.0, portableInt8VsTwin = 0.0
    var dequantMismatches = 0
}

func ggufCheck(paths: [String]) throws {
    print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, load \(loadAverage())\n")
    let pool = ThreadPool(threads: 1)
    for path in paths {
        let file = try GGUFFile(path: path)
        var tally: [TensorType: TypeTally] = [:]
        for info in file.tensors where info.type.blockSize > 1 && info.dimensions.count == 2 {
            let m = try file.weightMatrix(info.name)
            // Errors on the first 96 rows (the scalar Double reference is slow); speed on the whole matrix.
            let sample = WeightMatrix(type: m.type, rows: min(m.rows, 96), columns: m.columns, data: m.data)
            let x = (0..<m.columns).map { _ in Float.random(in: -1...1) }
            var xq = QuantizedActivations(capacity: m.columns)
            xq.quantize(x, count: m.columns)
            let n = sample.rows
            var exact = [Float](repeating: 0, count: n), twin = exact, y = exact
            ReferenceMatVec.multiply(sample, x, into: &exact)
            ReferenceMatVec.multiply(sample, xq, into: &twin)
            var t = tally[m.type, default: TypeTally()]
            t.tensors += 1
            MatVec.multiply(sample, x, into: &y, precision: .f32, pool: pool)
            t.f32VsExact = max(t.f32VsExact, normalised(y, exact))
            MatVec.multiply(sample, xq, into: &y, pool: pool)
            t.int8VsTwin = max(t.int8VsTwin, normalised(y, twin))
            t.int8VsExact = max(t.int8VsExact, normalised(y, exact))
            MatVec.$usePortableKernels.withValue(true) {
                MatVec.multiply(sample, x, into: &y, precision: .f32, pool: pool)
                t.portableF32 = max(t.portableF32, normalised(y, exact))
                MatVec.multiply(sample, xq, into: &y, pool: pool)
                t.portableInt8VsTwin = max(t.portableInt8VsTwin, normalised(y, twin))
            }
            if KQuants.isKQuant(m.type) || FiveBitQuants.isFiveBit(m.type) {
                // The GEMM panels' SIMD dequantisation must be bitwise the reference.
                let reference = ReferenceDequantizer.dequantize(WeightMatrix(type: m.type, rows: 4, columns: m.columns, data: m.data))
                var simd = [Float](repeating: .nan, count: reference.count)
                simd.withUnsafeMutableBufferPointer { o in
                    for r in 0..<4 {
                        let out = o.baseAddress! + r * m.columns
                        if KQuants.isKQuant(m.type) {
                            KQuants.dequantize(m.type, m.row(r), count: m.columns, into: out)
                        } else {
                            FiveBitQuants.dequantize(m.type, m.row(r), count: m.columns, into: out)
                        }
                    }
                }
                t.dequantMismatches += zip(simd, reference).filter { $0.bitPattern != $1.bitPattern }.count
            }
            var full = [Float](repeating: 0, count: m.rows)
            func best(_ body: () -> Void) -> Double {
                body()
                return (0..<3).map { _ in
                    let start = DispatchTime.now().uptimeNanoseconds
                    body()
                    return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                }.min()!
            }
            t.int8Seconds += best { MatVec.multiply(m, xq, into: &full, pool: pool) }
            t.f32Seconds += best { MatVec.multiply(m, x, into: &full, precision: .f32, pool: pool) }
            t.bytes += Double(m.rowBytes * m.rows)
            tally[m.type] = t
        }
        print("\((path as NSString).lastPathComponent): normalised errors (worst tensor, first 96 rows, x uniform in ±1) "
              + "and GB/s over all of a type's matrices, 1 thread\n")
        row(["type", "tensors", "MiB", "f32 vs exact", "int8 vs int8 twin", "int8 vs exact", "portable f32",
             "portable int8 vs twin", "SIMD dequant ≠ ref", "int8 GB/s", "f32 GB/s"])
        row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"])
        for (type, t) in tally.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            func e(_ v: Double) -> String { String(format: "%.1e", v) }
            row(["\(type)", "\(t.tensors)", f(t.bytes / 1048576), e(t.f32VsExact), e(t.int8VsTwin), e(t.int8VsExact),
                 e(t.portableF32), e(t.portableInt8VsTwin), "\(t.dequantMismatches)", f(t.bytes / t.int8Seconds / 1e9),
                 f(t.bytes / t.f32Seconds / 1e9)])
        }
        print()
    }
}

/// ‖a − b‖ / ‖b‖.
func normalised(_ a: [Float], _ b: [Float]) -> Double {
    var d = 0.0, n = 0.0
    for i in a.indices {
        d += Double(a[i] - b[i]) * Double(a[i] - b[i])
        n += Double(b[i]) * Double(b[i])
    }
    return n == 0 ? d.squareRoot() : (d / n).squareRoot()
}
