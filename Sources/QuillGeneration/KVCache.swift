import QuillKernels

/// A token id. 32 bits are enough for every vocabulary and halve the memory of long histories.
public typealias TokenID = Int32

/// Element type of a `KVCache`.
public enum KVCacheType: String, Sendable, CaseIterable {
    /// 4 bytes per value: exact.
    case f32
    /// IEEE half precision: half the memory; keys and values rounded to 11 significant bits
    /// (as llama.cpp's default cache).
    case f16
}

/// Keys and values of every attention layer for the positions processed so far.
///
/// Memory layout per layer: keys (kvHeads, capacity, headDimension), then values of the same shape,
/// so one attention head reads its history sequentially. Elements are `Float` or, with
/// `elementType: .f16`, the bits of IEEE half floats (`UInt16`).
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvHeads: Int
    public let headDimension: Int
    /// The most positions the cache can hold (the context size).
    public let capacity: Int
    public let elementType: KVCacheType
    /// Positions filled so far; the next token goes to position `count`.
    public private(set) var count: Int = 0

    /// (layers, 2, kvHeads, capacity, headDimension) elements of `elementType`
    private let storage: UnsafeMutableRawPointer
    /// Bytes per layer.
    private let layerStride: Int

    public init(layers: Int, kvHeads: Int, headDimension: Int, capacity: Int, elementType: KVCacheType = .f32) {
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDimension = headDimension
        self.capacity = capacity
        self.elementType = elementType
        layerStride = 2 * kvHeads * capacity * headDimension * (elementType == .f32 ? 4 : 2)
        storage = .allocate(byteCount: max(layers * layerStride, 1), alignment: 64)
        // Pages are committed lazily as positions are written, so a large context costs no memory up front.
    }

    deinit { storage.deallocate() }

    /// Keys of `layer`: (kvHeads, capacity, headDimension). Only for an `.f32` cache.
    public func keys(layer: Int) -> UnsafeMutablePointer<Float> {
        precondition(elementType == .f32, "keys(layer:) reads an f32 cache; use keyBits(layer:)")
        return (storage + layer * layerStride).assumingMemoryBound(to: Float.self)
    }

    /// Values of `layer`: (kvHeads, capacity, headDimension). Only for an `.f32` cache.
    public func values(layer: Int) -> UnsafeMutablePointer<Float> {
        precondition(elementType == .f32, "values(layer:) reads an f32 cache; use valueBits(layer:)")
        return (storage + layer * layerStride + layerStride / 2).assumingMemoryBound(to: Float.self)
    }

    /// Half-float bits of the keys of `layer`: (kvHeads, capacity, headDimension). Only for an `.f16` cache.
    public func keyBits(layer: Int) -> UnsafeMutablePointer<UInt16> {
        precondition(elementType == .f16, "keyBits(layer:) reads an f16 cache")
        return (storage + layer * layerStride).assumingMemoryBound(to: UInt16.self)
    }

    /// Half-float bits of the values of `layer`. Only for an `.f16` cache.
    public func valueBits(layer: Int) -> UnsafeMutablePointer<UInt16> {
        precondition(elementType == .f16, "valueBits(layer:) reads an f16 cache")
        return (storage + layer * layerStride + layerStride / 2).assumingMemoryBound(to: UInt16.self)
    }

    /// Copies the keys and values of `tokens` new positions, starting at `count`, into `layer`
    /// (rounding them to half precision in an `.f16` cache).
    /// - Parameters:
    ///   - newKeys: (tokens, kvHeads, headDimension)
    ///   - newValues: (tokens, kvHeads, headDimension)
    public func store(layer: Int, newKeys: UnsafePointer<Float>, newValues: UnsafePointer<Float>, tokens: Int) {
        precondition(count + tokens <= capacity, "KV cache overflow")
        let rowWidth = kvHeads * headDimension
        for t in 0..<tokens {
            for h in 0..<kvHeads {
                let destination = (h * capacity + count + t) * headDimension
                let source = t * rowWidth + h * headDimension
                switch elementType {
                case .f32:
                    (keys(layer: layer) + destination).update(from: newKeys + source, count: headDimension)
                    (values(layer: layer) + destination).update(from: newValues + source, count: headDimension)
                case .f16:
                    let k = keyBits(layer: layer) + destination, v = valueBits(layer: layer) + destination
                    for i in 0..<headDimension {
                        k[i] = KVCache.halfBits(newKeys[source + i])
                        v[i] = KVCache.halfBits(newValues[source + i])
                    }
                }
            }
        }
    }

    @inline(__always) static func halfBits(_ x: Float) -> UInt16 {
        #if arch(arm64) || (arch(x86_64) && !os(macOS))  // Float16 is unavailable on Intel macOS
        return Float16(x).bitPattern
        #else
        return floatToHalf(x)
        #endif
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
