import QuillGeneration
import Testing

/// The prefix cache of the KV pool: full blocks found again by their tokens, shared, kept idle
/// after their sequences end, and evicted least recently used first.
@Suite struct KVPrefixCacheTests {
    let layout = KVLayout(layers: 1, kvHeads: 1, headDimension: 4, elementType: .f32)

    func pool(blocks: Int) throws -> KVBlockPool {
        let pool = try KVBlockPool(layout: layout, tokens: blocks * 4, blockTokens: 4)
        pool.prefixCaching = true
        return pool
    }

    /// Runs `tokens` into a new sequence that reuses what it can; keys are `tag + position`.
    func run(_ pool: KVBlockPool, _ tokens: [TokenID], tag: Float) throws -> (SequenceID, Int) {
        let (sequence, reused) = pool.createSequence(reusingPrefixOf: tokens)
        let count = tokens.count - reused
        try pool.reserve(sequence, appending: count)
        let keys = (0 ..< count).flatMap { t in [Float](repeating: tag + Float(reused + t), count: 4) }
        pool.store(sequence, layer: 0, keys: keys, values: keys, tokens: count)
        pool.commit(sequence, appending: count)
        pool.cachePrefix(of: sequence, tokens: tokens)
        return (sequence, reused)
    }

    func key(_ pool: KVBlockPool, _ sequence: SequenceID, at position: Int) -> Float {
        let block = pool.blocks(of: sequence)[position / pool.blockTokens]
        return pool.view(layer: 0).keys(block: block, head: 0).assumingMemoryBound(to: Float.self)[(position % 4) * 4]
    }

    @Test func aSecondSequenceWithTheSamePrefixSharesItsFullBlocks() throws {
        let pool = try pool(blocks: 8)
        let prompt: [TokenID] = Array(1 ... 10)               // blocks [1-4] [5-8] and a partial [9 10]
        let (a, reusedA) = try run(pool, prompt, tag: 0)
        #expect(reusedA == 0 && pool.cachedPrefixBlocks == 2)
        let (b, reusedB) = try run(pool, prompt + [11, 12], tag: 100)
        #expect(reusedB == 8, "two full blocks found again")
        #expect(Array(pool.blocks(of: b).prefix(2)) == Array(pool.blocks(of: a).prefix(2)))
        #expect(key(pool, b, at: 7) == 7, "positions of the shared blocks were computed by the first sequence")
        #expect(key(pool, b, at: 8) == 108)
        #expect(pool.freeBlocks == 8 - 3 - 1)
        // A prompt that is exactly two blocks still leaves its last token to compute.
        let (_, reusedC) = try run(pool, Array(1 ... 8), tag: 200)
        #expect(reusedC == 4)
    }

    @Test func aMatchEndingInsideACachedBlockTakesItsFirstPositionsAndCopiesItOnWrite() throws {
        let pool = try pool(blocks: 8)
        let (a, _) = try run(pool, Array(1 ... 10), tag: 0)            // caches [1-4] [5-8]
        let tokens: [TokenID] = [1, 2, 3, 4, 5, 6, 99, 100, 101]       // the same start, then another tail
        #expect(pool.createSequence(reusingPrefixOf: tokens).reusedTokens == 4, "whole blocks only by default")
        let (b, reused) = pool.createSequence(reusingPrefixOf: tokens, throughPartialBlock: true)
        #expect(reused == 6, "block [1-4], then positions 4 and 5 of block [5-8]")
        #expect(pool.blocks(of: b) == Array(pool.blocks(of: a).prefix(2)), "shared until it writes")
        #expect(pool.blocksNeeded(appending: 3, to: b) == 2, "a copy of the shared block for positions 6-7, a new one for 8")
        let freeBefore = pool.freeBlocks
        try pool.reserve(b, appending: 3)
        #expect(pool.freeBlocks == freeBefore - 2)
        let keys = (6 ..< 9).flatMap { [Float](repeating: 100 + Float($0), count: 4) }
        pool.store(b, layer: 0, keys: keys, values: keys, tokens: 3)
        pool.commit(b, appending: 3)
        #expect(pool.blocks(of: b)[1] != pool.blocks(of: a)[1])
        #expect((0 ..< 9).map { key(pool, b, at: $0) } == [0, 1, 2, 3, 4, 5, 106, 107, 108])
        #expect((4 ..< 8).map { key(pool, a, at: $0) } == [4, 5, 6, 7], "the cached block kept its own positions")
        #expect(pool.createSequence(reusingPrefixOf: Array(1 ... 9)).reusedTokens == 8, "and is still found")
        // At least one token is left to compute; no token in common means no partial match.
        #expect(pool.createSequence(reusingPrefixOf: [1, 2, 3, 4, 5, 6], throughPartialBlock: true).reusedTokens == 5)
        #expect(pool.createSequence(reusingPrefixOf: [1, 2, 3, 4, 77, 6, 7], throughPartialBlock: true).reusedTokens == 4)
    }

    @Test func aPartlyMatchedIdleBlockIsCopiedBeforeItIsWrittenAndStaysCached() throws {
        let pool = try pool(blocks: 4)
        let (a, _) = try run(pool, Array(1 ... 9), tag: 0)
        pool.release(a)                                                  // [1-4] [5-8] idle, still cached
        let (b, reused) = pool.createSequence(reusingPrefixOf: [1, 2, 3, 4, 5, 50, 51], throughPartialBlock: true)
        #expect(reused == 5)
        try pool.reserve(b, appending: 2)
        let keys = (5 ..< 7).flatMap { [Float](repeating: 100 + Float($0), count: 4) }
        pool.store(b, layer: 0, keys: keys, values: keys, tokens: 2)
        pool.commit(b, appending: 2)
        pool.release(b)
        let (c, reusedC) = pool.createSequence(reusingPrefixOf: Array(1 ... 9))
        #expect(reusedC == 8, "no other user, but the block was copied all the same")
        #expect((4 ..< 8).map { key(pool, c, at: $0) } == [4, 5, 6, 7])
    }

    @Test func aDifferentEarlierBlockMeansNoMatch() throws {
        let pool = try pool(blocks: 8)
        _ = try run(pool, [1, 2, 3, 4, 5, 6, 7, 8, 9], tag: 0)
        let (_, reused) = try run(pool, [1, 2, 3, 99, 5, 6, 7, 8, 9], tag: 0)
        #expect(reused == 0, "block 2 has the same tokens but a different prefix")
    }

    @Test func endedSequencesLeaveIdleBlocksThatAreEvictedLeastRecentlyUsedFirst() throws {
        let pool = try pool(blocks: 4)
        let (a, _) = try run(pool, [1, 2, 3, 4, 0], tag: 0)          // caches block [1 2 3 4]
        let (b, _) = try run(pool, [5, 6, 7, 8, 0], tag: 0)          // caches block [5 6 7 8]
        pool.release(a)
        pool.release(b)
        #expect(pool.freeBlocks == 4 && pool.cachedPrefixBlocks == 2, "idle cached blocks count as free")
        // Use [1 2 3 4] again, so [5 6 7 8] becomes the least recently used idle block.
        let (c, reused) = try run(pool, [1, 2, 3, 4, 9], tag: 0)
        #expect(reused == 4)
        pool.release(c)
        // Three fresh blocks: two free ones, then one eviction, which must take [5 6 7 8].
        let (d, _) = try run(pool, [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30], tag: 0)
        #expect(pool.createSequence(reusingPrefixOf: [5, 6, 7, 8, 0]).reusedTokens == 0)
        #expect(pool.createSequence(reusingPrefixOf: [1, 2, 3, 4, 0]).reusedTokens == 4)
        pool.release(d)
    }

    @Test func truncatingIntoACachedBlockForgetsIt() throws {
        let pool = try pool(blocks: 4)
        let (a, _) = try run(pool, [1, 2, 3, 4, 5, 6, 7, 8, 9], tag: 0)
        pool.truncate(a, to: 6)                       // block [5 6 7 8] will be overwritten from position 6
        #expect(pool.createSequence(reusingPrefixOf: [1, 2, 3, 4, 5, 6, 7, 8, 9]).reusedTokens == 4)
    }

    @Test func idleCachedBlocksAreReusedBeforeMemoryThatWasNeverWritten() throws {
        let pool = try pool(blocks: 8)
        let (a, _) = try run(pool, Array(1 ... 9), tag: 0)        // 2 cached full blocks and a partial one
        pool.release(a)
        #expect(pool.residentBlocks == 3 && pool.cachedPrefixBlocks == 2 && pool.freeBlocks == 8)
        let (b, _) = try run(pool, Array(20 ... 30), tag: 0)      // 3 blocks: the freed one, then 2 evictions
        #expect(pool.residentBlocks == 3, "no new memory while written blocks are free or idle")
        #expect(pool.createSequence(reusingPrefixOf: Array(1 ... 9)).reusedTokens == 0, "the idle blocks were evicted")
        let (c, _) = try run(pool, Array(40 ... 52), tag: 0)      // 4 more blocks while b holds 3
        #expect(pool.residentBlocks == 7)
        pool.release(b)
        pool.release(c)
        #expect(pool.freeBlocks == 8)
    }

    @Test func theResidentBlocksFollowThePeakInUseWhileSequencesComeAndGo() throws {
        let pool = try pool(blocks: 64)
        var generator = Xoshiro256StarStar(seed: 3)
        var live: [SequenceID] = [], peak = 0
        for round in 0 ..< 400 {
            if live.count >= 6 || (!live.isEmpty && generator.next() % 3 == 0) {
                pool.release(live.remove(at: Int(generator.next() % UInt64(live.count))))
            }
            // Prompts from a few families, so that some blocks are found again and some go idle.
            let family = TokenID(generator.next() % 4), length = 3 + Int(generator.next() % 30)
            let tokens = (0 ..< length).map { family * 100 + TokenID($0 < 12 ? $0 : $0 + round) }
            live.append(try run(pool, tokens, tag: 0).0)
            peak = max(peak, pool.capacityBlocks - pool.freeBlocks)
            #expect(pool.residentBlocks == peak, "round \(round): memory written beyond the most blocks ever in use")
        }
        for sequence in live { pool.release(sequence) }
        #expect(pool.freeBlocks == pool.capacityBlocks)
    }

    @Test func withoutPrefixCachingNothingIsShared() throws {
        let pool = try KVBlockPool(layout: layout, tokens: 16, blockTokens: 4)
        let (s, reused) = pool.createSequence(reusingPrefixOf: [1, 2, 3, 4, 5])
        pool.cachePrefix(of: s, tokens: [1, 2, 3, 4, 5])
        #expect(reused == 0 && pool.cachedPrefixBlocks == 0)
    }
}

