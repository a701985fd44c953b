extension SentencePieceTokenizer {
    /// Unigram segmentation: the Viterbi best path over all vocabulary pieces matching the normalised
    /// text, as sentencepiece's `EncodeOptimized` computes it (Float scores, strictly-better updates,
    /// candidates in increasing length, so ties keep the shorter piece at each end position;
    /// a character no single-character piece covers becomes `<unk>` with score min - 10).
    func encodeUnigram(_ s: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        let n = s.count
        // best[k]: best score of a segmentation of s[0..<k], the piece id ending there and its start.
        var bestScore = [Float](repeating: 0, count: n + 1)
        var bestId = [Int32](repeating: -1, count: n + 1)
        var bestStart = [Int](repeating: -1, count: n + 1)
        bestStart[0] = 0
        var pos = 0
        while pos < n {
            let charLen = max(1, min(SentencePieceNormalizer.validCharLength(s, pos), n - pos))
            let here = bestScore[pos]
            var hasSingle = false
            var node: Int32 = 0
            var k = pos
            while k < n, let c = trie.child(node, s[k]) {
                node = c
                k += 1
                let id = trie.values[Int(c)]
                if id < 0 { continue }
                let length = k - pos
                let score: Float = types[Int(id)] == .userDefined ? Float(length) * maxScore - 0.1 : scores[Int(id)]
                let candidate = here + score
                if bestStart[k] < 0 || candidate > bestScore[k] {
                    bestScore[k] = candidate; bestId[k] = id; bestStart[k] = pos
                }
                if length == charLen { hasSingle = true }
            }
            if !hasSingle {
                let end = pos + charLen
                let candidate = here + unkScore
                if bestStart[end] < 0 || candidate > bestScore[end] {
                    bestScore[end] = candidate; bestId[end] = unkId; bestStart[end] = pos
                }
            }
            pos += charLen
        }
        // Backtrack, then emit in order.
        var path: [(Int32, Int, Int)] = []
        var end = n
        while end > 0 {
            let start = bestStart[end]
            path.append((bestId[end], start, end))
            end = start
        }
        var prevUnk = false
        for (id, a, b) in path.reversed() { emit(id, UnsafeBufferPointer(rebasing: s[a..<b]), &prevUnk, &out) }
    }

    /// BPE segmentation as sentencepiece's `bpe::Model::Encode`: start from characters (user-defined
    /// pieces are kept whole and never merged), repeatedly merge the adjacent pair whose concatenation
    /// is the highest-scoring piece (leftmost on ties), then split pieces of type unused back into
    /// the parts they were merged from.
    func encodeBPE(_ s: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        let n = s.count
        var start: [Int32] = [], length: [Int32] = [], prev: [Int32] = [], next: [Int32] = []
        var frozen: [Bool] = []
        var i = 0
        while i < n {
            var len = max(1, min(SentencePieceNormalizer.validCharLength(s, i), n - i))
            var isFrozen = false
            if let (l, id) = trieLongestUserDefined(s, i) { len = l; isFrozen = types[Int(id)] == .userDefined }
            let k = Int32(start.count)
            start.append(Int32(i)); length.append(Int32(len)); frozen.append(isFrozen)
            prev.append(k - 1)
            i += len
            next.append(i < n ? k + 1 : -1)
        }
        // Candidate pairs in a max-heap ordered by (score, -left). Entries go stale when a side
        // changes; they are checked against the current lengths when popped, as sentencepiece does.
        var heap = PairHeap()
        var revMerge: [Int: (Int32, Int32, Int32, Int32)] = [:]  // by merged piece id: (start, len) of both halves
        func addPair(_ l: Int32, _ r: Int32) {
            guard l >= 0, r >= 0, !frozen[Int(l)], !frozen[Int(r)] else { return }
            let a = Int(start[Int(l)]), total = Int(length[Int(l)] + length[Int(r)])
            guard let id = pieceTable.lookup(UnsafeBufferPointer(rebasing: s[a..<(a + total)])),
                  types[Int(id)] != .userDefined else { return }
            if types[Int(id)] == .unused && revMerge[Int(id)] == nil {
                revMerge[Int(id)] = (start[Int(l)], length[Int(l)], start[Int(r)], length[Int(r)])
            }
            heap.push(PairHeap.Entry(score: scores[Int(id)], left: l, right: r, size: Int32(total)))
        }
        for k in 1..<max(1, start.count) { addPair(Int32(k - 1), Int32(k)) }
        while let top = heap.pop() {
            let l = Int(top.left), r = Int(top.right)
            if length[l] == 0 || length[r] == 0 || length[l] + length[r] != top.size || next[l] != top.right { continue }
            length[l] += length[r]
            length[r] = 0
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = Int32(l) }
            addPair(prev[l], Int32(l))
            addPair(Int32(l), next[l])
        }
        var prevUnk = false
        func resegment(_ a: Int, _ len: Int) {
            let span = UnsafeBufferPointer(rebasing: s[a..<(a + len)])
            let id = pieceTable.lookup(span) ?? unkId
            if id != unkId, types[Int(id)] == .unused, let (la, ll, ra, rl) = revMerge[Int(id)] {
                resegment(Int(la), Int(ll)); resegment(Int(ra), Int(rl))
                return
            }
            emit(id, span, &prevUnk, &out)
        }
        var k: Int32 = start.isEmpty ? -1 : 0
        while k >= 0 {
            resegment(Int(start[Int(k)]), Int(length[Int(k)]))
            k = next[Int(k)]
        }
    }

    /// The longest user-defined piece starting at `i` (sentencepiece's prefix matcher), if any.
    @inline(__always)
    private func trieLongestUserDefined(_ s: UnsafeBufferPointer<UInt8>, _ i: Int) -> (Int, Int32)? {
        guard normalizer.hasUserDefined else { return nil }
        var node: Int32 = 0
        var best: (Int, Int32)? = nil
        var k = i
        while k < s.count, let c = trie.child(node, s[k]) {
            node = c
            k += 1
            let id = trie.values[Int(c)]
            if id >= 0 && types[Int(id)] == .userDefined { best = (k - i, id) }
        }
        return best
    }
}

/// Binary max-heap of BPE candidate pairs: higher score first, then smaller left index.
struct PairHeap {
    struct Entry {
        let score: Float
        let left: Int32
        let right: Int32
        let size: Int32
        @inline(__always)
        func before(_ o: Entry) -> Bool { score > o.score || (score == o.score && left < o.left) }
    }
    private var items: [Entry] = []

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if !items[i].before(items[p]) { break }
            items.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() -> Entry? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return first }
        items[0] = last
        var i = 0
        while true {
            var c = 2 * i + 1
            if c >= items.count { break }
            if c + 1 < items.count && items[c + 1].before(items[c]) { c += 1 }
            if !items[c].before(items[i]) { break }
            items.swapAt(i, c)
            i = c
        }
        return first
    }
}
