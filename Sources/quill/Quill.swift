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

/// An error that the command line reports as one line and exit code 1.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body`; any error becomes `quill: <message>` on stderr and exit code 1 (no stack trace).
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        StandardError.write("quill: \(error)\n")
        throw ExitCode(1)
    }
}
