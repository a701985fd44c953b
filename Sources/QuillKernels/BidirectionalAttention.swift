#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An additive attention bias that depends only on the relative position `key − query` (T5's
/// bucketed relative position bias), expanded per head so the kernel needs no bucket logic.
public struct RelativePositionBias: @unchecked Sendable {
    /// (heads, 2·span + 1): the bias of head h for relative position r is at `h·(2·span+1) + r + span`.
    public let values: UnsafePointer<Float>
    /// Largest |key − query| with its own entry; larger distances use the entry at ±span (T5's buckets
    /// saturate at `relative_attention_max_distance`, so clamping there is exact).
    public let span: Int

    public init(values: UnsafePointer<Float>, span: Int) {
        self.values = values
        self.span = span
    }

    @inline(__always) func row(head: Int) -> UnsafePointer<Float> { values + head * (2 * span + 1) + span }
}

/// Where the keys and values of one sequence of an attention batch are.
public struct AttentionKeys: @unchecked Sendable {
    /// (heads, keyStride, headDimension), or per head `BidirectionalAttention.transposedKeyOffset`'s
    /// layout when `transposed`
    public var keys: UnsafePointer<Float>
    /// (heads, keyStride, headDimension)
    public var values: UnsafePointer<Float>
    /// Valid key positions `0 ..< keyCount`; later ones (padding) are masked out.
    public var keyCount: Int
    /// Position of the first query token: it matters for `causal` and for a relative bias.
    public var firstPosition: Int
    /// Keys stored per head in the layout of `BidirectionalAttention.transposedKeyOffset`, `keyStride` at
    /// least `transposedKeyStride(keyCount)`: only for attention without bias or causal mask.
    public var transposed: Bool

    /// How `keys` and `values` hold their numbers: f32, or IEEE half bits (read only by the
    /// causal or biased path, which widens them per head).
    public var elementType: AttentionElementType

    public init(keys: UnsafePointer<Float>, values: UnsafePointer<Float>, keyCount: Int, firstPosition: Int,
                transposed: Bool = false) {
        self.keys = keys
        self.values = values
        self.keyCount = keyCount
        self.firstPosition = firstPosition
        self.transposed = transposed
        elementType = .f32
    }

    /// Keys and values (heads, keyStride, headDimension) of `elementType`, not transposed.
    public init(keys: UnsafeRawPointer, values: UnsafeRawPointer, keyCount: Int, firstPosition: Int,
                elementType: AttentionElementType) {
        // Half rows are only ever read through `UInt16` pointers rebuilt from these addresses.
        self.keys = UnsafePointer(OpaquePointer(keys))
        self.values = UnsafePointer(OpaquePointer(values))
        self.keyCount = keyCount
        self.firstPosition = firstPosition
        transposed = false
        self.elementType = elementType
    }
}

/// The number format of cached attention keys and values.
public enum AttentionElementType: Sendable {
    case f32
    /// IEEE half precision bits.
    case f16
}

/// Multi-head attention for encoder-decoder models: bidirectional or causal, over a padded key range,
/// with an optional relative position bias — encoder self-attention, decoder self-attention over its
/// cache, and cross-attention over cached encoder keys/values. (`Attention.causal` stays the
/// decoder-only kernel.) Queries and keys have the same number of heads.
public enum BidirectionalAttention {
    /// - Parameters:
    ///   - queries: (sequences, tokens, heads, headDimension)
    ///   - output: (sequences, tokens, heads, headDimension)
    ///   - keyStride: positions between two heads in the key/value buffers
    ///   - causal: token t of a sequence sees keys `0 ... firstPosition + t` only (within `keyCount`).
    ///   - scale: factor on the query–key products (1 for T5, `1/sqrt(hd)` for BART/Marian)
    ///   - keysOf: the keys and values of sequence s
    public static func attend(queries: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              sequences: Int, tokens: Int, heads: Int, headDimension hd: Int, keyStride: Int,
                              causal: Bool, scale: Float, bias: RelativePositionBias?, pool: ThreadPool,
                              keysOf: (Int) -> AttentionKeys) {
        // (Half caches are only those of decoders' self-attention, which is causal.)
        if bias == nil, !causal, FusedAttention.supports(headDimension: hd) {
            return attendFused(queries: queries, output: output, sequences: sequences, tokens: tokens, heads: heads,
                               headDimension: hd, keyStride: keyStride, scale: scale, pool: pool, keysOf: keysOf)
        }
        pool.parallelFor(sequences * tokens * heads) { item in
            let h = item % heads, t = (item / heads) % tokens, s = item / (heads * tokens)
            let source = keysOf(s)
            precondition(!source.transposed, "transposed keys need the fused kernel (no bias, not causal, hd a multiple of 16)")
            let query = source.firstPosition + t
            let length = causal ? min(source.keyCount, query + 1) : source.keyCount
            let q = queries + item * hd
            let out = output + item * hd
            guard length > 0 else {
                out.update(repeating: 0, count: hd)
                return
            }
            let half = source.elementType == .f16
            // Scores, then (half caches) the head's keys and values widened to f32.
            withUnsafeTemporaryAllocation(of: Float.self, capacity: half ? length * (1 + 2 * hd) : length) { scratch in
                let p = scratch.baseAddress!
                var k = source.keys + h * keyStride * hd, v = source.values + h * keyStride * hd
                if half {
                    let halfKeys = UnsafeRawPointer(source.keys).assumingMemoryBound(to: UInt16.self) + h * keyStride * hd
                    let halfValues = UnsafeRawPointer(source.values).assumingMemoryBound(to: UInt16.self) + h * keyStride * hd
                    let wideKeys = p + length, wideValues = p + length + length * hd
                    widenHalves(halfKeys, into: wideKeys, count: length * hd)
                    widenHalves(halfValues, into: wideValues, count: length * hd)
                    k = UnsafePointer(wideKeys)
                    v = UnsafePointer(wideValues)
                }
                // 16 keys at a time, their sums reduced together (a `dot` call per key, with its own
                // horizontal sum, was 5 % of a beam-4 × 16 translation step).
                Attention.scores(q, k, count: length, width: hd, scale: scale, into: p)
                if let bias {
                    let biasRow = bias.row(head: h), span = bias.span
                    for j in 0..<length { p[j] += biasRow[min(max(j - query, -span), span)] }
                }
                if FusedAttention.supports(headDimension: hd) {
                    // Decoding steps (one query over a row's cache): exponentials 16 at a time and the
                    // weighted values summed in registers (`FusedAttention`'s one-row loop: one FMA chain
                    // per output over the keys in order, then ×1/Σ) instead of a load and store per key.
                    let inverse = 1 / exponentiateShifted(p, count: length)
                    for c in stride(from: 0, to: hd, by: 64) {
                        FusedAttention.weightedValuesOneRow(p, v + c, valueStride: hd, keys: length, vectors: min(4, (hd - c) / 16),
                                                            inverse: inverse, into: out + c)
                    }
                    return
                }
                let maximum = largestValue(p, count: length)
                var total: Float = 0
                for j in 0..<length {
                    let e = expf(p[j] - maximum)
                    p[j] = e
                    total += e
                }
                out.update(repeating: 0, count: hd)
                let inverse = 1 / total
                for j in 0..<length { addScaled(v + j * hd, scale: p[j] * inverse, into: out, count: hd) }
            }
        }
    }
}

extension BidirectionalAttention {
    /// Whether keys of this head dimension should be stored transposed (`AttentionKeys.transposed`)
    /// for attention without bias or causal mask: the fused kernel then reads them as they are
    /// (cross-attention over an utterance's keys, every decoding step) instead of transposing them.
    public static func prefersTransposedKeys(headDimension hd: Int) -> Bool { FusedAttention.supports(headDimension: hd) }

    /// Positions per head of transposed keys for `count` keys: `count` rounded up to the kernel's step.
    public static func transposedKeyStride(_ count: Int) -> Int { FusedAttention.paddedKeyCount(count) }

    /// Offset of component `d` of key `j` within one head's transposed keys (blocks of 32 keys, each
    /// (headDimension, 32)).
    public static func transposedKeyOffset(key j: Int, dimension d: Int, headDimension hd: Int) -> Int {
        FusedAttention.transposedOffset(key: j, dimension: d, headDimension: hd)
    }

    /// Without bias or causal mask: `FusedAttention` per head and unit of at most `blockRows` query
    /// rows over one sequence's keys — blocks of a sequence's tokens or, at one query per sequence, runs
    /// of consecutive sequences over the same keys (the beams of one source in cross-attention). Keys
    /// not stored transposed are transposed once per (sequence, head) first.
    static func attendFused(queries: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                            sequences: Int, tokens: Int, heads: Int, headDimension hd: Int, keyStride: Int, scale: Float,
                            pool: ThreadPool, keysOf: (Int) -> AttentionKeys) {
        let sources = (0..<sequences).map(keysOf)
        precondition(sources.allSatisfy { $0.elementType == .f32 }, "half-precision keys need the causal or biased path")
        let blockRows = FusedAttention.blockRows
        var units: [(row: Int, rows: Int, sequence: Int)] = []
        if tokens == 1 {
            var s = 0
            while s < sequences {
                var end = s + 1
                while end < sequences, end - s < blockRows, sources[end].sameKeys(as: sources[s]) { end += 1 }
                units.append((s, end - s, s))
                s = end
            }
        } else {
            for s in 0..<sequences {
                for t0 in stride(from: 0, to: tokens, by: blockRows) { units.append((s * tokens + t0, min(blockRows, tokens - t0), s)) }
            }
        }
        let padded = FusedAttention.paddedKeyCount(sources.map(\.keyCount).max() ?? 0)
        let toTranspose = Array(Set(units.map(\.sequence).filter { !sources[$0].transposed })).sorted()
        let slot = Dictionary(uniqueKeysWithValues: toTranspose.enumerated().map { ($1, $0) })
        let transposed = UnsafeMutablePointer<Float>.allocate(capacity: max(1, toTranspose.count * heads * hd * padded))  // (slots, heads, padded·hd)
        defer { transposed.deallocate() }
        pool.parallelFor(toTranspose.count * heads) { item in
            let s = toTranspose[item / heads], h = item % heads
            FusedAttention.transpose(sources[s].keys + h * keyStride * hd, count: sources[s].keyCount, headDimension: hd,
                                     into: transposed + item * hd * padded)
        }
        let rowStride = heads * hd
        // Head-major, so that a thread's consecutive units read the same head's keys and values.
        pool.parallelFor(heads * units.count) { item in
            let h = item / units.count, unit = units[item % units.count], source = sources[unit.sequence]
            precondition(!source.transposed || keyStride >= FusedAttention.paddedKeyCount(source.keyCount))
            let keys = source.transposed ? source.keys + h * keyStride * hd
                                         : UnsafePointer(transposed + (slot[unit.sequence]! * heads + h) * hd * padded)
            withUnsafeTemporaryAllocation(of: Float.self, capacity: FusedAttention.scratchCount(keys: source.keyCount)) { scratch in
                FusedAttention.attend(rows: unit.rows, queries: queries + unit.row * rowStride + h * hd, queryStride: rowStride,
                                      keysTransposed: keys, values: source.values + h * keyStride * hd, count: source.keyCount,
                                      headDimension: hd, scale: scale, output: output + unit.row * rowStride + h * hd,
                                      outputStride: rowStride, scratch: scratch.baseAddress!)
            }
        }
    }
}

extension AttentionKeys {
    /// Whether both describe the same keys and values.
    func sameKeys(as other: AttentionKeys) -> Bool {
        keys == other.keys && values == other.values && keyCount == other.keyCount && transposed == other.transposed
    }
}

/// The plain twin of `BidirectionalAttention`, in Double, one head at a time.
public enum ReferenceBidirectionalAttention {
    public static func attend(queries: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              sequences: Int, tokens: Int, heads: Int, headDimension hd: Int, keyStride: Int,
                              causal: Bool, scale: Float, bias: RelativePositionBias?,
                              keysOf: (Int) -> AttentionKeys) {
        for s in 0..<sequences {
            let source = keysOf(s)
            for t in 0..<tokens {
                let query = source.firstPosition + t
                let length = causal ? min(source.keyCount, query + 1) : source.keyCount
                for h in 0..<heads {
                    let base = ((s * tokens + t) * heads + h) * hd
                    var scores = [Double](repeating: 0, count: length)
                    for j in 0..<length {
                        var sum = 0.0
                        for i in 0..<hd { sum += Double(queries[base + i]) * Double(source.keys[(h * keyStride + j) * hd + i]) }
                        scores[j] = sum * Double(scale)
                        if let bias {
                            scores[j] += Double(bias.values[h * (2 * bias.span + 1) + bias.span + min(max(j - query, -bias.span), bias.span)])
                        }
                    }
                    let m = scores.max() ?? 0
                    let e = scores.map { Glibc.exp($0 - m) }
                    let total = e.reduce(0, +)
                    for i in 0..<hd {
                        var acc = 0.0
                        for j in 0..<length { acc += e[j] / total * Double(source.values[(h * keyStride + j) * hd + i]) }
                        output[base + i] = length > 0 ? Float(acc) : 0
                    }
                }
            }
        }
    }
}
