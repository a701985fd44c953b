import ArgumentParser
import FoundationEssentials
import QuillCommandLine
import QuillGeneration
import QuillKernels
import QuillModels
import QuillTokenizers

/// Options shared by `translate` and `summarize`: the checkpoint folder and the search.
struct Seq2SeqOptions: ParsableArguments {
    @Option(name: [.short, .customLong("model")], help: "Hugging Face model folder (config.json, model.safetensors, tokenizer files).")
    var model: String

    @Option(name: [.short, .customLong("threads")], help: "Threads; the default is the number of cores.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Beams (1: greedy search; default: the model's generation_config.json).")
    var beam: Int?

    @Option(help: "The most tokens to generate per output (HF max_new_tokens; default: the model's generation config, else 256).")
    var maxLength: Int?

    @Flag(help: "Print the generated token ids (space-separated, without the decoder start token) instead of text.")
    var ids = false

    @Flag(help: "Read token ids instead of text: each input line is space-separated source ids, special tokens included (with --ids no tokenizer is needed).")
    var inputIds = false

    @Option(help: "Weight format in memory: 'q8_0' quantises every matrix to 8 bits at load time (faster, approximate; CTranslate2's int8 scheme where AVX-512 VNNI runs).")
    var quantize: String?

    func validate() throws {
        guard threads >= 1 && threads <= 256 else { throw ValidationError("--threads must be between 1 and 256") }
        if let beam { guard beam >= 1 && beam <= 64 else { throw ValidationError("--beam must be between 1 and 64") } }
        if let maxLength {
            guard (1...Seq2SeqLimits.maximumNewTokens).contains(maxLength) else {
                throw ValidationError("--max-length must be between 1 and \(Seq2SeqLimits.maximumNewTokens)")
            }
        }
        if let quantize { guard quantize == "q8_0" else { throw ValidationError("--quantize accepts only q8_0") } }
    }

    func load(sourcePrefix: (String) -> String = { _ in "" }) throws -> Seq2SeqPipeline {
        // The prefix depends on the model type, which only config.json knows.
        let type = try HFModelConfig.load(directory: model).modelType
        return try Seq2SeqPipeline(directory: model, threads: threads, quantize: quantize == "q8_0",
                                   sourcePrefix: sourcePrefix(type), withTokenizer: !(inputIds && ids))
    }

    func settings(_ pipeline: Seq2SeqPipeline, nBest: Int) -> Seq2SeqSettings {
        var s = pipeline.model.generationDefaults
        if let beam { s.numBeams = beam }
        if let maxLength { s.maxNewTokens = maxLength }
        s.numBeams = max(s.numBeams, nBest)
        s.numReturnSequences = nBest
        return s
    }

    /// Runs `lines` (text, or ids with --input-ids) through the pipeline.
    func run(_ lines: [String], _ pipeline: Seq2SeqPipeline, _ settings: Seq2SeqSettings,
             onResult: (Int, [Seq2SeqHypothesis]) throws -> Void) throws {
        let stop = { Interrupt.requested }
        guard inputIds else { return try pipeline.run(lines, settings: settings, shouldStop: stop, onResult: onResult) }
        let sources = try lines.map { line in
            try line.split(whereSeparator: \.isWhitespace).map { word -> TokenID in
                guard let id = TokenID(word) else { throw CommandError("--input-ids: '\(word)' is not a token id") }
                return id
            }
        }
        try pipeline.run(sources: sources, settings: settings, shouldStop: stop, onResult: onResult)
    }

    /// One output line: text or ids, with `\t<score>` when scores are asked for.
    func line(_ hypothesis: Seq2SeqHypothesis, _ pipeline: Seq2SeqPipeline, withScore: Bool) -> String {
        var out = ids ? hypothesis.generated.map(String.init).joined(separator: " ")
            : pipeline.text(hypothesis).replacingScalars("\n", with: " ")
        if withScore { out += "\t" + String(fixed: Double(hypothesis.score), decimals: 6) }
        return out
    }
}

struct Translate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Translate the sentences read from stdin, one per line, with an encoder-decoder model (Marian, T5, BART).",
        discussion: """
            Writes one translation per input line, in order, each as soon as it and the lines before it are done \
            (lines are read and translated in batches of --batch-size). An empty input line gives an empty output \
            line. With --n-best K every input line gives K lines 'hypothesis<TAB>score', best first. Timings go to stderr.
            """)

    @OptionGroup var options: Seq2SeqOptions

    @Option(help: "Hypotheses per input line, best first, each with its beam score (needs --beam ≥ K; raised if lower).")
    var nBest: Int?

    @Option(help: "Sentences translated together.")
    var batchSize: Int = 16

    func validate() throws {
        if let nBest { guard nBest >= 1 && nBest <= 64 else { throw ValidationError("--n-best must be between 1 and 64") } }
        guard batchSize >= 1 && batchSize <= 1024 else { throw ValidationError("--batch-size must be between 1 and 1024") }
    }

    func run() throws {
        StandardOutput.prepare()
        Interrupt.install()
        try reportingErrors {
            let clock = ContinuousClock()
            let loadStart = clock.now
            let pipeline = try options.load()
            let loadTime = clock.now - loadStart
            let settings = options.settings(pipeline, nBest: nBest ?? 1)
            let start = clock.now
            var sentences = 0, tokens = 0
            var batch: [String] = []
            func summary() -> String {
                reportLine(load: loadTime, run: clock.now - start, sentences: sentences, tokens: tokens,
                           threads: options.threads, beams: settings.numBeams)
            }
            Interrupt.publish(summary())
            func flush() throws {
                do {
                    try Interrupt.whileGenerating { try translateBatch() }
                } catch is CancellationError where Interrupt.requested {}
                // Also when the request came after the batch's last decoder step.
                if Interrupt.requested {
                    StandardError.write(summary())
                    throw Interrupt.interruptedExitCode
                }
                Interrupt.publish(summary())
                batch.removeAll()
            }
            func translateBatch() throws {
                try options.run(batch, pipeline, settings) { _, hypotheses in
                    if !hypotheses.isEmpty { sentences += 1 }
                    tokens += hypotheses.first.map { $0.tokens.count - 1 } ?? 0
                    let lines = hypotheses.isEmpty ? Array(repeating: "", count: nBest ?? 1)
                        : hypotheses.map { options.line($0, pipeline, withScore: nBest != nil) }
                    guard StandardOutput.write(lines.joined(separator: "\n") + "\n") else { throw closedOutputExitCode }
                }
            }
            while let line = Swift.readLine(strippingNewline: true) {
                batch.append(line.hasSuffix("\r") ? String(line.dropLast()) : line)
                if batch.count == batchSize { try flush() }
            }
            if !batch.isEmpty { try flush() }
            StandardError.write(summary())
        }
    }
}

/// A duration in seconds.
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

/// `quill: load … | N sentences, s/s | M tokens, tok/s | threads, beams` on stderr.
func report(load: Duration, run: Duration, sentences: Int, tokens: Int, threads: Int, beams: Int) {
    StandardError.write(reportLine(load: load, run: run, sentences: sentences, tokens: tokens, threads: threads, beams: beams))
}

/// The line `report` writes.
func reportLine(load: Duration, run: Duration, sentences: Int, tokens: Int, threads: Int, beams: Int) -> String {
    let s = max(seconds(run), 1e-9)
    return "quill: load \(String(fixed: seconds(load) * 1000, decimals: 0)) ms | \(sentences) sentences, "
        + "\(String(fixed: Double(sentences) / s, decimals: 1)) sent/s | \(tokens) tokens generated (best hypotheses), "
        + "\(String(fixed: Double(tokens) / s, decimals: 1)) tok/s | \(threads) threads, \(beams) beams\n"
}
