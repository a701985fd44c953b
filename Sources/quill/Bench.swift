import ArgumentParser
import Dispatch
import FoundationEssentials
import QuillCommandLine
import QuillGeneration
import QuillKernels
import QuillModels
import QuillTokenizers
#if canImport(Glibc)
import Glibc
#endif

/// `quill bench`: llama-bench's measurement and output formats, so the two can be compared side by
/// side and existing llama-bench tooling reads Quill's results.
///
/// As llama-bench does: each test runs once to warm up, then `-r` times from an empty cache on
/// random token ids; a pp test runs `-p` tokens in passes of at most 512 (llama-bench's n_ubatch;
/// logits of each chunk's last token only), a tg test `-n` single-token forward passes. Tokens per
/// second are computed per repetition, and the mean and sample standard deviation of those are
/// reported. Sizes are checked before anything runs: a KV cache that cannot fit is a one-line error.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Prompt-processing and generation speed, as llama-bench measures it.",
        discussion: "Lists take comma-separated values (-t 1,2) or repeat the flag (-t 1 -t 2).")

    @Option(name: [.short, .customLong("model")], help: "GGUF model file, a Hugging Face encoder-decoder folder, or a name Weights/fetch knows (default: $QUILL_MODEL or smollm2).")
    var model: String?

    @Option(name: [.customShort("p"), .customLong("n-prompt")], help: "Prompt lengths to test (0: no pp test).")
    var nPrompt: [String] = ["512"]

    @Option(name: [.short, .customLong("n-gen")], help: "Generated lengths to test (0: no tg test).")
    var nGen: [String] = ["128"]

    @Option(name: [.short, .customLong("threads")], help: "Thread counts to test.")
    var threads: [String] = [String(ProcessInfo.processInfo.activeProcessorCount)]

    @Option(name: [.customShort("r"), .customLong("repetitions")], help: "Timed repetitions of each test.")
    var repetitions: Int = 5

    @Option(name: [.customShort("c"), .customLong("ctx-size")], help: "KV cache size (0: what the test needs, as llama-bench).")
    var ctxSize: Int = 0

    @Option(help: "Compute path: 'quantized' or 'f32'.")
    var precision: ComputePrecision = .quantized

    @Option(help: "KV cache element type: f32 or f16 (llama-bench's -ctk/-ctv; default: f16 on the quantized path, f32 on the f32 path).")
    var kvType: KVCacheType?

    @Option(name: [.customShort("d"), .customLong("n-depth")], help: "Context depths: tokens already in the cache before each test (llama-bench's -d).")
    var nDepth: [String] = ["0"]

    @Option(name: .customLong("parallel"), help: "Sequences decoding together (llama-batched-bench's idea): aggregate tokens/s over all of them.")
    var parallel: [String] = ["1"]

    @Option(name: [.customShort("o"), .customLong("output")], help: "Output format: md, json or jsonl.")
    var output: OutputFormat = .md

    /// Encoder-decoder mode (BenchSeq2Seq.swift).
    @OptionGroup(title: "Encoder-decoder mode") var seq2seq: Seq2SeqBenchOptions

    enum OutputFormat: String, ExpressibleByArgument { case md, json, jsonl }
}

extension KVCacheType: ExpressibleByArgument {}

extension Bench {

    func validate() throws {
        guard (1...10_000).contains(repetitions) else { throw ValidationError("--repetitions must be between 1 and 10000") }
        guard ctxSize >= 0 else { throw ValidationError("--ctx-size must be 0 or more") }
        for list in [nPrompt, nGen, threads, nDepth, parallel] { _ = try Bench.integers(list) }
        guard try Bench.integers(parallel).allSatisfy({ (1...256).contains($0) }) else {
            throw ValidationError("--parallel must be between 1 and 256")
        }
        guard try Bench.integers(threads).allSatisfy({ (1...256).contains($0) }) else {
            throw ValidationError("--threads must be between 1 and 256")
        }
    }

    static func integers(_ list: [String]) throws -> [Int] {
        try list.flatMap { $0.split(separator: ",") }.map {
            guard let n = Int($0.trimmingWhitespace()), n >= 0 else {
                throw ValidationError("'\($0)' is not a count")
            }
            return n
        }
    }

    func run() throws {
        try reportingErrors {
            if seq2seq.applies(to: model) { return try seq2seq.run(self) }
            let path = try ModelLocator.resolve(model)
            let file = try GGUFFile(path: path)
            let info = ModelSummary(file: file)
            var tests: [(prompt: Int, gen: Int)] = []
            for p in try Bench.integers(nPrompt) where p > 0 { tests.append((p, 0)) }
            for n in try Bench.integers(nGen) where n > 0 { tests.append((0, n)) }
            var results: [BenchResult] = []
            let kvType = self.kvType ?? precision.defaultKVCacheType
            // Before any weights are bound or a row printed: every test's cache must fit.
            let architecture = try DecoderArchitectures.architecture(of: file)
            try checkCacheFits(tests, layout: KVLayout(layers: architecture.layers, kvHeads: architecture.kvHeads,
                                                       headDimension: architecture.headDimension, elementType: kvType))
            if output == .md { print(BenchResult.markdownHeader) }
            for threadCount in try Bench.integers(threads) {
                let model = try DecoderModel(gguf: file, threads: threadCount, precision: precision,
                                             endOfSequenceTokens: [], kvCacheType: kvType)
                for test in tests {
                    for depth in try Bench.integers(nDepth) {
                        for sequences in try Bench.integers(parallel) {
                            let samples = try measure(model, prompt: test.prompt, gen: test.gen, depth: depth,
                                                      parallel: sequences)
                            let result = BenchResult(model: info, path: path, threads: threadCount, prompt: test.prompt,
                                                     gen: test.gen, depth: depth, parallel: sequences,
                                                     kvType: kvType.rawValue, samplesNs: samples)
                            switch output {
                            case .md: print(result.markdownRow)
                            case .jsonl: print(result.json(indent: ""))
                            case .json: break
                            }
                            fflush(nil)  // each row appears as soon as it is measured
                            results.append(result)
                        }
                    }
                }
            }
            if output == .json {
                print("[\n" + results.map { $0.json(indent: "  ") }.joined(separator: ",\n") + "\n]")
            }
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            StandardError.write("quill bench: peak RSS \(usage.ru_maxrss / 1024) MiB (ru_maxrss), precision \(precision.rawValue)\n")
        }
    }

    /// KV positions one test needs: `parallel` sequences of depth + prompt + generated tokens (at
    /// least `--ctx-size` each, in whole 32-token blocks), or nil when that count overflows.
    func cacheTokens(prompt: Int, gen: Int, depth: Int, parallel: Int) -> Int? {
        let (withPrompt, o1) = depth.addingReportingOverflow(prompt)
        let (perSequence, o2) = withPrompt.addingReportingOverflow(max(gen, 1))
        // Each sequence fills whole 32-token blocks of the pool: round its share up to them.
        let (rounded, o3) = max(ctxSize, perSequence).addingReportingOverflow(31)
        let (total, o4) = (rounded / 32 * 32).multipliedReportingOverflow(by: parallel)
        return o1 || o2 || o3 || o4 ? nil : total
    }

    /// Throws a one-line error naming the sizes asked for and the memory available when the KV cache
    /// of the largest test cannot be made (the check `KVBlockPool` makes when a context is created).
    func checkCacheFits(_ tests: [(prompt: Int, gen: Int)], layout: KVLayout) throws {
        var largest: (tokens: Int, prompt: Int, gen: Int, depth: Int, parallel: Int)?
        for test in tests {
            for depth in try Bench.integers(nDepth) {
                for sequences in try Bench.integers(parallel) {
                    let tokens = cacheTokens(prompt: test.prompt, gen: test.gen, depth: depth, parallel: sequences) ?? Int.max
                    if tokens > largest?.tokens ?? -1 { largest = (tokens, test.prompt, test.gen, depth, sequences) }
                }
            }
        }
        guard let largest else { return }
        let asked = "-p \(largest.prompt) -n \(largest.gen) -d \(largest.depth) --parallel \(largest.parallel)"
            + (ctxSize > 0 ? " -c \(ctxSize)" : "")
        do {
            _ = try KVBlockPool(layout: layout, tokens: largest.tokens)  // address space only, released at once
        } catch KVCacheError.insufficientMemory(let tokens, let bytes, let available) {
            throw CommandError("\(asked) needs a KV cache of \(tokens == Int.max ? "more than \(Int.max)" : String(tokens)) tokens, "
                + "\(MemoryBudget.describe(bytes == Int.max ? nil : bytes)), but only \(MemoryBudget.describe(available)) "
                + "of memory is available; lower -p/-n/-d/--parallel")
        }
    }

    /// The prompt of every sequence as passes of at most `limit` tokens in all (llama-bench's
    /// micro-batches of 512), so a pass's activation memory does not grow with `-p` or `--parallel`.
    /// A sequence has at most one chunk per pass; its chunks are in order.
    static func promptPasses(_ sequences: [SequenceID], prompt: Int, limit: Int,
                             tokens: (Int) -> [TokenID]) -> [[BatchChunk]] {
        var passes: [[BatchChunk]] = [], current: [BatchChunk] = [], room = limit
        for sequence in sequences {
            var left = prompt
            while left > 0 {
                if room == 0 { passes.append(current); current = []; room = limit }
                let n = min(left, room)
                current.append(BatchChunk(sequence: sequence, tokens: tokens(n)))
                left -= n
                room -= n
            }
        }
        if !current.isEmpty { passes.append(current) }
        return passes
    }

    /// Nanoseconds of each timed repetition (after one warm-up run). Each repetition starts from
    /// `parallel` empty sequences filled with `depth` random tokens (not timed, as llama-bench's -d);
    /// a pp test runs `prompt` tokens of every sequence (in passes of at most `model.maxBatch` tokens),
    /// a tg test `gen` passes over one new token of every sequence.
    func measure(_ model: DecoderModel, prompt: Int, gen: Int, depth: Int, parallel: Int) throws -> [UInt64] {
        guard let kvTokens = cacheTokens(prompt: prompt, gen: gen, depth: depth, parallel: parallel) else {
            throw CommandError("the KV cache of -p \(prompt) -n \(gen) -d \(depth) --parallel \(parallel) overflows a token count")
        }
        let context = try model.makeContext(kvTokens: kvTokens)
        var random = SystemRandomNumberGenerator()
        let vocabulary = model.vocabularySize
        func tokens(_ n: Int) -> [TokenID] { (0 ..< n).map { _ in TokenID(Int.random(in: 0 ..< vocabulary, using: &random)) } }
        var sequences: [SequenceID] = []
        func reset() throws {
            for s in sequences { context.kv.release(s) }
            sequences = (0 ..< parallel).map { _ in context.kv.createSequence() }
            if depth > 0 { for s in sequences { _ = try context.forward(tokens(depth), sequence: s, logits: .last) } }
        }
        func once(gen: Int) throws -> UInt64 {
            try reset()
            let passes = Bench.promptPasses(sequences, prompt: prompt, limit: model.maxBatch, tokens: tokens)
            let start = DispatchTime.now().uptimeNanoseconds
            for pass in passes { _ = try context.forward(pass) }
            for _ in 0 ..< gen { _ = try context.forward(sequences.map { BatchChunk(sequence: $0, tokens: tokens(1)) }) }
            return DispatchTime.now().uptimeNanoseconds - start
        }
        // Warm-up as llama-bench: the whole prompt, or a single generated token.
        _ = try once(gen: prompt > 0 ? gen : 1)
        return try (0 ..< repetitions).map { _ in try once(gen: gen) }
    }
}

/// What llama-bench prints about the model.
struct ModelSummary {
    /// e.g. "llama 135M Q4_1": architecture, parameter count, the type holding most weights.
    let type: String
    let sizeBytes: Int
    let parameters: Int

    init(file: GGUFFile) {
        sizeBytes = file.tensors.reduce(0) { $0 + $1.byteCount }
        parameters = file.tensors.reduce(0) { $0 + $1.elementCount }
        var elementsByType: [String: Int] = [:]
        for t in file.tensors where t.dimensions.count >= 2 { elementsByType[t.type.description, default: 0] += t.elementCount }
        let mainType = elementsByType.max { $0.value < $1.value }?.key ?? "?"
        let architecture = file.optionalString("general.architecture") ?? "?"
        let count = parameters >= 1_000_000_000 ? String(fixed: Double(parameters) / 1e9, decimals: 1) + "B"
            : String(fixed: Double(parameters) / 1e6, decimals: 0) + "M"
        type = "\(architecture) \(count) \(mainType)"
    }
}

/// One test's result, formatted like llama-bench's markdown row and JSON object.
struct BenchResult {
    let model: ModelSummary
    let path: String
    let threads: Int
    let prompt: Int
    let gen: Int
    /// Tokens in each sequence's cache before the test (llama-bench's n_depth).
    let depth: Int
    /// Sequences processed together; tokens/s count the tokens of all of them.
    let parallel: Int
    let kvType: String
    let samplesNs: [UInt64]

    var samplesTs: [Double] { samplesNs.map { Double((prompt + gen) * parallel) * 1e9 / Double($0) } }
    static func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(max(v.count, 1)) }
    /// Sample standard deviation (n − 1), as llama-bench.
    static func stddev(_ v: [Double]) -> Double {
        guard v.count > 1 else { return 0 }
        let m = mean(v)
        return (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count - 1)).squareRoot()
    }
    static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    var testName: String {
        (prompt > 0 ? "pp\(prompt)" : "tg\(gen)") + (depth > 0 ? " @ d\(depth)" : "") + (parallel > 1 ? " ×\(parallel)" : "")
    }

    static let markdownHeader = """
        | model                          |       size |     params | backend    | threads |            test |                  t/s |
        | ------------------------------ | ---------: | ---------: | ---------- | ------: | --------------: | -------------------: |
        """

    var markdownRow: String {
        let size = String(fixed: Double(model.sizeBytes) / 1024 / 1024, decimals: 2) + " MiB"
        let params = String(fixed: Double(model.parameters) / 1e6, decimals: 2) + " M"
        let ts = String(fixed: BenchResult.mean(samplesTs), decimals: 2) + " ± " + String(fixed: BenchResult.stddev(samplesTs), decimals: 2)
        return "| \(padded(model.type, 30, left: true)) | \(padded(size, 10)) | \(padded(params, 10)) | \(padded("CPU (Quill)", 10, left: true)) | "
            + "\(padded(String(threads), 7)) | \(padded(testName, 15)) | \(padded(ts, 20)) |"
    }

    /// llama-bench's field names; `median_ts` and `engine` are extras.
    func json(indent: String) -> String {
        let ts = samplesTs
        let ns = samplesNs.map { Double($0) }
        let nsMean = BenchResult.mean(ns)
        let nsStd = BenchResult.stddev(ns)
        let fields: [(String, String)] = [
            ("engine", jsonString("quill")),
            ("model_filename", jsonString(path)),
            ("model_type", jsonString(model.type)),
            ("model_size", String(model.sizeBytes)),
            ("model_n_params", String(model.parameters)),
            ("n_batch", "512"), ("n_ubatch", "512"),
            ("n_threads", String(threads)),
            ("type_k", jsonString(kvType)), ("type_v", jsonString(kvType)),
            ("use_mmap", "true"),
            ("n_prompt", String(prompt)), ("n_gen", String(gen)), ("n_depth", String(depth)),
            ("n_parallel", String(parallel)),
            ("test_time", jsonString(Date().formatted(.iso8601))),
            ("avg_ns", String(Int(nsMean))), ("stddev_ns", String(Int(nsStd))),
            ("avg_ts", String(fixed: BenchResult.mean(ts), decimals: 6)),
            ("stddev_ts", String(fixed: BenchResult.stddev(ts), decimals: 6)),
            ("median_ts", String(fixed: BenchResult.median(ts), decimals: 6)),
            ("samples_ns", "[ " + samplesNs.map(String.init).joined(separator: ", ") + " ]"),
            ("samples_ts", "[ " + ts.map { String(fixed: $0, decimals: 6) }.joined(separator: ", ") + " ]"),
        ]
        return jsonObject(fields, indent: indent)
    }
}

/// `s` in a column of `width` characters, right-aligned unless `left` (llama-bench's tables).
func padded(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return left ? s + fill : fill + s
}

/// `s` as a JSON string literal.
func jsonString(_ s: String) -> String {
    "\"" + s.replacingScalars("\\", with: "\\\\").replacingScalars("\"", with: "\\\"") + "\""
}

/// A JSON object of already-encoded values: one line when `indent` is empty (jsonl), else indented.
func jsonObject(_ fields: [(String, String)], indent: String) -> String {
    if indent.isEmpty { return "{" + fields.map { "\(jsonString($0.0)): \($0.1)" }.joined(separator: ", ") + "}" }
    return indent + "{\n" + fields.map { indent + "  \(jsonString($0.0)): \($0.1)" }.joined(separator: ",\n") + "\n" + indent + "}"
}
