/// A vocabulary's token spellings by id, and the id of a spelling, in three flat arrays.
///
/// `[String]` plus `[String: Int32]` cost ~45 bytes a token before the strings' own heap blocks
/// (2.1 MB for SmolLM2's 49,152 tokens, ~7 MB for Qwen2.5's 151,646), kept for as long as a model is
/// loaded. Here the spellings are one UTF-8 buffer with Int32 offsets, and the index is an
/// open-addressing table of ids into it (~17 bytes a token in all). Lookups by spelling happen
/// while the tokenizer is built and for special tokens, never per encoded piece.
struct TokenSpellings: Sendable {
    /// Every spelling's UTF-8 bytes, by id.
    private let strings: ByteStrings
    /// Ids by hash of their spelling; -1 marks an empty slot. Only the first id of a spelling is in it.
    private let slots: [Int32]
    private let mask: Int

    /// - Throws: `TokenizerError` when the spellings together exceed 2 GiB (Int32 offsets).
    init(_ tokens: [String]) throws {
        var strings = ByteStrings(reservingCount: tokens.count)
        for t in tokens { try strings.append(t.utf8) }
        strings.trim()
        self.strings = strings
        // Load factor up to 0.75 (as `MergeTable`): lookups by spelling are rare (building the
        // tokenizer, special tokens), so the table takes 4 bytes a slot for 1.33 slots a token.
        var capacity = 16
        while capacity * 3 < tokens.count * 4 { capacity *= 2 }
        let m = capacity - 1
        var table = [Int32](repeating: -1, count: capacity)
        strings.withUnsafeStrings { all, range in
            for id in tokens.indices {
                let spelling = UnsafeBufferPointer(rebasing: all[range(id)])
                var i = Self.hash(spelling) & m
                var duplicate = false
                while table[i] >= 0 {
                    if all[range(Int(table[i]))].elementsEqual(spelling) { duplicate = true; break }
                    i = (i + 1) & m
                }
                if !duplicate { table[i] = Int32(id) }  // the first id of a spelling wins
            }
        }
        mask = m
        slots = table
    }

    /// Number of ids.
    var count: Int { strings.count }

    /// The spelling of `id` (which must be in range).
    func spelling(_ id: Int) -> String {
        String(decoding: strings[id], as: UTF8.self)
    }

    /// The first id spelled `spelling`, or nil.
    func id(of spelling: String) -> Int32? {
        var spelling = spelling
        return spelling.withUTF8 { query in
            strings.withUnsafeStrings { all, range in
                var i = Self.hash(query) & mask
                while slots[i] >= 0 {
                    let id = Int(slots[i])
                    if all[range(id)].elementsEqual(query) { return Int32(id) }
                    i = (i + 1) & mask
                }
                return nil
            }
        }
    }

    /// FNV-1a over the bytes, then a multiplicative mix so the low bits used as the slot vary.
    private static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return Int(truncatingIfNeeded: ((h ^ (h >> 29)) &* 0xBF58_476D_1CE4_E5B9) >> 16)
    }
}
