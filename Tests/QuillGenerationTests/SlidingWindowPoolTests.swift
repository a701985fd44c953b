import QuillGeneration
import QuillKernels
import Testing

/// Sliding-window layers in the KV pool: their blocks are freed once no later position can see them,
/// so their memory stays bounded by the window while the full-history layers keep everything.
@Suite struct SlidingWindowPoolTests {
    // Layers 0 and 2 slide over 40 positions, layer 1 keeps its whole history; blocks of 8.
    let window = 40
    var layout: KVLayout {
        KVLayout(layers: 3, kvHeads: 1, headDimension: 2, elementType: .f32, windowedLayers: [0, 2], windowSize: window)
    }
    /// Positions behind the newest that a later query may still read: the window.
    var visible: Int { window }

    /// Appends `count` positions whose keys are `layer·1000 + position` in every layer.
    func append(_ pool: KVBlockPool, _ sequence: SequenceID, _ count: Int) throws {
        let start = pool.length(of: sequence)
        try pool.reserve(sequence, appending: count)
        for layer in 0 ..< 3 {
            let keys = (0 ..< count).flatMap { t in [Float](repeating: Float(layer * 1000 + start + t), count: 2) }
            pool.store(sequence, layer: layer, keys: keys, values: keys, tokens: count)
        }
        pool.commit(sequence, appending: count)
    }

    func key(_ pool: KVBlockPool, _ sequence: SequenceID, layer: Int, at position: Int) -> Float {
        let table = pool.isWindowed(layer: layer) ? pool.windowedBlocks(of: sequence) : pool.blocks(of: sequence)
        let block = table[position / pool.blockTokens]
        precondition(block >= 0, "read of a freed block")
        return pool.view(layer: layer).keys(block: block, head: 0).assumingMemoryBound(to: Float.self)[(position % 8) * 2]
    }

    @Test func windowedBlocksBehindTheWindowAreFreedAndTheRestReadBack() throws {
        let pool = try KVBlockPool(layout: layout, tokens: 1024, blockTokens: 8)
        let sequence = pool.createSequence()
        var peak = 0
        for chunk in [5, 30, 1, 1, 64, 3, 200, 1, 7, 100] {       // 412 positions, prompt chunks and single tokens
            try append(pool, sequence, chunk)
            peak = max(peak, pool.residentWindowedBlocks)
        }
        let length = pool.length(of: sequence)
        #expect(length == 412)
        #expect(pool.residentBlocks == 52, "the full-history layer keeps all 412 positions")
        // At most the visible span, the largest chunk and a partial block at each end.
        #expect(peak <= (visible + 200) / 8 + 2 && pool.residentWindowedBlocks < 52)
        let table = pool.windowedBlocks(of: sequence)
        let firstKept = (length - visible) / 8
        #expect(table.prefix(firstKept).allSatisfy { $0 == -1 } && table.dropFirst(firstKept).allSatisfy { $0 >= 0 })
        for position in [length - visible, length - 1] {
            #expect(key(pool, sequence, layer: 0, at: position) == Float(position))
            #expect(key(pool, sequence, layer: 2, at: position) == Float(2000 + position))
        }
        #expect(key(pool, sequence, layer: 1, at: 0) == 1000, "the full-history layer still has position 0")
    }

    @Test func truncatingWithinTheWindowKeepsItAndBeyondItStartsOver() throws {
        let pool = try KVBlockPool(layout: layout, tokens: 1024, blockTokens: 8)
        let sequence = pool.createSequence()
        try append(pool, sequence, 300)
        // Blocks before (300 − visible) / 8 = 24 are freed: 296 only needs positions from 192 on.
        #expect(pool.truncate(sequence, to: 296) == 296)
        #expect(key(pool, sequence, layer: 0, at: 295) == 295)
        #expect(pool.truncate(sequence, to: 290) == 0, "290 needs position 186, freed with block 23")
        #expect(pool.blocks(of: sequence).isEmpty && pool.windowedBlocks(of: sequence).isEmpty)
        try append(pool, sequence, 20)
        #expect(key(pool, sequence, layer: 2, at: 19) == 2019)
    }

    @Test func forksShareWindowedBlocksAndReleaseFreesThem() throws {
        let pool = try KVBlockPool(layout: layout, tokens: 1024, blockTokens: 8)
        let parent = pool.createSequence()
        try append(pool, parent, 150)
        let child = try pool.fork(parent)
        #expect(pool.windowedBlocks(of: child) == pool.windowedBlocks(of: parent))
        try append(pool, child, 3)                          // writes into the shared partial block: a copy
        #expect(pool.windowedBlocks(of: child).last != pool.windowedBlocks(of: parent).last)
        #expect(key(pool, parent, layer: 0, at: 149) == 149 && key(pool, child, layer: 0, at: 152) == 152)
        pool.release(parent)
        pool.release(child)
        #expect(pool.freeBlocks == pool.capacityBlocks && pool.sequenceCount == 0)
        let again = pool.createSequence()
        try append(pool, again, 150)
        #expect(pool.residentWindowedBlocks <= (visible + 150) / 8 + 3, "freed windowed blocks are reused")
    }

    @Test func aCachedPrefixIsReusedOnlyWithTheWindowedBlocksItsContinuationSees() throws {
        let pool = try KVBlockPool(layout: layout, tokens: 1024, blockTokens: 8)
        pool.prefixCaching = true
        let prompt: [TokenID] = (0 ..< 300).map { TokenID($0 % 97) }
        let first = pool.createSequence()
        try append(pool, first, 40)
        pool.cachePrefix(of: first, tokens: Array(prompt.prefix(40)))   // 5 blocks, all with their windowed twins
        try append(pool, first, 260)
        pool.cachePrefix(of: first, tokens: prompt)       // blocks 5–36; the early ones' twins are freed by now
        pool.release(first)
        // 41 tokens: blocks 0–4 and their twins. 150 tokens: blocks 0–17 are cached, but the twins
        // of 5–17 were freed behind the window before they were registered, so only 0–4 are reused.
        // 300 tokens: blocks 0–36 are cached, and the twins that positions from 296 on see (blocks
        // 24–36) are all there.
        let (short, reusedShort) = pool.createSequence(reusingPrefixOf: Array(prompt.prefix(41)))
        #expect(reusedShort == 40)
        #expect(key(pool, short, layer: 0, at: 39) == 39)
        let (middle, reusedMiddle) = pool.createSequence(reusingPrefixOf: Array(prompt.prefix(150)))
        #expect(reusedMiddle == 40)
        let (long, reusedLong) = pool.createSequence(reusingPrefixOf: prompt)
        #expect(reusedLong == 296)
        let table = pool.windowedBlocks(of: long)
        #expect(table.count == 37 && table.dropFirst((296 - visible) / 8).allSatisfy { $0 >= 0 })
        #expect(key(pool, long, layer: 2, at: 295) == 2295)
        pool.release(middle)
        pool.release(short)
        pool.release(long)
    }
}
