import FoundationEssentials
import QuillGeneration
import QuillKernels
import QuillTokenizers

/// A decoder-only model loaded from one GGUF file together with its tokenizer.
public final class TextModel: @unchecked Sendable {
    public let file: GGUFFile
    public let model: DecoderModel
    /// Byte-level BPE for `gpt2` vocabularies, SentencePiece for `llama` ones (see `GGUFTokenizer`).
    public let tokenizer: any Tokenizer
    /// Token prepended to every prompt when the file asks for it (`tokenizer.ggml.add_bos_token`).
    public let beginningOfSequence: TokenID?

    /// Maps and checks the file, binds the weights and builds the tokenizer.
    /// - Parameter maxBatch: the most prompt tokens per forward pass (longer prompts run in several).
    public init(path: String, threads: Int, precision: ComputePrecision = .quantized, maxBatch: Int = 512) throws {
        file = try GGUFFile(path: path)
        tokenizer = try GGUFTokenizer.load(from: file)
        // EOS and the end-of-turn tokens chat models stop at (Gemma's <end_of_turn>, Qwen's <|endoftext|>).
        let endTokens = GGUFTokenizer.endOfGenerationTokens(in: file, tokenizer: tokenizer)
        model = try DecoderModel(gguf: file, threads: threads, precision: precision, endOfSequenceTokens: endTokens,
                                 maxBatch: maxBatch)
        beginningOfSequence = GGUFTokenizer.beginningOfSequence(in: file)
        // The tokenizer holds its own tables now; the vocabulary's bytes in the mapping (~2 MB for
        // SmolLM2) need not stay resident. Once the weights are copied into the model's arena, no
        // part of the file is read per token except rows of an untied token embedding, which fault
        // back in as they are used: the whole mapping is released (1 MB of norms and pages that
        // loading touched, for SmolLM2).
        if model.readsWeightsFromFile { file.releaseMetadataPages() } else { file.releaseResidentPages() }
        #if os(Linux)
        // Loading parsed the vocabulary into temporary arrays (several MB for a 150k vocabulary) that
        // are free now but sit in the middle of the heap, where free() leaves their pages resident.
        _ = malloc_trim(0)
        #endif
    }

    /// Token ids of `text` as a prompt: special tokens such as `<|im_start|>` are recognised, and the
    /// BOS token is prepended when the model asks for one.
    public func encodePrompt(_ text: String) -> [TokenID] {
        let ids = encode(text, parseSpecialTokens: true)
        guard let bos = beginningOfSequence else { return ids }
        return [bos] + ids
    }

    /// Token ids of `text` without BOS, special tokens read as `parsing` says.
    public func encode(_ text: String, specialTokens parsing: SpecialTokenParsing) -> [TokenID] {
        if let tokenizer = tokenizer as? any SpecialTokenParsingTokenizer { return tokenizer.encode(text, specialTokens: parsing) }
        return tokenizer.encode(text, addSpecialTokens: false)
    }

    /// Token ids of `text` without BOS. `parseSpecialTokens: false` reads control-token text such as
    /// `<|im_start|>` as ordinary text (user-defined tokens are matched either way, as llama.cpp does).
    public func encode(_ text: String, parseSpecialTokens: Bool) -> [TokenID] {
        encode(text, specialTokens: parseSpecialTokens ? .everywhere : .nowhere)
    }

    /// The bytes that `ids` stand for in running text (what streaming output prints for them).
    public func bytes(of ids: [TokenID]) -> [UInt8] {
        ids.flatMap { tokenizer.tokenBytes($0) }
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
            ?? FileManager.default.homeDirectoryForCurrentUser.path.appendingPathComponent(".cache/quill")
        return home.appendingPathComponent("models/" + fileName)
    }
}

#if os(Linux)
/// glibc's `malloc_trim` (declared in <malloc.h>, which the Glibc module does not import): returns
/// the free pages of every heap arena to the system.
@_silgen_name("malloc_trim") private func malloc_trim(_ pad: Int) -> Int32
#endif
