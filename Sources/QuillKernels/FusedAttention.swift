/// Bidirectional attention without a bias for up to `blockRows` queries of one head, fused: the
/// scores come from one register-blocked pass over the head's transposed keys (each key's score is
/// one lane, so no horizontal sums), stay in a small buffer for the softmax, and a second
/// register-blocked pass sums the values weighted by them. Nothing is packed per call, which is
/// what made two sgemm calls per block of queries slow on short reductions (Whisper's encoder:
/// K = 64 for the scores, N = 64 for the values; 82 GFLOP/s against 171 peak, a third of the encoder).
///
/// Each query row's arithmetic is fixed — its scores are one FMA chain over the head dimension, its
/// output one FMA chain over the keys in order, then ×1/Σ — so a row's result does not depend on the
/// other rows of its block, on the blocking, or on the thread count.
enum FusedAttention {
    /// Queries per call: four groups of eight rows (8 rows × 32 keys of scores is 16 accumulator
    /// registers), which share each block of keys while it is in L1.
    static let blockRows = 32

    /// Head dimensions the kernel handles: whole 16-lane vectors.
    static func supports(headDimension hd: Int) -> Bool { hd > 0 && hd % 16 == 0 }

    /// Keys per block of the transposed layout, and the eight-row score kernel's step.
    static let keyBlock = 32

    /// Key positions per head in the transposed layout: `count` rounded up to whole key blocks.
    static func paddedKeyCount(_ count: Int) -> Int { (count + keyBlock - 1) / keyBlock * keyBlock }

    /// Where component `d` of key `j` is in one head's transposed keys: blocks of 32 keys, each
    /// (hd, 32), so the score kernels read every block front to back (a plain (hd, count) layout
    /// strides 6 KB per step at 1500 keys, past what the hardware prefetchers follow).
    @inline(__always)
    static func transposedOffset(key j: Int, dimension d: Int, headDimension hd: Int) -> Int {
        (j / keyBlock * hd + d) * keyBlock + j % keyBlock
    }

    /// One head's keys from (count, hd) to the transposed layout, positions past `count` up to
    /// `paddedKeyCount(count)` zero.
    static func transpose(_ keys: UnsafePointer<Float>, count: Int, headDimension hd: Int,
                          into transposed: UnsafeMutablePointer<Float>) {
        let padded = paddedKeyCount(count)
        for j in 0..<padded {
            for d in 0..<hd { transposed[transposedOffset(key: j, dimension: d, headDimension: hd)] = j < count ? keys[j * hd + d] : 0 }
        }
    }

    /// Floats of scratch `attend` needs for `count` keys.
    static func scratchCount(keys count: Int) -> Int { blockRows * paddedKeyCount(count) }

    /// The keys each query row of an `attend` call sees: all of them (bidirectional), or consecutive
    /// causal positions — row r sees one key more than row r − 1 — optionally within a sliding window.
    struct VisibleKeys {
        /// Keys row 0 sees end here; each later row's end one further, at most at `count`.
        var firstEnd: Int
        /// Each row sees at most this many keys, the last of its range; nil: from key 0.
        var window: Int?

        /// Every row sees all `count` keys.
        static let all = VisibleKeys(firstEnd: .max, window: nil)

        /// Keys row r sees, of `count`.
        @inline(__always) func range(row r: Int, count: Int) -> Range<Int> {
            let end = firstEnd >= count ? count : min(count, firstEnd + r)
            return (window.map { max(0, end - $0) } ?? 0) ..< end
        }
    }

    /// `output_r = softmax(scale · q_r · Kᵀ) · V` for rows `0 ..< rows` (at most `blockRows`), each row
    /// over the keys `visible` gives it (a row's keys outside its range weigh exactly 0, and a sum that
    /// starts from +0 is unchanged by adding +0 or −0 terms, so a row's result is the same whatever
    /// other rows share its block).
    /// - Parameters:
    ///   - queries: row r at `queries + r·queryStride`, `hd` values
    ///   - keysTransposed: one head's keys in the transposed layout (`transposedOffset`), at least
    ///     `paddedKeyCount(count)` positions (those past `count` are computed and ignored)
    ///   - values: (count, hd)
    ///   - output: row r at `output + r·outputStride`
    ///   - scratch: `scratchCount(keys: count)` floats
    static func attend(rows: Int, queries: UnsafePointer<Float>, queryStride: Int,
                       keysTransposed: UnsafePointer<Float>, values: UnsafePointer<Float>, count: Int,
                       headDimension hd: Int, scale: Float,
                       output: UnsafeMutablePointer<Float>, outputStride: Int, scratch: UnsafeMutablePointer<Float>,
                       visible: VisibleKeys = .all) {
        precondition(rows >= 1 && rows <= blockRows && supports(headDimension: hd))
        guard count > 0 else {
            for r in 0..<rows { (output + r * outputStride).update(repeating: 0, count: hd) }
            return
        }
        if rows == 1 {
            let keys = visible.range(row: 0, count: count)
            scoresOneRow(queries, keysTransposed, blocks: paddedKeyCount(keys.upperBound) / keyBlock, hd: hd, scale: scale,
                         into: scratch)
            let inverse = 1 / exponentiateShifted(scratch + keys.lowerBound, count: keys.count)
            for c in stride(from: 0, to: hd, by: 64) {
                weightedValuesOneRow(scratch + keys.lowerBound, values + keys.lowerBound * hd + c, valueStride: hd,
                                     keys: keys.count, vectors: min(4, (hd - c) / 16), inverse: inverse, into: output + c)
            }
            return
        }
        // The last row sees the furthest key; a group of eight rows needs the blocks up to its last row's.
        let padded = paddedKeyCount(visible.range(row: rows - 1, count: count).upperBound)
        func groupEnd(_ g: Int) -> Int { visible.range(row: min(g + 8, rows) - 1, count: count).upperBound }
        // Each block of keys for every group of eight rows in turn, so it is read from L2 once. Missing
        // rows of a group repeat its last one (computed, never read): every row takes the same path.
        for b in 0..<(padded / keyBlock) {
            for g in stride(from: 0, to: rows, by: 8) where b * keyBlock < groupEnd(g) {
                scoresEightRows(queries + g * queryStride, queryStride: queryStride, rows: min(8, rows - g),
                                keysTransposed + b * keyBlock * hd, hd: hd, scale: scale,
                                into: scratch + g * padded + b * keyBlock, scoreStride: padded)
            }
        }
        for g in stride(from: 0, to: rows, by: 8) {
            let groupRows = min(8, rows - g)
            var inverses = SIMD8<Float>(repeating: 0)
            let first = visible.range(row: g, count: count).lowerBound, end = groupEnd(g)
            for r in 0..<groupRows {
                let keys = visible.range(row: g + r, count: count), row = scratch + (g + r) * padded
                inverses[r] = 1 / exponentiateShifted(row + keys.lowerBound, count: keys.count)
                (row + first).update(repeating: 0, count: keys.lowerBound - first)
                (row + keys.upperBound).update(repeating: 0, count: end - keys.upperBound)
            }
            for c in stride(from: 0, to: hd, by: 32) {
                weightedValuesEightRows(scratch + g * padded + first, scoreStride: padded, rows: groupRows,
                                        values + first * hd + c, valueStride: hd, keys: end - first,
                                        twoVectors: hd - c >= 32, inverses: inverses,
                                        into: output + g * outputStride + c, outputStride: outputStride)
            }
        }
    }

    /// Scores of one query against `blocks` key blocks, two blocks (64 keys) at a time.
    @inline(__always)
    private static func scoresOneRow(_ q: UnsafePointer<Float>, _ kT: UnsafePointer<Float>, blocks: Int,
                                     hd: Int, scale: Float, into s: UnsafeMutablePointer<Float>) {
        let out = UnsafeMutableRawPointer(s), blockBytes = 4 * hd * keyBlock
        var b = 0
        while b < blocks {
            let pair = b + 1 < blocks
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            var p = UnsafeRawPointer(kT) + b * blockBytes
            for d in 0..<hd {
                let x = SIMD16<Float>(repeating: q[d])
                a0.addProduct(x, p.loadUnaligned(as: SIMD16<Float>.self))
                a1.addProduct(x, p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self))
                if pair {
                    a2.addProduct(x, p.loadUnaligned(fromByteOffset: blockBytes, as: SIMD16<Float>.self))
                    a3.addProduct(x, p.loadUnaligned(fromByteOffset: blockBytes + 64, as: SIMD16<Float>.self))
                }
                p += 4 * keyBlock
            }
            let j = b * keyBlock
            out.storeBytes(of: a0 * scale, toByteOffset: 4 * j, as: SIMD16<Float>.self)
            out.storeBytes(of: a1 * scale, toByteOffset: 4 * j + 64, as: SIMD16<Float>.self)
            if pair {
                out.storeBytes(of: a2 * scale, toByteOffset: 4 * j + 128, as: SIMD16<Float>.self)
                out.storeBytes(of: a3 * scale, toByteOffset: 4 * j + 192, as: SIMD16<Float>.self)
            }
            b += 2
        }
    }

    /// Scores of eight queries (rows past `rows` repeat the last) against one block of keys; the same
    /// FMA chain per score as `scoresOneRow`.
    @inline(__always)
    private static func scoresEightRows(_ q: UnsafePointer<Float>, queryStride qs: Int, rows: Int,
                                        _ kT: UnsafePointer<Float>, hd: Int, scale: Float,
                                        into s: UnsafeMutablePointer<Float>, scoreStride ss: Int) {
        // Four rows (a source's beams at beam 4) take the half tile: the other four would be computed
        // and never read. A constant at each call, so the unused accumulators fold away.
        let tile = rows <= 4 ? EightRowTile(q, rowStride: qs, rows: rows, tileRows: 4, count: hd, UnsafeRawPointer(kT), vectorStep: 4 * keyBlock)
                             : EightRowTile(q, rowStride: qs, rows: rows, tileRows: 8, count: hd, UnsafeRawPointer(kT), vectorStep: 4 * keyBlock)
        for r in 0..<(rows <= 4 ? 4 : 8) {
            let out = UnsafeMutableRawPointer(s + r * ss)
            out.storeBytes(of: tile[r, 0] * scale, as: SIMD16<Float>.self)
            out.storeBytes(of: tile[r, 1] * scale, toByteOffset: 64, as: SIMD16<Float>.self)
        }
    }

    /// `output[0 ..< 16·vectors] = inverse · Σ_j e[j]·V[j]` (vectors ≤ 4): one FMA chain per output
    /// value, keys in order, as in `weightedValuesEightRows`.
    @inline(__always)
    static func weightedValuesOneRow(_ e: UnsafePointer<Float>, _ v: UnsafePointer<Float>, valueStride vs: Int,
                                             keys: Int, vectors: Int, inverse: Float, into o: UnsafeMutablePointer<Float>) {
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
        var p = UnsafeRawPointer(v)
        if vectors == 4 {
            for j in 0..<keys {
                let x = SIMD16<Float>(repeating: e[j])
                a0.addProduct(x, p.loadUnaligned(as: SIMD16<Float>.self))
                a1.addProduct(x, p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self))
                a2.addProduct(x, p.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self))
                a3.addProduct(x, p.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self))
                p += 4 * vs
            }
        } else {
            for j in 0..<keys {
                let x = SIMD16<Float>(repeating: e[j])
                a0.addProduct(x, p.loadUnaligned(as: SIMD16<Float>.self))
                if vectors > 1 { a1.addProduct(x, p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)) }
                if vectors > 2 { a2.addProduct(x, p.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self)) }
                p += 4 * vs
            }
        }
        let out = UnsafeMutableRawPointer(o)
        out.storeBytes(of: a0 * inverse, as: SIMD16<Float>.self)
        if vectors > 1 { out.storeBytes(of: a1 * inverse, toByteOffset: 64, as: SIMD16<Float>.self) }
        if vectors > 2 { out.storeBytes(of: a2 * inverse, toByteOffset: 128, as: SIMD16<Float>.self) }
        if vectors > 3 { out.storeBytes(of: a3 * inverse, toByteOffset: 192, as: SIMD16<Float>.self) }
    }

    /// `output_r[0 ..< 32] = inverse_r · Σ_j e_r[j]·V[j]` (16 values unless `twoVectors`) for eight
    /// rows of weights (rows past `rows` repeat the last and are not stored): each V vector loaded
    /// once for eight rows, one FMA chain per output value, keys in order.
    @inline(__always)
    private static func weightedValuesEightRows(_ e: UnsafePointer<Float>, scoreStride ss: Int, rows: Int,
                                                _ v: UnsafePointer<Float>, valueStride vs: Int, keys: Int, twoVectors: Bool,
                                                inverses: SIMD8<Float>, into o: UnsafeMutablePointer<Float>, outputStride os: Int) {
        if twoVectors {
            let tile = rows <= 4 ? EightRowTile(e, rowStride: ss, rows: rows, tileRows: 4, count: keys, UnsafeRawPointer(v), vectorStep: 4 * vs)
                                 : EightRowTile(e, rowStride: ss, rows: rows, tileRows: 8, count: keys, UnsafeRawPointer(v), vectorStep: 4 * vs)
            for r in 0..<rows {
                let out = UnsafeMutableRawPointer(o + r * os)
                out.storeBytes(of: tile[r, 0] * inverses[r], as: SIMD16<Float>.self)
                out.storeBytes(of: tile[r, 1] * inverses[r], toByteOffset: 64, as: SIMD16<Float>.self)
            }
            return
        }
        // One vector (the last 16 of hd % 32 == 16): a second would read past the last value row.
        for r in 0..<rows {
            weightedValuesOneRow(e + r * ss, v, valueStride: vs, keys: keys, vectors: 1, inverse: inverses[r], into: o + r * os)
        }
    }
}

/// `Σ_i c_r[i] · w_i` for eight rows r of coefficients and 32-lane vectors w_i (two 16-lane halves), i in
/// order: one FMA chain per lane and row, the 16 sums in registers. Both halves of the attention kernel
/// are this outer-product loop — scores (coefficients: a query's components, vectors: a key block's
/// rows) and weighted values (coefficients: a row's softmax numerators, vectors: value rows).
private struct EightRowTile {
    private var a0 = SIMD16<Float>(), b0 = SIMD16<Float>(), a1 = SIMD16<Float>(), b1 = SIMD16<Float>()
    private var a2 = SIMD16<Float>(), b2 = SIMD16<Float>(), a3 = SIMD16<Float>(), b3 = SIMD16<Float>()
    private var a4 = SIMD16<Float>(), b4 = SIMD16<Float>(), a5 = SIMD16<Float>(), b5 = SIMD16<Float>()
    private var a6 = SIMD16<Float>(), b6 = SIMD16<Float>(), a7 = SIMD16<Float>(), b7 = SIMD16<Float>()

    /// - Parameters:
    ///   - coefficients: row r at `coefficients + r·rowStride`; rows past `rows` repeat the last
    ///   - tileRows: 8, or 4 to compute rows 0–3 only (rows 4–7 stay zero); a constant at every call
    ///   - vectors: w_i's 32 floats at `vectors + i·vectorStep` bytes
    @inline(__always)
    init(_ coefficients: UnsafePointer<Float>, rowStride: Int, rows: Int, tileRows: Int, count: Int, _ vectors: UnsafeRawPointer,
         vectorStep: Int) {
        let c = coefficients, last = rows - 1
        let c0 = c, c1 = c + min(1, last) * rowStride, c2 = c + min(2, last) * rowStride, c3 = c + min(3, last) * rowStride
        let c4 = c + min(4, last) * rowStride, c5 = c + min(5, last) * rowStride, c6 = c + min(6, last) * rowStride
        let c7 = c + min(7, last) * rowStride
        var p = vectors
        for i in 0..<count {
            let w0 = p.loadUnaligned(as: SIMD16<Float>.self), w1 = p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
            var x = SIMD16<Float>(repeating: c0[i]); a0.addProduct(x, w0); b0.addProduct(x, w1)
            x = SIMD16<Float>(repeating: c1[i]); a1.addProduct(x, w0); b1.addProduct(x, w1)
            x = SIMD16<Float>(repeating: c2[i]); a2.addProduct(x, w0); b2.addProduct(x, w1)
            x = SIMD16<Float>(repeating: c3[i]); a3.addProduct(x, w0); b3.addProduct(x, w1)
            if tileRows > 4 {
                x = SIMD16<Float>(repeating: c4[i]); a4.addProduct(x, w0); b4.addProduct(x, w1)
                x = SIMD16<Float>(repeating: c5[i]); a5.addProduct(x, w0); b5.addProduct(x, w1)
                x = SIMD16<Float>(repeating: c6[i]); a6.addProduct(x, w0); b6.addProduct(x, w1)
                x = SIMD16<Float>(repeating: c7[i]); a7.addProduct(x, w0); b7.addProduct(x, w1)
            }
            p += vectorStep
        }
    }

    /// Row r's sums, lanes 0–15 (`half` 0) or 16–31 (`half` 1).
    @inline(__always)
    subscript(row: Int, half: Int) -> SIMD16<Float> {
        switch row {
        case 0: half == 0 ? a0 : b0
        case 1: half == 0 ? a1 : b1
        case 2: half == 0 ? a2 : b2
        case 3: half == 0 ? a3 : b3
        case 4: half == 0 ? a4 : b4
        case 5: half == 0 ? a5 : b5
        case 6: half == 0 ? a6 : b6
        default: half == 0 ? a7 : b7
        }
    }
}
