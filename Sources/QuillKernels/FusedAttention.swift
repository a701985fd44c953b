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

    /// `output_r = softmax(scale · q_r · Kᵀ) · V` for rows `0 ..< rows` (at most `blockRows`).
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
                       output: UnsafeMutablePointer<Float>, outputStride: Int, scratch: UnsafeMutablePointer<Float>) {
        precondition(rows >= 1 && rows <= blockRows && supports(headDimension: hd))
        guard count > 0 else {
            for r in 0..<rows { (output + r * outputStride).update(repeating: 0, count: hd) }
            return
        }
        let padded = paddedKeyCount(count)
        if rows == 1 {
            scoresOneRow(queries, keysTransposed, blocks: padded / keyBlock, hd: hd, scale: scale, into: scratch)
        } else {
            // Each block of keys for every group of eight rows in turn, so it is read from L2 once. Missing
            // rows of a group repeat its last one (computed, never read): every row takes the same path.
            for b in 0..<(padded / keyBlock) {
                for g in stride(from: 0, to: rows, by: 8) {
                    scoresEightRows(queries + g * queryStride, queryStride: queryStride, rows: min(8, rows - g),
                                    keysTransposed + b * keyBlock * hd, hd: hd, scale: scale,
                                    into: scratch + g * padded + b * keyBlock, scoreStride: padded)
                }
            }
        }
        if rows == 1 {
            let inverse = 1 / exponentiateShifted(scratch, count: count)
            for c in stride(from: 0, to: hd, by: 64) {
                weightedValuesOneRow(scratch, values + c, valueStride: hd, keys: count, vectors: min(4, (hd - c) / 16),
                                     inverse: inverse, into: output + c)
            }
            return
        }
        for g in stride(from: 0, to: rows, by: 8) {
            let groupRows = min(8, rows - g)
            var inverses = SIMD8<Float>(repeating: 0)
            for r in 0..<groupRows { inverses[r] = 1 / exponentiateShifted(scratch + (g + r) * padded, count: count) }
            for c in stride(from: 0, to: hd, by: 32) {
                weightedValuesEightRows(scratch + g * padded, scoreStride: padded, rows: groupRows, values + c, valueStride: hd,
                                        keys: count, twoVectors: hd - c >= 32, inverses: inverses,
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
        let q0 = q, q1 = q + min(1, rows - 1) * qs, q2 = q + min(2, rows - 1) * qs, q3 = q + min(3, rows - 1) * qs
        let q4 = q + min(4, rows - 1) * qs, q5 = q + min(5, rows - 1) * qs, q6 = q + min(6, rows - 1) * qs
        let q7 = q + min(7, rows - 1) * qs
        let out = UnsafeMutableRawPointer(s)
        var p = UnsafeRawPointer(kT)
        do {
            var a00 = SIMD16<Float>(), a01 = SIMD16<Float>(), a10 = SIMD16<Float>(), a11 = SIMD16<Float>()
            var a20 = SIMD16<Float>(), a21 = SIMD16<Float>(), a30 = SIMD16<Float>(), a31 = SIMD16<Float>()
            var a40 = SIMD16<Float>(), a41 = SIMD16<Float>(), a50 = SIMD16<Float>(), a51 = SIMD16<Float>()
            var a60 = SIMD16<Float>(), a61 = SIMD16<Float>(), a70 = SIMD16<Float>(), a71 = SIMD16<Float>()
            for d in 0..<hd {
                let k0 = p.loadUnaligned(as: SIMD16<Float>.self)
                let k1 = p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
                var x = SIMD16<Float>(repeating: q0[d]); a00.addProduct(x, k0); a01.addProduct(x, k1)
                x = SIMD16<Float>(repeating: q1[d]); a10.addProduct(x, k0); a11.addProduct(x, k1)
                x = SIMD16<Float>(repeating: q2[d]); a20.addProduct(x, k0); a21.addProduct(x, k1)
                x = SIMD16<Float>(repeating: q3[d]); a30.addProduct(x, k0); a31.addProduct(x, k1)
                x = SIMD16<Float>(repeating: q4[d]); a40.addProduct(x, k0); a41.addProduct(x, k1)
                x = SIMD16<Float>(repeating: q5[d]); a50.addProduct(x, k0); a51.addProduct(x, k1)
                x = SIMD16<Float>(repeating: q6[d]); a60.addProduct(x, k0); a61.addProduct(x, k1)
                x = SIMD16<Float>(repeating: q7[d]); a70.addProduct(x, k0); a71.addProduct(x, k1)
                p += 4 * keyBlock
            }
            @inline(__always) func store(_ row: Int, _ first: SIMD16<Float>, _ second: SIMD16<Float>) {
                out.storeBytes(of: first * scale, toByteOffset: 4 * row * ss, as: SIMD16<Float>.self)
                out.storeBytes(of: second * scale, toByteOffset: 4 * (row * ss + 16), as: SIMD16<Float>.self)
            }
            store(0, a00, a01); store(1, a10, a11); store(2, a20, a21); store(3, a30, a31)
            store(4, a40, a41); store(5, a50, a51); store(6, a60, a61); store(7, a70, a71)
        }
    }

    /// `output[0 ..< 16·vectors] = inverse · Σ_j e[j]·V[j]` (vectors ≤ 4): one FMA chain per output
    /// value, keys in order, as in `weightedValuesEightRows`.
    @inline(__always)
    private static func weightedValuesOneRow(_ e: UnsafePointer<Float>, _ v: UnsafePointer<Float>, valueStride vs: Int,
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
        let e0 = e, e1 = e + min(1, rows - 1) * ss, e2 = e + min(2, rows - 1) * ss, e3 = e + min(3, rows - 1) * ss
        let e4 = e + min(4, rows - 1) * ss, e5 = e + min(5, rows - 1) * ss, e6 = e + min(6, rows - 1) * ss
        let e7 = e + min(7, rows - 1) * ss
        var a00 = SIMD16<Float>(), a01 = SIMD16<Float>(), a10 = SIMD16<Float>(), a11 = SIMD16<Float>()
        var a20 = SIMD16<Float>(), a21 = SIMD16<Float>(), a30 = SIMD16<Float>(), a31 = SIMD16<Float>()
        var a40 = SIMD16<Float>(), a41 = SIMD16<Float>(), a50 = SIMD16<Float>(), a51 = SIMD16<Float>()
        var a60 = SIMD16<Float>(), a61 = SIMD16<Float>(), a70 = SIMD16<Float>(), a71 = SIMD16<Float>()
        var p = UnsafeRawPointer(v)
        if twoVectors {
            for j in 0..<keys {
                let v0 = p.loadUnaligned(as: SIMD16<Float>.self), v1 = p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
                var x = SIMD16<Float>(repeating: e0[j]); a00.addProduct(x, v0); a01.addProduct(x, v1)
                x = SIMD16<Float>(repeating: e1[j]); a10.addProduct(x, v0); a11.addProduct(x, v1)
                x = SIMD16<Float>(repeating: e2[j]); a20.addProduct(x, v0); a21.addProduct(x, v1)
                x = SIMD16<Float>(repeating: e3[j]); a30.addProduct(x, v0); a31.addProduct(x, v1)
                x = SIMD16<Float>(repeating: e4[j]); a40.addProduct(x, v0); a41.addProduct(x, v1)
                x = SIMD16<Float>(repeating: e5[j]); a50.addProduct(x, v0); a51.addProduct(x, v1)
                x = SIMD16<Float>(repeating: e6[j]); a60.addProduct(x, v0); a61.addProduct(x, v1)
                x = SIMD16<Float>(repeating: e7[j]); a70.addProduct(x, v0); a71.addProduct(x, v1)
                p += 4 * vs
            }
        } else {
            for j in 0..<keys {
                let v0 = p.loadUnaligned(as: SIMD16<Float>.self)
                a00.addProduct(SIMD16<Float>(repeating: e0[j]), v0); a10.addProduct(SIMD16<Float>(repeating: e1[j]), v0)
                a20.addProduct(SIMD16<Float>(repeating: e2[j]), v0); a30.addProduct(SIMD16<Float>(repeating: e3[j]), v0)
                a40.addProduct(SIMD16<Float>(repeating: e4[j]), v0); a50.addProduct(SIMD16<Float>(repeating: e5[j]), v0)
                a60.addProduct(SIMD16<Float>(repeating: e6[j]), v0); a70.addProduct(SIMD16<Float>(repeating: e7[j]), v0)
                p += 4 * vs
            }
        }
        @inline(__always) func store(_ row: Int, _ first: SIMD16<Float>, _ second: SIMD16<Float>) {
            guard row < rows else { return }
            let out = UnsafeMutableRawPointer(o + row * os), inverse = inverses[row]
            out.storeBytes(of: first * inverse, as: SIMD16<Float>.self)
            if twoVectors { out.storeBytes(of: second * inverse, toByteOffset: 64, as: SIMD16<Float>.self) }
        }
        store(0, a00, a01); store(1, a10, a11); store(2, a20, a21); store(3, a30, a31)
        store(4, a40, a41); store(5, a50, a51); store(6, a60, a61); store(7, a70, a71)
    }
}
