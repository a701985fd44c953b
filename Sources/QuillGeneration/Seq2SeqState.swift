import QuillKernels

/// What an encoder-decoder model keeps from the encoder for a whole generation: per decoder layer
/// and source, the cross-attention keys and values, projected once from the encoder output and
/// read by every decoding step and every beam of that source (never copied per beam).
public final class EncoderStates: @unchecked Sendable {
    public let layers: Int
    public let heads: Int
    public let headDimension: Int
    /// Token count of each source (without padding).
    public let lengths: [Int]
    /// Positions between two heads: the longest source (rounded up for transposed keys).
    public let stride: Int
    /// Whether keys are stored transposed per head (`AttentionKeys.transposed`), as the attention
    /// kernel prefers them for this head dimension: every decoding step then reads them as they are.
    public let transposedKeys: Bool
    public var sources: Int { lengths.count }

    /// (layers, sources, 2, heads, stride, headDimension); keys per head transposed when `transposedKeys`
    private let storage: UnsafeMutablePointer<Float>
    private let blockSize: Int

    public init(layers: Int, heads: Int, headDimension: Int, lengths: [Int]) {
        self.layers = layers
        self.heads = heads
        self.headDimension = headDimension
        self.lengths = lengths
        transposedKeys = BidirectionalAttention.prefersTransposedKeys(headDimension: headDimension)
        let longest = max(1, lengths.max() ?? 1)
        stride = transposedKeys ? BidirectionalAttention.transposedKeyStride(longest) : longest
        blockSize = heads * stride * headDimension
        let total = max(1, layers * lengths.count * 2 * blockSize)
        storage = .allocate(capacity: total)
        storage.initialize(repeating: 0, count: total)
    }

    deinit { storage.deallocate() }

    /// Cross-attention keys of `source` for decoder layer `layer`: (heads, stride, headDimension), or
    /// per head in `BidirectionalAttention.transposedKeyOffset`'s layout when `transposedKeys`.
    public func keys(layer: Int, source: Int) -> UnsafeMutablePointer<Float> {
        storage + ((layer * lengths.count + source) * 2) * blockSize
    }

    /// Cross-attention values: (heads, stride, headDimension).
    public func values(layer: Int, source: Int) -> UnsafeMutablePointer<Float> {
        keys(layer: layer, source: source) + blockSize
    }

    /// The attention kernel's view of `source`'s keys and values in decoder layer `layer`.
    public func attentionKeys(layer: Int, source: Int, firstPosition: Int) -> AttentionKeys {
        AttentionKeys(keys: keys(layer: layer, source: source), values: values(layer: layer, source: source),
                      keyCount: lengths[source], firstPosition: firstPosition, transposed: transposedKeys)
    }
}

/// The decoder's per-row state during generation: the self-attention key/value cache of every row
/// (one row per hypothesis: a source in greedy search, a beam in beam search) and which source
/// each row translates. All rows advance together, one token per step.
public final class DecoderState: @unchecked Sendable {
    public let encoder: EncoderStates
    public let layers: Int
    public let heads: Int
    public let headDimension: Int
    /// Positions each row can hold (the most decoder tokens, start token included).
    public let capacity: Int
    /// How keys and values are stored: f32, or IEEE half bits (half the bytes that every step's
    /// attention reads and that a reordered beam copies).
    public let cacheType: KVCacheType
    /// The source (index into `encoder`) of each row.
    public private(set) var rowSources: [Int]
    /// Decoder positions filled so far (the same for every row).
    public private(set) var count = 0
    public var rows: Int { rowSources.count }

    /// (layers, maxRows, 2, heads, capacity, headDimension) values of `cacheType`, indexed by slot: row
    /// r's cache is in slot `slots[r]`, so that rows which only move (beams reordered, finished rows
    /// dropped) move no data.
    private let storage: UnsafeMutableRawPointer
    /// Bytes of one (keys | values) block of a slot: (heads, capacity, headDimension).
    private let blockBytes: Int
    private let maxRows: Int
    /// The slot of each row; a permutation of part of `0 ..< maxRows`.
    private var slots: [Int]

    /// A state whose row r decodes source `rowSources[r]`.
    /// Throws `Seq2SeqError.badSettings` when the cache of every row at full capacity could not fit in
    /// the memory available (rows and capacity come from the batch size, beams and most new tokens).
    public init(encoder: EncoderStates, rowSources: [Int], capacity: Int, cacheType: KVCacheType = .f32) throws {
        precondition(rowSources.allSatisfy { $0 >= 0 && $0 < encoder.sources }, "row source out of range")
        self.encoder = encoder
        layers = encoder.layers
        heads = encoder.heads
        headDimension = encoder.headDimension
        self.capacity = capacity
        self.cacheType = cacheType
        self.rowSources = rowSources
        maxRows = max(1, rowSources.count)
        slots = Array(rowSources.indices)
        let bytes = try Self.checkFits(layers: layers, heads: heads, headDimension: headDimension, rows: maxRows,
                                       capacity: capacity, cacheType: cacheType)
        blockBytes = heads * capacity * headDimension * cacheType.bytes
        // Pages are committed as positions are written, so a generous capacity costs nothing up front.
        storage = .allocate(byteCount: max(64, bytes), alignment: 64)
    }

    /// The bytes of the cache of `rows` rows of `capacity` positions, or `Seq2SeqError.badSettings`
    /// when that is more than the memory available (so a caller can check before any work).
    @discardableResult
    public static func checkFits(layers: Int, heads: Int, headDimension: Int, rows: Int, capacity: Int,
                                 cacheType: KVCacheType = .f32) throws -> Int {
        let available = MemoryBudget.availableBytes
        let needed = MemoryBudget.bytes([cacheType.bytes, layers, max(1, rows), 2, heads, max(1, capacity), headDimension])
        guard let bytes = needed, bytes <= available else {
            throw Seq2SeqError.badSettings("a decoder cache of \(rows) rows (batch × beams) × \(capacity) positions needs "
                + "\(MemoryBudget.describe(needed)) but only \(formatBytes(available)) of memory is available "
                + "(lower the batch size, beams or most new tokens)")
        }
        return bytes
    }

    deinit { storage.deallocate() }

    /// Self-attention keys of `row` in `layer`: (heads, capacity, headDimension) of `cacheType`.
    public func keyBytes(layer: Int, row: Int) -> UnsafeMutableRawPointer { keyBytes(layer: layer, slot: slots[row]) }

    /// Self-attention values of `row` in `layer`: (heads, capacity, headDimension) of `cacheType`.
    public func valueBytes(layer: Int, row: Int) -> UnsafeMutableRawPointer { keyBytes(layer: layer, row: row) + blockBytes }

    /// The keys of an f32 state as floats.
    public func keys(layer: Int, row: Int) -> UnsafeMutablePointer<Float> {
        precondition(cacheType == .f32, "keys(layer:row:) reads an f32 cache; use keyBytes")
        return keyBytes(layer: layer, row: row).assumingMemoryBound(to: Float.self)
    }

    /// The values of an f32 state as floats.
    public func values(layer: Int, row: Int) -> UnsafeMutablePointer<Float> {
        precondition(cacheType == .f32, "values(layer:row:) reads an f32 cache; use valueBytes")
        return valueBytes(layer: layer, row: row).assumingMemoryBound(to: Float.self)
    }

    /// The keys, then the values, of slot `slot` in `layer`.
    private func keyBytes(layer: Int, slot: Int) -> UnsafeMutableRawPointer {
        storage + (layer * maxRows + slot) * 2 * blockBytes
    }

    /// Stores one new position (at `count`) of every row for `layer`.
    /// - Parameters:
    ///   - newKeys: (rows, heads, headDimension)
    ///   - newValues: (rows, heads, headDimension)
    public func store(layer: Int, newKeys: UnsafePointer<Float>, newValues: UnsafePointer<Float>) {
        precondition(count < capacity, "decoder cache overflow")
        let hd = headDimension
        for r in 0..<rows {
            let k = keyBytes(layer: layer, row: r), v = valueBytes(layer: layer, row: r)
            for h in 0..<heads {
                let source = (r * heads + h) * hd, destination = (h * capacity + count) * hd * cacheType.bytes
                switch cacheType {
                case .f32:
                    (k + destination).assumingMemoryBound(to: Float.self).update(from: newKeys + source, count: hd)
                    (v + destination).assumingMemoryBound(to: Float.self).update(from: newValues + source, count: hd)
                case .f16:
                    narrowToHalves(newKeys + source, into: (k + destination).assumingMemoryBound(to: UInt16.self), count: hd)
                    narrowToHalves(newValues + source, into: (v + destination).assumingMemoryBound(to: UInt16.self), count: hd)
                }
            }
        }
    }

    /// Marks the position stored by every layer as filled.
    public func advance() {
        precondition(count < capacity, "decoder cache overflow")
        count += 1
    }

    /// Rearranges the rows: new row i continues old row `parents[i]` (beams that survive a step, or
    /// the unfinished rows only). `parents.count` may be smaller or (up to the rows the state was made
    /// for) larger than `rows`. A parent's first child takes over its slot; only further children copy
    /// its `count` filled positions, into slots no child took over.
    public func reorder(_ parents: [Int]) {
        precondition(parents.count <= maxRows && parents.allSatisfy { $0 >= 0 && $0 < rows }, "bad parent rows")
        var taken = [Bool](repeating: false, count: rows)   // (old rows) whose slot a child has taken over
        var newSlots = [Int](repeating: -1, count: parents.count)
        for (i, p) in parents.enumerated() where !taken[p] {
            taken[p] = true
            newSlots[i] = slots[p]
        }
        // Slots no child took over: rows without children, and those past the old row count.
        var kept = [Bool](repeating: false, count: maxRows)
        for slot in newSlots where slot >= 0 { kept[slot] = true }
        var free = (0..<maxRows).filter { !kept[$0] }
        let headBytes = capacity * headDimension * cacheType.bytes, filledBytes = count * headDimension * cacheType.bytes
        for (i, p) in parents.enumerated() where newSlots[i] < 0 {
            let slot = free.removeLast()
            newSlots[i] = slot
            for layer in 0..<layers {
                let source = keyBytes(layer: layer, slot: slots[p]), destination = keyBytes(layer: layer, slot: slot)
                // Each (keys|values, head) block holds `count` filled positions.
                for block in 0..<(2 * heads) {
                    (destination + block * headBytes).copyMemory(from: source + block * headBytes, byteCount: filledBytes)
                }
            }
        }
        slots = newSlots
        rowSources = parents.map { rowSources[$0] }
    }
}

/// An encoder-decoder (sequence-to-sequence) model: sources are encoded once, then the decoder
/// produces one token per row and step against a `DecoderState`.
public protocol EncoderDecoderModel: AnyObject, Sendable {
    /// Rows of the output matrix.
    var vocabularySize: Int { get }
    /// How a `DecoderState` for this model stores the self-attention cache.
    var decoderCacheType: KVCacheType { get }
    /// Generation defaults from the checkpoint (`generation_config.json` over `config.json`).
    var generationDefaults: Seq2SeqSettings { get }

    /// Runs the encoder over each source (batched, padded) and projects the cross-attention keys and
    /// values of every decoder layer. Empty sources are not allowed.
    func encode(_ sources: [[TokenID]]) throws -> EncoderStates

    /// Feeds one token per row at position `state.count`, stores the rows' self-attention keys and
    /// values and returns the raw logits (before any processor): (rows, vocabularySize).
    func decode(_ tokens: [TokenID], state: DecoderState) throws -> [Float]

    /// Like `decode` but without the logits: fills the cache with prompt tokens whose predictions
    /// are not needed (Whisper's `<|startoftranscript|><|lang|><|task|>`).
    func prefill(_ tokens: [TokenID], state: DecoderState) throws
}

extension EncoderDecoderModel {
    /// f32 unless the model says otherwise.
    public var decoderCacheType: KVCacheType { .f32 }
    public func prefill(_ tokens: [TokenID], state: DecoderState) throws { _ = try decode(tokens, state: state) }
}
