import Foundation
import QuillGeneration
import QuillKernels
import QuillTokenizers

/// A decoder-only model loaded from one GGUF file together with its tokenizer.
public final class TextModel: @unchecked Sendable {
    public let file: GGUFFile
    public let model: LlamaModel
    public let tokenizer: BPETokenizer
    /// Token prepended to every prompt when the file asks for it (`tokenizer.ggml.add_bos_token`).
    public let beginningOfSequence: TokenID?

    /// Maps and checks the file, binds the weights and builds the tokenizer.
    public init(path: String, threads: Int, precision: ComputePrecision = .quantized) throws {
        file = try GGUFFile(path: path)
        tokenizer = try TextModel.tokenizer(from: file)
        var endTokens: Set<TokenID> = []
        if let eos = file.optionalInt("tokenizer.ggml.eos_token_id") { endTokens.insert(TokenID(eos)) }
        if let eot = file.optionalInt("tokenizer.ggml.eot_token_id") { endTokens.insert(TokenID(eot)) }
        model = try LlamaModel(gguf: file, threads: threads, precision: precision, endOfSequenceTokens: endTokens)
        let addBOS = (try? file.bool("tokenizer.ggml.add_bos_token")) ?? false
        beginningOfSequence = addBOS ? file.optionalInt("tokenizer.ggml.bos_token_id").map { TokenID($0) } : nil
    }

    /// The tokenizer of a GGUF file: byte-level BPE (`tokenizer.ggml.model = gpt2`) with the
    /// pre-tokenizer named by `tokenizer.ggml.pre`.
    public static func tokenizer(from file: GGUFFile) throws -> BPETokenizer {
        let kind = try file.string("tokenizer.ggml.model")
        guard kind == "gpt2" else {
            throw GGUFError(path: file.path, problem: "unsupported tokenizer model '\(kind)' (Quill reads byte-level BPE, 'gpt2')")
        }
        let pre = (try? file.string("tokenizer.ggml.pre")) ?? "default"
        let preTokenizer: PreTokenizer
        switch pre {
        case "smollm": preTokenizer = .smollm
        case "gpt2", "default": preTokenizer = .gpt2
        default:
            throw GGUFError(path: file.path, problem: "unsupported pre-tokenizer '\(pre)' (known: smollm, gpt2)")
        }
        let types = try? file.intArray("tokenizer.ggml.token_type")
        do {
            return try BPETokenizer(tokens: try file.stringArray("tokenizer.ggml.tokens"),
                                    merges: try file.stringArray("tokenizer.ggml.merges"),
                                    tokenTypes: types, preTokenizer: preTokenizer)
        } catch let error as GGUFError {
            throw error
        } catch {
            throw GGUFError(path: file.path, problem: "bad tokenizer: \(error)")
        }
    }

    /// Token ids of `text` as a prompt: special tokens such as `<|im_start|>` are recognised, and the
    /// BOS token is prepended when the model asks for one.
    public func encodePrompt(_ text: String) -> [TokenID] {
        let ids = tokenizer.encode(text, parseSpecialTokens: true)
        guard let bos = beginningOfSequence else { return ids }
        return [bos] + ids
    }
}

/// Where Quill finds its default model.
public enum DefaultModel {
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// `$QUILL_MODEL` if set, otherwise `${QUILL_HOME:-~/.cache/quill}/models/SmolLM2-135M-Instruct.Q4_1.gguf`,
    /// where `Weights/fetch` puts it.
    public static var path: String {
        let environment = ProcessInfo.processInfo.environment
        if let explicit = environment["QUILL_MODEL"], !explicit.isEmpty { return explicit }
        let home = environment["QUILL_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() as NSString).appendingPathComponent(".cache/quill")
        return (home as NSString).appendingPathComponent("models/" + fileName)
    }
}
