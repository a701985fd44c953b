import FoundationEssentials

/// A SentencePiece model wrapped the way Hugging Face transformers wraps it for Marian and T5:
/// added/special tokens matched in the input text, an optional remapping of piece ids
/// (Marian's `vocab.json`), `</s>` appended, and transformers' decoding rules.
public final class HFSentencePieceTokenizer: Tokenizer {
    /// How ids are turned back into text.
    public enum DecodeStyle: Sendable {
        /// `MarianTokenizer.convert_tokens_to_string`: sentencepiece-decode runs of pieces, special
        /// tokens written as their text plus a space, the result stripped of surrounding whitespace.
        case marian
        /// `tokenizers`' Metaspace decoder (T5): every token's ▁ becomes a space, the first token
        /// loses its leading space.
        case metaspace
    }

    /// The underlying sentencepiece model.
    public let sentencePiece: SentencePieceTokenizer
    public let specialTokenIds: SpecialTokenIds
    public let decodeStyle: DecodeStyle
    /// Whether `encode(_:addSpecialTokens: true)` appends EOS.
    public let appendsEOS: Bool

    /// sentencepiece id -> output id.
    let toOutput: [Int32]
    /// Output id -> token string.
    let outputTokens: [String]
    /// Output id -> sentencepiece id, -1 for added tokens.
    let toSentencePiece: [Int32]
    let special: [Bool]
    let added: AddedTokenMatcher
    let index: [String: Int32]

    /// Creates a wrapper.
    /// - Parameters:
    ///   - vocabulary: output ids of the sentencepiece pieces (Marian's `vocab.json`); pieces
    ///     missing from it map to `unk`. nil keeps sentencepiece's own ids (T5).
    ///   - addedTokens: tokens matched verbatim in the input (all treated as special), with their ids.
    ///   - specialTokenIds: eos / unk / pad / bos ids in output space; `unk` is required with a vocabulary.
    public init(sentencePiece: SentencePieceTokenizer, vocabulary: [String: Int32]?,
                addedTokens: [(String, Int32)], specialTokenIds: SpecialTokenIds,
                appendsEOS: Bool, decodeStyle: DecodeStyle) throws {
        self.sentencePiece = sentencePiece
        self.specialTokenIds = specialTokenIds
        self.decodeStyle = decodeStyle
        self.appendsEOS = appendsEOS
        let spSize = sentencePiece.vocabularySize
        var size = spSize
        if let vocabulary { size = Int(vocabulary.values.max() ?? -1) + 1 }
        for (_, id) in addedTokens { size = max(size, Int(id) + 1) }
        guard size > 0, vocabulary?.values.allSatisfy({ $0 >= 0 }) ?? true else { throw TokenizerError("invalid vocabulary ids") }
        for (text, id) in addedTokens { try VocabularyLimits.check(Int(id), in: "added token \(text)") }
        try VocabularyLimits.check(size - 1, in: "vocabulary")
        var tokens = [String](repeating: "", count: size)
        var back = [Int32](repeating: -1, count: size)
        var forward = [Int32](repeating: -1, count: spSize)
        if let vocabulary {
            guard let unk = specialTokenIds.unk else { throw TokenizerError("a vocabulary mapping needs an unk token") }
            for (piece, id) in vocabulary { tokens[Int(id)] = piece }
            for sp in 0..<spSize {
                let piece = sentencePiece.pieces[sp]
                let id = vocabulary[piece] ?? unk
                forward[sp] = id
                if vocabulary[piece] != nil, back[Int(id)] < 0 { back[Int(id)] = Int32(sp) }
            }
        } else {
            for sp in 0..<spSize { tokens[sp] = sentencePiece.pieces[sp]; forward[sp] = Int32(sp); back[sp] = Int32(sp) }
        }
        var isSpecial = [Bool](repeating: false, count: size)
        for (text, id) in addedTokens {
            guard id >= 0 else { throw TokenizerError("added token \(text) has a negative id") }
            tokens[Int(id)] = text
            isSpecial[Int(id)] = true
            back[Int(id)] = -1
        }
        for id in [specialTokenIds.bos, specialTokenIds.eos, specialTokenIds.pad, specialTokenIds.unk] {
            if let id, id >= 0, Int(id) < size { isSpecial[Int(id)] = true }
        }
        var idx: [String: Int32] = [:]
        for (i, t) in tokens.enumerated() where idx[t] == nil && !t.isEmpty { idx[t] = Int32(i) }
        toOutput = forward
        outputTokens = tokens
        toSentencePiece = back
        special = isSpecial
        added = AddedTokenMatcher(addedTokens)
        index = idx
    }

    /// Loads a Marian folder: `source.spm`, `vocab.json`, `tokenizer_config.json` (optional).
    public convenience init(marianDirectory dir: URL) throws {
        let sp = try SentencePieceTokenizer(modelFile: dir.appendingPathComponent("source.spm"))
        let vocab = try HFFiles.vocabulary(dir.appendingPathComponent("vocab.json"))
        let config = HFFiles.config(dir)
        func tokenId(_ key: String, _ fallback: String) -> Int32? { vocab[HFFiles.tokenText(config[key]) ?? fallback] }
        let eos = tokenId("eos_token", "</s>"), unk = tokenId("unk_token", "<unk>"), pad = tokenId("pad_token", "<pad>")
        var added: [(String, Int32)] = []
        for (text, id) in HFFiles.addedTokensDecoder(config) { added.append((text, id)) }
        for case let (text?, id?) in [("</s>", eos), ("<unk>", unk), ("<pad>", pad)] where !added.contains(where: { $0.1 == id }) {
            added.append((text, id))
        }
        try self.init(sentencePiece: sp, vocabulary: vocab, addedTokens: added,
                      specialTokenIds: SpecialTokenIds(eos: eos, pad: pad, unk: unk),
                      appendsEOS: true, decodeStyle: .marian)
    }

    /// Loads a T5 folder: `spiece.model` plus `extra_ids` sentinels (`<extra_id_0>` = size + extra - 1,
    /// counting down, the T5 convention), `</s>` appended.
    public convenience init(t5Directory dir: URL) throws {
        let sp = try SentencePieceTokenizer(modelFile: dir.appendingPathComponent("spiece.model"))
        let config = HFFiles.config(dir)
        let extra = config["extra_ids"]?.bridgedInt ?? 100
        // Compared by subtraction: `size + extra` overflows for extra_ids near Int.max (found by the mutation campaign).
        guard extra >= 0 && extra <= VocabularyLimits.maximumSize - sp.vocabularySize else {
            throw TokenizerError("tokenizer_config.json: extra_ids \(extra) must be between 0 and \(VocabularyLimits.maximumSize - sp.vocabularySize)")
        }
        let base = Int32(sp.vocabularySize)
        var added: [(String, Int32)] = (0..<extra).map { ("<extra_id_\($0)>", base + Int32(extra - 1 - $0)) }
        let ids = sp.specialTokenIds
        for (text, id) in [("</s>", ids.eos), ("<unk>", ids.unk), ("<pad>", ids.pad)] {
            if let id, sp.tokenString(id) == text { added.append((text, id)) }
        }
        try self.init(sentencePiece: sp, vocabulary: nil, addedTokens: added,
                      specialTokenIds: SpecialTokenIds(eos: ids.eos, pad: ids.pad, unk: ids.unk),
                      appendsEOS: true, decodeStyle: .metaspace)
    }

    public var vocabularySize: Int { outputTokens.count }

    public func tokenString(_ id: Int32) -> String? { id >= 0 && Int(id) < outputTokens.count ? outputTokens[Int(id)] : nil }

    public func id(of token: String) -> Int32? { index[token] }

    public func isSpecial(_ id: Int32) -> Bool { id >= 0 && Int(id) < special.count && special[Int(id)] }

    public func tokenBytes(_ id: Int32) -> [UInt8] {
        guard id >= 0 && Int(id) < outputTokens.count else { return [] }
        let sp = toSentencePiece[Int(id)]
        if sp >= 0 && !special[Int(id)] { return sentencePiece.tokenBytes(sp) }
        return Array(outputTokens[Int(id)].utf8)
    }

    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        var out: [Int32] = []
        var t = text
        var spIds: [Int32] = []
        t.withUTF8 { buf in
            added.split(buf) { segment, token in
                if let token { out.append(token); return }
                spIds.removeAll(keepingCapacity: true)
                sentencePiece.encodeSegment(segment, into: &spIds)
                for id in spIds { out.append(toOutput[Int(id)]) }
            }
        }
        if addSpecialTokens, appendsEOS, let eos = specialTokenIds.eos { out.append(eos) }
        return out
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        let kept = ids.filter { $0 >= 0 && Int($0) < outputTokens.count && !(skipSpecialTokens && special[Int($0)]) }
        switch decodeStyle {
        case .marian:
            var out = ""
            var run: [Int32] = []
            for id in kept {
                let sp = toSentencePiece[Int(id)]
                if special[Int(id)] || sp < 0 {
                    out += sentencePiece.decode(run, skipSpecialTokens: false) + outputTokens[Int(id)] + " "
                    run.removeAll()
                } else {
                    run.append(sp)
                }
            }
            out += sentencePiece.decode(run, skipSpecialTokens: false)
            return out.replacingScalars("\u{2581}", with: " ").trimmingWhitespaceAndNewlines()
        case .metaspace:
            var out: [UInt8] = []
            for (k, id) in kept.enumerated() {
                var piece = SentencePieceTokenizer.unescapeSpaces(outputTokens[Int(id)])
                if k == 0, piece.first == 0x20 { piece.removeFirst() }
                out.append(contentsOf: piece)
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}
