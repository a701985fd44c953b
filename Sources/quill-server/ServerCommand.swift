import ArgumentParser
import FoundationEssentials
import QuillCommandLine
import QuillKernels
import QuillModels
import QuillServer

/// `quill-server`, which `quill serve` runs: the OpenAI-compatible HTTP server.
///
/// An executable of its own so that SwiftNIO and Hummingbird (38 MB of code and metadata) are mapped
/// and relocated only by the server, not at every start of `quill complete` and the other commands.
@main
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quill serve",
        abstract: "Serve a model over HTTP with OpenAI's API (/v1/chat/completions, /v1/completions, /v1/models).",
        discussion: """
            Every request is decoded in one continuous batch: each step runs the next token of every running \
            sequence plus chunks of waiting prompts. The KV memory (-c) is shared by all sequences, and full \
            blocks of earlier prompts are found again by their tokens (prefix cache). Also /health, /metrics \
            (Prometheus), /tokenize and /detokenize. SIGTERM or Ctrl-C stops accepting requests, lets running ones \
            finish (up to --shutdown-grace seconds) and exits 0.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port; the port is printed).")
    var port = 8080

    @Option(name: [.customShort("c"), .customLong("ctx-size")], help: "KV positions shared by all sequences.")
    var ctxSize = 16384

    @Option(name: [.customShort("n"), .customLong("parallel")], help: "The most sequences decoding at once (n > 1 choices count each).")
    var parallel = 8

    @Option(help: "The most requests waiting for a free sequence; beyond it requests get 429.")
    var queue = 64

    @Option(help: "Prompt tokens per chunk, a multiple of 32: a longer prompt runs in several steps, so that running streams keep going (the prefix cache shares 32-token blocks, or whole chunks with --precision f32).")
    var promptChunk = 128

    @Flag(inversion: .prefixedNo, help: "Reuse the KV blocks of earlier prompts that start with the same tokens.")
    var prefixCache = true

    @Option(help: "Require `Authorization: Bearer KEY` on /v1/*, /tokenize and /detokenize.")
    var apiKey: String?

    @Option(help: "Model name that /v1/models lists (default: the file name).")
    var alias: String?

    @Option(help: "Seconds that running requests may take to finish after SIGTERM/SIGINT.")
    var shutdownGrace = 30

    func validate() throws {
        try modelOptions.validate()
        guard (0 ... 65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard ctxSize >= 32 && ctxSize <= 1 << 24 else { throw ValidationError("-c/--ctx-size must be between 32 and 16777216") }
        guard (1 ... 256).contains(parallel) else { throw ValidationError("--parallel must be between 1 and 256") }
        guard (1 ... 100_000).contains(queue) else { throw ValidationError("--queue must be between 1 and 100000") }
        guard (32 ... 8192).contains(promptChunk) && promptChunk % 32 == 0 else {
            throw ValidationError("--prompt-chunk must be a multiple of 32 between 32 and 8192")
        }
        guard (0 ... 3600).contains(shutdownGrace) else { throw ValidationError("--shutdown-grace must be between 0 and 3600") }
    }

    static func main() async {
        Allocator.reuseLargeBlocks()  // a logits array per sequence per step: reuse, don't re-map
        await main(nil)
    }

    func run() async throws {
        try await reportingErrors {
            let path = try ModelLocator.resolve(modelOptions.model)
            var configuration = ServerConfiguration(
                modelPath: path, modelName: alias ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
            configuration.host = host
            configuration.port = port
            configuration.threads = modelOptions.threads
            configuration.precision = modelOptions.precision
            configuration.contextTokens = ctxSize
            configuration.parallel = parallel
            configuration.maxQueue = queue
            configuration.promptChunk = promptChunk
            configuration.prefixCaching = prefixCache
            configuration.apiKey = apiKey
            configuration.shutdownGraceSeconds = shutdownGrace
            try await runServer(configuration)
        }
    }
}
