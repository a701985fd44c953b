import ArgumentParser
import FoundationEssentials
import QuillCommandLine
import QuillGeneration
import QuillKernels
import QuillModels
import QuillTokenizers
#if canImport(Glibc)
import Glibc  // isatty
#endif

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Talk with a chat model: one message per line on stdin, replies streamed to stdout.",
        discussion: """
            The model's own chat template (tokenizer.chat_template) formats the conversation. Each turn \
            reuses the KV cache of the conversation so far: only the new message is processed (the count is \
            printed to stderr after every reply). '/reset' starts a new conversation; end of input (Ctrl-D) quits.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: [.short, .customLong("n-predict")], help: "The most tokens per reply (-1: until end of sequence or a full context).")
    var nPredict: Int = 512

    @Option(name: [.short, .customLong("ctx-size")], help: "Context size in tokens for the whole conversation (0: the model's trained context).")
    var ctxSize: Int = 4096

    @Option(help: "System prompt (default: the template's own, if it has one).")
    var system: String?

    @OptionGroup var sampling: SamplingFlags

    func validate() throws {
        guard nPredict >= -1 else { throw ValidationError("--n-predict must be -1 or more") }
        guard ctxSize >= 0 else { throw ValidationError("--ctx-size must be 0 or more") }
    }

    func run() throws {
        StandardOutput.prepare()
        Interrupt.install()
        try reportingErrors {
            let loaded = try modelOptions.load()
            let contextSize = ctxSize == 0 ? loaded.model.trainedContextLength : ctxSize
            let session = try ChatSession(model: loaded, contextSize: contextSize, systemPrompt: system)
            warnBeyondTrainedContext(contextSize, loaded.model.trainedContextLength)
            var options = TextGenerationOptions()
            options.maxNewTokens = nPredict < 0 ? Int.max : nPredict
            options.sampling = sampling.options
            options.stopStrings = sampling.stopStrings
            let baseSeed = options.sampling.seed
            reportSeed(options.sampling)
            StandardError.write("quill: chat with \(modelOptions.modelPath.lastPathComponent); '/reset' starts over, end of input (Ctrl-D) quits\n")
            var turn = 0
            // The "> " prompt only helps a person typing; piped input gets a clean stderr.
            let interactive = isatty(0) == 1
            while true {
                if interactive { StandardError.write("> ") }
                guard let line = readLine(strippingNewline: true) else {
                    if interactive { StandardError.write("\n") }
                    return
                }
                let message = line.trimmingWhitespace()
                if message.isEmpty { continue }
                if message == "/reset" {
                    session.reset()
                    StandardError.write("quill: conversation reset\n")
                    continue
                }
                turn += 1
                // A different stream of random numbers per turn, all determined by the one printed seed.
                options.sampling.seed = baseSeed &+ UInt64(turn - 1)
                let statistics: ChatSession.TurnStatistics
                do {
                    statistics = try Interrupt.whileGenerating {
                        try session.respond(to: message, options: options) { event in
                            if Interrupt.requested { return false }
                            if case let .text(piece) = event { return StandardOutput.write(piece) }
                            return true
                        }
                    }
                } catch let error as GenerationError {
                    // A conversation that outgrew the context is not fatal: say so and let the user reset.
                    StandardError.write("quill: \(error); type /reset to start a new conversation\n")
                    continue
                }
                guard StandardOutput.write("\n") else { throw closedOutputExitCode }
                let g = statistics.generation
                StandardError.write("quill: turn \(turn) | prompt \(g.promptTokens) new tokens (\(statistics.reusedTokens) reused from the cache), "
                    + "\(String(fixed: g.promptTokensPerSecond, decimals: 1)) tok/s | "
                    + "generated \(g.generatedTokens) tokens, \(String(fixed: g.generationTokensPerSecond, decimals: 1)) tok/s\n")
                if Interrupt.requested { throw Interrupt.interruptedExitCode }
            }
        }
    }
}
