import ArgumentParser
import FoundationEssentials
import QuillKernels

@main
struct Quill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quill",
        abstract: "Text generation on the CPU.",
        subcommands: [Complete.self, Chat.self, Tokenize.self, PerplexityCommand.self, Translate.self, Summarize.self, Transcribe.self, Bench.self, Serve.self])

    static func main() {
        Allocator.reuseLargeBlocks()  // a logits array per sequence per step: reuse, don't re-map
        main(nil)
    }
}
