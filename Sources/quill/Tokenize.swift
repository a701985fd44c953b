import ArgumentParser
import Foundation
import QuillModels

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of the text read from stdin (special tokens parsed; BOS only if the model asks for one).")

    @Option(name: [.short, .customLong("model")], help: "GGUF model file (default: $QUILL_MODEL or the model Weights/fetch downloads).")
    var model: String?

    @Flag(help: "Treat special-token text such as <|im_start|> as ordinary text.")
    var noParseSpecial = false

    func run() throws {
        StandardOutput.prepare()
        try reportingErrors {
            let text = try StandardInput.readText()
            let path = model ?? DefaultModel.path
            guard FileManager.default.fileExists(atPath: path) else {
                throw CommandError("\(path): no such model file")
            }
            let file = try GGUFFile(path: path)
            let tokenizer = try TextModel.tokenizer(from: file)
            var ids = tokenizer.encode(text, parseSpecialTokens: !noParseSpecial)
            if (try? file.bool("tokenizer.ggml.add_bos_token")) == true,
               let bos = file.optionalInt("tokenizer.ggml.bos_token_id") {
                ids.insert(Int32(bos), at: 0)
            }
            guard StandardOutput.write(ids.map(String.init).joined(separator: " ") + "\n") else {
                throw closedOutputExitCode
            }
        }
    }
}
