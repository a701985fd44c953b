import FoundationEssentials

/// A SentencePiece tokenizer (unigram or BPE, optional byte fallback) that reproduces the
/// sentencepiece library: same normalisation, same segmentation, same decoding.
///
/// Built from a `.model` file or from GGUF `llama`-style arrays (tokens, scores, token types).
/// Special tokens in the input are *not* matched here (the library treats `</s>` as text); the
/// Hugging Face wrappers (`HFSentencePieceTokenizer`) add that.
public final class SentencePieceTokenizer: Tokenizer {
    public typealias PieceType = SentencePieceModelProto.PieceType

    /// The segmentation algorithm.
    public let algorithm: SentencePieceModelProto.Algorithm
    /// Whether characters missing from the vocabulary become `<0xXX>` byte pieces.
    public let byteFallback: Bool
    /// The normaliser applied before segmentation.
    public let normalizer: SentencePieceNormalizer
    /// BOS / EOS added by `encode(_:addSpecialTokens: true)`.
    public let addBOS: Bool, addEOS: Bool
    public let specialTokenIds: SpecialTokenIds

    let pieces: [String]
    let scores: [Float]
    let types: [PieceType]
    /// Control, unknown and byte pieces by spelling (they are not in `pieceTable`).
    let reserved: [String: Int32]
    /// Pieces that can be produced by segmentation (normal, user-defined, unused) by their UTF-8 bytes.
    let pieceTable: PieceTable
    /// The same pieces as a trie, for the prefix walks of unigram segmentation; for BPE only the
    /// user-defined pieces (BPE needs exact lookups only, and a 262k-piece trie costs most of the load).
    let trie: BytesTrie
    /// Bytes of every piece as it appears in decoded text (▁ -> space, `<0x41>` -> 0x41).
    let decodedBytes: ByteStrings
    /// Id of the `<0xXX>` piece per byte, -1 if missing.
    let byteIds: [Int32]
    let unkId: Int32
    /// Unigram: score of an unknown character (lowest normal score minus 10, as sentencepiece).
    let unkScore: Float
    /// Unigram: highest normal score (user-defined pieces get `length * maxScore - 0.1`).
    let maxScore: Float
    let unkSurface: [UInt8]
    /// Pieces containing a non-▁ character followed by ▁ (Gemma 3 has one, `>▁</`), with the byte
    /// offsets of those ▁. Segmentation runs word by word (a word ends before each ▁ that follows a
    /// non-▁ character) with a cache, which gives the same result as over the whole text because no
    /// merge can cross such a boundary, unless one of these pieces spans it at that place in the text;
    /// then the boundary is not used. Empty for Marian/T5/Llama/most vocabularies.
    let crossingPieces: [(bytes: [UInt8], spaceOffsets: [Int])]
    /// Per byte: whether it ends the text before a ▁ in some crossing piece (a cheap first test).
    let crossingByteBeforeSpace: [Bool]
    /// Word-by-word segmentation is used unless too many pieces cross word boundaries to check cheaply.
    let splitsAtSpaces: Bool

    /// Loads a sentencepiece `.model` file.
    public convenience init(modelFile url: URL, addBOS: Bool = false, addEOS: Bool = false) throws {
        try self.init(proto: SentencePieceModelProto(contentsOf: url), addBOS: addBOS, addEOS: addEOS)
    }

    /// Creates a tokenizer from a parsed model.
    public convenience init(proto: SentencePieceModelProto, addBOS: Bool = false, addEOS: Bool = false) throws {
        try self.init(pieces: proto.pieces.map(\.piece), scores: proto.pieces.map(\.score),
                      types: proto.pieces.map { $0.type.rawValue }, model: proto.algorithm,
                      byteFallback: proto.byteFallback, normalizer: proto.normalizer,
                      unkId: proto.unkId, bosId: proto.bosId, eosId: proto.eosId, padId: proto.padId,
                      addBOS: addBOS, addEOS: addEOS, unkSurface: proto.unkSurface)
    }

    /// Creates a tokenizer from vocabulary arrays, e.g. GGUF `tokenizer.ggml.tokens` / `scores` /
    /// `token_type` of a `llama`-model vocabulary (SentencePiece BPE with byte fallback; llama.cpp
    /// escapes spaces and adds the dummy prefix, which the default `normalizer` does).
    ///
    /// - Parameters:
    ///   - types: sentencepiece / GGUF types (1 normal, 2 unknown, 3 control, 4 user-defined,
    ///     5 unused, 6 byte); nil = all normal.
    ///   - normalizer: defaults to no character map with sentencepiece's whitespace defaults
    ///     (GGUF stores no charsmap; Llama/Gemma models use `identity`).
    ///   - unkId: defaults to the first piece of type unknown, else 0.
    /// - Throws: `TokenizerError` if the arrays disagree in length or ids are out of range.
    public init(pieces: [String], scores: [Float], types: [Int32]? = nil,
                model: SentencePieceModelProto.Algorithm, byteFallback: Bool = false,
                normalizer spec: SentencePieceModelProto.Normalizer = .init(),
                unkId: Int32? = nil, bosId: Int32? = nil, eosId: Int32? = nil, padId: Int32? = nil,
                addBOS: Bool = false, addEOS: Bool = false, unkSurface: String = " \u{2047} ") throws {
        guard !pieces.isEmpty else { throw TokenizerError("empty vocabulary") }
        guard scores.count == pieces.count else {
            throw TokenizerError("\(scores.count) scores for \(pieces.count) pieces")
        }
        guard pieces.count < Int(Int32.max) else { throw TokenizerError("vocabulary too large") }
        var pieceTypes: [PieceType] = []
        if let types {
            guard types.count == pieces.count else { throw TokenizerError("\(types.count) token types for \(pieces.count) pieces") }
            pieceTypes.reserveCapacity(types.count)
            for (i, t) in types.enumerated() {
                guard let pt = PieceType(rawValue: t) else { throw TokenizerError("piece \(i) has unknown type \(t)") }
                pieceTypes.append(pt)
            }
        } else {
            pieceTypes = [PieceType](repeating: .normal, count: pieces.count)
        }
        func checked(_ id: Int32?, _ name: String) throws -> Int32? {
            guard let id, id >= 0 else { return nil }
            guard Int(id) < pieces.count else { throw TokenizerError("\(name) id \(id) outside the vocabulary") }
            return id
        }
        let unk = try checked(unkId, "unk") ?? Int32(pieceTypes.firstIndex(of: .unknown) ?? 0)
        algorithm = model
        self.byteFallback = byteFallback
        self.addBOS = addBOS
        self.addEOS = addEOS
        specialTokenIds = SpecialTokenIds(bos: try checked(bosId, "bos"), eos: try checked(eosId, "eos"),
                                          pad: try checked(padId, "pad"), unk: unk)
        self.pieces = pieces
        self.scores = scores
        self.types = pieceTypes
        self.unkId = unk
        self.unkSurface = Array(unkSurface.utf8)

        // Built without a temporary array per piece: 262k small allocations cost more than the trie itself.
        var table = PieceTable(capacity: pieces.count)
        var pieceTrie = BytesTrie()
        var crossing: [(bytes: [UInt8], spaceOffsets: [Int])] = []
        var userDefined: [String] = []
        var byteTable = [Int32](repeating: -1, count: 256)
        var reservedIds: [String: Int32] = [:]
        var decoded = ByteStrings(reservingCount: pieces.count)
        let unknownSurface = self.unkSurface
        var minScore = Float.greatestFiniteMagnitude, maxScoreSeen = -Float.greatestFiniteMagnitude
        for (i, p) in pieces.enumerated() {
            try decoded.append { arena in
                switch pieceTypes[i] {
                case .normal, .unused, .userDefined:
                    var piece = p
                    piece.withUTF8 { bytes in
                        table.insert(bytes, id: Int32(i))
                        if model == .unigram || pieceTypes[i] == .userDefined { pieceTrie.insert(bytes, id: Int32(i)) }
                        Self.appendUnescapingSpaces(bytes, to: &arena)
                        if Self.hasSpaceAfterText(bytes) { crossing.append((Array(bytes), Self.spaceAfterTextOffsets(Array(bytes)))) }
                    }
                    if pieceTypes[i] == .userDefined { userDefined.append(p) }
                    if pieceTypes[i] == .normal {
                        minScore = min(minScore, scores[i]); maxScoreSeen = max(maxScoreSeen, scores[i])
                    }
                case .byte:
                    if let b = Self.byteValue(p) {
                        if byteTable[Int(b)] < 0 { byteTable[Int(b)] = Int32(i) }
                        arena.append(b)
                    }
                case .control:
                    break  // decodes to nothing, as in sentencepiece
                case .unknown:
                    arena.append(contentsOf: unknownSurface)
                }
            }
            if pieceTypes[i] == .byte || pieceTypes[i] == .control || pieceTypes[i] == .unknown, reservedIds[p] == nil {
                reservedIds[p] = Int32(i)
            }
        }
        decoded.trim()
        if minScore > maxScoreSeen { minScore = 0; maxScoreSeen = 0 }
        reserved = reservedIds
        crossingPieces = crossing
        var before = [Bool](repeating: false, count: 256)
        for (bytes, offsets) in crossing { for off in offsets { before[Int(bytes[off - 1])] = true } }
        crossingByteBeforeSpace = before
        splitsAtSpaces = crossingPieces.count <= 64
        pieceTable = table
        trie = pieceTrie
        byteIds = byteTable
        decodedBytes = decoded
        unkScore = minScore - 10
        maxScore = maxScoreSeen
        normalizer = try SentencePieceNormalizer(spec: spec, userDefinedPieces: userDefined)
    }

    /// Whether the bytes contain ▁ right after a character that is not ▁.
    static func hasSpaceAfterText(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 1
        while i + 2 < b.count {
            if isSpaceSymbol(b, at: i) && !(i >= 3 && isSpaceSymbol(b, at: i - 3)) { return true }
            i += 1
        }
        return false
    }

    /// Byte offsets of every ▁ that follows a character other than ▁ (E2 is always a lead byte in
    /// UTF-8, so E2 96 81 anywhere is a ▁).
    static func spaceAfterTextOffsets(_ b: [UInt8]) -> [Int] {
        var offsets: [Int] = []
        var i = 1
        while i + 2 < b.count {
            if isSpaceSymbol(b, at: i) && !(i >= 3 && isSpaceSymbol(b, at: i - 3)) { offsets.append(i) }
            i += 1
        }
        return offsets
    }

    @inline(__always)
    static func isSpaceSymbol<C: RandomAccessCollection>(_ b: C, at i: Int) -> Bool where C.Element == UInt8, C.Index == Int {
        b[i] == 0xE2 && b[i + 1] == 0x96 && b[i + 2] == 0x81
    }

    /// Whether a crossing piece occurs in `n` spanning the word boundary at `i` (the ▁ it starts).
    @inline(__always)
    func pieceSpansBoundary(_ n: UnsafeBufferPointer<UInt8>, _ i: Int) -> Bool {
        guard crossingByteBeforeSpace[Int(n[i - 1])] else { return false }
        return crossingPieceAt(n, i)
    }

    private func crossingPieceAt(_ n: UnsafeBufferPointer<UInt8>, _ i: Int) -> Bool {
        for (bytes, offsets) in crossingPieces {
            for off in offsets {
                let start = i - off
                guard start >= 0, start + bytes.count <= n.count else { continue }
                var k = 0
                while k < bytes.count && n[start + k] == bytes[k] { k += 1 }
                if k == bytes.count { return true }
            }
        }
        return false
    }

    /// `<0x41>` -> 0x41.
    static func byteValue(_ piece: String) -> UInt8? {
        let u = Array(piece.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16)
    }

    /// Appends a piece's bytes with ▁ turned into spaces.
    static func appendUnescapingSpaces(_ u: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var k = 0
        while k < u.count {
            if k + 2 < u.count, u[k] == 0xE2, u[k + 1] == 0x96, u[k + 2] == 0x81 { out.append(0x20); k += 3 } else { out.append(u[k]); k += 1 }
        }
    }

    /// A piece's text with ▁ turned into spaces.
    static func unescapeSpaces(_ piece: String) -> [UInt8] {
        var out: [UInt8] = []
        let u = Array(piece.utf8)
        var k = 0
        while k < u.count {
            if k + 2 < u.count, u[k] == 0xE2, u[k + 1] == 0x96, u[k + 2] == 0x81 { out.append(0x20); k += 3 } else { out.append(u[k]); k += 1 }
        }
        return out
    }

    public var vocabularySize: Int { pieces.count }

    /// The type of a piece, or nil for an invalid id.
    public func pieceType(_ id: Int32) -> PieceType? { id >= 0 && Int(id) < types.count ? types[Int(id)] : nil }

    /// The score of a piece (0 for invalid ids).
    public func score(_ id: Int32) -> Float { id >= 0 && Int(id) < scores.count ? scores[Int(id)] : 0 }

    public func tokenString(_ id: Int32) -> String? { id >= 0 && Int(id) < pieces.count ? pieces[Int(id)] : nil }

    public func id(of token: String) -> Int32? {
        var t = token
        if let v = t.withUTF8({ pieceTable.lookup($0) }) { return v }
        return reserved[token]
    }

    public func isSpecial(_ id: Int32) -> Bool {
        guard let t = pieceType(id) else { return false }
        return t == .control || t == .unknown
    }

    public func tokenBytes(_ id: Int32) -> [UInt8] {
        guard id >= 0 && Int(id) < pieces.count else { return [] }
        return Array(decodedBytes[Int(id)])
    }

    /// Encodes text like `SentencePieceProcessor::Encode` (plus BOS/EOS if configured and asked).
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        var out: [Int32] = []
        if addSpecialTokens, addBOS, let b = specialTokenIds.bos { out.append(b) }
        var t = text
        t.withUTF8 { encodeSegment($0, into: &out) }
        if addSpecialTokens, addEOS, let e = specialTokenIds.eos { out.append(e) }
        return out
    }

    /// The vocabulary pieces of `encode(text, addSpecialTokens: false)`.
    public func encodeAsPieces(_ text: String) -> [String] {
        encode(text, addSpecialTokens: false).map { pieces[Int($0)] }
    }

    /// Normalises and segments one span of raw text, appending ids.
    func encodeSegment(_ s: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        var cache = PieceCache()
        encodeSegment(s, into: &out, cache: &cache)
    }

    /// Normalises and segments one span of raw text, appending ids; `cache` holds the words segmented
    /// so far (share it between the spans of one text).
    func encodeSegment(_ s: UnsafeBufferPointer<UInt8>, into out: inout [Int32], cache: inout PieceCache) {
        let normalized = normalizer.normalize(utf8: s)
        if normalized.isEmpty { return }
        normalized.withUnsafeBufferPointer { n in
            guard splitsAtSpaces else { return segment(n, into: &out) }
            var start = 0
            var i = 1
            while i <= n.count {
                // A word ends before each ▁ that follows a non-▁ character, and at the end.
                let atEnd = i == n.count
                let boundary = atEnd || (i + 2 < n.count && Self.isSpaceSymbol(n, at: i)
                    && !(i >= 3 && Self.isSpaceSymbol(n, at: i - 3))
                    && (crossingPieces.isEmpty || !pieceSpansBoundary(n, i)))
                if !boundary { i += 1; continue }
                let word = UnsafeBufferPointer(rebasing: n[start..<i])
                let h = PieceCache.hash(word)
                let first = out.count
                if let range = cache.lookup(word, hash: h) {
                    cache.values.withUnsafeBufferPointer { v in for k in range { out.append(v[k]) } }
                } else {
                    segment(word, into: &out)
                    cache.insert(word, hash: h, ids: out[first...])
                }
                // Runs of unknowns merge across words too (each word was segmented on its own).
                if !byteFallback, first > 0, out.count > first, out[first] == unkId, out[first - 1] == unkId {
                    out.remove(at: first)
                }
                if atEnd { break }
                start = i
                i += 3
            }
        }
    }

    @inline(__always)
    private func segment(_ n: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        switch algorithm {
        case .unigram: encodeUnigram(n, into: &out)
        case .bpe: encodeBPE(n, into: &out)
        }
    }

    /// Emits a segmentation result: unknown spans become byte pieces (byte fallback) or one `<unk>`
    /// per run of consecutive unknowns (sentencepiece merges them so decoding can copy the surface).
    @inline(__always)
    func emit(_ id: Int32, _ bytes: UnsafeBufferPointer<UInt8>, _ prevUnk: inout Bool, _ out: inout [Int32]) {
        if id == unkId {
            if byteFallback {
                for b in bytes { out.append(byteIds[Int(b)] >= 0 ? byteIds[Int(b)] : unkId) }
                prevUnk = false
                return
            }
            if !prevUnk { out.append(unkId) }
            prevUnk = true
            return
        }
        out.append(id)
        prevUnk = false
    }

    /// Decodes like `SentencePieceProcessor::Decode`: ▁ becomes a space, the dummy-prefix space of
    /// the first piece is dropped, consecutive byte pieces are reassembled into UTF-8.
    /// Without `skipSpecialTokens` control pieces show as their text and `<unk>` as " ⁇ ".
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var out: [UInt8] = []
        var atStart = true
        let stripDummy = normalizer.spec.addDummyPrefix || normalizer.spec.removeExtraWhitespaces
        for id in ids {
            guard let t = pieceType(id) else { continue }
            if t == .control || t == .unknown {
                if skipSpecialTokens { continue }
                out.append(contentsOf: t == .control ? Array(pieces[Int(id)].utf8) : unkSurface)
                atStart = false
                continue
            }
            var bytes = decodedBytes[Int(id)]
            if atStart && stripDummy && t != .byte && bytes.first == 0x20 { bytes = bytes.dropFirst() }
            out.append(contentsOf: bytes)
            if !out.isEmpty { atStart = false }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
