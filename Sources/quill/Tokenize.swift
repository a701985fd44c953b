import ArgumentParser
import FoundationEssentials
import QuillCommandLine
import QuillModels
import QuillTokenizers

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize the text read from stdin and print the ids, the pieces or the count.",
        discussion: """
            With a GGUF file, special-token text such as <|im_start|> is parsed and BOS is added only when \
            the model asks for one. With a Hugging Face folder (Marian, T5, BART), the tokens the tokenizer \
            adds by default (</s>, <s>…</s>) are added, as transformers' tokenizer(text) does.
            """)

    @Option(name: [.short, .customLong("model")], help: "GGUF model file, Hugging Face model folder, or a name Weights/fetch knows (default: $QUILL_MODEL or smollm2).")
    var model: String?

    enum Output: String, EnumerableFlag {
        case ids, pieces, count

        static func help(for value: Output) -> ArgumentHelp? {
            switch value {
            case .ids: return "Print the token ids, space-separated on one line (the default)."
            case .pieces: return "Print the vocabulary spellings of the tokens (Ġ/▁ for spaces), space-separated."
            case .count: return "Print only the number of tokens."
            }
        }
    }

    @Flag var output: Output = .ids

    @Flag(help: "Treat control-token text such as <|im_start|> as ordinary text (GGUF models only).")
    var noParseSpecial = false

    func run() throws {
        StandardOutput.prepare()
        try reportingErrors {
            let text = try StandardInput.readText()
            let path = try ModelLocator.resolve(model)
            var isDirectory = false
            _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            let tokenizer: any Tokenizer
            var ids: [Int32]
            if isDirectory {
                guard !noParseSpecial else { throw CommandError("--no-parse-special works with GGUF models only") }
                tokenizer = try TokenizerLoader.load(directory: URL(fileURLWithPath: path, isDirectory: true))
                ids = tokenizer.encode(text, addSpecialTokens: true)
            } else {
                // Only the metadata: tokenizing works whatever the tensor types.
                let file = try GGUFFile(path: path, tensorInfos: .skip)
                let gguf = try GGUFTokenizer.load(from: file)
                tokenizer = gguf
                ids = gguf.encode(text, specialTokens: noParseSpecial ? .nowhere : .everywhere)
                if let bos = GGUFTokenizer.beginningOfSequence(in: file) { ids.insert(bos, at: 0) }
            }
            let line: String
            switch output {
            case .ids: line = ids.map(String.init).joined(separator: " ")
            case .pieces: line = ids.map { tokenizer.tokenString($0) ?? "?" }.joined(separator: " ")
            case .count: line = String(ids.count)
            }
            guard StandardOutput.write(line + "\n") else { throw closedOutputExitCode }
        }
    }
}
