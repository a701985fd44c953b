extension BPETokenizer: SpecialTokenParsingTokenizer {
    /// Encodes text to token ids. No BOS/EOS is added.
    ///
    /// - Parameters:
    ///   - text: the input; nothing is normalised or stripped.
    ///   - parseSpecialTokens: when true, the exact text of a control/special token (e.g.
    ///     `<|im_start|>`) becomes that token; when false it is tokenized as ordinary text.
    public func encode(_ text: String, parseSpecialTokens: Bool = true) -> [Int32] {
        encode(text, specialTokens: parseSpecialTokens ? .everywhere : .nowhere)
    }

    /// Encodes text to token ids without BOS/EOS; `specialTokens` says where the text of a control
    /// token becomes that token (user-defined tokens are matched everywhere).
    public func encode(_ text: String, specialTokens: SpecialTokenParsing) -> [Int32] {
        var text = text
        return text.withUTF8 { encode(utf8: $0, specialTokens: specialTokens) }
    }

    /// Encodes UTF-8 bytes (must be valid UTF-8, e.g. a `String`'s storage).
    func encode(utf8 buf: UnsafeBufferPointer<UInt8>, specialTokens parsing: SpecialTokenParsing) -> [Int32] {
        var out: [Int32] = []
        guard let base = buf.baseAddress, buf.count > 0 else { return out }
        out.reserveCapacity(buf.count / 3 + 16)
        let work = BPEWorkspace()
        var segmentStart = 0
        var i = 0
        let n = buf.count
        if !specials.isEmpty {
            specialsByFirstByte.withUnsafeBufferPointer { byFirst in
                while i < n {
                    let candidates = byFirst[Int(base[i])]
                    var matched: SpecialToken? = nil
                    for k in candidates {
                        let s = specials[k]
                        guard s.bytes.count <= n - i, s.alwaysParsed || parsing.allows(i, i + s.bytes.count) else { continue }
                        if s.bytes.withUnsafeBufferPointer({ memEqual(base + i, $0) }) { matched = s; break }
                    }
                    if let s = matched {
                        encodeSegment(base + segmentStart, i - segmentStart, work, &out)
                        out.append(s.id)
                        i += s.bytes.count
                        segmentStart = i
                    } else {
                        i += 1
                    }
                }
            }
        }
        encodeSegment(base + segmentStart, n - segmentStart, work, &out)
        return out
    }

    @inline(__always)
    private func memEqual(_ p: UnsafePointer<UInt8>, _ s: UnsafeBufferPointer<UInt8>) -> Bool {
        for k in 0..<s.count where p[k] != s[k] { return false }
        return true
    }

    /// Pre-tokenizes one span without special tokens and BPE-encodes every piece.
    private func encodeSegment(_ base: UnsafePointer<UInt8>, _ count: Int, _ work: BPEWorkspace,
                               _ out: inout [Int32]) {
        if count == 0 { return }
        let scanner = PreTokenScanner(base: base, count: count, mode: preTokenizer)
        byteToId.withUnsafeBufferPointer { byteToId in
            let byteIds = byteToId.baseAddress!
            var start = 0
            while start < count {
                let end = scanner.nextEnd(start)
                let piece = UnsafeBufferPointer(start: base + start, count: end - start)
                start = end
                if piece.count == 1 {
                    let id = byteIds[Int(piece[0])]
                    if id >= 0 { out.append(id) }
                    continue
                }
                let h = PieceCache.hash(piece)
                if let range = work.cache.lookup(piece, hash: h) {
                    work.cache.values.withUnsafeBufferPointer { v in
                        for k in range { out.append(v[k]) }
                    }
                    continue
                }
                let first = out.count
                work.encodePiece(piece, byteToId: byteIds, merges: merges, out: &out)
                work.cache.insert(piece, hash: h, ids: out[first...])
            }
        }
    }
}
