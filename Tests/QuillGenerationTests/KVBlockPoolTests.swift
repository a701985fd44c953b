import QuillGeneration
import Testing

/// The paged KV pool: block accounting, forks sharing blocks copy-on-write, budget errors.
@Suite struct KVBlockPoolTests {
    let layout = KVLayout(layers: 2, kvHeads: 1, headDimension: 4, elementType: .f32)

    /// Writes `tokens` positions whose keys are `base + position` in every element.
    func append(_ pool: KVBlockPool, _ sequence: SequenceID, tokens: Int, base: Float) throws {
        try pool.reserve(sequence, appending: tokens)
        let start = pool.length(of: sequence)
        let keys = (0 ..< tokens).flatMap { t in [Float](repeating: base + Float(start + t), count: 4) }
        for layer in 0 ..< 2 { pool.store(sequence, layer: layer, keys: keys, values: keys, tokens: tokens) }
        pool.commit(sequence, appending: tokens)
    }

    /// The first key element stored at `position` of `sequence` in layer 1.
    func key(_ pool: KVBlockPool, _ sequence: SequenceID, at position: Int) -> Float {
        let block = pool.blocks(of: sequence)[position / pool.blockTokens]
        let keys = pool.view(layer: 1).keys(block: block, head: 0).assumingMemoryBound(to: Float.self)
        return keys[(position % pool.blockTokens) * 4]
    }

    @Test func blocksAreTakenAsPositionsGrowAndFreedOnRelease() throws {
        let pool = try KVBlockPool(layout: layout, tokens: 4 * 8, blockTokens: 8)
        #expect(pool.capacityBlocks == 4 && pool.freeBlocks == 4)
        let a = pool.createSequence()
        try append(pool, a, tokens: 9, base: 0)
        #expect(pool.blocks(of: a).count == 2 && pool.freeBlocks == 2 && pool.length(of: a) == 9)
        pool.truncate(a, to: 8)
        #expect(pool.blocks(of: a).count == 1 && pool.freeBlocks == 3)
        pool.release(a)
        #expect(pool.freeBlocks == 4 && pool.sequenceCount == 0)
    }

    @Test func forkSharesBlocksAndCopiesOnWrite() throws {
        let pool = try KVBlockPool(layout: layout, tokens: 6 * 8, blockTokens: 8)
        let parent = pool.createSequence()
        try append(pool, parent, tokens: 12, base: 0)  // one full block, one partial
        let child = try pool.fork(parent)
        #expect(pool.freeBlocks == 4, "a fork takes no blocks")
        #expect(pool.blocks(of: child) == pool.blocks(of: parent))
        try append(pool, child, tokens: 2, base: 1000)
        // The child wrote into the shared partial block: it got its own copy, the full block stays shared.
        #expect(pool.blocks(of: child)[0] == pool.blocks(of: parent)[0])
        #expect(pool.blocks(of: child)[1] != pool.blocks(of: parent)[1])
        #expect(pool.freeBlocks == 3)
        #expect(key(pool, child, at: 11) == 11 && key(pool, child, at: 12) == 1012)
        try append(pool, parent, tokens: 1, base: 2000)
        #expect(key(pool, parent, at: 12) == 2012, "the parent's positions are its own")
        #expect(key(pool, child, at: 12) == 1012)
        pool.release(parent)
        #expect(pool.freeBlocks == 4, "the shared block stays with the child")
        pool.release(child)
        #expect(pool.freeBlocks == 6)
    }

    @Test func aFullPoolIsAnErrorThatLeavesTheSequenceUsable() throws {
        let pool = try KVBlockPool(layout: layout, tokens: 16, blockTokens: 8)
        let a = pool.createSequence()
        try append(pool, a, tokens: 10, base: 0)
        #expect(throws: KVCacheError.outOfBlocks(neededBlocks: 1, freeBlocks: 0, blockTokens: 8)) {
            try pool.reserve(a, appending: 7)
        }
        #expect(pool.length(of: a) == 10)
        try append(pool, a, tokens: 6, base: 0)
        #expect(pool.length(of: a) == 16)
    }

    @Test func aBudgetBeyondTheMachinesMemoryIsAOneLineError() {
        let big = KVLayout(layers: 30, kvHeads: 3, headDimension: 64, elementType: .f32)
        do {
            _ = try KVBlockPool(layout: big, tokens: 1 << 40)
            Issue.record("a 2^40-token pool was created")
        } catch let error as KVCacheError {
            guard case let .insufficientMemory(tokens, _, available) = error else { Issue.record("\(error)"); return }
            #expect(tokens == 1 << 40 && available > 0)
            #expect(!error.description.contains("\n") && error.description.contains("-c/--ctx-size"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
