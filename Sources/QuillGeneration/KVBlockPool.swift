import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import QuillKernels

/// A token id. 32 bits are enough for every vocabulary and halve the memory of long histories.
public typealias TokenID = Int32

/// Element type of the key/value memory.
public enum KVCacheType: String, Sendable, CaseIterable {
    /// 4 bytes per value: exact (the reference path).
    case f32
    /// IEEE half precision: half the memory; keys and values rounded to 11 significant bits
    /// (llama.cpp's default cache type, and Quill's on the quantised path).
    case f16

    /// Bytes per stored value.
    public var bytes: Int { self == .f32 ? 4 : 2 }
}

/// What one model stores per position: `layers × 2 × kvHeads × headDimension` values.
public struct KVLayout: Sendable, Equatable {
    public var layers: Int
    public var kvHeads: Int
    public var headDimension: Int
    public var elementType: KVCacheType
    /// Layers that attend only to their last `windowSize` positions (sliding-window attention): the
    /// pool keeps their keys and values in blocks of their own and frees those that fall behind the
    /// window, so their memory is bounded by the window, not the context. Empty: every layer keeps
    /// its whole history.
    public var windowedLayers: Set<Int>
    public var windowSize: Int

    public init(layers: Int, kvHeads: Int, headDimension: Int, elementType: KVCacheType,
                windowedLayers: Set<Int> = [], windowSize: Int = 0) {
        precondition(windowedLayers.isEmpty || windowSize > 0, "a sliding window holds at least one position")
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDimension = headDimension
        self.elementType = elementType
        self.windowedLayers = windowedLayers.filter { (0 ..< layers).contains($0) }
        self.windowSize = windowSize
    }

    /// Bytes of keys and values per position, over all layers.
    public var bytesPerToken: Int { layers * 2 * kvHeads * headDimension * elementType.bytes }
}

/// Identifies one sequence (a prompt and its continuation) in a `KVBlockPool`.
public struct SequenceID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public var description: String { "sequence \(rawValue)" }
}

/// Errors of the KV memory, each a one-line message.
public enum KVCacheError: Error, CustomStringConvertible, Equatable {
    /// The memory asked for cannot be had on this machine.
    case insufficientMemory(tokens: Int, bytes: Int, availableBytes: Int)
    /// The pool's budget is used up by other sequences (or by this one).
    case outOfBlocks(neededBlocks: Int, freeBlocks: Int, blockTokens: Int)
    case unknownSequence(SequenceID)
    /// A forward pass got two chunks of one sequence.
    case sequenceTwiceInOneBatch(SequenceID)

    public var description: String {
        switch self {
        case let .insufficientMemory(tokens, bytes, available):
            return "a KV cache of \(tokens) tokens needs \(formatBytes(bytes)) but only \(formatBytes(available)) of memory is available (lower -c/--ctx-size)"
        case let .outOfBlocks(needed, free, blockTokens):
            return "the KV cache is full: \(needed) more blocks of \(blockTokens) tokens are needed, \(free) are free"
        case let .unknownSequence(id):
            return "\(id) is not in the KV cache"
        case let .sequenceTwiceInOneBatch(id):
            return "\(id) has two chunks in one batch (one chunk per sequence and pass)"
        }
    }
}

func formatBytes(_ bytes: Int) -> String {
    let gib = Double(bytes) / Double(1 << 30)
    return gib >= 1 ? String(fixed: gib, decimals: 1) + " GiB" : String(fixed: Double(bytes) / Double(1 << 20), decimals: 1) + " MiB"
}

/// Keys and values of many sequences in fixed-size blocks (vLLM's paged KV memory).
///
/// The pool reserves address space for `capacityBlocks` blocks up front and the kernel commits pages
/// as they are first written, so memory follows the tokens actually stored, bounded by the budget.
/// Each sequence owns a block table: position p lives in block `table[p / blockTokens]` at offset
/// `p % blockTokens`. Blocks are reference-counted so that `fork` shares a common prefix between
/// sequences (beams, `n > 1`, a shared system prompt) and a write into a shared block first copies
/// it (copy-on-write).
///
/// Layout of one block: (layers, 2, kvHeads, blockTokens, headDimension) values, keys before values,
/// so one attention head reads `blockTokens` consecutive rows.
///
/// Sliding-window layers (`layout.windowedLayers`) live in blocks of their own with a second table
/// per sequence (`windowedBlocks(of:)`), in step with the first. Once all of a block's positions are
/// older than any later query can see (its window), it is freed and its table entry set to −1: those layers' memory stays within the
/// window however long the sequence grows. The budget and the scheduling count the full-history
/// blocks only; a sequence never holds more windowed blocks than those.
///
/// Not thread-safe: one inference context (one forward pass at a time) owns a pool.
public final class KVBlockPool {
    public let layout: KVLayout
    /// Positions per block.
    public let blockTokens: Int
    /// Blocks the budget allows.
    public let capacityBlocks: Int
    /// Bytes of one block over the layers that keep their whole history.
    public let blockBytes: Int
    /// Bytes of one layer's keys (or values) within a block.
    public let halfLayerBytes: Int

    private let storage: UnsafeMutableRawPointer
    private let mappedBytes: Int
    var referenceCounts: [Int32]
    /// Free blocks that have been written before, the most recently freed last (taken first).
    var freeList: [Int32] = []
    /// Blocks `0 ..< touchedBlocks` have been handed out at least once; the rest were never written,
    /// so their pages are not resident yet.
    private(set) var touchedBlocks = 0
    /// The sliding-window layers' blocks (nil when there are none).
    var windowed: WindowedBlocks?
    /// Per layer: whether it is a sliding-window layer, and its place among the layers of its kind.
    private let placement: [(windowed: Bool, index: Int)]
    /// The windowed twin of each cached full-history block that had one when it was registered
    /// (the cache holds a reference on it, dropped when the block is evicted or forgotten).
    var cachedWindowed: [Int32: Int32] = [:]
    var sequences: [Int: Sequence] = [:]
    var nextSequence = 0
    /// Full blocks found again by their token prefix (see `KVPrefixCache.swift`); empty unless
    /// `prefixCaching` is on.
    var prefixIndex: PrefixIndex
    /// Keep full blocks findable by their token prefix after their sequences end, so that a new
    /// sequence starting with the same tokens shares them instead of recomputing them
    /// (`createSequence(reusingPrefixOf:)`, `cachePrefix(of:tokens:)`). Off by default.
    public var prefixCaching = false

    struct Sequence {
        var blocks: [Int32] = []
        /// The sliding-window layers' blocks, in step with `blocks`; −1 once freed behind the window.
        var windowedBlocks: [Int32] = []
        var length = 0
        /// Prefix hashes of the leading blocks registered in (or matched from) the prefix index.
        var prefixHashes: [UInt64] = []
    }

    /// A pool able to hold `tokens` positions in total (rounded up to whole blocks).
    /// Throws `KVCacheError.insufficientMemory` when that much memory is not available on this machine.
    public init(layout: KVLayout, tokens: Int, blockTokens: Int = 32) throws {
        precondition(blockTokens > 0 && layout.bytesPerToken > 0)
        self.layout = layout
        self.blockTokens = blockTokens
        var counts = (full: 0, windowed: 0)
        placement = (0 ..< layout.layers).map { layer in
            if layout.windowedLayers.contains(layer) {
                defer { counts.windowed += 1 }
                return (true, counts.windowed)
            }
            defer { counts.full += 1 }
            return (false, counts.full)
        }
        halfLayerBytes = layout.kvHeads * blockTokens * layout.headDimension * layout.elementType.bytes
        blockBytes = 2 * counts.full * halfLayerBytes
        let windowedBlockBytes = 2 * counts.windowed * halfLayerBytes
        let (blocks, overflow) = max(tokens, 1).addingReportingOverflow(blockTokens - 1)
        capacityBlocks = overflow ? Int.max / blockTokens : blocks / blockTokens
        // The full-history blocks, plus the sliding-window layers' blocks that one sequence may hold
        // (the window and a chunk's worth, capped by the budget): more
        // sequences find their windowed blocks in memory that shorter histories leave unused.
        let (fullBytes, tooMany) = capacityBlocks.multipliedReportingOverflow(by: max(blockBytes, 1))
        let windowedCapacity = counts.windowed == 0 ? 0 : capacityBlocks
        let (windowedBytes, tooManyWindowed) = windowedCapacity.multipliedReportingOverflow(by: windowedBlockBytes)
        let bound = counts.windowed == 0 ? 0
            : min(capacityBlocks, (layout.windowSize + 2 * blockTokens) / blockTokens + 1)
        let (needed, neededOverflows) = fullBytes.addingReportingOverflow(bound * windowedBlockBytes)
        let (total, totalOverflows) = fullBytes.addingReportingOverflow(windowedBytes)
        let available = KVBlockPool.availableMemory()
        guard !tooMany, !tooManyWindowed, !neededOverflows, !totalOverflows, needed <= available else {
            let asked = tooMany || neededOverflows ? Int.max : needed
            throw KVCacheError.insufficientMemory(tokens: tokens, bytes: asked, availableBytes: available)
        }
        // Address space only: MAP_NORESERVE commits pages as they are written.
        let address = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let address, address != MAP_FAILED else {
            throw KVCacheError.insufficientMemory(tokens: tokens, bytes: needed, availableBytes: available)
        }
        storage = address
        mappedBytes = total
        referenceCounts = [Int32](repeating: 0, count: capacityBlocks)
        prefixIndex = PrefixIndex(capacityBlocks: capacityBlocks)
        if counts.windowed > 0 {
            windowed = WindowedBlocks(storage: address + fullBytes, blockBytes: windowedBlockBytes, capacity: capacityBlocks)
        }
    }

    deinit { munmap(storage, mappedBytes) }

    /// Memory the kernel reports as available (MemAvailable), less a margin for the weights and
    /// activations; the physical memory if that cannot be read.
    static func availableMemory() -> Int {
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kb = Int(line.split(separator: " ").dropFirst().first ?? "") {
            return kb * 1024 / 10 * 9
        }
        return Int(ProcessInfo.processInfo.physicalMemory) / 10 * 9
    }

    // MARK: Sequences

    /// Blocks a sequence can get: those no sequence uses, including cached prefix blocks that are
    /// evicted (least recently used first) when needed.
    public var freeBlocks: Int { freeList.count + prefixIndex.idleCount + capacityBlocks - touchedBlocks }
    /// Blocks whose memory has been written at least once (the pool's share of the resident set).
    public var residentBlocks: Int { touchedBlocks }
    /// Sliding-window layers' blocks whose memory has been written at least once.
    public var residentWindowedBlocks: Int { windowed?.touched ?? 0 }
    /// Sequences alive.
    public var sequenceCount: Int { sequences.count }

    /// A new, empty sequence.
    public func createSequence() -> SequenceID {
        defer { nextSequence += 1 }
        sequences[nextSequence] = Sequence()
        return SequenceID(rawValue: nextSequence)
    }

    /// A new sequence that shares every position of `parent` (no copy until one of them writes
    /// into a shared block).
    public func fork(_ parent: SequenceID) throws -> SequenceID {
        guard let state = sequences[parent.rawValue] else { throw KVCacheError.unknownSequence(parent) }
        for block in state.blocks { referenceCounts[Int(block)] += 1 }
        for block in state.windowedBlocks where block >= 0 { windowed!.retain(block) }
        defer { nextSequence += 1 }
        sequences[nextSequence] = state
        return SequenceID(rawValue: nextSequence)
    }

    /// Frees the blocks of `sequence` that no other sequence shares.
    public func release(_ sequence: SequenceID) {
        guard let state = sequences.removeValue(forKey: sequence.rawValue) else { return }
        for block in state.blocks { unreference(block) }
        for block in state.windowedBlocks where block >= 0 { windowed!.release(block) }
    }

    /// Positions stored for `sequence`.
    public func length(of sequence: SequenceID) -> Int { sequences[sequence.rawValue]?.length ?? 0 }

    /// The block table of `sequence`.
    public func blocks(of sequence: SequenceID) -> [Int32] { sequences[sequence.rawValue]?.blocks ?? [] }

    /// The sliding-window layers' block table of `sequence` (−1 for blocks freed behind the window).
    public func windowedBlocks(of sequence: SequenceID) -> [Int32] { sequences[sequence.rawValue]?.windowedBlocks ?? [] }

    /// Makes room for `tokens` more positions after `length(of:)`: allocates the blocks they need and
    /// gives the sequence its own copy of a shared block it will write into. Throws `outOfBlocks`
    /// (leaving the sequence as it was) when the pool cannot hold them.
    public func reserve(_ sequence: SequenceID, appending tokens: Int) throws {
        guard var state = sequences[sequence.rawValue] else { throw KVCacheError.unknownSequence(sequence) }
        let needed = (state.length + tokens + blockTokens - 1) / blockTokens - state.blocks.count
        let lastShared = lastBlockIsShared(state)
        let fresh = blocksNeeded(appending: tokens, to: sequence)
        guard fresh <= freeBlocks else {
            throw KVCacheError.outOfBlocks(neededBlocks: fresh, freeBlocks: freeBlocks, blockTokens: blockTokens)
        }
        if lastShared && tokens > 0 {
            let shared = state.blocks[state.blocks.count - 1]
            let copy = allocateBlock()
            (storage + Int(copy) * blockBytes).copyMemory(from: storage + Int(shared) * blockBytes, byteCount: blockBytes)
            unreference(shared)
            state.blocks[state.blocks.count - 1] = copy
        }
        for _ in 0 ..< max(needed, 0) { state.blocks.append(allocateBlock()) }
        if var windowed, tokens > 0 {
            if state.length % blockTokens != 0, let last = state.windowedBlocks.last, last >= 0, windowed.isShared(last) {
                state.windowedBlocks[state.windowedBlocks.count - 1] = windowed.copy(last)
            }
            while state.windowedBlocks.count < state.blocks.count { state.windowedBlocks.append(windowed.allocate()) }
            self.windowed = windowed
        }
        sequences[sequence.rawValue] = state
    }

    /// Fresh blocks that `reserve(sequence, appending: tokens)` would take: new blocks past the end,
    /// plus a copy of a shared partial last block it would write into.
    public func blocksNeeded(appending tokens: Int, to sequence: SequenceID) -> Int {
        guard let state = sequences[sequence.rawValue], tokens > 0 else { return 0 }
        let needed = (state.length + tokens + blockTokens - 1) / blockTokens - state.blocks.count
        return max(needed, 0) + (lastBlockIsShared(state) ? 1 : 0)
    }

    /// Whether the partial last block must be copied before the sequence writes into it: another
    /// sequence holds it, or it is a cached block taken for its first positions only
    /// (`createSequence(reusingPrefixOf:granularity:throughPartialBlock:)`), whose tokens must stay.
    private func lastBlockIsShared(_ state: Sequence) -> Bool {
        guard state.length % blockTokens != 0, let last = state.blocks.last else { return false }
        return referenceCounts[Int(last)] > 1 || prefixIndex.isCached(last)
    }

    /// Marks `tokens` reserved positions as filled, after every layer has stored them; then frees the
    /// sliding-window layers' blocks that no later position can see.
    public func commit(_ sequence: SequenceID, appending tokens: Int) {
        guard var state = sequences[sequence.rawValue] else { return }
        precondition(state.length + tokens <= state.blocks.count * blockTokens, "commit beyond reserved blocks")
        state.length += tokens
        if windowed != nil {
            // A later query at position p ≥ length reads from p − window + 1 ≥ length − window + 1.
            let visible = state.length - layout.windowSize
            var b = 0
            while b < visible / blockTokens && b < state.windowedBlocks.count {
                if state.windowedBlocks[b] >= 0 {
                    windowed!.release(state.windowedBlocks[b])
                    state.windowedBlocks[b] = -1
                }
                b += 1
            }
        }
        sequences[sequence.rawValue] = state
    }

    /// Forgets the positions of `sequence` from `length` on, freeing blocks it no longer needs.
    /// A sequence with sliding-window layers cannot go back past the blocks it has freed behind its
    /// window (their keys and values are gone): it is emptied instead, to be computed again.
    /// - Returns: the length kept, `length` or 0.
    @discardableResult
    public func truncate(_ sequence: SequenceID, to length: Int) -> Int {
        guard var state = sequences[sequence.rawValue] else { return 0 }
        precondition(length >= 0 && length <= state.length, "truncate beyond the sequence")
        var length = length
        if windowed != nil {
            // The blocks that positions from `length` on can see must all still be there.
            let firstSeen = max(0, length - layout.windowSize) / blockTokens
            let kept = state.windowedBlocks.prefix((length + blockTokens - 1) / blockTokens)
            if kept.dropFirst(firstSeen).contains(-1) { length = 0 }
        }
        let keep = (length + blockTokens - 1) / blockTokens
        while state.blocks.count > keep { unreference(state.blocks.removeLast()) }
        while state.windowedBlocks.count > keep {
            let block = state.windowedBlocks.removeLast()
            if block >= 0 { windowed!.release(block) }
        }
        state.length = length
        // A registered block that becomes partial will be overwritten: it no longer holds its key's tokens.
        if state.prefixHashes.count > length / blockTokens {
            state.prefixHashes.removeLast(state.prefixHashes.count - length / blockTokens)
            if length % blockTokens != 0, let last = state.blocks.last, referenceCounts[Int(last)] == 1 {
                forgetCached(last)
            }
        }
        sequences[sequence.rawValue] = state
        return length
    }

    /// A block for new positions. Memory already written comes first, so that the resident set
    /// grows only with the most blocks ever in use at once and then stays flat (a server's RSS
    /// plateaus after warm-up instead of creeping up to the budget):
    /// 1. a free block written before, the most recently freed first (its pages are resident and
    ///    likely still in the CPU cache);
    /// 2. else the least recently used idle cached block, forgetting its prefix: the prefix cache
    ///    lives in memory that the working set has already committed and never grows it;
    /// 3. else a never-written block, which commits new pages (the budget still bounds them).
    /// The cost: once the sequences in use shrink, the cache can hold only the blocks they freed,
    /// not the whole budget. A cached prefix that is in use is never evicted.
    private func allocateBlock() -> Int32 {
        let block: Int32
        if let recycled = freeList.popLast() {
            block = recycled
        } else if prefixIndex.idleCount > 0 {
            block = prefixIndex.evictLeastRecentlyUsed()
            releaseCachedWindowedBlock(of: block)
        } else {
            precondition(touchedBlocks < capacityBlocks, "no free KV block")
            block = Int32(touchedBlocks)
            touchedBlocks += 1
        }
        referenceCounts[Int(block)] = 1
        return block
    }

    func unreference(_ block: Int32) {
        referenceCounts[Int(block)] -= 1
        guard referenceCounts[Int(block)] == 0 else { return }
        // A cached block stays findable (idle, evictable) until its memory is needed.
        if prefixIndex.isCached(block) { prefixIndex.markIdle(block) } else { freeList.append(block) }
    }

    // MARK: Storage

    /// The keys and values of one layer, as the attention kernels read them (with the sliding-window
    /// layers' table, `windowedBlocks(of:)`, for those layers).
    public func view(layer: Int) -> PagedKVView {
        let (isWindowed, index) = placement[layer]
        let base = isWindowed ? windowed!.storage : storage
        return PagedKVView(base: base + 2 * index * halfLayerBytes, blockBytes: isWindowed ? windowed!.blockBytes : blockBytes,
                           valueOffset: halfLayerBytes, blockTokens: blockTokens, kvHeads: layout.kvHeads,
                           headDimension: layout.headDimension, half: layout.elementType == .f16)
    }

    /// Whether `layer` keeps only a sliding window (its blocks are `windowedBlocks(of:)`).
    public func isWindowed(layer: Int) -> Bool { placement[layer].windowed }

    /// Writes keys and values of `tokens` new positions of `sequence`, from `length(of:)` on, into
    /// `layer` (rounding them to half precision in an `.f16` pool). Call `reserve` first.
    /// - Parameters:
    ///   - keys: (tokens, kvHeads, headDimension)
    ///   - values: (tokens, kvHeads, headDimension)
    public func store(_ sequence: SequenceID, layer: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                      tokens: Int) {
        guard let state = sequences[sequence.rawValue] else { return }
        let view = view(layer: layer)
        let table = placement[layer].windowed ? state.windowedBlocks : state.blocks
        let hd = layout.headDimension, rowWidth = layout.kvHeads * hd
        for t in 0 ..< tokens {
            let position = state.length + t
            let block = table[position / blockTokens], offset = position % blockTokens
            for h in 0 ..< layout.kvHeads {
                let source = t * rowWidth + h * hd
                let k = view.keys(block: block, head: h) + offset * hd * layout.elementType.bytes
                let v = view.values(block: block, head: h) + offset * hd * layout.elementType.bytes
                view.store(keys + source, into: k, count: hd)
                view.store(values + source, into: v, count: hd)
            }
        }
    }
}

/// The sliding-window layers' blocks of a pool: reference counts and a free list like the
/// full-history blocks', written blocks reused first (so the resident set stays at the most in use
/// at once), but no prefix index of their own: a cached full-history block holds a reference on its
/// windowed twin (`KVBlockPool.cachedWindowed`).
struct WindowedBlocks {
    let storage: UnsafeMutableRawPointer
    let blockBytes: Int
    private var referenceCounts: [Int32]
    private var freeList: [Int32] = []
    private(set) var touched = 0

    init(storage: UnsafeMutableRawPointer, blockBytes: Int, capacity: Int) {
        self.storage = storage
        self.blockBytes = blockBytes
        referenceCounts = [Int32](repeating: 0, count: capacity)
    }

    mutating func allocate() -> Int32 {
        let block: Int32
        if let recycled = freeList.popLast() {
            block = recycled
        } else {
            precondition(touched < referenceCounts.count, "no free windowed KV block")
            block = Int32(touched)
            touched += 1
        }
        referenceCounts[Int(block)] = 1
        return block
    }

    func isShared(_ block: Int32) -> Bool { referenceCounts[Int(block)] > 1 }

    mutating func retain(_ block: Int32) { referenceCounts[Int(block)] += 1 }

    mutating func release(_ block: Int32) {
        referenceCounts[Int(block)] -= 1
        if referenceCounts[Int(block)] == 0 { freeList.append(block) }
    }

    /// A private copy of a shared block, releasing the caller's reference on it.
    mutating func copy(_ shared: Int32) -> Int32 {
        let block = allocate()
        (storage + Int(block) * blockBytes).copyMemory(from: storage + Int(shared) * blockBytes, byteCount: blockBytes)
        release(shared)
        return block
    }
}
