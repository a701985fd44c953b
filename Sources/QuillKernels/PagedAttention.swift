#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COpenBLAS.Hints
#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// Where one layer's keys and values live in a paged KV pool: block `b`, KV head `g` holds
/// `blockTokens` consecutive positions of `headDimension` values (f32, or IEEE half bits).
public struct PagedKVView: @unchecked Sendable {
    /// Keys of block 0, head 0 of this layer.
    public let base: UnsafeMutableRawPointer
    /// Bytes between blocks.
    public let blockBytes: Int
    /// Bytes from a block's keys to its values.
    public let valueOffset: Int
    public let blockTokens: Int
    public let kvHeads: Int
    public let headDimension: Int
    /// Values are IEEE half bits rather than f32.
    public let half: Bool

    public init(base: UnsafeMutableRawPointer, blockBytes: Int, valueOffset: Int, blockTokens: Int, kvHeads: Int,
                headDimension: Int, half: Bool) {
        self.base = base
        self.blockBytes = blockBytes
        self.valueOffset = valueOffset
        self.blockTokens = blockTokens
        self.kvHeads = kvHeads
        self.headDimension = headDimension
        self.half = half
    }

    var elementBytes: Int { half ? 2 : 4 }

    /// Keys of KV head `head` in `block`: (blockTokens, headDimension).
    @inline(__always) public func keys(block: Int32, head: Int) -> UnsafeMutableRawPointer {
        base + Int(block) * blockBytes + head * blockTokens * headDimension * elementBytes
    }

    /// Values of KV head `head` in `block`: (blockTokens, headDimension).
    @inline(__always) public func values(block: Int32, head: Int) -> UnsafeMutableRawPointer {
        keys(block: block, head: head) + valueOffset
    }

    /// Stores `count` f32 values at `destination` in this view's element type.
    @inline(__always) public func store(_ source: UnsafePointer<Float>, into destination: UnsafeMutableRawPointer, count: Int) {
        if half {
            narrowToHalves(source, into: destination.assumingMemoryBound(to: UInt16.self), count: count)
        } else {
            destination.assumingMemoryBound(to: Float.self).update(from: source, count: count)
        }
    }

    /// Copies (widening halves) positions `range` of KV head `head` into `keys` and `values`,
    /// each (range.count, headDimension) f32.
    func gather(head: Int, blocks: UnsafePointer<Int32>, range: Range<Int>,
                keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>) {
        let hd = headDimension
        var p = range.lowerBound
        while p < range.upperBound {
            let block = blocks[p / blockTokens], offset = p % blockTokens
            let n = min(blockTokens - offset, range.upperBound - p)
            let row = (p - range.lowerBound) * hd
            copyRows(self.keys(block: block, head: head) + offset * hd * elementBytes, into: keys + row, count: n * hd)
            copyRows(self.values(block: block, head: head) + offset * hd * elementBytes, into: values + row, count: n * hd)
            p += n
        }
    }

    @inline(__always) func copyRows(_ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<Float>, count: Int) {
        if half {
            widenHalves(source.assumingMemoryBound(to: UInt16.self), into: destination, count: count)
        } else {
            destination.update(from: source.assumingMemoryBound(to: Float.self), count: count)
        }
    }
}

/// One sequence's rows in a batched attention call.
public struct AttentionSequence: @unchecked Sendable {
    /// Row (token index in the batch) of the sequence's first new query.
    public var firstRow: Int
    /// New tokens of the sequence in this batch (rows `firstRow ..< firstRow + tokens`).
    public var tokens: Int
    /// Position of its first new token; token t attends to positions up to `firstPosition + t`.
    public var firstPosition: Int
    /// Its block table (`(firstPosition + tokens) / blockTokens` rounded up entries at least).
    public var blocks: UnsafePointer<Int32>

    public init(firstRow: Int, tokens: Int, firstPosition: Int, blocks: UnsafePointer<Int32>) {
        self.firstRow = firstRow
        self.tokens = tokens
        self.firstPosition = firstPosition
        self.blocks = blocks
    }
}

extension Attention {
    /// Causal attention of the new tokens of several sequences against their paged histories
    /// (which already hold the new tokens' keys and values), in one parallel region.
    ///
    /// A sequence's result depends only on its own queries and history, never on the other
    /// sequences of the batch, on how its prompt was split into chunks, or on the thread count
    /// (batch invariance): decoding tokens run the fused per-head loop over their blocks; prompt
    /// chunks run tiles of up to `FusedAttention.blockRows` tokens through `FusedAttention`, whose
    /// rows are computed each on its own (one FMA chain per score and per output value).
    ///
    /// - Parameters:
    ///   - queries: (rows, heads, headDimension), rotated
    ///   - output: (rows, heads, headDimension)
    ///   - window: when set, token at position p attends to positions `p − window + 1 ... p` only
    ///     (sliding-window layers); nil = the whole history.
    public static func paged(queries: UnsafePointer<Float>, kv: PagedKVView, sequences: [AttentionSequence],
                             output: UnsafeMutablePointer<Float>, shape: AttentionShape, window: Int?,
                             pool: ThreadPool) {
        let heads = shape.heads, group = heads / shape.kvHeads
        let tiled = FusedAttention.supports(headDimension: shape.headDimension)
        func isPrompt(_ sequence: AttentionSequence) -> Bool { sequence.tokens > 1 && tiled }
        // Work items: per decoding token and KV head (its group of query heads shares the widened
        // blocks; a group is split when there are too few items to keep every thread busy — each
        // head's arithmetic is the same either way), per prompt tile and KV head (whose query heads
        // share one gathered, transposed copy of the history). Tiles shrink while there are fewer
        // than two per thread: no row's result depends on its tile.
        // Per decoding token, the position ranges its history is computed in (`historyChunks`).
        let chunks = sequences.map { sequence in
            isPrompt(sequence) ? [] : (0 ..< sequence.tokens).map { historyChunks(sequence, token: $0, window: window) }
        }
        let decodeItems = chunks.reduce(0) { total, tokens in total + tokens.reduce(0) { $0 + $1.count } * shape.kvHeads }
        let parts = decodeItems == 0 ? 1 : min(group, max(1, 4 * pool.threadCount / decodeItems))
        let partHeads = (group + parts - 1) / parts
        var tileRows = FusedAttention.blockRows
        func promptItems(_ rows: Int) -> Int {
            sequences.reduce(0) { $0 + (isPrompt($1) ? ($1.tokens + rows - 1) / rows * shape.kvHeads : 0) }
        }
        while tileRows > 8, decodeItems + promptItems(tileRows) < 2 * pool.threadCount { tileRows /= 2 }
        // `range`: the positions a decoding item covers (the whole history unless it is split);
        // `partial`: where a split item leaves its unnormalised sums (−1: straight into `output`).
        var items: [(sequence: Int, first: Int, count: Int, head: Int, range: Range<Int>, partial: Int)] = []
        // Split decoding items, merged after the parallel region: (sequence, token, first head,
        // heads, offset of chunk 0's partial, chunks).
        var merges: [(sequence: Int, token: Int, head: Int, count: Int, partial: Int, chunks: Int)] = []
        var partialFloats = 0
        for (s, sequence) in sequences.enumerated() {
            if isPrompt(sequence) {
                let tiles = (sequence.tokens + tileRows - 1) / tileRows
                for i in 0 ..< tiles {
                    // Later tiles see more keys: 0, n−1, 1, n−2, … balances contiguous shares.
                    let tile = i % 2 == 0 ? i / 2 : tiles - 1 - i / 2
                    let first = tile * tileRows
                    for g in 0 ..< shape.kvHeads {
                        items.append((s, first, min(tileRows, sequence.tokens - first), g, 0 ..< 0, -1))
                    }
                }
            } else {
                for t in 0 ..< sequence.tokens {
                    let ranges = chunks[s][t]
                    for g in 0 ..< shape.kvHeads {
                        for j in stride(from: 0, to: group, by: partHeads) {
                            let count = min(partHeads, group - j)
                            guard ranges.count > 1 else {
                                items.append((s, t, count, g * group + j, ranges[0], -1))
                                continue
                            }
                            merges.append((s, t, g * group + j, count, partialFloats, ranges.count))
                            for range in ranges {
                                items.append((s, t, count, g * group + j, range, partialFloats))
                                partialFloats += count * (shape.headDimension + 2)
                            }
                        }
                    }
                }
            }
        }
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: max(1, partialFloats))
        defer { partials.deallocate() }
        items.withUnsafeBufferPointer { work in
            pool.parallelFor(work.count) { index in
                let item = work[index], sequence = sequences[item.sequence]
                if isPrompt(sequence) {
                    promptTile(queries: queries, kv: kv, sequence: sequence, firstToken: item.first, rows: item.count,
                               kvHead: item.head, output: output, shape: shape, window: window)
                } else {
                    // The next item's first blocks load while this one computes (a short history
                    // is otherwise all latency: its blocks are read as soon as they are requested).
                    if index + 1 < work.count {
                        let next = work[index + 1], nextSequence = sequences[next.sequence]
                        if !isPrompt(nextSequence) {
                            prefetchFirstBlocks(kv: kv, sequence: nextSequence, token: next.first, kvHead: next.head / group,
                                                window: window)
                        }
                    }
                    pagedGroup(queries: queries, kv: kv, sequence: sequence, token: item.first,
                               heads: item.head ..< item.head + item.count, output: output, shape: shape, window: window,
                               range: item.range, partial: item.partial < 0 ? nil : partials + item.partial)
                }
            }
        }
        for m in merges {
            let row = (sequences[m.sequence].firstRow + m.token) * heads + m.head
            mergeChunks(partials + m.partial, chunks: m.chunks, heads: m.count, headDimension: shape.headDimension,
                        into: output + row * shape.headDimension)
        }
    }

    /// Positions a decoding history is cut at: histories longer than `splitPositions` are computed in
    /// chunks that start at multiples of it (absolute positions), so the cut depends on the token's
    /// position and window only — never on the thread count or the batch — and each chunk's keys
    /// and values are read by one thread (two threads splitting a KV head's query heads each read
    /// all of them instead).
    static let splitPositions = 1024

    static func historyChunks(_ sequence: AttentionSequence, token t: Int, window: Int?) -> [Range<Int>] {
        let position = sequence.firstPosition + t, start = windowStart(position, window)
        guard position + 1 - start > splitPositions else { return [start ..< position + 1] }
        var ranges: [Range<Int>] = []
        var lo = start
        while lo <= position {
            let hi = min((lo / splitPositions + 1) * splitPositions, position + 1)
            ranges.append(lo ..< hi)
            lo = hi
        }
        return ranges
    }

    /// Joins the chunks of split items: chunk c of head j left `o_c` (unnormalised, `headDimension`
    /// floats at `j·headDimension`) and `(m_c, s_c)` (its largest score and Σ e^(score − m_c), at
    /// `heads·headDimension + 2j`). out = Σ_c e^(m_c − m)·o_c / Σ_c e^(m_c − m)·s_c, m = max m_c, in
    /// chunk order.
    static func mergeChunks(_ partials: UnsafeMutablePointer<Float>, chunks: Int, heads: Int, headDimension hd: Int,
                            into output: UnsafeMutablePointer<Float>) {
        let stride = heads * (hd + 2)
        for j in 0 ..< heads {
            var m = -Float.infinity
            for c in 0 ..< chunks { m = max(m, partials[c * stride + heads * hd + 2 * j]) }
            let out = output + j * hd
            out.update(repeating: 0, count: hd)
            var sum: Float = 0
            for c in 0 ..< chunks {
                let base = partials + c * stride
                let factor = expf(base[heads * hd + 2 * j] - m)
                sum += factor * base[heads * hd + 2 * j + 1]
                addScaled(base + j * hd, scale: factor, into: out, count: hd)
            }
            scale(out, by: 1 / sum, count: hd)
        }
    }

    /// First position token at `position` attends to.
    @inline(__always) static func windowStart(_ position: Int, _ window: Int?) -> Int {
        guard let window else { return 0 }
        return max(0, position - window + 1)
    }

    /// How many blocks ahead `pagedGroup` requests keys and values (kernel-bench decode-attention,
    /// 2,048 F16 positions swept over 30 layers, 1 thread: 1–4 blocks within noise of each other).
    static let prefetchBlocksAhead = 2

    /// One token, some query heads of one KV head: scores block by block, softmax, then the weighted
    /// sum of values accumulated over the blocks.
    /// - Parameters:
    ///   - range: the positions to attend to (nil: the whole history the token sees)
    ///   - partial: for a chunk of a split history: where to leave the heads' unnormalised sums and
    ///     `(max, Σ e^(s − max))` pairs for `mergeChunks`, instead of the normalised result in `output`.
    static func pagedGroup(queries: UnsafePointer<Float>, kv: PagedKVView, sequence: AttentionSequence, token t: Int,
                           heads: Range<Int>, output: UnsafeMutablePointer<Float>, shape: AttentionShape,
                           window: Int?, range: Range<Int>? = nil, partial: UnsafeMutablePointer<Float>? = nil) {
        let hd = shape.headDimension, bt = kv.blockTokens, g = heads.lowerBound / (shape.heads / shape.kvHeads)
        let position = sequence.firstPosition + t
        let history = range ?? (windowStart(position, window) ..< position + 1)
        let start = history.lowerBound, length = history.count, end = history.upperBound - 1
        let row = (sequence.firstRow + t) * shape.heads
        let count = heads.count, headBytes = bt * hd * kv.elementBytes
        withUnsafeTemporaryAllocation(of: Float.self, capacity: count * (length + 1) + 2 * bt * hd) { buffer in
            // Scores, then softmax weights: (count, length); then each head's 1 / Σ exp.
            let weights = buffer.baseAddress!, inverses = weights + count * length, widened = inverses + count
            var p = start
            prefetchFirstBlocks(kv: kv, sequence: sequence, token: t, kvHead: g, window: window)
            while p <= end {
                let block = sequence.blocks[p / bt], offset = p % bt, n = min(bt - offset, end + 1 - p)
                // Blocks are scattered, too short for the hardware prefetchers to find: request the
                // next-but-one block's keys and this block's values (read by the second loop) now —
                // on the F16 path a few lines at a time while this block's keys are read (one burst
                // per block left them still missing when read).
                let ahead = p / bt + prefetchBlocksAhead
                let aheadKeys = ahead * bt <= end ? UnsafeRawPointer(kv.keys(block: sequence.blocks[ahead], head: g)) : nil
                let theseValues = UnsafeRawPointer(kv.values(block: block, head: g) + offset * hd * kv.elementBytes)
                #if canImport(COpenBLAS.AVX512VNNI)
                if kv.half && n == bt && bt % 16 == 0 && hd % 16 == 0 {
                    // Scores straight from the F16 rows (converted in registers; the same floats and
                    // FMAs as through the widened copy); the first head's pass paces the requests.
                    let half = UnsafeRawPointer(kv.keys(block: block, head: g))
                    for j in 0 ..< count {
                        let q = UnsafeRawPointer(queries + (row + heads.lowerBound + j) * hd)
                        for k in stride(from: 0, to: n, by: 16) {
                            scoresSixteen(q, halfKeys: half + k * 2 * hd, rowBytes: 2 * hd, scale: shape.scale,
                                          into: UnsafeMutableRawPointer(weights + j * length + (p - start) + k),
                                          prefetching: j == 0 ? aheadKeys.map { $0 + k * 2 * hd } : nil,
                                          j == 0 ? theseValues + k * 2 * hd : nil)
                        }
                    }
                    p += n
                    continue
                }
                #endif
                let keys: UnsafePointer<Float>
                if kv.half && n == bt {
                    let head = kv.keys(block: block, head: g).assumingMemoryBound(to: UInt16.self)
                    widenHalves(head, into: widened, count: n * hd, prefetching: aheadKeys, theseValues)
                    keys = UnsafePointer(widened)
                } else {
                    if let aheadKeys { prefetchStep(aheadKeys, bytes: headBytes) }
                    prefetchStep(theseValues, bytes: n * hd * kv.elementBytes)
                    keys = rows(kv.keys(block: block, head: g), offset: offset, count: n, kv: kv, scratch: widened)
                }
                for j in 0 ..< count {
                    let q = queries + (row + heads.lowerBound + j) * hd
                    scores(q, keys, count: n, width: hd, scale: shape.scale, into: weights + j * length + (p - start))
                }
                p += n
            }
            // Each head's sums go to `output` (normalised at the end) or, for a chunk, to `partial`.
            let sums = partial ?? output + (row + heads.lowerBound) * hd  // (count, hd)
            for j in 0 ..< count {
                let maximum = largestValue(weights + j * length, count: length)
                let total = exponentiateShifted(weights + j * length, count: length, maximum: maximum)
                if let partial {
                    partial[count * hd + 2 * j] = maximum
                    partial[count * hd + 2 * j + 1] = total
                } else {
                    inverses[j] = 1 / total
                }
                (sums + j * hd).update(repeating: 0, count: hd)
            }
            p = start
            while p <= end {
                let block = sequence.blocks[p / bt], offset = p % bt, n = min(bt - offset, end + 1 - p)
                let values: UnsafePointer<Float>
                let ahead = p / bt + prefetchBlocksAhead
                let aheadValues = ahead * bt <= end ? UnsafeRawPointer(kv.values(block: sequence.blocks[ahead], head: g)) : nil
                if MatVec.hasAVX512Kernels && kv.half && n == bt && hd % 64 == 0 && count >= 2 && count <= 4 {
                    // All the heads in one pass straight from the F16 rows (each row converted once,
                    // in registers; the same floats and FMAs as through the widened copy).
                    let w = weights + (p - start), o = sums
                    let half = UnsafeRawPointer(kv.values(block: block, head: g))
                    switch count {
                    case 4: accumulateWeightedSums(w, weightStride: length, heads: 4, halfRows: half, count: n, width: hd, into: o,
                                                   prefetching: aheadValues)
                    case 3: accumulateWeightedSums(w, weightStride: length, heads: 3, halfRows: half, count: n, width: hd, into: o,
                                                   prefetching: aheadValues)
                    default: accumulateWeightedSums(w, weightStride: length, heads: 2, halfRows: half, count: n, width: hd, into: o,
                                                    prefetching: aheadValues)
                    }
                    p += n
                    continue
                }
                if kv.half && n == bt, let aheadValues {
                    // The key pass requested these values, but a long history pushes them out of L1
                    // and L2 again before this pass: request them once more, paced, two blocks ahead.
                    let head = kv.values(block: block, head: g).assumingMemoryBound(to: UInt16.self)
                    widenHalves(head, into: widened, count: n * hd, prefetching: aheadValues)
                    values = UnsafePointer(widened)
                } else {
                    values = rows(kv.values(block: block, head: g), offset: offset, count: n, kv: kv, scratch: widened)
                }
                var j = 0
                while j < count {
                    // Up to four heads share each load of a value row.
                    let m = hd % 64 == 0 ? min(4, count - j) : 1
                    let w = weights + j * length + (p - start), o = sums + j * hd
                    switch m {
                    case 4: accumulateWeightedSums(w, weightStride: length, heads: 4, values, count: n, width: hd, into: o)
                    case 3: accumulateWeightedSums(w, weightStride: length, heads: 3, values, count: n, width: hd, into: o)
                    case 2: accumulateWeightedSums(w, weightStride: length, heads: 2, values, count: n, width: hd, into: o)
                    default: accumulateWeightedSum(w, values, count: n, width: hd, into: o)
                    }
                    j += m
                }
                p += n
            }
            if partial == nil {
                for j in 0 ..< count { scale(sums + j * hd, by: inverses[j], count: hd) }
            }
        }
    }

    /// Asks for the keys of the first two blocks that token `t` of `sequence` attends to in KV head
    /// `kvHead` (`pagedGroup` asks for later blocks as it goes).
    @inline(__always)
    static func prefetchFirstBlocks(kv: PagedKVView, sequence: AttentionSequence, token t: Int, kvHead: Int, window: Int?) {
        let bt = kv.blockTokens, position = sequence.firstPosition + t
        let first = windowStart(position, window) / bt
        for b in first ..< min(first + 2, position / bt + 1) {
            prefetchStep(kv.keys(block: sequence.blocks[b], head: kvHead), bytes: bt * kv.headDimension * kv.elementBytes)
        }
    }

    /// f32 rows `offset ..< offset + count` of a block's head (widened into `scratch` when half).
    @inline(__always)
    static func rows(_ head: UnsafeMutableRawPointer, offset: Int, count: Int, kv: PagedKVView,
                     scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        let hd = kv.headDimension
        if !kv.half { return UnsafePointer(head.assumingMemoryBound(to: Float.self) + offset * hd) }
        widenHalves(head.assumingMemoryBound(to: UInt16.self) + offset * hd, into: scratch, count: count * hd)
        return UnsafePointer(scratch)
    }

    /// `out += Σ_p weights[p] · rows[p]`, columns accumulated in registers over the rows.
    @inline(__always)
    static func accumulateWeightedSum(_ weights: UnsafePointer<Float>, _ rows: UnsafePointer<Float>, count: Int,
                                      width: Int, into out: UnsafeMutablePointer<Float>) {
        let raw = UnsafeRawPointer(rows), ro = UnsafeMutableRawPointer(out)
        var c = 0
        while c + 64 <= width {
            var a0 = ro.loadUnaligned(fromByteOffset: 4 * c, as: SIMD16<Float>.self)
            var a1 = ro.loadUnaligned(fromByteOffset: 4 * c + 64, as: SIMD16<Float>.self)
            var a2 = ro.loadUnaligned(fromByteOffset: 4 * c + 128, as: SIMD16<Float>.self)
            var a3 = ro.loadUnaligned(fromByteOffset: 4 * c + 192, as: SIMD16<Float>.self)
            for p in 0 ..< count {
                let w = SIMD16<Float>(repeating: weights[p]), o = 4 * (p * width + c)
                a0.addProduct(w, raw.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
                a1.addProduct(w, raw.loadUnaligned(fromByteOffset: o + 64, as: SIMD16<Float>.self))
                a2.addProduct(w, raw.loadUnaligned(fromByteOffset: o + 128, as: SIMD16<Float>.self))
                a3.addProduct(w, raw.loadUnaligned(fromByteOffset: o + 192, as: SIMD16<Float>.self))
            }
            ro.storeBytes(of: a0, toByteOffset: 4 * c, as: SIMD16<Float>.self)
            ro.storeBytes(of: a1, toByteOffset: 4 * c + 64, as: SIMD16<Float>.self)
            ro.storeBytes(of: a2, toByteOffset: 4 * c + 128, as: SIMD16<Float>.self)
            ro.storeBytes(of: a3, toByteOffset: 4 * c + 192, as: SIMD16<Float>.self)
            c += 64
        }
        while c + 16 <= width {
            var a = ro.loadUnaligned(fromByteOffset: 4 * c, as: SIMD16<Float>.self)
            for p in 0 ..< count {
                a.addProduct(SIMD16(repeating: weights[p]),
                             raw.loadUnaligned(fromByteOffset: 4 * (p * width + c), as: SIMD16<Float>.self))
            }
            ro.storeBytes(of: a, toByteOffset: 4 * c, as: SIMD16<Float>.self)
            c += 16
        }
        while c < width {
            var a = out[c]
            for p in 0 ..< count { a += weights[p] * rows[p * width + c] }
            out[c] = a
            c += 1
        }
    }

    /// `accumulateWeightedSum` for `heads` (2–4) query heads at once, over the same value rows:
    /// `out_h += Σ_p weights_h[p] · rows[p]` with head h's weights at `weights + h·weightStride` and
    /// its output at `out + h·width`. Each value vector is loaded once for all the heads; every output
    /// value's FMA chain over the rows is the one-head loop's, so the sums are bitwise the same.
    /// `width` is a multiple of 64.
    @inline(__always)
    static func accumulateWeightedSums(_ weights: UnsafePointer<Float>, weightStride: Int, heads: Int,
                                       _ rows: UnsafePointer<Float>, count: Int, width: Int,
                                       into out: UnsafeMutablePointer<Float>) {
        accumulateWeightedSums(weights, weightStride: weightStride, heads: heads, rows: UnsafeRawPointer(rows), half: false,
                               count: count, width: width, into: out, prefetching: nil)
    }

    /// The same over F16 rows (IEEE half bits), each value vector widened in registers; with
    /// `prefetching`, requests that many rows' bytes from there at the pace they are read here.
    @inline(__always)
    static func accumulateWeightedSums(_ weights: UnsafePointer<Float>, weightStride: Int, heads: Int,
                                       halfRows: UnsafeRawPointer, count: Int, width: Int,
                                       into out: UnsafeMutablePointer<Float>, prefetching: UnsafeRawPointer?) {
        accumulateWeightedSums(weights, weightStride: weightStride, heads: heads, rows: halfRows, half: true,
                               count: count, width: width, into: out, prefetching: prefetching)
    }

    @inline(__always)
    static func accumulateWeightedSums(_ weights: UnsafePointer<Float>, weightStride: Int, heads: Int,
                                       rows raw: UnsafeRawPointer, half: Bool, count: Int, width: Int,
                                       into out: UnsafeMutablePointer<Float>, prefetching: UnsafeRawPointer?) {
        let ro = UnsafeMutableRawPointer(out), rowBytes = 4 * width, sourceRowBytes = half ? 2 * width : rowBytes
        for c in stride(from: 0, to: 4 * width, by: 256) {
            @inline(__always) func load(_ h: Int, _ v: Int) -> SIMD16<Float> {
                h < heads ? ro.loadUnaligned(fromByteOffset: h * rowBytes + c + 64 * v, as: SIMD16<Float>.self) : SIMD16()
            }
            var a00 = load(0, 0), a01 = load(0, 1), a02 = load(0, 2), a03 = load(0, 3)
            var a10 = load(1, 0), a11 = load(1, 1), a12 = load(1, 2), a13 = load(1, 3)
            var a20 = load(2, 0), a21 = load(2, 1), a22 = load(2, 2), a23 = load(2, 3)
            var a30 = load(3, 0), a31 = load(3, 1), a32 = load(3, 2), a33 = load(3, 3)
            var v = raw + (half ? c / 2 : c)
            for p in 0 ..< count {
                @inline(__always) func load(_ i: Int) -> SIMD16<Float> {
                    #if canImport(COpenBLAS.AVX512VNNI)
                    if half {
                        return unsafeBitCast(_mm512_cvtph_ps(v.loadUnaligned(fromByteOffset: 32 * i, as: __m256i.self)),
                                             to: SIMD16<Float>.self)
                    }
                    #endif
                    return v.loadUnaligned(fromByteOffset: 64 * i, as: SIMD16<Float>.self)
                }
                if let prefetching, c == 0 {
                    prefetchStep(prefetching + p * sourceRowBytes, bytes: sourceRowBytes)
                }
                let v0 = load(0), v1 = load(1), v2 = load(2), v3 = load(3)
                var w = SIMD16<Float>(repeating: weights[p])
                a00.addProduct(w, v0); a01.addProduct(w, v1); a02.addProduct(w, v2); a03.addProduct(w, v3)
                w = SIMD16<Float>(repeating: weights[weightStride + p])
                a10.addProduct(w, v0); a11.addProduct(w, v1); a12.addProduct(w, v2); a13.addProduct(w, v3)
                if heads > 2 {
                    w = SIMD16<Float>(repeating: weights[2 * weightStride + p])
                    a20.addProduct(w, v0); a21.addProduct(w, v1); a22.addProduct(w, v2); a23.addProduct(w, v3)
                }
                if heads > 3 {
                    w = SIMD16<Float>(repeating: weights[3 * weightStride + p])
                    a30.addProduct(w, v0); a31.addProduct(w, v1); a32.addProduct(w, v2); a33.addProduct(w, v3)
                }
                v += sourceRowBytes
            }
            @inline(__always) func store(_ h: Int, _ a0: SIMD16<Float>, _ a1: SIMD16<Float>, _ a2: SIMD16<Float>, _ a3: SIMD16<Float>) {
                guard h < heads else { return }
                let o = h * rowBytes + c
                ro.storeBytes(of: a0, toByteOffset: o, as: SIMD16<Float>.self)
                ro.storeBytes(of: a1, toByteOffset: o + 64, as: SIMD16<Float>.self)
                ro.storeBytes(of: a2, toByteOffset: o + 128, as: SIMD16<Float>.self)
                ro.storeBytes(of: a3, toByteOffset: o + 192, as: SIMD16<Float>.self)
            }
            store(0, a00, a01, a02, a03); store(1, a10, a11, a12, a13); store(2, a20, a21, a22, a23); store(3, a30, a31, a32, a33)
        }
    }

    /// `rows` consecutive prompt tokens from `firstToken` of a sequence and the query heads of KV head
    /// `g`: the history they see gathered to f32 and its keys transposed once, then `FusedAttention`
    /// per query head, each token over its own causal range (and window).
    static func promptTile(queries: UnsafePointer<Float>, kv: PagedKVView, sequence: AttentionSequence,
                           firstToken t0: Int, rows: Int, kvHead g: Int, output: UnsafeMutablePointer<Float>,
                           shape: AttentionShape, window: Int?) {
        let hd = shape.headDimension, heads = shape.heads, group = heads / shape.kvHeads
        let firstQuery = sequence.firstPosition + t0, lastQuery = firstQuery + rows - 1
        let lo = windowStart(firstQuery, window), count = lastQuery + 1 - lo
        let padded = FusedAttention.paddedKeyCount(count)
        let scratchCount = FusedAttention.scratchCount(keys: count)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * count * hd + padded * hd + scratchCount) { buffer in
            let keys = buffer.baseAddress!, values = keys + count * hd      // (count, hd) each
            let transposed = values + count * hd                            // FusedAttention's layout, padded keys
            let scratch = transposed + padded * hd
            kv.gather(head: g, blocks: sequence.blocks, range: lo ..< lastQuery + 1, keys: keys, values: values)
            FusedAttention.transpose(keys, count: count, headDimension: hd, into: transposed)
            // Token r of the tile sees positions up to firstQuery + r: keys up to index firstQuery + r − lo.
            let visible = FusedAttention.VisibleKeys(firstEnd: firstQuery + 1 - lo, window: window)
            let rowStride = heads * hd, first = (sequence.firstRow + t0) * rowStride
            for h in g * group ..< (g + 1) * group {
                FusedAttention.attend(rows: rows, queries: queries + first + h * hd, queryStride: rowStride,
                                      keysTransposed: transposed, values: values, count: count, headDimension: hd,
                                      scale: shape.scale, output: output + first + h * hd, outputStride: rowStride,
                                      scratch: scratch, visible: visible)
            }
        }
    }
}

/// Narrows `count` f32 values to IEEE half bits (round to nearest even).
@inline(__always)
public func narrowToHalves(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<UInt16>, count: Int) {
    for i in 0 ..< count {
        #if arch(arm64) || (arch(x86_64) && !os(macOS))
        destination[i] = Float16(source[i]).bitPattern
        #else
        destination[i] = floatToHalf(source[i])
        #endif
    }
}

/// Prefetches `bytes` (rounded up to whole lines) from `p` — a hint, which never faults (addresses
/// past a matrix or a block table's last block are fine); `bytes` is a constant per kernel so the
/// loop unrolls. Shared by the mat-vec kernels and paged attention.
@inline(__always) func prefetchStep(_ p: UnsafeRawPointer, bytes: Int, streaming: Bool = false) {
    var o = 0
    if streaming {
        while o < bytes { quill_prefetch_nta(p + o); o += 64 }
    } else {
        while o < bytes { quill_prefetch(p + o); o += 64 }
    }
}
