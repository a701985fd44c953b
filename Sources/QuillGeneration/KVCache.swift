/// A token id. 32 bits are enough for every vocabulary and halve the memory of long histories.
public typealias TokenID = Int32

/// Keys and values of every attention layer for the positions processed so far.
///
/// Memory layout per layer: keys (kvHeads, capacity, headDimension), then values of the same shape,
/// so one attention head reads its history sequentially.
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvHeads: Int
    public let headDimension: Int
    /// The most positions the cache can hold (the context size).
    public let capacity: Int
    /// Positions filled so far; the next token goes to position `count`.
    public private(set) var count: Int = 0

    /// (layers, 2, kvHeads, capacity, headDimension)
    private let storage: UnsafeMutablePointer<Float>
    private let layerStride: Int

    public init(layers: Int, kvHeads: Int, headDimension: Int, capacity: Int) {
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDimension = headDimension
        self.capacity = capacity
        layerStride = 2 * kvHeads * capacity * headDimension
        storage = .allocate(capacity: layers * layerStride)
        // Pages are committed lazily as positions are written, so a large context costs no memory up front.
    }

    deinit { storage.deallocate() }

    /// Keys of `layer`: (kvHeads, capacity, headDimension).
    public func keys(layer: Int) -> UnsafeMutablePointer<Float> { storage + layer * layerStride }

    /// Values of `layer`: (kvHeads, capacity, headDimension).
    public func values(layer: Int) -> UnsafeMutablePointer<Float> {
        storage + layer * layerStride + layerStride / 2
    }

    /// Copies the keys and values of `tokens` new positions, starting at `count`, into `layer`.
    /// - Parameters:
    ///   - newKeys: (tokens, kvHeads, headDimension)
    ///   - newValues: (tokens, kvHeads, headDimension)
    public func store(layer: Int, newKeys: UnsafePointer<Float>, newValues: UnsafePointer<Float>, tokens: Int) {
        precondition(count + tokens <= capacity, "KV cache overflow")
        let k = keys(layer: layer), v = values(layer: layer)
        let rowWidth = kvHeads * headDimension
        for t in 0..<tokens {
            for h in 0..<kvHeads {
                let destination = (h * capacity + count + t) * headDimension
                let source = t * rowWidth + h * headDimension
                (k + destination).update(from: newKeys + source, count: headDimension)
                (v + destination).update(from: newValues + source, count: headDimension)
            }
        }
    }

    /// Marks `tokens` more positions as filled, after every layer has stored them.
    public func advance(by tokens: Int) {
        precondition(count + tokens <= capacity, "KV cache overflow")
        count += tokens
    }

    /// Forgets positions from `length` on (for example to reuse a shared conversation prefix).
    public func truncate(to length: Int) {
        precondition(length >= 0 && length <= count)
        count = length
    }

    /// Forgets everything.
    public func reset() { count = 0 }
}
