import QuillGeneration
import QuillTokenizers

/// Builds the tokenizer that a GGUF file describes in its `tokenizer.ggml.*` metadata.
public enum GGUFTokenizer {
    /// `gpt2` vocabularies become a byte-level `BPETokenizer` (pre-tokenizer from `tokenizer.ggml.pre`);
    /// `llama` vocabularies a SentencePiece BPE tokenizer with byte fallback (Llama 1/2, Mistral,
    /// Gemma), with the space prefix and BOS/EOS that the file asks for.
    public static func load(from file: GGUFFile) throws -> any SpecialTokenParsingTokenizer {
        let kind = try file.string("tokenizer.ggml.model")
        switch kind {
        case "gpt2": return try byteLevelBPE(from: file)
        case "llama": return try sentencePiece(from: file)
        default:
            throw GGUFError(path: file.path, problem: "unsupported tokenizer model '\(kind)' (known: gpt2, llama)")
        }
    }

    /// The tokenizer of the GGUF file at `path`, reading only its metadata (the tensors may be of types
    /// Quill cannot compute).
    public static func load(path: String) throws -> any SpecialTokenParsingTokenizer {
        try load(from: GGUFFile(path: path, tensorInfos: .skip))
    }

    /// The BOS id to put in front of a prompt, when the file asks for one (`tokenizer.ggml.add_bos_token`).
    /// Without the key, `llama` (SentencePiece) vocabularies add BOS and `gpt2` ones do not, as in llama.cpp.
    public static func beginningOfSequence(in file: GGUFFile) -> TokenID? {
        let byDefault = file.optionalString("tokenizer.ggml.model") == "llama"
        guard file.optionalBool("tokenizer.ggml.add_bos_token") ?? byDefault else { return nil }
        return file.optionalInt("tokenizer.ggml.bos_token_id").map { TokenID($0) }
    }

    /// The byte-level BPE tokenizer of a `gpt2` vocabulary.
    public static func byteLevelBPE(from file: GGUFFile) throws -> BPETokenizer {
        let kind = try file.string("tokenizer.ggml.model")
        guard kind == "gpt2" else {
            throw GGUFError(path: file.path, problem: "tokenizer model is '\(kind)', not byte-level BPE ('gpt2')")
        }
        let pre = file.optionalString("tokenizer.ggml.pre") ?? "default"
        let preTokenizer: PreTokenizer
        switch pre {
        case "smollm": preTokenizer = .smollm
        case "gpt2", "default": preTokenizer = .gpt2
        case "llama-bpe", "llama3": preTokenizer = .llama3
        case "qwen2": preTokenizer = .qwen2
        default:
            throw GGUFError(path: file.path, problem: "unsupported pre-tokenizer '\(pre)' (known: smollm, gpt2, llama-bpe, qwen2)")
        }
        return try wrappingErrors(file) {
            try BPETokenizer(tokens: try file.stringArray("tokenizer.ggml.tokens"),
                             merges: try file.stringArray("tokenizer.ggml.merges"),
                             tokenTypes: try? file.intArray("tokenizer.ggml.token_type"), preTokenizer: preTokenizer,
                             specialTokenIds: specialTokenIds(in: file))
        }
    }

    /// The SentencePiece tokenizer of a `llama` vocabulary, read as llama.cpp reads it: control and
    /// user-defined tokens are split out of the raw text first, then spaces become ▁ (with a leading one
    /// unless `tokenizer.ggml.add_space_prefix` is false) and pieces merge by score with byte fallback.
    /// GGUF keeps no character map, and llama.cpp neither folds whitespace nor normalises.
    static func sentencePiece(from file: GGUFFile) throws -> SentencePieceVocabularyTokenizer {
        func id(_ key: String) -> Int32? { file.optionalInt("tokenizer.ggml.\(key)").map { Int32($0) } }
        return try wrappingErrors(file) {
            try SentencePieceVocabularyTokenizer(
                pieces: try file.stringArray("tokenizer.ggml.tokens"),
                scores: try file.floatArray("tokenizer.ggml.scores"),
                types: try? file.intArray("tokenizer.ggml.token_type"),
                unkId: id("unknown_token_id"), bosId: id("bos_token_id"), eosId: id("eos_token_id"),
                padId: id("padding_token_id"),
                addBOS: beginningOfSequence(in: file) != nil,
                addEOS: file.optionalBool("tokenizer.ggml.add_eos_token") ?? false,
                addSpacePrefix: file.optionalBool("tokenizer.ggml.add_space_prefix") ?? true)
        }
    }

    /// The ids that end generation: EOS and EOT / EOM when the file names them, plus the control tokens
    /// spelled like the ends of turns that chat models write but files often do not declare (Gemma 3:
    /// `<end_of_turn>`; Qwen2.5: `<|endoftext|>` besides EOS `<|im_end|>`), as llama.cpp infers them.
    public static func endOfGenerationTokens(in file: GGUFFile, tokenizer: any Tokenizer) -> Set<TokenID> {
        var ids: Set<TokenID> = []
        for key in ["eos_token_id", "eot_token_id", "eom_token_id"] {
            if let id = file.optionalInt("tokenizer.ggml.\(key)") { ids.insert(TokenID(id)) }
        }
        for text in ["<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "<|eom_id|>", "<|end|>"] {
            if let id = tokenizer.id(of: text), tokenizer.isSpecial(id) { ids.insert(id) }
        }
        return ids
    }

    /// BOS / EOS / PAD / UNK as the file names them (`tokenizer.ggml.*_token_id`).
    static func specialTokenIds(in file: GGUFFile) -> SpecialTokenIds {
        func id(_ key: String) -> Int32? { file.optionalInt("tokenizer.ggml.\(key)").map { Int32($0) } }
        return SpecialTokenIds(bos: id("bos_token_id"), eos: id("eos_token_id"), pad: id("padding_token_id"),
                               unk: id("unknown_token_id"))
    }

    private static func wrappingErrors<T>(_ file: GGUFFile, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as GGUFError {
            throw error
        } catch {
            throw GGUFError(path: file.path, problem: "bad tokenizer: \(error)")
        }
    }
}
