import Testing
import QuillKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Throughput figures, not a correctness test: runs only with QUILL_KERNEL_BENCH=1 and prints.
///   QUILL_KERNEL_BENCH=1 swift test -c release --filter KernelBench
@Suite(.serialized, .enabled(if: getenv("QUILL_KERNEL_BENCH") != nil))
struct KernelBench {
    func seconds(_ body: () -> Void) -> Double {
        var ts = timespec(), te = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        body()
        clock_gettime(CLOCK_MONOTONIC, &te)
        return Double(te.tv_sec - ts.tv_sec) + Double(te.tv_nsec - ts.tv_nsec) * 1e-9
    }

    /// Best-of-5 CPU time of this thread per iteration: steadier than wall time on a loaded
    /// machine, for single-threaded kernels.
    func bestCPU(_ iterations: Int, _ body: () -> Void) -> Double {
        (0..<5).map { _ in
            var ts = timespec(), te = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            for _ in 0..<iterations { body() }
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &te)
            return (Double(te.tv_sec - ts.tv_sec) + Double(te.tv_nsec - ts.tv_nsec) * 1e-9) / Double(iterations)
        }.min()!
    }

    /// Best-of-5 time per iteration.
    func best(_ iterations: Int, _ body: () -> Void) -> Double {
        (0..<5).map { _ in seconds { for _ in 0..<iterations { body() } } / Double(iterations) }.min()!
    }

    @Test func poolOverhead() {
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            let t = best(100_000) { pool.parallelFor(threads) { _ in } }
            print("BENCH pool threads=\(threads): empty parallelFor region \(fmt(t * 1e9)) ns")
        }
    }

    @Test func matVecShapes() {
        var g = SeededGenerator(seed: 5)
        let shapes: [(TensorType, Int, Int)] = [(.q4_1, 576, 576), (.q4_1, 192, 576), (.q4_1, 1536, 576),
                                                (.q4_1, 576, 1536), (.q8_0, 49152, 576)]
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            for (type, rows, columns) in shapes {
                let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
                defer { w.free() }
                let x = [Float].random(count: columns, using: &g)
                var y = [Float](repeating: 0, count: rows)
                var xq = QuantizedActivations(capacity: columns)
                xq.quantize(x, count: columns)
                let bytes = Double(w.matrix.rowBytes * rows)
                let iterations = max(10, Int(200_000_000 / bytes))
                let tInt8 = best(iterations) { MatVec.multiply(w.matrix, xq, into: &y, pool: pool) }
                let tF32 = best(iterations) { MatVec.multiply(w.matrix, x, into: &y, precision: .f32, pool: pool) }
                let tQuant = best(iterations) { xq.quantize(x, count: columns) }
                print("BENCH threads=\(threads) \(type) \(rows)x\(columns): int8 \(fmt(bytes / tInt8 / 1e9)) GB/s "
                      + "(\(fmt(tInt8 * 1e6)) µs), f32 \(fmt(bytes / tF32 / 1e9)) GB/s (\(fmt(tF32 * 1e6)) µs), "
                      + "quantise x \(fmt(tQuant * 1e6)) µs")
            }
        }
    }

    /// All SmolLM2-135M matrices (30 layers of Q4_1 q,k,v,o,gate,up,down + Q8_0 output, ~96 MB):
    /// streams from DRAM like a real decode step, unlike the cache-resident single-shape loop.
    @Test func modelSweep() {
        var g = SeededGenerator(seed: 6)
        var matrices: [RandomWeights] = []
        for _ in 0..<30 {
            for (r, c) in [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)] {
                matrices.append(RandomWeights(.q4_1, rows: r, columns: c, using: &g))
            }
        }
        matrices.append(RandomWeights(.q8_0, rows: 49152, columns: 576, using: &g))
        defer { for m in matrices { m.free() } }
        let bytes = Double(matrices.reduce(0) { $0 + $1.matrix.rowBytes * $1.matrix.rows })
        let x = [Float].random(count: 1536, using: &g)
        var y = [Float](repeating: 0, count: 49152)
        var xq = QuantizedActivations(capacity: 1536)
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            for precision in [MatVecPrecision.int8, .f32] {
                let t = best(3) {
                    for m in matrices {
                        if precision == .int8 {
                            xq.quantize(x, count: m.matrix.columns)
                            MatVec.multiply(m.matrix, xq, into: &y, pool: pool)
                        } else {
                            MatVec.multiply(m.matrix, x, into: &y, precision: .f32, pool: pool)
                        }
                    }
                }
                print("BENCH sweep threads=\(threads) \(precision): \(fmt(bytes / 1e6)) MB in \(fmt(t * 1e3)) ms = "
                      + "\(fmt(bytes / t / 1e9)) GB/s, \(fmt(1 / t)) matvec-only tok/s")
            }
        }
    }

    /// Batched int8 products (several activation rows per weight read) against one-row calls,
    /// in GOPS (2 operations per multiply-add), at the SmolLM2 shapes.
    @Test func batchedShapes() {
        var g = SeededGenerator(seed: 9)
        let shapes: [(TensorType, Int, Int)] = [(.q4_1, 1536, 576), (.q4_1, 576, 1536), (.q8_0, 49152, 576)]
        for threads in [1, 2] {
            let pool = ThreadPool(threads: threads)
            for (type, rows, columns) in shapes {
                let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
                defer { w.free() }
                for batch in [1, 4, 8, 16] {
                    let x = [Float].random(count: batch * columns, using: &g)
                    var y = [Float](repeating: 0, count: batch * rows)
                    var xq = QuantizedActivationBatch(rows: batch, columns: columns)
                    xq.quantize(x, rows: batch, columns: columns)
                    let ops = 2.0 * Double(batch * rows * columns)
                    let iterations = max(3, Int(2e9 / ops))
                    let t = threads == 1 ? bestCPU(iterations) { MatVec.multiply(w.matrix, xq, into: &y, pool: pool) }
                        : best(iterations) { MatVec.multiply(w.matrix, xq, into: &y, pool: pool) }
                    print("BENCH batched threads=\(threads) \(type) \(rows)x\(columns) batch \(batch): "
                          + "\(fmt(ops / t / 1e9)) GOPS (\(fmt(t * 1e6)) µs)")
                }
            }
        }
    }

    @Test func matMulPrompt() {
        var g = SeededGenerator(seed: 8)
        let tokens = 512
        for (type, rows, columns) in [(TensorType.q4_1, 576, 1536), (.q4_1, 1536, 576), (.q8_0, 49152, 576)] {
            let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
            defer { w.free() }
            let x = [Float].random(count: tokens * columns, using: &g)
            var y = [Float](repeating: 0, count: tokens * rows)
            let flops = 2.0 * Double(tokens * rows * columns)
            for threads in [1, 2] {
                let pool = ThreadPool(threads: threads)
                for blas in [true, false] where blas ? MatMul.blasAvailable : rows < 10_000 {
                    let t = MatMul.$disableBLAS.withValue(!blas) {
                        best(2) { MatMul.multiply(w.matrix, x, tokens: tokens, into: &y, pool: pool) }
                    }
                    print("BENCH matmul threads=\(threads) \(type) \(rows)x\(columns) tokens=\(tokens) "
                          + "\(blas ? "openblas" : "fallback"): \(fmt(flops / t / 1e9)) GFLOPS (\(fmt(t * 1e3)) ms)")
                }
            }
        }
    }
    /// Prompt GEMMs on the quantised path, one thread's CPU time: the int8 GEMM (activation
    /// quantisation included) against dequantised panels + sgemm, at Qwen2.5-0.5B's shapes.
    ///   QUILL_KERNEL_BENCH=1 swift test -c release --filter KernelBench/int8Prompt
    @Test func int8Prompt() {
        var g = SeededGenerator(seed: 9)
        let pool = ThreadPool(threads: 1)
        for (type, rows, columns) in [(TensorType.q5_0, 4864, 896), (.q6_K, 896, 4864), (.q4_K, 896, 4864), (.q8_0, 896, 896),
                                      (.q4_1, 1536, 576)] {
            let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
            defer { w.free() }
            for tokens in [128, 512] {
                let x = [Float].random(count: tokens * columns, using: &g)
                var y = [Float](repeating: 0, count: tokens * rows)
                let macs = Double(tokens * rows * columns)
                let sgemm = bestCPU(1) { MatMul.multiply(w.matrix, x, tokens: tokens, into: &y, pool: pool) }
                let int8 = bestCPU(1) {
                    x.withUnsafeBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            BlockInt8GEMM.multiply([(w.matrix, yp.baseAddress!)],
                                                   InterleavedActivations(xp.baseAddress!, tokens: tokens, columns: columns, pool: pool),
                                                   pool: pool)
                        }
                    }
                }
                print("BENCH int8 prompt \(type) \(rows)x\(columns) tokens=\(tokens): sgemm \(fmt(macs / sgemm / 1e9)) GMAC/s, "
                      + "int8 \(fmt(macs / int8 / 1e9)) GMAC/s, \(fmt(sgemm / int8))×")
            }
        }
    }
}

func fmt(_ v: Double) -> String { String(Int((v * 10).rounded()) / 10) + "." + String(Int((v * 10).rounded()) % 10) }
