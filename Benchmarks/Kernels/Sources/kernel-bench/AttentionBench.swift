import Foundation
import QuillKernels

/// `kernel-bench attention [threads...]`: encoder-decoder attention (`BidirectionalAttention`) at
/// Whisper-base's shapes — encoder self-attention over 1500 frames, and cross-attention of 1 and 5
/// decoder rows over one utterance's 1500 keys — in GFLOP/s (4·queries·keys·hd per head).
func benchAttention(threads: [Int]) {
    let heads = 8, hd = 64, frames = 1500
    var state: UInt64 = 1
    func random(_ count: Int) -> [Float] {
        (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) * 2 - 1
        }
    }
    let q = random(frames * heads * hd), k = random(heads * frames * hd), v = random(heads * frames * hd)
    let transposedStride = BidirectionalAttention.transposedKeyStride(frames)
    var kT = [Float](repeating: 0, count: heads * hd * transposedStride)  // (heads, transposed keys)
    for h in 0..<heads {
        for j in 0..<frames {
            for d in 0..<hd {
                kT[h * hd * transposedStride + BidirectionalAttention.transposedKeyOffset(key: j, dimension: d, headDimension: hd)] =
                    k[(h * frames + j) * hd + d]
            }
        }
    }
    var vPadded = [Float](repeating: 0, count: heads * transposedStride * hd)  // (heads, stride, hd)
    for h in 0..<heads { for j in 0..<frames { for d in 0..<hd { vPadded[(h * transposedStride + j) * hd + d] = v[(h * frames + j) * hd + d] } } }
    row(["attention", "queries × keys", "threads", "µs", "GFLOPS"])
    row(["---", "---", "---:", "---:", "---:"])
    for t in threads {
        let pool = ThreadPool(threads: t)
        var out = [Float](repeating: 0, count: q.count)
        let encoder = time(3) {
            BidirectionalAttention.attend(queries: q, output: &out, sequences: 1, tokens: frames, heads: heads, headDimension: hd,
                                          keyStride: frames, causal: false, scale: 0.125, bias: nil, pool: pool) { _ in
                AttentionKeys(keys: k, values: v, keyCount: frames, firstPosition: 0)
            }
        }
        row(["encoder self-attention", "\(frames) × \(frames)", "\(t)", f(encoder * 1e6, 0),
             f(4.0 * Double(frames * frames * hd * heads) / encoder / 1e9)])
        for rows in [1, 5] {
            let cross = time(200) {
                BidirectionalAttention.attend(queries: q, output: &out, sequences: rows, tokens: 1, heads: heads, headDimension: hd,
                                              keyStride: transposedStride, causal: false, scale: 0.125, bias: nil, pool: pool) { _ in
                    AttentionKeys(keys: kT, values: vPadded, keyCount: frames, firstPosition: 0, transposed: true)
                }
            }
            row(["cross-attention, transposed keys", "\(rows) × \(frames)", "\(t)", f(cross * 1e6, 1),
                 f(4.0 * Double(rows * frames * hd * heads) / cross / 1e9)])
        }
    }
}

/// `kernel-bench decode-attention [threads...]`: one decoding token's causal attention over a paged
/// F16 history (blocks of 32 positions, as `KVBlockPool` lays them out) at SmolLM2's shape (9 query
/// heads, 3 KV heads, hd 64), 2,048 positions: "hot" repeats one layer's history (1.5 MB: the
/// kernel's compute speed), "sweep" walks 30 layers' histories (47 MB, from memory, as decoding does).
func benchDecodeAttention(threads: [Int]) {
    let heads = 9, kvHeads = 3, hd = 64, positions = 2048, layers = 30, blockTokens = 32
    let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDimension: hd, capacity: 0, scale: 0.125)
    let blocks = positions / blockTokens, blockBytes = 2 * kvHeads * blockTokens * hd * 2
    let layerBytes = blocks * blockBytes
    let storage = UnsafeMutableRawPointer.allocate(byteCount: layers * layerBytes, alignment: 4096)
    defer { storage.deallocate() }
    var state: UInt32 = 12345
    let halves = storage.bindMemory(to: UInt16.self, capacity: layers * layerBytes / 2)
    for i in 0 ..< layers * layerBytes / 2 {
        state = state &* 1_664_525 &+ 1_013_904_223
        halves[i] = Float16(Float(state >> 8) / Float(1 << 24) - 0.5).bitPattern
    }
    let table = (0 ..< Int32(blocks)).shuffled()
    let q = (0 ..< heads * hd).map { Float($0 % 7) / 7 - 0.5 }
    var out = [Float](repeating: 0, count: heads * hd)
    row(["decode attention (paged, F16)", "positions", "threads", "µs per layer", "GB/s"])
    row(["---", "---:", "---:", "---:", "---:"])
    for t in threads {
        let pool = ThreadPool(threads: t)
        for (label, count) in [("hot (one layer)", 1), ("sweep (30 layers)", layers)] {
            let seconds = table.withUnsafeBufferPointer { blockTable in
                time(20) {
                    for l in 0 ..< count {
                        let view = PagedKVView(base: storage + l * layerBytes, blockBytes: blockBytes, valueOffset: blockBytes / 2,
                                               blockTokens: blockTokens, kvHeads: kvHeads, headDimension: hd, half: true)
                        Attention.paged(queries: q, kv: view,
                                        sequences: [AttentionSequence(firstRow: 0, tokens: 1, firstPosition: positions - 1,
                                                                      blocks: blockTable.baseAddress!)],
                                        output: &out, shape: shape, window: nil, pool: pool)
                    }
                }
            } / Double(count)
            row([label, "\(positions)", "\(t)", f(seconds * 1e6, 1), f(Double(layerBytes) / seconds / 1e9, 1)])
        }
    }
}
