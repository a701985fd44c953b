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

    /// Normalises one prefix: appends its replacement to `out` and returns the bytes consumed.
    @inline(__always)
    private func normalizePrefix(_ s: UnsafeBufferPointer<UInt8>, _ i: Int, _ out: inout [UInt8]) -> Int {
        if let ud = userDefined, let (len, _) = ud.longestPrefix(s, from: i) {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: s[i..<(i + len)]))
            return len
        }
        if let (len, value) = longestRule(s, i) {
            var k = value
            while k < replacements.count, replacements[k] != 0 { out.append(replacements[k]); k += 1 }
            return len
        }
        let len = Self.validCharLength(s, i)
        if len == 0 {
            // Malformed UTF-8: U+FFFD for one consumed byte, as sentencepiece does.
            out.append(contentsOf: Self.replacementChar)
            return 1
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: s[i..<(i + len)]))
        return len
    }

    /// Normalises UTF-8 text exactly as sentencepiece's `Normalizer::Normalize` (without alignment).
    public func normalize(_ text: String) -> [UInt8] {
        var t = text
        return t.withUTF8 { normalize(utf8: $0) }
    }

    /// Normalises raw bytes (may be malformed UTF-8).
    public func normalize(utf8 s: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count + s.count / 4 + 8)
        var piece: [UInt8] = []
        var i = 0
        let removeExtra = spec.removeExtraWhitespaces
        if removeExtra {
            // Leading input that normalises to exactly one space is dropped.
            while i < s.count {
                piece.removeAll(keepingCapacity: true)
                let len = normalizePrefix(s, i, &piece)
                if piece != [0x20] { break }
                i += len
            }
        }
        if i >= s.count { return [] }
        let space: [UInt8] = spec.escapeWhitespaces ? Self.spaceSymbol : [0x20]
        if spec.addDummyPrefix { out.append(contentsOf: space) }
        var prevSpace = removeExtra
        while i < s.count {
            piece.removeAll(keepingCapacity: true)
            let len = normalizePrefix(s, i, &piece)
            i += len
            var start = 0
            // Spaces at the start of a replacement are dropped after a space (folding runs).
            if prevSpace { while start < piece.count, piece[start] == 0x20 { start += 1 } }
            if start < piece.count {
                for k in start..<piece.count {
                    if piece[k] == 0x20 && spec.escapeWhitespaces { out.append(contentsOf: space) } else { out.append(piece[k]) }
                }
                prevSpace = piece[piece.count - 1] == 0x20
            }
            if !removeExtra { prevSpace = false }
        }
        if removeExtra {
            while out.count >= space.count, Array(out[(out.count - space.count)...]) == space {
                out.removeLast(space.count)
            }
        }
        return out
    }
}

/// A byte trie over a set of strings (vocabulary pieces), stored as a hash map from
/// (node, byte) to child node so that very large vocabularies stay compact.
struct BytesTrie: Sendable {
    /// Key `node << 8 | byte` -> child node.
    private var children: [UInt64: Int32] = [:]
    /// Value (piece id) per node, -1 if no piece ends there.
    private(set) var values: [Int32] = [-1]

    init(_ entries: [([UInt8], Int32)]) {
        children.reserveCapacity(entries.count * 3)
        for (bytes, id) in entries where !bytes.isEmpty {
            var node: Int32 = 0
            for b in bytes {
                let key = UInt64(node) << 8 | UInt64(b)
                if let c = children[key] { node = c } else {
                    let c = Int32(values.count)
                    values.append(-1)
                    children[key] = c
                    node = c
                }
            }
            // The first entry for a spelling wins (duplicates keep the lowest id).
            if values[Int(node)] < 0 { values[Int(node)] = id }
        }
    }

    @inline(__always)
    func child(_ node: Int32, _ byte: UInt8) -> Int32? { children[UInt64(node) << 8 | UInt64(byte)] }

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
