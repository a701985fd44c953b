import ArgumentParser
import FoundationEssentials
import QuillCommandLine
import QuillGeneration
import QuillKernels
import QuillModels
import QuillTokenizers

/// The sampling flags shared by `complete` and `chat` (llama.cpp's names and defaults).
struct SamplingFlags: ParsableArguments {
    @Option(help: "Temperature; 0 picks the most likely token (greedy decoding).")
    var temp: Float = 0.8

    @Option(help: "Keep only the K most likely tokens (0: off).")
    var topK: Int = 40

    @Option(help: "Keep the most likely tokens whose probabilities reach P together (1: off).")
    var topP: Float = 0.95

    @Option(help: "Keep tokens at least P times as likely as the most likely one (0: off).")
    var minP: Float = 0.05

    @Option(help: "Locally typical sampling with mass P (1: off).")
    var typical: Float = 1

    @Option(help: "Divide positive logits of recently seen tokens by this, multiply negative ones (1: off).")
    var repeatPenalty: Float = 1

    @Option(help: "Tokens the penalties look back over (0: off, -1: the whole context).")
    var repeatLastN: Int = 64

    @Option(help: "Subtract this times the count of each recently seen token (0: off).")
    var frequencyPenalty: Float = 0

    @Option(help: "Subtract this from every recently seen token (0: off).")
    var presencePenalty: Float = 0

    @Option(help: "Seed of the sampler's random generator (default: random, printed to stderr).")
    var seed: UInt64?

    @Option(help: ArgumentHelp("Stop when the text contains this string (not printed); repeatable. \\n, \\t, \\r and \\\\ are unescaped.", valueName: "text"))
    var stop: [String] = []

    func validate() throws {
        guard temp >= 0 else { throw ValidationError("--temp must be 0 or more") }
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 or more") }
        guard (0 ... 1).contains(topP) else { throw ValidationError("--top-p must be between 0 and 1") }
        guard (0 ... 1).contains(minP) else { throw ValidationError("--min-p must be between 0 and 1") }
        guard (0 ... 1).contains(typical) else { throw ValidationError("--typical must be between 0 and 1") }
        guard repeatPenalty > 0 else { throw ValidationError("--repeat-penalty must be more than 0") }
        guard repeatLastN >= -1 else { throw ValidationError("--repeat-last-n must be -1 or more") }
        guard stop.allSatisfy({ !$0.isEmpty }) else { throw ValidationError("--stop needs a non-empty string") }
    }

    /// The sampling options the flags describe.
    var options: SamplingOptions {
        var options = SamplingOptions()
        options.temperature = temp
        options.topK = topK
        options.topP = topP
        options.minP = minP
        options.typicalP = typical
        options.repeatPenalty = repeatPenalty
        options.repeatLastN = repeatLastN
        options.frequencyPenalty = frequencyPenalty
        options.presencePenalty = presencePenalty
        if let seed { options.seed = seed }
        return options
    }

    /// The stop strings with `\n`-style escapes replaced, so that `--stop "\n\n"` works from a shell.
    var stopStrings: [String] { stop.map(unescape) }

    func unescape(_ text: String) -> String {
        var result = "", escaping = false
        for c in text {
            if escaping {
                switch c {
                case "n": result.append("\n")
                case "t": result.append("\t")
                case "r": result.append("\r")
                case "\\": result.append("\\")
                default: result.append("\\"); result.append(c)
                }
                escaping = false
            } else if c == "\\" {
                escaping = true
            } else {
                result.append(c)
            }
        }
        if escaping { result.append("\\") }
        return result
    }
}

/// A context longer than the model was trained for is allowed (as llama.cpp allows it), with a warning.
func warnBeyondTrainedContext(_ contextSize: Int, _ trained: Int) {
    if contextSize > trained {
        StandardError.write("quill: warning: the context of \(contextSize) tokens is longer than the \(trained) the model was trained on\n")
    }
}

/// Reports the seed when the output depends on it, so that a run can be repeated with --seed.
func reportSeed(_ sampling: SamplingOptions) {
    if !sampling.isGreedy { StandardError.write("quill: seed \(sampling.seed)\n") }
}

struct Complete: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue the text read from stdin, streaming the continuation to stdout.",
        discussion: "Reads the whole prompt until EOF. Special tokens such as <|im_start|> in the prompt are recognised. Timings go to stderr.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: [.short, .customLong("n-predict")], help: "The most tokens to generate (-1: until end of sequence or a full context).")
    var nPredict: Int = 256

    @Option(name: [.short, .customLong("ctx-size")], help: "Context size in tokens: prompt plus generated text (0: the model's trained context).")
    var ctxSize: Int = 4096

    @OptionGroup var sampling: SamplingFlags

    @Flag(help: "Print the generated token ids (space-separated, one line) instead of text.")
    var ids = false

    @Flag(help: "Keep generating after the end-of-sequence token.")
    var ignoreEos = false

    @Option(help: "Beam search with N beams (Hugging Face generate(num_beams=N): length penalty 1, no early stopping); prints the best continuation when done.")
    var beam: Int?

    @Option(help: "With --beam: K continuations, best first, each 'text<TAB>score' on its own line.")
    var nBest: Int?

    func validate() throws {
        if let beam { guard (1 ... 64).contains(beam) else { throw ValidationError("--beam must be between 1 and 64") } }
        if let nBest {
            guard (1 ... 64).contains(nBest), beam != nil else { throw ValidationError("--n-best needs --beam and must be between 1 and 64") }
        }
        guard nPredict >= -1 else { throw ValidationError("--n-predict must be -1 or more") }
        guard ctxSize >= 0 else { throw ValidationError("--ctx-size must be 0 or more") }
    }

    func run() throws {
        StandardOutput.prepare()
        Interrupt.install()
        try reportingErrors {
            let clock = ContinuousClock()
            let loadStart = clock.now
            let text = try StandardInput.readText()
            guard !text.isEmpty else { throw CommandError("the prompt on standard input is empty") }
            let loaded = try modelOptions.load()
            let contextSize = ctxSize == 0 ? loaded.model.trainedContextLength : ctxSize
            let prompt = loaded.encodePrompt(text)
            guard prompt.count < contextSize else {
                throw CommandError("the prompt has \(prompt.count) tokens but the context holds \(contextSize); raise -c/--ctx-size")
            }
            if let beam {
                // The cache of every beam must fit before the warning (a context that cannot fit is one line).
                let (kvTokens, overflow) = max(beam, nBest ?? 1).multipliedReportingOverflow(by: contextSize)
                _ = try KVBlockPool(layout: loaded.model.kvLayout(loaded.model.kvCacheType), tokens: overflow ? Int.max : kvTokens)
                warnBeyondTrainedContext(contextSize, loaded.model.trainedContextLength)
                let searchStart = clock.now
                let generated = try CompleteBeamSearch(beams: beam, nBest: nBest ?? 1, printIds: ids).run(
                    loaded, prompt: prompt, maxNewTokens: nPredict < 0 ? contextSize : nPredict, contextSize: contextSize,
                    stopAtEndOfSequence: !ignoreEos)
                StandardError.write("\nquill: beam search \(max(beam, nBest ?? 1)) beams | prompt \(prompt.count) tokens | "
                    + "best hypothesis \(generated) tokens in \(String(fixed: seconds(clock.now - searchStart), decimals: 2)) s | "
                    + "\(modelOptions.threads) threads, \(modelOptions.precision.rawValue)\n")
                return
            }
            let cache = try loaded.model.makeCache(capacity: contextSize)
            // After the cache: a context that does not fit in memory is one line, the error.
            warnBeyondTrainedContext(contextSize, loaded.model.trainedContextLength)
            let loadTime = (clock.now - loadStart).components
            let loadSeconds = Double(loadTime.seconds) + Double(loadTime.attoseconds) * 1e-18

            var options = TextGenerationOptions()
            options.maxNewTokens = nPredict < 0 ? Int.max : nPredict
            options.stopAtEndOfSequence = !ignoreEos
            options.sampling = sampling.options
            options.stopStrings = sampling.stopStrings
            reportSeed(options.sampling)
            var printedIds = false
            let statistics = try Interrupt.whileGenerating { try loaded.generate(prompt: prompt, cache: cache, options: options) { event in
                if Interrupt.requested { return false }
                switch event {
                case let .token(id) where ids:
                    defer { printedIds = true }
                    return StandardOutput.write((printedIds ? " " : "") + String(id))
                case let .text(piece) where !ids:
                    return StandardOutput.write(piece)
                default:
                    return true
                }
            } }
            guard !StandardOutput.closed, !ids || StandardOutput.write("\n") else { throw closedOutputExitCode }
            var newLine = ids ? "" : "\n"  // after the streamed text
            if statistics.stopReason == .contextFull {
                StandardError.write(newLine + "quill: stopped at the end of the context (\(contextSize) tokens); raise -c/--ctx-size for more\n")
                newLine = ""
            }
            StandardError.write(newLine + "quill: load \(String(fixed: loadSeconds * 1000, decimals: 0)) ms | "
                + "prompt \(statistics.promptTokens) tokens, \(String(fixed: statistics.promptTokensPerSecond, decimals: 1)) tok/s | "
                + "generated \(statistics.generatedTokens) tokens, \(String(fixed: statistics.generationTokensPerSecond, decimals: 1)) tok/s | "
                + "\(modelOptions.threads) threads, \(modelOptions.precision.rawValue)\n")
            if Interrupt.requested { throw Interrupt.interruptedExitCode }
        }
    }
}
