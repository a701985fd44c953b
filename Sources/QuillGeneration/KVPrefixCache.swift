/// Full KV blocks indexed by the tokens they hold and every token before them (vLLM's automatic
/// prefix caching): a block's keys and values depend only on that prefix, so a sequence that
/// starts with the same tokens can share the block instead of recomputing it.
///
/// A key is (hash of the prefix before the block, the block's own tokens). The block's tokens are
/// compared exactly; the earlier prefix by a 64-bit hash chain, so two different prefixes share a
/// block only if their hashes collide (about n²/2⁶⁵ for n cached blocks).
///
/// Blocks that no sequence uses any more but that hold a cached prefix are *idle*: they count as
/// free, stay findable, and are evicted least recently used first when a block is needed.
struct PrefixIndex {
    struct Key: Hashable {
        let parent: UInt64
        let tokens: [TokenID]
    }

    private var blockOfKey: [Key: Int32] = [:]
    private var keyOfBlock: [Int32: Key] = [:]
    /// The cached blocks that follow each prefix hash, for matches that end inside a block.
    private var blocksAfter: [UInt64: [Int32]] = [:]
    // Idle cached blocks as a doubly linked list over block indices, least recently used at the head.
    private var previous: [Int32]
    private var next: [Int32]
    private var isIdle: [Bool]
    private var head: Int32 = -1
    private var tail: Int32 = -1
    private(set) var idleCount = 0

    init(capacityBlocks: Int) {
        previous = [Int32](repeating: -1, count: capacityBlocks)
        next = [Int32](repeating: -1, count: capacityBlocks)
        isIdle = [Bool](repeating: false, count: capacityBlocks)
    }

    var cachedCount: Int { keyOfBlock.count }

    func isCached(_ block: Int32) -> Bool { keyOfBlock[block] != nil }

    func block(for key: Key) -> Int32? { blockOfKey[key] }

    /// Registers `block` under `key` unless another block already holds that prefix.
    mutating func register(_ block: Int32, key: Key) {
        guard blockOfKey[key] == nil, keyOfBlock[block] == nil else { return }
        blockOfKey[key] = block
        keyOfBlock[block] = key
        blocksAfter[key.parent, default: []].append(block)
    }

    /// Drops `block` from the index (its contents are about to change).
    mutating func forget(_ block: Int32) {
        if isIdle[Int(block)] { unlink(block) }
        if let key = keyOfBlock.removeValue(forKey: block) {
            blockOfKey[key] = nil
            blocksAfter[key.parent]?.removeAll { $0 == block }
            if blocksAfter[key.parent]?.isEmpty == true { blocksAfter[key.parent] = nil }
        }
    }

    /// The cached block after the prefix hashing to `parent` whose tokens start with the longest run
    /// of `tokens` (at least one token; ties go to the block cached first).
    func longestPartialMatch(parent: UInt64, tokens: ArraySlice<TokenID>) -> (block: Int32, tokens: Int)? {
        var best: (block: Int32, tokens: Int)?
        for block in blocksAfter[parent] ?? [] {
            guard let key = keyOfBlock[block] else { continue }
            let n = zip(key.tokens, tokens).prefix { $0 == $1 }.count
            if n > (best?.tokens ?? 0) { best = (block, n) }
        }
        return best
    }

    /// `block` lost its last user: append it at the most recently used end.
    mutating func markIdle(_ block: Int32) {
        precondition(!isIdle[Int(block)])
        isIdle[Int(block)] = true
        previous[Int(block)] = tail
        next[Int(block)] = -1
        if tail >= 0 { next[Int(tail)] = block } else { head = block }
        tail = block
        idleCount += 1
    }

    /// `block` is used again by a sequence.
    mutating func markUsed(_ block: Int32) {
        if isIdle[Int(block)] { unlink(block) }
    }

    /// Takes the least recently used idle block out of the index, to be reused for other tokens.
    mutating func evictLeastRecentlyUsed() -> Int32 {
        let block = head
        precondition(block >= 0, "no idle block to evict")
        forget(block)
        return block
    }

    private mutating func unlink(_ block: Int32) {
        let p = previous[Int(block)], n = next[Int(block)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { previous[Int(n)] = p } else { tail = p }
        isIdle[Int(block)] = false
        idleCount -= 1
    }

    /// The hash of a prefix extended by one block's tokens (FNV-1a over the token bytes, then a
    /// 64-bit finaliser so that nearby prefixes spread).
    static func hash(parent: UInt64, tokens: ArraySlice<TokenID>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ parent
        for token in tokens {
            var bits = UInt32(bitPattern: token)
            for _ in 0 ..< 4 {
                h = (h ^ UInt64(bits & 0xff)) &* 0x0000_0100_0000_01b3
                bits >>= 8
            }
        }
        h ^= h >> 33; h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33; h = h &* 0xc4ce_b9fe_1a85_ec53
        return h ^ (h >> 33)
    }
}

extension KVBlockPool {
    /// Full blocks registered in the prefix cache (in use or idle).
    public var cachedPrefixBlocks: Int { prefixIndex.cachedCount }

    /// A new sequence that starts with the longest run of cached full blocks matching `tokens`,
    /// shared with whoever else holds them, cut to a multiple of `granularity` tokens (a multiple of
    /// `blockTokens`; the default is one block). At least one token is always left to compute, so
    /// that the caller gets logits for the prompt's last position. Without `prefixCaching`, an empty
    /// sequence.
    /// - Returns: the sequence and how many leading tokens of `tokens` it already holds.
    ///
    /// With `throughPartialBlock` (block granularity, no sliding-window layers), the match may go on
    /// into the first positions of one more cached block whose later tokens differ (another prompt
    /// with the same start, e.g. a shared system text followed by a different question): the
    /// sequence shares that block as its partial last one, and its first write copies it (`reserve`),
    /// so the cached block keeps its tokens. Only for contexts whose positions do not depend on the
    /// chunk that computed them: the shared positions are then bitwise what this sequence would compute.
    public func createSequence(reusingPrefixOf tokens: [TokenID], granularity: Int? = nil,
                               throughPartialBlock: Bool = false) -> (sequence: SequenceID, reusedTokens: Int) {
        let sequence = createSequence()
        return (sequence, extendFromCache(sequence, tokens: tokens, granularity: granularity, throughPartialBlock: throughPartialBlock))
    }

    /// Appends to `sequence` the cached full blocks that hold its next tokens of `tokens` (its tokens
    /// from position 0), with the same rules as `createSequence(reusingPrefixOf:granularity:)`: whole
    /// units of `granularity` tokens, at least one token left to compute. Used for blocks that another
    /// sequence registered after this one started (in-flight prefix sharing). Takes nothing unless every
    /// position of `sequence` lies in full blocks registered in (or taken from) the cache, ending on a
    /// multiple of `granularity`.
    /// - Returns: the length of `sequence` afterwards.
    @discardableResult
    public func extendFromCache(_ sequence: SequenceID, tokens: [TokenID], granularity: Int? = nil,
                                throughPartialBlock: Bool = false) -> Int {
        guard var state = sequences[sequence.rawValue] else { return 0 }
        let unit = granularity ?? blockTokens
        guard state.length == state.blocks.count * blockTokens, state.prefixHashes.count == state.blocks.count,
              state.length % unit == 0 else { return state.length }
        for (block, hash) in cachedPrefix(of: tokens, granularity: unit, fromBlock: state.blocks.count,
                                          parent: state.prefixHashes.last ?? 0, windowedSoFar: state.windowedBlocks) {
            if referenceCounts[Int(block)] == 0 { prefixIndex.markUsed(block) }
            referenceCounts[Int(block)] += 1
            state.blocks.append(block)
            state.prefixHashes.append(hash)
            if windowed != nil {
                let twin = cachedWindowed[block] ?? -1
                if twin >= 0 { windowed!.retain(twin) }
                state.windowedBlocks.append(twin)
            }
        }
        state.length = state.blocks.count * blockTokens
        // At least one token of `tokens` stays uncovered, as for whole blocks.
        let left = tokens.count - 1 - state.length
        if throughPartialBlock, prefixCaching, unit == blockTokens, windowed == nil, left > 0,
           let (block, count) = prefixIndex.longestPartialMatch(parent: state.prefixHashes.last ?? 0,
                                                               tokens: tokens[state.length ..< state.length + min(left, blockTokens - 1)]) {
            if referenceCounts[Int(block)] == 0 { prefixIndex.markUsed(block) }
            referenceCounts[Int(block)] += 1
            state.blocks.append(block)
            state.length += count
        }
        sequences[sequence.rawValue] = state
        return state.length
    }

    /// How many leading tokens of `tokens` `createSequence(reusingPrefixOf:granularity:)` would take
    /// from the cache now.
    public func cachedPrefixLength(of tokens: [TokenID], granularity: Int? = nil) -> Int {
        cachedPrefix(of: tokens, granularity: granularity ?? blockTokens, fromBlock: 0, parent: 0, windowedSoFar: []).count * blockTokens
    }

    /// The cached blocks that hold the tokens of `tokens` from block `fromBlock` on (whose prefix
    /// before it hashes to `parent`), with the prefix hash through each, cut to a multiple of `unit`
    /// tokens and leaving at least one token uncovered. With sliding-window layers, also cut so that
    /// every windowed block the following positions can see is there (`windowedSoFar`: the
    /// sequence's own windowed table before `fromBlock`; a cached block's twin after it).
    private func cachedPrefix(of tokens: [TokenID], granularity unit: Int, fromBlock start: Int,
                              parent: UInt64, windowedSoFar: [Int32]) -> [(block: Int32, hash: UInt64)] {
        precondition(unit > 0 && unit % blockTokens == 0, "the granularity is a multiple of the block size")
        guard prefixCaching, tokens.count > 1 else { return [] }
        var parent = parent
        var found: [(block: Int32, hash: UInt64)] = []
        for b in start ..< max(start, (tokens.count - 1) / blockTokens) {
            let slice = tokens[b * blockTokens ..< (b + 1) * blockTokens]
            guard let block = prefixIndex.block(for: .init(parent: parent, tokens: Array(slice))) else { break }
            parent = PrefixIndex.hash(parent: parent, tokens: slice)
            found.append((block, parent))
        }
        var count = found.count * blockTokens / unit * unit / blockTokens
        if windowed != nil {
            let step = unit / blockTokens
            func twin(_ b: Int) -> Int32 { b < start ? windowedSoFar[b] : cachedWindowed[found[b - start].block] ?? -1 }
            func usable(_ count: Int) -> Bool {
                let end = (start + count) * blockTokens
                let firstSeen = max(0, end - layout.windowSize) / blockTokens
                return (firstSeen ..< start + count).allSatisfy { twin($0) >= 0 }
            }
            while count > 0 && !usable(count) { count -= step }
        }
        return Array(found.prefix(count))
    }

    /// The prefix hash of `tokens` taken in whole blocks (the key under which the last of those
    /// blocks is cached, as far as the earlier ones go): equal prompts' chunks get equal hashes.
    public func prefixHash(of tokens: ArraySlice<TokenID>) -> UInt64 {
        var parent: UInt64 = 0
        var start = tokens.startIndex
        while start + blockTokens <= tokens.endIndex {
            parent = PrefixIndex.hash(parent: parent, tokens: tokens[start ..< start + blockTokens])
            start += blockTokens
        }
        return parent
    }

    /// Registers the full blocks of `sequence` that are not registered yet, so that later sequences
    /// can reuse them. `tokens` are the sequence's tokens from position 0 (at least `length(of:)`
    /// of them). Does nothing without `prefixCaching`.
    public func cachePrefix(of sequence: SequenceID, tokens: [TokenID]) {
        guard prefixCaching, var state = sequences[sequence.rawValue] else { return }
        let full = min(state.length, tokens.count) / blockTokens
        guard state.prefixHashes.count < full else { return }
        var parent = state.prefixHashes.last ?? 0
        for b in state.prefixHashes.count ..< full {
            let slice = tokens[b * blockTokens ..< (b + 1) * blockTokens]
            let block = state.blocks[b], wasCached = prefixIndex.isCached(block)
            prefixIndex.register(block, key: .init(parent: parent, tokens: Array(slice)))
            if windowed != nil, !wasCached, prefixIndex.isCached(block), state.windowedBlocks[b] >= 0 {
                cachedWindowed[block] = state.windowedBlocks[b]
                windowed!.retain(state.windowedBlocks[b])
            }
            parent = PrefixIndex.hash(parent: parent, tokens: slice)
            state.prefixHashes.append(parent)
        }
        sequences[sequence.rawValue] = state
    }
}

extension KVBlockPool {
    /// Drops a block from the prefix index (its contents are about to change), with its windowed twin.
    func forgetCached(_ block: Int32) {
        prefixIndex.forget(block)
        releaseCachedWindowedBlock(of: block)
    }

    /// Releases the cache's reference on the windowed twin of `block`, which left the index.
    func releaseCachedWindowedBlock(of block: Int32) {
        if let twin = cachedWindowed.removeValue(forKey: block) { windowed!.release(twin) }
    }
}
