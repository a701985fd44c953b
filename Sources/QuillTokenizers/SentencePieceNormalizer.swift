/// SentencePiece's text normaliser (normalizer.cc): the precompiled character map, then whitespace
/// folding, the dummy prefix and ▁ escaping. Works on UTF-8 bytes and returns UTF-8 bytes.
public struct SentencePieceNormalizer: Sendable {
    /// The normaliser settings this instance applies.
    public let spec: SentencePieceModelProto.Normalizer
    /// Darts-clone double-array units (little-endian uint32 in the charsmap).
    private let units: [UInt32]
    /// NUL-terminated replacement strings; a trie value is an offset into this blob.
    private let replacements: [UInt8]
    /// User-defined pieces are copied verbatim, never normalised (sentencepiece's prefix matcher).
    private let userDefined: BytesTrie?

    /// Whether user-defined pieces exist (they are kept whole by normalisation and BPE).
    var hasUserDefined: Bool { userDefined != nil }

    static let spaceSymbol: [UInt8] = [0xE2, 0x96, 0x81]  // ▁ U+2581
    static let replacementChar: [UInt8] = [0xEF, 0xBF, 0xBD]

    /// Creates a normaliser.
    /// - Parameters:
    ///   - spec: the model's `normalizer_spec`.
    ///   - userDefinedPieces: pieces of type user-defined, matched before the character map.
    /// - Throws: `TokenizerError` if the precompiled charsmap is malformed.
    public init(spec: SentencePieceModelProto.Normalizer, userDefinedPieces: [String] = []) throws {
        self.spec = spec
        let map = spec.precompiledCharsmap
        if map.isEmpty {
            units = []; replacements = []
        } else {
            guard map.count >= 4 else { throw TokenizerError("precompiled_charsmap shorter than its header") }
            let trieSize = Int(UInt32(map[0]) | UInt32(map[1]) << 8 | UInt32(map[2]) << 16 | UInt32(map[3]) << 24)
            guard trieSize % 4 == 0, trieSize <= map.count - 4, trieSize >= 4 else {
                throw TokenizerError("precompiled_charsmap trie size \(trieSize) does not fit its \(map.count) bytes")
            }
            var u = [UInt32](repeating: 0, count: trieSize / 4)
            for k in 0..<u.count {
                let o = 4 + 4 * k
                u[k] = UInt32(map[o]) | UInt32(map[o + 1]) << 8 | UInt32(map[o + 2]) << 16 | UInt32(map[o + 3]) << 24
            }
            units = u
            // A trailing NUL guarantees every offset lookup terminates.
            replacements = Array(map[(4 + trieSize)...]) + [0]
        }
        userDefined = userDefinedPieces.isEmpty ? nil : BytesTrie(userDefinedPieces.enumerated().map { (Array($1.utf8), Int32($0)) })
    }

    /// Longest charsmap rule matching a prefix of `input[i...]`: (length consumed, replacement offset).
    /// This is Darts-clone's `commonPrefixSearch`, keeping the longest hit as normalizer.cc does.
    @inline(__always)
    private func longestRule(_ input: UnsafeBufferPointer<UInt8>, _ i: Int) -> (Int, Int)? {
        guard !units.isEmpty else { return nil }
        return units.withUnsafeBufferPointer { a -> (Int, Int)? in
            // Unit layout: bit 8 = has leaf, label = bits 0-7 + bit 31, value = bits 0-30,
            // offset = (u >> 10) << ((u & 0x200) >> 6).
            func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & 0x200) >> 6)) }
            var best: (Int, Int)? = nil
            var node = offset(a[0])
            var k = i
            // sentencepiece keeps at most 32 results; the longest of the first 32 wins.
            var hits = 0
            while k < input.count {
                let c = Int(input[k])
                node ^= c
                guard node < a.count else { return best }
                let u = a[node]
                if Int(u & 0x8000_00FF) != c { return best }
                node ^= offset(u)
                guard node < a.count else { return best }
                if (u >> 8) & 1 == 1 {
                    if hits < 32 { best = (k + 1 - i, Int(a[node] & 0x7FFF_FFFF)) }
                    hits += 1
                }
                k += 1
            }
            return best
        }
    }

    /// Length of the valid UTF-8 character at `i`, or 0 if the bytes there are malformed.
    @inline(__always)
    static func validCharLength(_ s: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        let b0 = s[i]
        if b0 < 0x80 { return 1 }
        let n = s.count - i
        func cont(_ k: Int) -> Bool { k < n && s[i + k] & 0xC0 == 0x80 }
        switch b0 {
        case 0xC2...0xDF: return cont(1) ? 2 : 0
        case 0xE0...0xEF:
            guard cont(1), cont(2) else { return 0 }
            let b1 = s[i + 1]
            if b0 == 0xE0 && b1 < 0xA0 { return 0 }
            if b0 == 0xED && b1 > 0x9F { return 0 }
            return 3
        case 0xF0...0xF4:
            guard cont(1), cont(2), cont(3) else { return 0 }
            let b1 = s[i + 1]
            if b0 == 0xF0 && b1 < 0x90 { return 0 }
            if b0 == 0xF4 && b1 > 0x8F { return 0 }
            return 4
        default: return 0
        }
    }

    /// Normalises one prefix: returns the bytes consumed and where its replacement is
    /// (in the input, in the replacement blob `blob`, or U+FFFD in `fffd`).
    @inline(__always)
    private func normalizePrefix(_ s: UnsafeBufferPointer<UInt8>, _ i: Int, _ blob: UnsafeBufferPointer<UInt8>,
                                 _ fffd: UnsafeBufferPointer<UInt8>) -> (Int, UnsafeBufferPointer<UInt8>) {
        if let ud = userDefined, let (len, _) = ud.longestPrefix(s, from: i) {
            return (len, UnsafeBufferPointer(rebasing: s[i..<(i + len)]))
        }
        if let (len, value) = longestRule(s, i) {
            var k = value
            while k < blob.count, blob[k] != 0 { k += 1 }
            return (len, UnsafeBufferPointer(rebasing: blob[min(value, k)..<k]))
        }
        let len = Self.validCharLength(s, i)
        // Malformed UTF-8: U+FFFD for one consumed byte, as sentencepiece does.
        if len == 0 { return (1, fffd) }
        return (len, UnsafeBufferPointer(rebasing: s[i..<(i + len)]))
    }

    /// Normalises UTF-8 text exactly as sentencepiece's `Normalizer::Normalize` (without alignment).
    public func normalize(_ text: String) -> [UInt8] {
        var t = text
        return t.withUTF8 { normalize(utf8: $0) }
    }

    /// Normalises raw bytes (may be malformed UTF-8).
    public func normalize(utf8 s: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        replacements.withUnsafeBufferPointer { blob in
            Self.replacementChar.withUnsafeBufferPointer { fffd in normalize(s, blob, fffd) }
        }
    }

    private func normalize(_ s: UnsafeBufferPointer<UInt8>, _ blob: UnsafeBufferPointer<UInt8>,
                           _ fffd: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count + s.count / 4 + 8)
        var i = 0
        let removeExtra = spec.removeExtraWhitespaces, escape = spec.escapeWhitespaces
        if removeExtra {
            // Leading input that normalises to exactly one space is dropped.
            while i < s.count {
                let (len, piece) = normalizePrefix(s, i, blob, fffd)
                if !(piece.count == 1 && piece[0] == 0x20) { break }
                i += len
            }
        }
        if i >= s.count { return [] }
        if spec.addDummyPrefix {
            if escape { out.append(contentsOf: Self.spaceSymbol) } else { out.append(0x20) }
        }
        var prevSpace = removeExtra
        while i < s.count {
            let (len, piece) = normalizePrefix(s, i, blob, fffd)
            i += len
            var start = 0
            // Spaces at the start of a replacement are dropped after a space (folding runs).
            if prevSpace { while start < piece.count, piece[start] == 0x20 { start += 1 } }
            if start < piece.count {
                for k in start..<piece.count {
                    let b = piece[k]
                    if b == 0x20 && escape { out.append(0xE2); out.append(0x96); out.append(0x81) } else { out.append(b) }
                }
                prevSpace = piece[piece.count - 1] == 0x20
            }
            if !removeExtra { prevSpace = false }
        }
        if removeExtra {
            if escape {
                while out.count >= 3, out[out.count - 3] == 0xE2, out[out.count - 2] == 0x96, out[out.count - 1] == 0x81 {
                    out.removeLast(3)
                }
            } else {
                while out.last == 0x20 { out.removeLast() }
            }
        }
        return out
    }
}

/// A byte trie over a set of strings (vocabulary pieces), stored as one flat open-addressing hash
/// table from (node, byte) to child node: compact for 262k-piece vocabularies and, unlike
/// `Dictionary`, a few instructions per step on the segmentation hot path.
struct BytesTrie: Sendable {
    private static let empty = UInt64.max
    /// Slot = `key << 32 | child`, key = `node << 8 | byte` (nodes < 2^24): one word per edge.
    private var slots: [UInt64]
    private var mask: Int
    private var shift: UInt64
    private var count = 0
    /// Value (piece id) per node, -1 if no piece ends there.
    private(set) var values: [Int32] = [-1]

    /// An empty trie.
    init() {
        slots = [UInt64](repeating: Self.empty, count: 1 << 10)
        mask = (1 << 10) - 1
        shift = 64 - 10
    }

    init(_ entries: [([UInt8], Int32)]) {
        self.init()
        for (bytes, id) in entries { bytes.withUnsafeBufferPointer { insert($0, id: id) } }
    }

    /// Adds an entry; the first entry for a spelling wins (duplicates keep the lowest id). Empty ones are ignored.
    mutating func insert(_ bytes: UnsafeBufferPointer<UInt8>, id: Int32) {
        guard !bytes.isEmpty else { return }
        var node: Int32 = 0
        for b in bytes {
            if let c = child(node, b) { node = c } else {
                let c = Int32(values.count)
                precondition(c < (1 << 24) - 1, "vocabulary trie larger than 16M nodes")
                values.append(-1)
                insert(UInt64(node) << 8 | UInt64(b), c)
                node = c
            }
        }
        if values[Int(node)] < 0 { values[Int(node)] = id }
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    private mutating func insert(_ key: UInt64, _ child: Int32) {
        if (count + 1) * 10 > slots.count * 7 {  // keep the load factor <= 0.7: double and rehash
            let old = slots
            let bits = 64 - Int(shift) + 1
            slots = [UInt64](repeating: Self.empty, count: 1 << bits)
            mask = (1 << bits) - 1
            shift = UInt64(64 - bits)
            for e in old where e != Self.empty {
                var i = slot(e >> 32)
                while slots[i] != Self.empty { i = (i + 1) & mask }
                slots[i] = e
            }
        }
        var i = slot(key)
        while slots[i] != Self.empty { i = (i + 1) & mask }
        slots[i] = key << 32 | UInt64(UInt32(child))
        count += 1
    }

    @inline(__always)
    func child(_ node: Int32, _ byte: UInt8) -> Int32? {
        let key = UInt64(node) << 8 | UInt64(byte)
        var i = slot(key)
        while true {
            let e = slots[i]
            if e >> 32 == key { return Int32(truncatingIfNeeded: e & 0xFFFF_FFFF) }
            if e == Self.empty { return nil }
            i = (i + 1) & mask
        }
    }

    /// The longest entry that is a prefix of `s[from...]`: (length, id).
    func longestPrefix(_ s: UnsafeBufferPointer<UInt8>, from: Int) -> (Int, Int32)? {
        var node: Int32 = 0
        var best: (Int, Int32)? = nil
        var k = from
        while k < s.count, let c = child(node, s[k]) {
            node = c
            k += 1
            if values[Int(c)] >= 0 { best = (k - from, values[Int(c)]) }
        }
        return best
    }

    /// Exact lookup.
    @inline(__always)
    func lookup(_ s: UnsafeBufferPointer<UInt8>) -> Int32? {
        var node: Int32 = 0
        for b in s {
            guard let c = child(node, b) else { return nil }
            node = c
        }
        let v = values[Int(node)]
        return v >= 0 ? v : nil
    }
}
