import FoundationEssentials

/// Picks and loads the right tokenizer for a Hugging Face model folder.
public enum TokenizerLoader {
    /// Loads the tokenizer of an HF folder, deciding by `tokenizer_config.json`'s `tokenizer_class`
    /// and the files present:
    /// - `MarianTokenizer` or `source.spm` + `vocab.json` -> Marian (`HFSentencePieceTokenizer`)
    /// - `T5Tokenizer` or `spiece.model` -> T5 (`HFSentencePieceTokenizer`, 100 sentinels by default)
    /// - `vocab.json` + `merges.txt` -> byte-level BPE; RoBERTa/BART (`<s>`…`</s>`) unless the class is GPT-2
    /// - `tokenizer.json` with a byte-level BPE model -> `BPETokenizer`
    /// - Throws: `TokenizerError` with a one-line message for missing folders and unknown layouts.
    public static func load(directory dir: URL) throws -> any Tokenizer {
        let fm = FileManager.default
        var isDir = false
        guard fm.fileExists(atPath: dir.path, isDirectory: &isDir), isDir else {
            throw TokenizerError("\(dir.path) is not a directory")
        }
        func has(_ name: String) -> Bool { fm.fileExists(atPath: dir.appendingPathComponent(name).path) }
        let config = HFFiles.config(dir)
        let cls = (config["tokenizer_class"]?.stringValue ?? "").replacingScalars("Fast", with: "")
        if cls == "MarianTokenizer" || (cls.isEmpty && has("source.spm") && has("vocab.json")) {
            guard has("source.spm"), has("vocab.json") else {
                throw TokenizerError("\(dir.lastPathComponent): MarianTokenizer needs source.spm and vocab.json")
            }
            return try HFSentencePieceTokenizer(marianDirectory: dir)
        }
        if cls == "T5Tokenizer" || (cls.isEmpty && has("spiece.model")) {
            guard has("spiece.model") else {
                throw TokenizerError("\(dir.lastPathComponent): T5Tokenizer needs spiece.model (tokenizer.json-only T5 is not supported)")
            }
            return try HFSentencePieceTokenizer(t5Directory: dir)
        }
        if has("vocab.json") && has("merges.txt") {
            func token(_ key: String) -> String? { HFFiles.tokenText(config[key]) }
            let gpt2 = cls == "GPT2Tokenizer"
            let bos = token("bos_token") ?? (gpt2 ? nil : "<s>"), eos = token("eos_token") ?? (gpt2 ? nil : "</s>")
            var specials: [String] = []
            for key in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] {
                if let t = token(key), !specials.contains(t) { specials.append(t) }
            }
            for (t, _) in HFFiles.addedTokensDecoder(config) where !specials.contains(t) { specials.append(t) }
            if !gpt2 && specials.isEmpty { specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] }
            return try BPETokenizer(vocabJSON: dir.appendingPathComponent("vocab.json"),
                                    mergesTXT: dir.appendingPathComponent("merges.txt"), specialTokens: specials,
                                    bos: gpt2 ? nil : bos, eos: gpt2 ? nil : eos,
                                    pad: token("pad_token"), unk: token("unk_token"))
        }
        if has("tokenizer.json") {
            return try BPETokenizer(tokenizerJSON: dir.appendingPathComponent("tokenizer.json"))
        }
        throw TokenizerError("\(dir.lastPathComponent): unknown tokenizer layout (class \"\(cls)\"; expected source.spm+vocab.json, spiece.model, vocab.json+merges.txt or tokenizer.json)")
    }
}
