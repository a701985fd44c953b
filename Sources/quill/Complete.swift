import ArgumentParser
import Foundation
import QuillGeneration
import QuillModels
import QuillTokenizers

/// Options shared by the commands that load a GGUF model.
struct ModelOptions: ParsableArguments {
    @Option(name: [.short, .customLong("model")], help: "GGUF model file (default: $QUILL_MODEL or the model Weights/fetch downloads).")
    var model: String?

    @Option(name: [.short, .customLong("threads")], help: "Threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Compute path: 'quantized' (fast, 8-bit activations when decoding) or 'f32' (exactly dequantised weights, f32 arithmetic; the reference).")
    var precision: ComputePrecision = .quantized

    var modelPath: String { model ?? DefaultModel.path }

    func validate() throws {
        guard threads >= 1 && threads <= 256 else { throw ValidationError("--threads must be between 1 and 256") }
    }

    func load() throws -> TextModel {
        guard FileManager.default.fileExists(atPath: modelPath) else {
            let hint = model == nil ? " (run Weights/fetch to download the default model)" : ""
            throw CommandError("\(modelPath): no such model file\(hint)")
        }
        return try TextModel(path: modelPath, threads: threads, precision: precision)
    }
}

extension ComputePrecision: ExpressibleByArgument {}

struct Complete: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue the text read from stdin, streaming the continuation to stdout.",
        discussion: "Reads the whole prompt until EOF. Special tokens such as <|im_start|> in the prompt are recognised. Timings go to stderr.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: [.short, .customLong("n-predict")], help: "The most tokens to generate (-1: until end of sequence or a full context).")
    var nPredict: Int = 256

    @Option(name: [.short, .customLong("ctx-size")], help: "Context size in tokens: prompt plus generated text (0: the model's trained context).")
    var ctxSize: Int = 4096

    @Option(help: "Temperature; 0 picks the most likely token (greedy decoding).")
    var temp: Double = 0

    @Flag(help: "Print the generated token ids (space-separated, one line) instead of text.")
    var ids = false

    @Flag(help: "Keep generating after the end-of-sequence token.")
    var ignoreEos = false

    func validate() throws {
        guard nPredict >= -1 else { throw ValidationError("--n-predict must be -1 or more") }
        guard ctxSize >= 0 else { throw ValidationError("--ctx-size must be 0 or more") }
        guard temp == 0 else { throw ValidationError("only --temp 0 (greedy decoding) is supported so far") }
    }

    func run() throws {
        StandardOutput.prepare()
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
            let cache = loaded.model.makeCache(capacity: contextSize)
            let loadTime = (clock.now - loadStart).components
            let loadSeconds = Double(loadTime.seconds) + Double(loadTime.attoseconds) * 1e-18

            let limit = nPredict < 0 ? Int.max : nPredict
            let options = GenerationOptions(maxNewTokens: limit, stopAtEndOfSequence: !ignoreEos)
            var printer = TokenPrinter(tokenizer: loaded.tokenizer, asIds: ids,
                                       hidden: ignoreEos ? [] : loaded.model.endOfSequenceTokens)
            let statistics = try generate(model: loaded.model, prompt: prompt, cache: cache, options: options) {
                printer.print($0)
            }
            guard printer.finish() else { throw closedOutputExitCode }
            StandardError.write(String(
                format: (ids ? "" : "\n") + "quill: load %.0f ms | prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s | %d threads, %@\n",
                loadSeconds * 1000, statistics.promptTokens, statistics.promptTokensPerSecond,
                statistics.generatedTokens, statistics.generationTokensPerSecond,
                modelOptions.threads, modelOptions.precision.rawValue))
        }
    }
}

/// Turns generated tokens into output: text through the UTF-8-safe streaming detokenizer, or ids.
struct TokenPrinter {
    let tokenizer: BPETokenizer
    let asIds: Bool
    /// Tokens not shown as text (the end-of-sequence token).
    let hidden: Set<TokenID>
    private var detokenizer = StreamingDetokenizer()
    private var printedAny = false

    init(tokenizer: BPETokenizer, asIds: Bool, hidden: Set<TokenID>) {
        self.tokenizer = tokenizer
        self.asIds = asIds
        self.hidden = hidden
    }

    /// Prints one token; false when stdout has gone away.
    mutating func print(_ token: TokenID) -> Bool {
        if asIds {
            defer { printedAny = true }
            return StandardOutput.write((printedAny ? " " : "") + String(token))
        }
        guard !hidden.contains(token) else { return true }
        let text = detokenizer.append(tokenizer.tokenBytes(token))
        return text.isEmpty || StandardOutput.write(text)
    }

    /// Flushes held bytes and ends the line of ids; false when stdout has gone away.
    mutating func finish() -> Bool {
        if asIds { return StandardOutput.write("\n") }
        let tail = detokenizer.finish()
        return (tail.isEmpty || StandardOutput.write(tail)) && !StandardOutput.closed
    }
}
