/// A SentencePiece BPE vocabulary (pieces, scores, types) read the way llama.cpp reads a GGUF `llama`
/// vocabulary (Llama 1/2, Mistral, Gemma):
///
/// 1. Special tokens are split out of the raw text first: user-defined pieces always (Gemma's runs of
///    newlines, spaces and tabs, its HTML tags), control pieces (`<bos>`, `<start_of_turn>`) where
///    `SpecialTokenParsing` allows.
/// 2. Each span between them gets a space in front when the vocabulary asks for a dummy prefix
///    (`add_space_prefix`) and it starts the text or follows a special token; spaces become ▁; nothing
///    else is normalised.
/// 3. The span is merged by piece score with byte fallback (`SentencePieceTokenizer`'s BPE).
///
/// Decoding turns ▁ into spaces, reassembles byte pieces and drops the dummy-prefix space of the first
/// piece when the vocabulary adds one.
public final class SentencePieceVocabularyTokenizer: SpecialTokenParsingTokenizer {
    /// The scorer and segmenter (its own normaliser only escapes spaces).
    public let sentencePiece: SentencePieceTokenizer
    /// BOS / EOS put around the text by `encode(_:addSpecialTokens: true)`.
    public let addBOS: Bool, addEOS: Bool
    /// Whether spans that start the text or follow a special token get a leading space.
    public let addSpacePrefix: Bool
    private let types: [SentencePieceModelProto.PieceType]
    private let specials: SpecialTokenMatcher

    /// - Parameters:
    ///   - types: GGUF `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined,
    ///     5 unused, 6 byte); nil = all normal.
    ///   - addSpacePrefix: GGUF `tokenizer.ggml.add_space_prefix` (llama.cpp's default: true; Gemma: false).
    /// - Throws: `TokenizerError` if the arrays disagree in length, a type is unknown or an id is out of range.
    public init(pieces: [String], scores: [Float], types rawTypes: [Int32]?,
                unkId: Int32?, bosId: Int32?, eosId: Int32?, padId: Int32?,
                addBOS: Bool, addEOS: Bool, addSpacePrefix: Bool) throws {
        let normal = SentencePieceModelProto.PieceType.normal.rawValue
        let userDefined = SentencePieceModelProto.PieceType.userDefined.rawValue
        let control = SentencePieceModelProto.PieceType.control.rawValue
        if let rawTypes, rawTypes.count != pieces.count {
            throw TokenizerError("\(rawTypes.count) token types for \(pieces.count) pieces")
        }
        // User-defined pieces never reach the segmenter (step 1 takes them), so it sees them as normal
        // pieces and skips sentencepiece's per-character user-defined matching.
        var segmenterTypes = rawTypes
        var specialList: [(text: String, id: Int32, alwaysMatched: Bool)] = []
        if let rawTypes {
            for (i, t) in rawTypes.enumerated() where t == userDefined || t == control {
                specialList.append((pieces[i], Int32(i), t == userDefined))
                if t == userDefined { segmenterTypes![i] = normal }
            }
        }
        var spec = SentencePieceModelProto.Normalizer()
        spec.name = "identity"
        spec.addDummyPrefix = false
        spec.removeExtraWhitespaces = false
        sentencePiece = try SentencePieceTokenizer(
            pieces: pieces, scores: scores, types: segmenterTypes, model: .bpe, byteFallback: true,
            normalizer: spec, unkId: unkId, bosId: bosId, eosId: eosId, padId: padId)
        types = try rawTypes.map { try $0.map { t in
            guard let type = SentencePieceModelProto.PieceType(rawValue: t) else { throw TokenizerError("unknown token type \(t)") }
            return type
        } } ?? [SentencePieceModelProto.PieceType](repeating: .normal, count: pieces.count)
        specials = SpecialTokenMatcher(specialList)
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
    }

    public var vocabularySize: Int { sentencePiece.vocabularySize }
    public var specialTokenIds: SpecialTokenIds { sentencePiece.specialTokenIds }

    /// The type of a piece as the vocabulary gives it (user-defined included), or nil for an invalid id.
    public func pieceType(_ id: Int32) -> SentencePieceModelProto.PieceType? {
        id >= 0 && Int(id) < types.count ? types[Int(id)] : nil
    }

    /// Encodes with special-token text parsed; with `addSpecialTokens`, BOS / EOS as the vocabulary asks.
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        var out: [Int32] = []
        if addSpecialTokens, addBOS, let bos = specialTokenIds.bos { out.append(bos) }
        out += encode(text, specialTokens: .everywhere)
        if addSpecialTokens, addEOS, let eos = specialTokenIds.eos { out.append(eos) }
        return out
    }

    public func encode(_ text: String, specialTokens: SpecialTokenParsing) -> [Int32] {
        var out: [Int32] = []
        var text = text
        text.withUTF8 { s in
            out.reserveCapacity(s.count / 3 + 8)
            var previousWasSpecial = true
            var prefixed: [UInt8] = []
            var cache = PieceCache()
            specials.split(s, specialTokens) { plain, token in
                if let token {
                    out.append(token)
                    previousWasSpecial = true
                    return
                }
                guard !plain.isEmpty else { return }
                if addSpacePrefix && previousWasSpecial {
                    prefixed.removeAll(keepingCapacity: true)
                    prefixed.append(0x20)
                    prefixed.append(contentsOf: plain)
                    prefixed.withUnsafeBufferPointer { sentencePiece.encodeSegment($0, into: &out, cache: &cache) }
                } else {
                    sentencePiece.encodeSegment(plain, into: &out, cache: &cache)
                }
                previousWasSpecial = false
            }
        }
        return out
    }

    /// Decodes: ▁ becomes a space, byte pieces are reassembled, the dummy-prefix space of the first
    /// piece is dropped when the vocabulary adds one; control pieces show as their text unless skipped.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var out: [UInt8] = []
        var atStart = true
        for id in ids {
            guard let type = sentencePiece.pieceType(id) else { continue }
            if type == .control || type == .unknown {
                if skipSpecialTokens { continue }
                if type == .control { out.append(contentsOf: sentencePiece.pieces[Int(id)].utf8); atStart = false; continue }
            }
            var bytes = sentencePiece.tokenBytes(id)[...]
            if atStart && addSpacePrefix && type != .byte && bytes.first == 0x20 { bytes = bytes.dropFirst() }
            out.append(contentsOf: bytes)
            if !out.isEmpty { atStart = false }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public func tokenBytes(_ id: Int32) -> [UInt8] { sentencePiece.tokenBytes(id) }
    public func tokenString(_ id: Int32) -> String? { sentencePiece.tokenString(id) }
    public func id(of token: String) -> Int32? { sentencePiece.id(of: token) }
    public func isSpecial(_ id: Int32) -> Bool { sentencePiece.isSpecial(id) }
}
