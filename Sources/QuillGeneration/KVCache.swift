import QuillKernels

/// One sequence's keys and values: a handle on a sequence in a `KVBlockPool`, with the context size
/// it may grow to.
///
/// This is what the single-sequence API (`CausalLanguageModel.forward(_:cache:logits:)`, `generate`)
/// passes around; batched work addresses the pool's sequences directly. `owner` is the inference
/// context that made the cache (its scratch memory and threads), kept alive with it.
public final class KVCache: @unchecked Sendable {
    public let pool: KVBlockPool
    public let sequence: SequenceID
    /// The most positions the sequence may hold (the context size).
    public let capacity: Int
    /// The model's per-context state (scratch buffers, thread pool) that forward passes with this
    /// cache use; nil for caches made without a model.
    public let owner: AnyObject?

    public init(pool: KVBlockPool, sequence: SequenceID, capacity: Int, owner: AnyObject?) {
        self.pool = pool
        self.sequence = sequence
        self.capacity = capacity
        self.owner = owner
    }

    /// A cache with a pool of its own for up to `capacity` positions (tests and simple models).
    public convenience init(layers: Int, kvHeads: Int, headDimension: Int, capacity: Int,
                            elementType: KVCacheType = .f32) {
        let layout = KVLayout(layers: layers, kvHeads: kvHeads, headDimension: headDimension, elementType: elementType)
        // A handful of tokens always fits; a failure here is a programming error in a test.
        let pool = try! KVBlockPool(layout: layout, tokens: capacity)
        self.init(pool: pool, sequence: pool.createSequence(), capacity: capacity, owner: nil)
    }

    deinit { pool.release(sequence) }

    public var layers: Int { pool.layout.layers }
    public var kvHeads: Int { pool.layout.kvHeads }
    public var headDimension: Int { pool.layout.headDimension }
    public var elementType: KVCacheType { pool.layout.elementType }

    /// Positions filled so far; the next token goes to position `count`.
    public var count: Int { pool.length(of: sequence) }

    /// Reserves room for `tokens` more positions (see `KVBlockPool.reserve`).
    public func reserve(_ tokens: Int) throws {
        guard count + tokens <= capacity else {
            throw GenerationError.promptTooLong(promptTokens: count + tokens, contextSize: capacity)
        }
        try pool.reserve(sequence, appending: tokens)
    }

    /// Writes `tokens` new positions of `layer` (after `reserve`).
    /// - Parameters:
    ///   - newKeys: (tokens, kvHeads, headDimension)
    ///   - newValues: (tokens, kvHeads, headDimension)
    public func store(layer: Int, newKeys: UnsafePointer<Float>, newValues: UnsafePointer<Float>, tokens: Int) {
        pool.store(sequence, layer: layer, keys: newKeys, values: newValues, tokens: tokens)
    }

    /// Marks `tokens` more positions as filled (reserving them first if needed), after every layer has stored them.
    public func advance(by tokens: Int) {
        precondition(count + tokens <= capacity, "KV cache overflow")
        try! pool.reserve(sequence, appending: tokens)
        pool.commit(sequence, appending: tokens)
    }

    /// Forgets positions from `length` on (for example to reuse a shared conversation prefix). A
    /// model with sliding-window layers cannot go back past what its window has dropped: the cache
    /// is then emptied.
    /// - Returns: the positions kept, `length` or 0.
    @discardableResult
    public func truncate(to length: Int) -> Int { pool.truncate(sequence, to: length) }

    /// Forgets everything.
    public func reset() { truncate(to: 0) }
}
