// Kernel micro-benchmarks: GB/s and GFLOPS per kernel and SmolLM2-135M shape, against this
// machine's limits (fp32 FMA peak 171 GFLOPS per core / 338 on two; DRAM 15.7 GB/s on one core,
// 24.6 on two — measured for issue 5).
//
//   cd Benchmarks/Kernels && swift run -c release kernel-bench [threads...]     (default: 1 2)
//   cd Benchmarks/Kernels && swift run -c release kernel-bench batched [Q4_0 Q5_0 Q5_K Q6_K F32 …] [threads...]
//   cd Benchmarks/Kernels && swift run -c release kernel-bench quants [threads...] (default: 1)
//   cd Benchmarks/Kernels && swift run -c release kernel-bench gguf FILE...          (real files' matrices)
//   cd Benchmarks/Kernels && swift run -c release kernel-bench attention [threads...]  (Whisper-base's attention shapes)
//   cd Benchmarks/Kernels && swift run -c release kernel-bench decode-attention [threads...] (one token over 2,048 F16 positions)
//   cd Benchmarks/Kernels && swift run -c release kernel-bench panels [threads...]   (int8 mat-vecs: file blocks vs WeightPanels, 1–16 rows)
//   cd Benchmarks/Kernels && swift run -c release kernel-bench gemm [threads...]       (f32 seq2seq products: sgemm vs packed)
//   cd Benchmarks/Kernels && swift run -c release kernel-bench int8gemm [threads...]   (int8 seq2seq products, GOPS)
//
// `quants` compares the mat-vec of every quantised type side by side (GB/s of weights read, int8 and
// f32 paths) at 4096×4096 and at Qwen2.5-0.5B's feed-forward down projection, 896×4864.
//
// Shapes are rows × columns of W in y = W·x (GGUF lists them the other way round).
// "hot" mat-vec figures repeat one matrix (it sits in L2/L3: the kernel's compute speed);
// "sweep" walks every matrix of the model once per step as decoding does (memory speed).
import Foundation
import QuillKernels

let peakGFLOPS: [Int: Double] = [1: 171, 2: 338]
let memoryGBs: [Int: Double] = [1: 15.7, 2: 24.6]

/// Best-of-5 seconds per call of `body`, each sample running it `iterations` times.
func time(_ iterations: Int, _ body: () -> Void) -> Double {
    body()  // warm-up
    var best = Double.infinity
    for _ in 0..<5 {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations { body() }
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 / Double(iterations))
    }
    return best
}

/// A matrix of random blocks with realistic scales, in freshly allocated memory.
func randomMatrix(_ type: TensorType, rows: Int, columns: Int) -> WeightMatrix {
    let bytes = rows * columns / type.blockSize * type.bytesPerBlock
    let data = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    // SplitMix64, 8 bytes at a time (UInt8.random asks the system generator once per byte: seconds per matrix).
    var state = UInt64.random(in: 0...UInt64.max)
    for i in stride(from: 0, to: bytes, by: 8) {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = (state ^ (state >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        withUnsafeBytes(of: z ^ (z >> 31)) { data.advanced(by: i).copyMemory(from: $0.baseAddress!, byteCount: min(8, bytes - i)) }
    }
    let blocks = bytes / type.bytesPerBlock
    // Finite, normal scales (random f16 bits would give NaNs, infinities and subnormal products).
    for b in 0..<blocks {
        let block = data + b * type.bytesPerBlock
        switch type {
        case .q4_1, .q5_1:
            block.storeBytes(of: Float16(0.01).bitPattern, as: UInt16.self)
            block.storeBytes(of: Float16(-0.08).bitPattern, toByteOffset: 2, as: UInt16.self)
        case .q4_0, .q5_0, .q8_0:
            block.storeBytes(of: Float16(0.01).bitPattern, as: UInt16.self)
        case .q4_K, .q5_K:
            block.storeBytes(of: Float16(0.001).bitPattern, as: UInt16.self)
            block.storeBytes(of: Float16(0.002).bitPattern, toByteOffset: 2, as: UInt16.self)
        case .q6_K:
            block.storeBytes(of: Float16(0.0005).bitPattern, toByteOffset: 208, as: UInt16.self)
        case .f32, .f16, .bf16:
            break
        }
    }
    return WeightMatrix(type: type, rows: rows, columns: columns, data: UnsafeRawPointer(data))
}

func row(_ cells: [String]) { print("| " + cells.joined(separator: " | ") + " |") }
func f(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }

let threadCounts = CommandLine.arguments.dropFirst().compactMap { Int($0) }
if CommandLine.arguments.dropFirst().first == "gguf" {
    try ggufCheck(paths: Array(CommandLine.arguments.dropFirst(2)))
    exit(0)
}
if CommandLine.arguments.dropFirst().first == "quants" {
    quantTypeTable(threads: threadCounts.isEmpty ? [1] : threadCounts)
    exit(0)
}
let threads = threadCounts.isEmpty ? [1, 2] : threadCounts
if CommandLine.arguments.dropFirst().first == "gemm" {
    benchGEMM(threads: threads)
    exit(0)
}
if CommandLine.arguments.dropFirst().first == "int8gemm" {
    benchInt8GEMM(threads: threads)
    exit(0)
}
if CommandLine.arguments.dropFirst().first == "panels" {
    for t in threadCounts.isEmpty ? [1] : threadCounts { benchPanels(threads: t) }
    exit(0)
}
if CommandLine.arguments.dropFirst().first == "decode-attention" {
    benchDecodeAttention(threads: threads)
    exit(0)
}
if CommandLine.arguments.dropFirst().first == "attention" {
    benchAttention(threads: threads)
    exit(0)
}
if CommandLine.arguments.contains("batched") {
    // Only the batched kernels: `kernel-bench batched [Q4_0 Q8_0 …] [threads...]`.
    print("AVX-512 VNNI kernels: \(MatVec.hasAVX512Kernels), load \(loadAverage())\n")
    row(["kernel", "shape", "batch", "threads", "µs batched", "µs per row ×batch", "rows·GB/s", "GOPS", "speed-up"])
    row(["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"])
    let types = TensorType.allCases.filter { CommandLine.arguments.contains($0.description) }
    for t in threads { benchBatched(threads: t, types: types) }
    exit(0)
}
let shapes: [(TensorType, Int, Int)] = [(.q4_1, 576, 576), (.q4_1, 192, 576), (.q4_1, 1536, 576),
                                        (.q4_1, 576, 1536), (.q8_0, 49152, 576)]
print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, load \(loadAverage())")
print("AVX-512 VNNI kernels: \(MatVec.hasAVX512Kernels), OpenBLAS: \(MatMul.blasAvailable)\n")
row(["kernel", "shape", "threads", "µs", "GB/s", "GFLOPS", "of limit"])
row(["---", "---", "---:", "---:", "---:", "---:", "---:"])

for t in threads {
    let pool = ThreadPool(threads: t)
    let region = time(100_000) { pool.parallelFor(t) { _ in } }
    row(["ThreadPool empty region", "-", "\(t)", f(region * 1e6, 3), "-", "-", "-"])
    for (type, rows, columns) in shapes {
        let w = randomMatrix(type, rows: rows, columns: columns)
        let x = (0..<columns).map { _ in Float.random(in: -1...1) }
        var y = [Float](repeating: 0, count: rows)
        var xq = QuantizedActivations(capacity: columns)
        xq.quantize(x, count: columns)
        let bytes = Double(w.rowBytes * rows), flops = 2 * Double(rows * columns)
        let n = max(10, Int(100_000_000 / bytes))
        for (name, body) in [("mat-vec int8 (hot)", { MatVec.multiply(w, xq, into: &y, pool: pool) }),
                             ("mat-vec f32 (hot)", { MatVec.multiply(w, x, into: &y, precision: .f32, pool: pool) })] {
            let s = time(n, body)
            row([name, "\(type) \(rows)×\(columns)", "\(t)", f(s * 1e6), f(bytes / s / 1e9), f(flops / s / 1e9),
                 f(bytes / s / 1e9 / memoryGBs[t, default: 15.7] * 100, 0) + " % of DRAM"])
        }
        if type == .q4_1 {
            let tokens = 512
            let xs = (0..<tokens * columns).map { _ in Float.random(in: -1...1) }
            var ys = [Float](repeating: 0, count: tokens * rows)
            let s = time(3) { MatMul.multiply(w, xs, tokens: tokens, into: &ys, pool: pool) }
            let g = flops * Double(tokens) / s / 1e9
            row(["GEMM (dequantise + sgemm), 512 tokens", "\(type) \(rows)×\(columns)", "\(t)", f(s * 1e6), "-", f(g),
                 f(g / peakGFLOPS[t, default: 171] * 100, 0) + " % of FMA peak"])
        }
        w.data.deallocate()
    }
    // Decoding's access pattern: every matrix of SmolLM2-135M once per step (96 MB, more than L3).
    var model: [WeightMatrix] = []
    for _ in 0..<30 {
        for (r, c) in [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)] {
            model.append(randomMatrix(.q4_1, rows: r, columns: c))
        }
    }
    model.append(randomMatrix(.q8_0, rows: 49152, columns: 576))
    let bytes = Double(model.reduce(0) { $0 + $1.rowBytes * $1.rows })
    var xq = QuantizedActivations(capacity: 1536)
    xq.quantize((0..<1536).map { _ in Float.random(in: -1...1) }, count: 1536)
    var y = [Float](repeating: 0, count: 49152)
    var x576 = QuantizedActivations(capacity: 576)
    x576.quantize((0..<576).map { _ in Float.random(in: -1...1) }, count: 576)
    let s = time(3) {
        for m in model { MatVec.multiply(m, m.columns == 576 ? x576 : xq, into: &y, pool: pool) }
    }
    row(["mat-vec int8 sweep (whole model)", "96 MB", "\(t)", f(s * 1e6, 0), f(bytes / s / 1e9), "-",
         f(bytes / s / 1e9 / memoryGBs[t, default: 15.7] * 100, 0) + " % of DRAM"])
    for m in model { m.data.deallocate() }

    // Attention: a 512-token prompt (GEMM path) and one decoding step at 1024 cached positions.
    let shape = AttentionShape(heads: 9, kvHeads: 3, headDimension: 64, capacity: 1024, scale: 0.125)
    let kv = (0..<3 * 1024 * 64).map { _ in Float.random(in: -1...1) }
    let q = (0..<512 * 9 * 64).map { _ in Float.random(in: -1...1) }
    var out = [Float](repeating: 0, count: q.count)
    let prompt = time(3) {
        Attention.causal(queries: q, keys: kv, values: kv, output: &out, shape: shape, tokens: 512, firstPosition: 0, pool: pool)
    }
    let promptFlops = 2.0 * 2 * 9 * 64 * (512.0 * 513 / 2)
    row(["attention prompt (causal, GQA 9/3×64)", "512 tokens", "\(t)", f(prompt * 1e6), "-", f(promptFlops / prompt / 1e9),
         f(promptFlops / prompt / 1e9 / peakGFLOPS[t, default: 171] * 100, 0) + " % of FMA peak"])
    let step = time(200) {
        Attention.causal(queries: q, keys: kv, values: kv, output: &out, shape: shape, tokens: 1, firstPosition: 1023, pool: pool)
    }
    let kvBytes = 2.0 * 3 * 1024 * 64 * 4
    row(["attention decode step", "1024 positions", "\(t)", f(step * 1e6), f(kvBytes / step / 1e9), f(2.0 * 2 * 9 * 64 * 1024 / step / 1e9), "-"])
}

func loadAverage() -> String {
    (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
}

/// Every quantised type's mat-vec in one run: GB/s of weight bytes, int8 and f32 paths, with the
/// ratio to Q4_0's int8 kernel at the same shape. The types take turns within each of 40 rounds and
/// each keeps its fastest single call (one call is shorter than a scheduler time slice), so load from
/// other processes falls on all of them alike and is mostly filtered out. Matrices
/// are reused call after call, so on a machine with a large L3 this is the kernels' compute speed.
func quantTypeTable(threads: [Int]) {
    print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, load \(loadAverage())")
    print("AVX-512 VNNI kernels: \(MatVec.hasAVX512Kernels)\n")
    row(["type", "shape", "threads", "MiB", "int8 µs", "int8 GB/s", "f32 µs", "f32 GB/s", "int8 time vs Q4_0 int8"])
    row(["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"])
    let types: [TensorType] = [.q4_0, .q8_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]
    for t in threads {
        let pool = ThreadPool(threads: t)
        for (rows, columns) in [(4096, 4096), (896, 4864)] {
            let x = (0..<columns).map { _ in Float.random(in: -1...1) }
            var xq = QuantizedActivations(capacity: columns)
            xq.quantize(x, count: columns)
            var y = [Float](repeating: 0, count: rows)
            let matrices = types.map { randomMatrix($0, rows: rows, columns: columns) }
            var int8 = [Double](repeating: .infinity, count: types.count), f32 = int8
            for _ in 0..<40 {
                for (i, w) in matrices.enumerated() {
                    func seconds(_ body: () -> Void) -> Double {
                        body()  // warm: this matrix back in cache after the others
                        let start = DispatchTime.now().uptimeNanoseconds
                        body()
                        return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                    }
                    int8[i] = min(int8[i], seconds { MatVec.multiply(w, xq, into: &y, pool: pool) })
                    f32[i] = min(f32[i], seconds { MatVec.multiply(w, x, into: &y, precision: .f32, pool: pool) })
                }
            }
            for (i, w) in matrices.enumerated() {
                let bytes = Double(w.rowBytes * rows)
                row(["\(types[i])", "\(rows)×\(columns)", "\(t)", f(bytes / 1048576, 2), f(int8[i] * 1e6), f(bytes / int8[i] / 1e9),
                     f(f32[i] * 1e6), f(bytes / f32[i] / 1e9), f(int8[i] / int8[0], 2) + "×"])
                w.data.deallocate()
            }
        }
    }
}
