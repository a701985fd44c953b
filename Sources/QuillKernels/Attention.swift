import Foundation

/// The shape of one attention layer and its key/value cache.
public struct AttentionShape: Sendable {
    /// Query heads.
    public var heads: Int
    /// Key/value heads; each serves `heads / kvHeads` query heads (grouped-query attention).
    public var kvHeads: Int
    public var headDimension: Int
    /// Positions the cache of one layer can hold; the stride between KV heads is `capacity · headDimension`.
    public var capacity: Int
    /// Factor applied to the query–key dot products (usually `1 / sqrt(headDimension)`).
    public var scale: Float

    public init(heads: Int, kvHeads: Int, headDimension: Int, capacity: Int, scale: Float) {
        precondition(heads % kvHeads == 0, "query heads must be a multiple of KV heads")
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDimension = headDimension
        self.capacity = capacity
        self.scale = scale
    }
}

/// Causal self-attention of a batch of new tokens against a key/value cache that already holds them.
///
/// The cache of a layer is laid out (kvHeads, capacity, headDimension), so one query head reads its
/// KV head's keys and values sequentially; query heads of a group share them without copies.
public enum Attention {
    /// - Parameters:
    ///   - queries: (tokens, heads, headDimension), already rotated
    ///   - keys: (kvHeads, capacity, headDimension), positions `0 ..< firstPosition + tokens` filled
    ///   - values: (kvHeads, capacity, headDimension)
    ///   - output: (tokens, heads, headDimension)
    ///   - firstPosition: position of the first new token; token t attends to positions `0 ... firstPosition + t`.
    public static func causal(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                              values: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              shape: AttentionShape, tokens: Int, firstPosition: Int, pool: ThreadPool) {
        let hd = shape.headDimension
        let group = shape.heads / shape.kvHeads
        let headStride = shape.capacity * hd
        pool.parallelFor(tokens * shape.heads) { item in
            let t = item / shape.heads, h = item % shape.heads
            let length = firstPosition + t + 1
            let q = queries + (t * shape.heads + h) * hd
            let k = keys + (h / group) * headStride
            let v = values + (h / group) * headStride
            let out = output + (t * shape.heads + h) * hd
            withUnsafeTemporaryAllocation(of: Float.self, capacity: length) { scores in
                let s = scores.baseAddress!
                var maximum = -Float.infinity
                for p in 0..<length {
                    let score = dot(q, k + p * hd, count: hd) * shape.scale
                    s[p] = score
                    maximum = max(maximum, score)
                }
                var total: Float = 0
                for p in 0..<length {
                    let e = expf(s[p] - maximum)
                    s[p] = e
                    total += e
                }
                out.update(repeating: 0, count: hd)
                let inverse = 1 / total
                for p in 0..<length {
                    addScaled(v + p * hd, scale: s[p] * inverse, into: out, count: hd)
                }
            }
        }
    }
}

/// The plain twin of `Attention.causal`, in Double, one head at a time.
public enum ReferenceAttention {
    public static func causal(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                              values: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              shape: AttentionShape, tokens: Int, firstPosition: Int) {
        let hd = shape.headDimension
        let group = shape.heads / shape.kvHeads
        for t in 0..<tokens {
            for h in 0..<shape.heads {
                let length = firstPosition + t + 1
                let kvBase = (h / group) * shape.capacity * hd
                var scores = [Double](repeating: 0, count: length)
                for p in 0..<length {
                    var s = 0.0
                    for i in 0..<hd {
                        s += Double(queries[(t * shape.heads + h) * hd + i]) * Double(keys[kvBase + p * hd + i])
                    }
                    scores[p] = s * Double(shape.scale)
                }
                let m = scores.max()!
                let e = scores.map { Foundation.exp($0 - m) }
                let total = e.reduce(0, +)
                for i in 0..<hd {
                    var acc = 0.0
                    for p in 0..<length { acc += e[p] / total * Double(values[kvBase + p * hd + i]) }
                    output[(t * shape.heads + h) * hd + i] = Float(acc)
                }
            }
        }
    }
}
