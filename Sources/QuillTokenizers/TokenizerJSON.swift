import FoundationEssentials

extension BPETokenizer {
    /// Loads a Hugging Face `tokenizer.json` with a byte-level BPE model.
    ///
    /// Supported: `model.type == "BPE"` with `vocab` and `merges` (either `"a b"` strings or
    /// `["a", "b"]` pairs); no normalizer; pre-tokenizer `ByteLevel` (-> `.gpt2`) or
    /// `Sequence[Digits(individual_digits: true), ByteLevel]` (-> `.smollm`), ByteLevel with
    /// `use_regex: true` and `add_prefix_space: false`. `added_tokens` with `special: true` are
    /// matched only when `parseSpecialTokens` is true; other added tokens always (as HF does).
    /// - Throws: `TokenizerError` for unreadable files or unsupported configurations.
    public convenience init(tokenizerJSON url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError("cannot read \(url.path): \(fileErrorDescription(error))")
        }
        // Number and boolean fields are read as JSONSerialization's NSNumber casts read them
        // (`bridgedInt`, `bridgedBool`), so files load or fail as before. Unlike JSONSerialization on
        // Linux, JSONDecoder keeps a leading U+FEFF in strings (byte-level vocabularies have none).
        guard let root = (try? JSONValue(parsing: data))?.objectValue else {
            throw TokenizerError("\(url.lastPathComponent) is not a JSON object")
        }
        guard let model = root["model"]?.objectValue else { throw TokenizerError("tokenizer.json has no \"model\"") }
        if let type = model["type"]?.stringValue, type != "BPE" {
            throw TokenizerError("model type \(type) is not supported (only BPE)")
        }
        if let byteFallback = model["byte_fallback"]?.bridgedBool, byteFallback {
            throw TokenizerError("BPE byte_fallback is not supported (this is a byte-level BPE tokenizer)")
        }
        if let normalizer = root["normalizer"], !normalizer.isNull {
            throw TokenizerError("normalizers are not supported")
        }
        guard let vocab = model["vocab"]?.objectValue else { throw TokenizerError("model has no \"vocab\" object") }

        var entries: [(String, Int)] = []
        entries.reserveCapacity(vocab.count)
        for (token, value) in vocab {
            guard let id = value.bridgedInt, id >= 0 else {
                throw TokenizerError("vocab entry \"\(token)\" has no valid id")
            }
            try VocabularyLimits.check(id, in: url.lastPathComponent)
            entries.append((token, id))
        }
        var specials: [(String, Int32, Bool)] = []
        for case let .object(added) in root["added_tokens"]?.arrayValue ?? [] {
            guard let content = added["content"]?.stringValue, let id = added["id"]?.bridgedInt, id >= 0 else {
                throw TokenizerError("malformed added_tokens entry")
            }
            try VocabularyLimits.check(id, in: url.lastPathComponent + " added_tokens")
            let special = added["special"]?.bridgedBool ?? false
            specials.append((content, Int32(id), !special))
            entries.append((content, id))
        }
        let size = (entries.map { $0.1 }.max() ?? -1) + 1
        var tokens = [String](repeating: "", count: size)
        for (token, id) in entries { tokens[id] = token }

        var pairs: [(String, String)] = []
        let mergeList = model["merges"]?.arrayValue ?? []
        pairs.reserveCapacity(mergeList.count)
        for (rank, m) in mergeList.enumerated() {
            if let s = m.stringValue, let space = s.firstIndex(of: " ") {
                pairs.append((String(s[..<space]), String(s[s.index(after: space)...])))
            } else if let p = m.arrayValue, p.count == 2, let left = p[0].stringValue, let right = p[1].stringValue {
                pairs.append((left, right))
            } else {
                throw TokenizerError("merge \(rank) is neither \"a b\" nor [a, b]")
            }
        }
        let pre = try Self.detectPreTokenizer(root["pre_tokenizer"])
        try self.init(tokens: tokens, mergePairs: pairs, specials: specials, preTokenizer: pre)
    }

    /// Maps the JSON `pre_tokenizer` to one of the hand-written scanners.
    static func detectPreTokenizer(_ json: JSONValue?) throws -> PreTokenizer {
        guard let pre = json?.objectValue, let type = pre["type"]?.stringValue else {
            throw TokenizerError("missing pre_tokenizer (expected ByteLevel)")
        }
        func checkByteLevel(_ p: [String: JSONValue]) throws {
            if p["add_prefix_space"]?.bridgedBool == true {
                throw TokenizerError("ByteLevel add_prefix_space=true is not supported")
            }
            if p["use_regex"]?.bridgedBool == false {
                throw TokenizerError("ByteLevel use_regex=false is not supported")
            }
        }
        switch type {
        case "ByteLevel":
            try checkByteLevel(pre)
            return .gpt2
        case "Sequence":
            // `as? [[String: Any]]` was all or nothing: one step that is not an object means no steps.
            let stepValues = pre["pretokenizers"]?.arrayValue ?? []
            let stepObjects = stepValues.compactMap(\.objectValue)
            let steps = stepObjects.count == stepValues.count ? stepObjects : []
            let types = steps.map { $0["type"]?.stringValue ?? "?" }
            if types == ["Digits", "ByteLevel"], steps[0]["individual_digits"]?.bridgedBool == true {
                try checkByteLevel(steps[1])
                return .smollm
            }
            if types == ["ByteLevel"] {
                try checkByteLevel(steps[0])
                return .gpt2
            }
            if types == ["Split", "ByteLevel"], steps[1]["use_regex"]?.bridgedBool == false,
               let pattern = steps[0]["pattern"]?["Regex"]?.stringValue,
               pattern.hasPrefix("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|") {
                return .llama3
            }
            throw TokenizerError("unsupported pre_tokenizer sequence \(types)")
        default:
            throw TokenizerError("unsupported pre_tokenizer \(type)")
        }
    }
}
