import FoundationEssentials

extension BPETokenizer: Tokenizer {
    /// Encodes with special-token text parsed; adds `prefixIds` / `suffixIds` when asked
    /// (both empty for GGUF and `tokenizer.json` loads, e.g. SmolLM2 adds nothing).
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        let body = encode(text, parseSpecialTokens: true)
        guard addSpecialTokens, !(prefixIds.isEmpty && suffixIds.isEmpty) else { return body }
        return prefixIds + body + suffixIds
    }

    /// Decodes to text; bytes that do not form valid UTF-8 become U+FFFD (as HF's `errors="replace"`).
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        let kept = skipSpecialTokens ? ids.filter { !isSpecial($0) } : ids
        return String(decoding: decode(kept), as: UTF8.self)
    }

    /// Loads a GPT-2 style `vocab.json` + `merges.txt` pair (BART, RoBERTa, GPT-2) with the GPT-2
    /// pre-tokenizer. Special tokens (matched verbatim in the input) are given by their text and must
    /// be in the vocabulary or are appended after it.
    ///
    /// - Parameters:
    ///   - specialTokens: texts such as `<s>`, `</s>`, `<unk>`, `<pad>`, `<mask>`.
    ///   - bos, eos: texts added around the input by `encode(_:addSpecialTokens: true)` (BART: `<s>`, `</s>`).
    public convenience init(vocabJSON: URL, mergesTXT: URL, specialTokens: [String],
                            bos: String? = nil, eos: String? = nil, pad: String? = nil, unk: String? = nil,
                            preTokenizer: PreTokenizer = .gpt2) throws {
        var vocab = try HFFiles.vocabulary(vocabJSON)
        var size = Int(vocab.values.max() ?? -1) + 1
        var specials: [(String, Int32, Bool)] = []
        for text in specialTokens {
            if vocab[text] == nil { vocab[text] = Int32(size); size += 1 }
            specials.append((text, vocab[text]!, false))
        }
        var tokens = [String](repeating: "", count: size)
        for (t, id) in vocab { tokens[Int(id)] = t }
        let text: String
        do { text = try String(contentsOf: mergesTXT, encoding: .utf8) } catch {
            throw TokenizerError("cannot read \(mergesTXT.path): \(fileErrorDescription(error))")
        }
        var pairs: [(String, String)] = []
        for (n, line) in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            if n == 0 && line.hasPrefix("#version") { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw TokenizerError("merges.txt line \(n + 1) is not \"left right\"") }
            pairs.append((String(parts[0]), String(parts[1])))
        }
        func id(_ t: String?) -> Int32? { t.flatMap { vocab[$0] } }
        try self.init(tokens: tokens, mergePairs: pairs, specials: specials, preTokenizer: preTokenizer,
                      specialTokenIds: SpecialTokenIds(bos: id(bos), eos: id(eos), pad: id(pad), unk: id(unk)),
                      prefixIds: id(bos).map { [$0] } ?? [], suffixIds: id(eos).map { [$0] } ?? [])
    }
}

/// Small readers for Hugging Face tokenizer files.
enum HFFiles {
    /// `vocab.json`: token string -> id.
    static func vocabulary(_ url: URL) throws -> [String: Int32] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError("cannot read \(url.path): \(fileErrorDescription(error))")
        }
        // JSONDecoder keeps a leading U+FEFF in keys, which JSONSerialization on Linux drops.
        guard let map = try? JSONDecoder().decode([String: Int32].self, from: data) else {
            throw TokenizerError("\(url.lastPathComponent) is not a JSON object of token ids")
        }
        for id in map.values { try VocabularyLimits.check(Int(id), in: url.lastPathComponent) }
        return map
    }

    /// `tokenizer_config.json` as a dictionary (empty if absent or unreadable).
    static func config(_ dir: URL) -> [String: JSONValue] {
        guard let data = try? Data(contentsOf: dir.appendingPathComponent("tokenizer_config.json")),
              let obj = (try? JSONValue(parsing: data))?.objectValue else { return [:] }
        return obj
    }

    /// A token field, either `"</s>"` or `{"content": "</s>", ...}`.
    static func tokenText(_ value: JSONValue?) -> String? {
        if let s = value?.stringValue { return s }
        return value?["content"]?.stringValue
    }

    /// `added_tokens_decoder` entries marked special: (content, id).
    static func addedTokensDecoder(_ config: [String: JSONValue]) -> [(String, Int32)] {
        guard let dec = config["added_tokens_decoder"]?.objectValue else { return [] }
        var out: [(String, Int32)] = []
        for (key, value) in dec {
            guard let id = Int32(key), let text = value["content"]?.stringValue else { continue }
            out.append((text, id))
        }
        return out.sorted { $0.1 < $1.1 }
    }
}
