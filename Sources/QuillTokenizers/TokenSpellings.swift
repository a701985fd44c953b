/// A vocabulary's token spellings by id, and the id of a spelling, in three flat arrays.
///
/// `[String]` plus `[String: Int32]` cost ~45 bytes a token before the strings' own heap blocks
/// (2.1 MB for SmolLM2's 49,152 tokens, ~7 MB for Qwen2.5's 151,646), kept for as long as a model is
/// loaded. Here the spellings are one UTF-8 buffer with Int32 offsets, and the index is an
/// open-addressing table of ids into it (~22 bytes a token in all). Lookups by spelling happen
/// while the tokenizer is built and for special tokens, never per encoded piece.
struct TokenSpellings: Sendable {
    /// Every spelling's UTF-8 bytes, by id: token `i` is `bytes[offsets[i] ..< offsets[i + 1]]`.
    private let bytes: [UInt8]
    private let offsets: [Int32]
    /// Ids by hash of their spelling; -1 marks an empty slot. Only the first id of a spelling is in it.
    private let slots: [Int32]
    private let mask: Int

    /// - Throws: `TokenizerError` when the spellings together exceed 2 GiB (Int32 offsets).
    init(_ tokens: [String]) throws {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(tokens.reduce(0) { $0 + $1.utf8.count })
        var offsets: [Int32] = [0]
        offsets.reserveCapacity(tokens.count + 1)
        for t in tokens {
            bytes.append(contentsOf: t.utf8)
            guard let end = Int32(exactly: bytes.count) else { throw TokenizerError("vocabulary spellings exceed 2 GiB") }
            offsets.append(end)
        }
        self.bytes = bytes
        self.offsets = offsets
        var capacity = 16
        while capacity < 2 * tokens.count { capacity *= 2 }  // load factor ≤ 0.5: short probe runs
        let m = capacity - 1
        var table = [Int32](repeating: -1, count: capacity)
        bytes.withUnsafeBufferPointer { all in
            for id in tokens.indices {
                let spelling = UnsafeBufferPointer(rebasing: all[Int(offsets[id]) ..< Int(offsets[id + 1])])
                var i = Self.hash(spelling) & m
                var duplicate = false
                while table[i] >= 0 {
                    let other = Int(table[i])
                    if all[Int(offsets[other]) ..< Int(offsets[other + 1])].elementsEqual(spelling) { duplicate = true; break }
                    i = (i + 1) & m
                }
                if !duplicate { table[i] = Int32(id) }  // the first id of a spelling wins
            }
        }
        mask = m
        slots = table
    }

    /// Number of ids.
    var count: Int { offsets.count - 1 }

    /// The spelling of `id` (which must be in range).
    func spelling(_ id: Int) -> String {
        String(decoding: bytes[Int(offsets[id]) ..< Int(offsets[id + 1])], as: UTF8.self)
    }

    /// The first id spelled `spelling`, or nil.
    func id(of spelling: String) -> Int32? {
        var spelling = spelling
        return spelling.withUTF8 { query in
            bytes.withUnsafeBufferPointer { all in
                var i = Self.hash(query) & mask
                while slots[i] >= 0 {
                    let id = Int(slots[i])
                    if all[Int(offsets[id]) ..< Int(offsets[id + 1])].elementsEqual(query) { return Int32(id) }
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
