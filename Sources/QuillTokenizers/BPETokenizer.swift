/// Byte-level BPE tokenizer (GPT-2 family: GPT-2, SmolLM/SmolLM2, Llama 3 style vocabularies).
///
/// Encoding: special tokens are split out of the text first (exact spelling, leftmost-longest,
/// surrounding spaces kept), every other span is cut into pieces by the pre-tokenizer, and each piece
/// is byte-mapped and merged by rank. This matches Hugging Face `tokenizers` and llama.cpp exactly.
/// The tokenizer is immutable and safe to share between threads.
public final class BPETokenizer: Sendable {
    /// A token matched verbatim in input text before pre-tokenization.
    struct SpecialToken: Sendable {
        let bytes: [UInt8]
        let id: Int32
        /// Matched even when `parseSpecialTokens` is false (GGUF user-defined tokens, HF added
        /// tokens with `special=false`), as llama.cpp and HF `tokenizers` both do.
        let alwaysParsed: Bool
    }

    /// The pre-tokenizer this tokenizer applies.
    public let preTokenizer: PreTokenizer
    /// Spellings by id and ids by spelling (GPT-2's byte alphabet).
    let spellings: TokenSpellings
    let merges: MergeTable
    /// Token id of each single byte (-1 if the vocabulary lacks it).
    let byteToId: [Int32]
    let specials: [SpecialToken]
    /// Indices into `specials` by first byte, longest first, for leftmost-longest matching.
    let specialsByFirstByte: [[Int]]
    /// Per id: whether it is a special token (for `isSpecial` and skipping in `decode`).
    let specialTable: [Bool]
    /// BOS / EOS / PAD / UNK ids, if the model has them.
    public let specialTokenIds: SpecialTokenIds
    /// Ids put before / after the text by `encode(_:addSpecialTokens: true)` (BART: `<s>` … `</s>`).
    public let prefixIds: [Int32], suffixIds: [Int32]

    /// Creates a tokenizer from GGUF-style data.
    ///
    /// - Parameters:
    ///   - tokens: vocabulary strings in GPT-2's byte-to-unicode alphabet (`Ġ` = space); index = id.
    ///   - merges: `"left right"` strings in rank order (rank 0 first).
    ///   - tokenTypes: GGUF `token_type` per token (1 normal, 2 unknown, 3 control, 4 user-defined,
    ///     5 unused, 6 byte) or nil. Control tokens are special: matched verbatim in the input only
    ///     when `parseSpecialTokens` is true. User-defined tokens are matched verbatim always (as
    ///     llama.cpp does). Both decode to their literal text.
    ///   - preTokenizer: how text is split before BPE.
    ///   - specialTokenIds: BOS/EOS/PAD/UNK for the `Tokenizer` protocol (GGUF `tokenizer.ggml.*_token_id`).
    /// - Throws: `TokenizerError` if `tokenTypes` has the wrong length or a merge is malformed.
    public convenience init(tokens: [String], merges: [String], tokenTypes: [Int32]?,
                            preTokenizer: PreTokenizer, specialTokenIds: SpecialTokenIds = .init()) throws {
        if let types = tokenTypes, types.count != tokens.count {
            throw TokenizerError("token_type has \(types.count) entries but the vocabulary has \(tokens.count)")
        }
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(merges.count)
        for (rank, merge) in merges.enumerated() {
            // Vocabulary strings never contain a literal space (it is spelled Ġ), so one space separates.
            guard let space = merge.firstIndex(of: " ") else {
                throw TokenizerError("merge \(rank) \"\(merge)\" is not of the form \"left right\"")
            }
            pairs.append((String(merge[..<space]), String(merge[merge.index(after: space)...])))
        }
        var specials: [(String, Int32, Bool)] = []
        if let types = tokenTypes {
            for (i, t) in types.enumerated() where t == 3 || t == 4 {
                specials.append((tokens[i], Int32(i), t == 4))
            }
        }
        try self.init(tokens: tokens, mergePairs: pairs, specials: specials, preTokenizer: preTokenizer,
                      specialTokenIds: specialTokenIds)
    }

    /// Designated initialiser shared by the GGUF and tokenizer.json paths.
    /// `specials` are (text, id, alwaysParsed).
    init(tokens: [String], mergePairs: [(String, String)], specials specialList: [(String, Int32, Bool)],
         preTokenizer: PreTokenizer, specialTokenIds: SpecialTokenIds = .init(),
         prefixIds: [Int32] = [], suffixIds: [Int32] = []) throws {
        self.specialTokenIds = specialTokenIds
        self.prefixIds = prefixIds
        self.suffixIds = suffixIds
        guard tokens.count < Int(Int32.max) else { throw TokenizerError("vocabulary too large") }
        self.preTokenizer = preTokenizer
        let index = try TokenSpellings(tokens)
        spellings = index

        var specialTokens: [SpecialToken] = []
        var isSpecial = [Bool](repeating: false, count: tokens.count)
        for (text, id, always) in specialList where !text.isEmpty {
            guard id >= 0 && Int(id) < tokens.count else {
                throw TokenizerError("special token \"\(text)\" has id \(id) outside the vocabulary")
            }
            specialTokens.append(SpecialToken(bytes: Array(text.utf8), id: id, alwaysParsed: always))
            isSpecial[Int(id)] = true
        }
        specials = specialTokens
        specialTable = isSpecial
        var byFirst = [[Int]](repeating: [], count: 256)
        for (k, s) in specialTokens.enumerated() { byFirst[Int(s.bytes[0])].append(k) }
        for b in 0..<256 { byFirst[b].sort { specialTokens[$0].bytes.count > specialTokens[$1].bytes.count } }
        specialsByFirstByte = byFirst

        byteToId = (0..<256).map { b in index.id(of: String(ByteLevel.byteToScalar[b])) ?? -1 }

        var table = MergeTable(capacity: mergePairs.count)
        for (rank, (a, b)) in mergePairs.enumerated() {
            // Merges whose parts or result are not in the vocabulary can never apply; skip them.
            guard let l = index.id(of: a), let r = index.id(of: b), let m = index.id(of: a + b) else { continue }
            table.insert(left: l, right: r, rank: Int32(rank), merged: m)
        }
        merges = table
    }

    /// Number of token ids (the size of the model's embedding table).
    public var vocabularySize: Int { spellings.count }

    /// The id of a token given by its vocabulary spelling (e.g. `"<|im_end|>"`, `"Ġthe"`).
    public func id(of token: String) -> Int32? { spellings.id(of: token) }

    /// The vocabulary spelling of a token id (byte alphabet; `Ġ` = space), or nil if out of range.
    public func tokenString(_ id: Int32) -> String? {
        id >= 0 && Int(id) < spellings.count ? spellings.spelling(Int(id)) : nil
    }

    /// The bytes one token stands for (special tokens: their UTF-8 text). Empty for invalid ids.
    public func tokenBytes(_ id: Int32) -> [UInt8] {
        guard id >= 0 && Int(id) < spellings.count else { return [] }
        var bytes: [UInt8] = []
        appendBytes(of: Int(id), to: &bytes)
        return bytes
    }

    /// Appends the bytes token `id` stands for: a special token its literal text, any other its
    /// spelling read through the byte alphabet. Decoded from the spelling at each call rather than
    /// kept in a second table (0.5 MB for SmolLM2, resident as long as the model): a token's bytes
    /// take well under a microsecond to make, against milliseconds for the forward pass that chose it.
    private func appendBytes(of id: Int, to out: inout [UInt8]) {
        let spelling = spellings.spelling(id)
        if specialTable[id] { out.append(contentsOf: spelling.utf8) } else { ByteLevel.appendBytes(ofTokenString: spelling, to: &out) }
    }

    /// Concatenated bytes of the tokens (not necessarily valid UTF-8 for arbitrary id sequences;
    /// use `StreamingDetokenizer` or `String(decoding:as:)` to make text). Invalid ids are skipped.
    public func decode(_ ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids where id >= 0 && Int(id) < spellings.count {
            appendBytes(of: Int(id), to: &out)
        }
        return out
    }

    /// Whether an id is a special (control or user-defined / added) token.
    public func isSpecial(_ id: Int32) -> Bool { id >= 0 && Int(id) < specialTable.count && specialTable[Int(id)] }
}
