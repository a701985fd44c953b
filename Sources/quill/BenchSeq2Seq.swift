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

/// `quill bench`'s encoder-decoder mode (`-m FOLDER` with a config.json, or `--seq2seq`):
/// translation speed of Marian / T5 / BART checkpoints, in the spirit of llama-bench.
///
/// A test is (threads, search, batch): `--sentences` fixed sources are translated in batches of
/// `--batch` with greedy search (`--beam 1`) or beam search, every output capped at `--max-length`
/// new tokens. One batch runs first as a warm-up, then all sentences `-r` times. Per repetition:
/// sentences/s and decoded tokens/s, where decoded tokens are the generated tokens of the best
/// hypothesis of every sentence (EOS counted, the decoder start token not; the tokens of other beams
/// are not counted), as `quill translate` reports them. Means and sample standard deviations.
///
/// Sources: with a tokenizer in the folder, a fixed list of English sentences; without one (the
/// random opus-mt-shaped checkpoint of Weights/make-opus-mt-shaped.py), seeded pseudo-random ids,
/// 16–40 per source plus EOS. Random weights rarely produce EOS, so their outputs run to `--max-length`.
struct Seq2SeqBenchOptions: ParsableArguments {
    @Flag(help: "Encoder-decoder mode (chosen automatically when -m is a folder with config.json).")
    var seq2seq = false

    @Option(name: .customLong("beam"), help: "Encoder-decoder: beam counts to test (1: greedy).")
    var beams: [String] = ["1", "4"]

    @Option(name: .customLong("batch"), help: "Encoder-decoder: batch sizes (sentences decoded together).")
    var batches: [String] = ["1", "16"]

    @Option(help: "Encoder-decoder: sentences translated per repetition.")
    var sentences: Int = 16

    @Option(help: "Encoder-decoder: the most new tokens per output (HF max_new_tokens).")
    var maxLength: Int = 32

    @Option(help: "Encoder-decoder: 'q8_0' quantises the weights at load time (as quill translate --quantize).")
    var quantize: String?

    @Option(help: "Encoder-decoder: seed of the random source ids (checkpoints without a tokenizer).")
    var seed: UInt64 = 1

    /// Whether `bench` should run this mode for `-m path`.
    func applies(to path: String?) -> Bool {
        if seq2seq { return true }
        guard let path else { return false }
        return FileManager.default.fileExists(atPath: path.appendingPathComponent("config.json"))
    }

    func validate() throws {
        guard (1...100_000).contains(sentences) else { throw ValidationError("--sentences must be between 1 and 100000") }
        guard (1...Seq2SeqLimits.maximumNewTokens).contains(maxLength) else {
            throw ValidationError("--max-length must be between 1 and \(Seq2SeqLimits.maximumNewTokens)")
        }
        if let quantize { guard quantize == "q8_0" else { throw ValidationError("--quantize accepts only q8_0") } }
        guard try Bench.integers(beams).allSatisfy({ (1...64).contains($0) }) else { throw ValidationError("--beam must be between 1 and 64") }
        guard try Bench.integers(batches).allSatisfy({ (1...1024).contains($0) }) else { throw ValidationError("--batch must be between 1 and 1024") }
    }

    /// Fixed English sources for checkpoints with a tokenizer (cycled when more are asked for).
    static let text = [
        "The weather is nice today, so we are going for a walk in the park.",
        "Please send me the report before the meeting on Thursday afternoon.",
        "The committee approved the new budget after a long discussion.",
        "I have been learning to play the piano for three years now.",
        "Could you tell me how to get to the nearest train station?",
        "The museum will be closed for renovation until the end of the year.",
        "Scientists have discovered a new species of frog in the rainforest.",
        "My brother works as an engineer at a large company in Berlin.",
        "We need to buy bread, milk, cheese and some fresh vegetables.",
        "The children were playing in the garden when it started to rain.",
        "This software translates sentences from English into German.",
        "After dinner we watched an old film and talked about our holidays.",
        "The government announced new measures to reduce energy consumption in public buildings.",
        "She opened the window because the room was far too warm.",
        "Thank you very much for your help with the move last weekend.",
        "The restaurant on the corner serves the best soup in the whole city.",
    ]

    /// The benchmark's sources as token ids (special tokens included).
    func sources(_ pipeline: Seq2SeqPipeline) -> [[TokenID]] {
        if pipeline.tokenizer != nil {
            return (0..<sentences).map { pipeline.sourceIDs(Seq2SeqBenchOptions.text[$0 % Seq2SeqBenchOptions.text.count]) }
        }
        // The sampler's seeded generator: the same ids on every run and platform.
        var random = Xoshiro256StarStar(seed: seed)
        func next() -> UInt64 { random.next() }
        let settings = pipeline.model.generationDefaults
        let special = Set(settings.endOfSequenceTokens + [settings.padToken, settings.decoderStartToken])
        let eos = settings.endOfSequenceTokens.first
        let vocabulary = UInt64(pipeline.model.vocabularySize)
        return (0..<sentences).map { _ in
            let length = 16 + Int(next() % 25)
            var ids: [TokenID] = []
            while ids.count < length {
                let id = TokenID(next() % vocabulary)
                if !special.contains(id) { ids.append(id) }
            }
            return eos.map { ids + [$0] } ?? ids
        }
    }

    func run(_ bench: Bench) throws {
        guard let path = bench.model else { throw CommandError("--seq2seq needs -m FOLDER (a Hugging Face checkpoint folder)") }
        let weights = path.appendingPathComponent("model.safetensors")
        let attributes = try? FileManager.default.attributesOfItem(atPath: weights)
        // FoundationEssentials gives the size as UInt (Foundation gave an NSNumber).
        let size = (attributes?[.size] as? UInt).map { Int($0) } ?? (attributes?[.size] as? Int) ?? 0
        var results: [Seq2SeqBenchResult] = []
        var printedHeader = false
        for threads in try Bench.integers(bench.threads) {
            let quantized = quantize == "q8_0"
            let pipeline: Seq2SeqPipeline
            do {
                pipeline = try Seq2SeqPipeline(directory: path, threads: threads, quantize: quantized)
            } catch {
                pipeline = try Seq2SeqPipeline(directory: path, threads: threads, quantize: quantized, withTokenizer: false)
            }
            let file = try SafetensorsFile(path: weights)
            let parameters = file.tensors.values.reduce(0) { $0 + $1.elementCount }
            var byType: [String: Int] = [:]
            for t in file.tensors.values { byType[t.dtype, default: 0] += t.elementCount }
            let dtype = quantized ? "Q8_0" : byType.max { $0.value < $1.value }?.key ?? "?"
            let type = "\(pipeline.model.modelType) \(String(fixed: Double(parameters) / 1e6, decimals: 0) + "M") \(dtype)"
            let sources = sources(pipeline)
            // The largest test's decoder cache must fit before anything runs (or a row is printed).
            let model = pipeline.model
            try DecoderState.checkFits(layers: model.decoderLayerCount, heads: model.heads, headDimension: model.headDimension,
                                       rows: min(try Bench.integers(batches).max() ?? 1, sources.count) * (try Bench.integers(beams).max() ?? 1),
                                       capacity: maxLength + 1)
            if bench.output == .md && !printedHeader { print(Seq2SeqBenchResult.markdownHeader) }
            printedHeader = true
            for beam in try Bench.integers(beams) {
                var settings = pipeline.model.generationDefaults
                settings.numBeams = beam
                settings.numReturnSequences = 1
                settings.maxNewTokens = maxLength
                for batch in try Bench.integers(batches) {
                    let (ns, cpuNs, tokens) = try measure(pipeline, sources: sources, settings: settings, batch: batch,
                                                          repetitions: bench.repetitions)
                    let result = Seq2SeqBenchResult(modelType: type, path: path, sizeBytes: size, parameters: parameters,
                                                    threads: threads, beams: beam, batch: batch, sentences: sources.count,
                                                    maxNewTokens: maxLength, samplesNs: ns, samplesCpuNs: cpuNs, tokens: tokens)
                    switch bench.output {
                    case .md: print(result.markdownRow)
                    case .jsonl: print(result.json(indent: ""))
                    case .json: break
                    }
                    fflush(nil)
                    results.append(result)
                }
            }
        }
        if bench.output == .json {
            print("[\n" + results.map { $0.json(indent: "  ") }.joined(separator: ",\n") + "\n]")
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        StandardError.write("quill bench: peak RSS \(usage.ru_maxrss / 1024) MiB (ru_maxrss), weights \(quantize ?? "as stored")\n")
    }

    /// Nanoseconds (wall clock and processor time of all threads) and decoded tokens of each timed
    /// repetition (after a warm-up batch).
    func measure(_ pipeline: Seq2SeqPipeline, sources: [[TokenID]], settings: Seq2SeqSettings, batch: Int,
                 repetitions: Int) throws -> ([UInt64], [UInt64], [Int]) {
        func once(_ sources: [[TokenID]]) throws -> Int {
            var tokens = 0
            var start = 0
            while start < sources.count {
                let chunk = Array(sources[start..<min(start + batch, sources.count)])
                try pipeline.run(sources: chunk, settings: settings) { _, hypotheses in
                    tokens += hypotheses.first.map { $0.generated.count } ?? 0
                }
                start += batch
            }
            return tokens
        }
        _ = try once(Array(sources.prefix(batch)))
        var samples: [UInt64] = [], cpuSamples: [UInt64] = [], counts: [Int] = []
        for _ in 0..<repetitions {
            let start = DispatchTime.now().uptimeNanoseconds, cpuStart = Self.processorNanoseconds()
            counts.append(try once(sources))
            samples.append(DispatchTime.now().uptimeNanoseconds - start)
            cpuSamples.append(Self.processorNanoseconds() - cpuStart)
        }
        return (samples, cpuSamples, counts)
    }

    /// Processor time of the whole process (every thread), which other processes' load inflates far
    /// less than the wall clock on a shared machine.
    static func processorNanoseconds() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }
}

/// One encoder-decoder test's result: a markdown row like llama-bench's, and a JSON object with
/// llama-bench's field names where they apply.
struct Seq2SeqBenchResult {
    let modelType: String
    let path: String
    let sizeBytes: Int
    let parameters: Int
    let threads: Int
    let beams: Int
    let batch: Int
    let sentences: Int
    let maxNewTokens: Int
    let samplesNs: [UInt64]
    /// Processor time of each repetition (all threads).
    let samplesCpuNs: [UInt64]
    /// Decoded tokens (best hypotheses) of each repetition.
    let tokens: [Int]

    var samplesSentences: [Double] { samplesNs.map { Double(sentences) * 1e9 / Double($0) } }
    var samplesTs: [Double] { zip(samplesNs, tokens).map { Double($1) * 1e9 / Double($0) } }
    var testName: String { (beams == 1 ? "greedy" : "beam\(beams)") + " bs\(batch)" }

    static let markdownHeader = """
        | model                          |       size |     params | backend    | threads |            test |              sent/s |                  t/s |
        | ------------------------------ | ---------: | ---------: | ---------- | ------: | --------------: | ------------------: | -------------------: |
        """

    var markdownRow: String {
        let size = String(fixed: Double(sizeBytes) / 1024 / 1024, decimals: 2) + " MiB"
        let params = String(fixed: Double(parameters) / 1e6, decimals: 2) + " M"
        let ss = String(fixed: BenchResult.mean(samplesSentences), decimals: 2) + " ± " + String(fixed: BenchResult.stddev(samplesSentences), decimals: 2)
        let ts = String(fixed: BenchResult.mean(samplesTs), decimals: 2) + " ± " + String(fixed: BenchResult.stddev(samplesTs), decimals: 2)
        return "| \(padded(modelType, 30, left: true)) | \(padded(size, 10)) | \(padded(params, 10)) | \(padded("CPU (Quill)", 10, left: true)) | "
            + "\(padded(String(threads), 7)) | \(padded(testName, 15)) | \(padded(ss, 19)) | \(padded(ts, 20)) |"
    }

    func json(indent: String) -> String {
        let ts = samplesTs, ss = samplesSentences
        let ns = samplesNs.map { Double($0) }
        let fields: [(String, String)] = [
            ("engine", jsonString("quill")),
            ("mode", jsonString("seq2seq")),
            ("model_filename", jsonString(path)),
            ("model_type", jsonString(modelType)),
            ("model_size", String(sizeBytes)),
            ("model_n_params", String(parameters)),
            ("n_threads", String(threads)),
            ("n_beams", String(beams)),
            ("n_batch", String(batch)),
            ("n_sentences", String(sentences)),
            ("max_new_tokens", String(maxNewTokens)),
            ("n_gen", String(Int(BenchResult.mean(tokens.map(Double.init)).rounded()))),
            ("test", jsonString(testName)),
            ("test_time", jsonString(Date().formatted(.iso8601))),
            ("avg_ns", String(Int(BenchResult.mean(ns)))), ("stddev_ns", String(Int(BenchResult.stddev(ns)))),
            ("avg_sentences_per_s", String(fixed: BenchResult.mean(ss), decimals: 6)),
            ("stddev_sentences_per_s", String(fixed: BenchResult.stddev(ss), decimals: 6)),
            ("avg_ts", String(fixed: BenchResult.mean(ts), decimals: 6)),
            ("stddev_ts", String(fixed: BenchResult.stddev(ts), decimals: 6)),
            ("median_ts", String(fixed: BenchResult.median(ts), decimals: 6)),
            ("samples_ns", "[ " + samplesNs.map(String.init).joined(separator: ", ") + " ]"),
            ("samples_tokens", "[ " + tokens.map(String.init).joined(separator: ", ") + " ]"),
            ("samples_ts", "[ " + ts.map { String(fixed: $0, decimals: 6) }.joined(separator: ", ") + " ]"),
            ("samples_cpu_ns", "[ " + samplesCpuNs.map(String.init).joined(separator: ", ") + " ]"),
            ("avg_cpu_ts", String(fixed: BenchResult.mean(zip(samplesCpuNs, tokens).map { Double($1) * 1e9 / Double($0) }), decimals: 6)),
        ]
        return jsonObject(fields, indent: indent)
    }
}
