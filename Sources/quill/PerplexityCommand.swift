import ArgumentParser
import FoundationEssentials
import QuillCommandLine
import QuillGeneration
import QuillKernels
import QuillModels

/// `quill perplexity`: llama-perplexity's measurement, so a speed figure can be checked for correctness.
struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a text file in independent windows (as llama-perplexity and Hugging Face measure it).",
        discussion: """
            Splits the file's tokens into windows of -c tokens; each window starts from an empty cache. \
            Prints the perplexity over all scored positions (Hugging Face's procedure) and over the second \
            half of each window (llama-perplexity's).
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: [.short, .customLong("file")], help: "Text file to score.")
    var file: String

    @Option(name: [.short, .customLong("ctx-size")], help: "Window size in tokens.")
    var ctxSize: Int = 512

    @Option(help: "Windows to score (0: as many as the file holds).")
    var chunks: Int = 0

    @Option(name: [.short, .customLong("batch-size")], help: "Tokens per forward pass; 1 runs every token through the decoding (mat-vec) kernels.")
    var batchSize: Int = 512

    func validate() throws {
        guard ctxSize >= 2 else { throw ValidationError("--ctx-size must be at least 2") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard chunks >= 0 else { throw ValidationError("--chunks must be 0 or more") }
    }

    func run() throws {
        try reportingErrors {
            guard let data = FileManager.default.contents(atPath: file) else { throw CommandError("\(file): cannot read the file") }
            guard let text = String(validating: data, as: UTF8.self) else { throw CommandError("\(file): not valid UTF-8 text") }
            let loaded = try modelOptions.load(maxBatch: batchSize)
            var tokens = loaded.encodePrompt(text)
            // chunks × ctx-size can overflow for absurd values; such a product is simply "all of it".
            let (limit, overflow) = chunks.multipliedReportingOverflow(by: ctxSize)
            if chunks > 0 && !overflow { tokens = Array(tokens.prefix(limit)) }
            guard tokens.count >= ctxSize else {
                throw CommandError("\(file) has \(tokens.count) tokens, fewer than one window of \(ctxSize)")
            }
            // A pass holds the logits of all its tokens (the window's are scored pass by pass).
            let passTokens = min(batchSize, ctxSize)
            let logitBytes = MemoryBudget.bytes([passTokens, loaded.model.vocabularySize, MemoryLayout<Float>.size])
            guard let logitBytes, logitBytes <= MemoryBudget.availableBytes else {
                throw CommandError("a pass of \(passTokens) tokens needs \(MemoryBudget.describe(logitBytes)) of logits but only "
                    + "\(MemoryBudget.describe(MemoryBudget.availableBytes)) of memory is available; lower -b/--batch-size")
            }
            let clock = ContinuousClock()
            let start = clock.now
            let result = try Perplexity.measure(model: loaded.model, tokens: tokens, window: ctxSize, passTokens: passTokens)
            let elapsed = (clock.now - start).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18
            print("windows \(tokens.count / ctxSize) × \(ctxSize) tokens | "
                + "PPL \(String(fixed: result.perplexity, decimals: 4)) (all \(result.scoredTokens) positions) | "
                + "PPL \(String(fixed: result.secondHalfPerplexity, decimals: 4)) (second halves, \(result.secondHalfScoredTokens) positions) | "
                + "\(String(fixed: seconds, decimals: 1)) s")
        }
    }
}
