/// Scratch state for one `encode` call: symbol buffers for merging and a cache of pieces already
/// encoded. It is created per call so the tokenizer itself stays immutable and `Sendable`
/// (no locks); within one long text the cache still hits for most words.
final class BPEWorkspace {
    /// Words longer than this use the O(n log n) heap merge; shorter ones a linear rescan, which is
    /// faster for the few symbols of typical words.
    static let heapThreshold = 48

    private var capacity = 0
    private var ids: UnsafeMutablePointer<Int32>
    private var ranks: UnsafeMutablePointer<UInt64>
    private var next: UnsafeMutablePointer<Int32>
    private var prev: UnsafeMutablePointer<Int32>
    private var heap: UnsafeMutablePointer<UInt64>
    var cache = PieceCache()

    init() {
        ids = .allocate(capacity: 1); ranks = .allocate(capacity: 1); next = .allocate(capacity: 1)
        prev = .allocate(capacity: 1); heap = .allocate(capacity: 1)
        reserve(256)
    }

    deinit { free() }

    private func free() {
        ids.deallocate(); ranks.deallocate(); next.deallocate(); prev.deallocate(); heap.deallocate()
    }

    private func reserve(_ n: Int) {
        guard n > capacity else { return }
        free()
        capacity = max(n, capacity * 2)
        ids = .allocate(capacity: capacity); ranks = .allocate(capacity: capacity)
        next = .allocate(capacity: capacity); prev = .allocate(capacity: capacity)
        heap = .allocate(capacity: capacity * 3)  // n - 1 initial pairs + at most two pushes per merge
    }

    /// Byte-level BPE of one piece; appends the token ids to `out`.
    func encodePiece(_ bytes: UnsafeBufferPointer<UInt8>, byteToId: UnsafePointer<Int32>,
                     merges: MergeTable, out: inout [Int32]) {
        reserve(bytes.count + 1)
        var n = 0
        for b in bytes {
            let id = byteToId[Int(b)]
            // A byte missing from the vocabulary is dropped, as HF BPE does without an unk token.
            if id >= 0 { ids[n] = id; n += 1 }
        }
        if n <= Self.heapThreshold {
            n = mergeLinear(n, merges)
            for k in 0..<n { out.append(ids[k]) }
        } else {
            mergeHeap(n, merges, out: &out)
        }
    }

    /// Repeatedly merges the leftmost pair of lowest rank, rescanning the pair ranks each round.
    private func mergeLinear(_ count: Int, _ merges: MergeTable) -> Int {
        var n = count
        if n < 2 { return n }
        for k in 0..<(n - 1) { ranks[k] = merges.lookup(ids[k], ids[k + 1]) }
        while true {
            var best = MergeTable.notFound
            var at = -1
            for k in 0..<(n - 1) where ranks[k] < best { best = ranks[k]; at = k }
            if at < 0 { return n }
            ids[at] = Int32(truncatingIfNeeded: best)
            // Close the gap left by the absorbed right symbol.
            var m = at + 1
            while m < n - 1 { ids[m] = ids[m + 1]; m += 1 }
            m = at + 1
            while m < n - 2 { ranks[m] = ranks[m + 1]; m += 1 }
            n -= 1
            if at > 0 { ranks[at - 1] = merges.lookup(ids[at - 1], ids[at]) }
            if at < n - 1 { ranks[at] = merges.lookup(ids[at], ids[at + 1]) }
            if n < 2 { return n }
        }
    }

    /// Linked list of symbols plus a min-heap of candidate pairs keyed `rank << 32 | position`:
    /// the same order (lowest rank, then leftmost) as Hugging Face's `Word::merge_all`.
    /// Heap entries are not removed when they go stale; they are re-validated when popped.
    private func mergeHeap(_ n: Int, _ merges: MergeTable, out: inout [Int32]) {
        var heapCount = 0
        func push(_ v: UInt64) {
            var i = heapCount
            heapCount += 1
            while i > 0 {
                let parent = (i - 1) >> 1
                if heap[parent] <= v { break }
                heap[i] = heap[parent]
                i = parent
            }
            heap[i] = v
        }
        func pop() -> UInt64 {
            let top = heap[0]
            heapCount -= 1
            let v = heap[heapCount]
            var i = 0
            while true {
                var c = 2 * i + 1
                if c >= heapCount { break }
                if c + 1 < heapCount && heap[c + 1] < heap[c] { c += 1 }
                if v <= heap[c] { break }
                heap[i] = heap[c]
                i = c
            }
            heap[i] = v
            return top
        }
        func pushPair(_ pos: Int32) {
            let r = next[Int(pos)]
            if r < 0 { return }
            let m = merges.lookup(ids[Int(pos)], ids[Int(r)])
            if m != MergeTable.notFound { push((m >> 32) << 32 | UInt64(UInt32(pos))) }
        }
        for k in 0..<n {
            prev[k] = Int32(k - 1)
            next[k] = k + 1 < n ? Int32(k + 1) : -1
        }
        for k in 0..<(n - 1) { pushPair(Int32(k)) }
        while heapCount > 0 {
            let top = pop()
            let pos = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            let r = next[pos]
            // Stale entry: the left symbol was absorbed, or the pair has changed since the push.
            if ids[pos] < 0 || r < 0 { continue }
            let m = merges.lookup(ids[pos], ids[Int(r)])
            if m == MergeTable.notFound || m >> 32 != rank { continue }
            ids[pos] = Int32(truncatingIfNeeded: m)
            ids[Int(r)] = -1
            let rr = next[Int(r)]
            next[pos] = rr
            if rr >= 0 { prev[Int(rr)] = Int32(pos) }
            if prev[pos] >= 0 { pushPair(prev[pos]) }
            pushPair(Int32(pos))
        }
        var k: Int32 = 0
        while k >= 0 { out.append(ids[Int(k)]); k = next[Int(k)] }
    }
}
