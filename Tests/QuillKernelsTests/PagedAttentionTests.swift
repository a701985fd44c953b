import Foundation
import Testing
import QuillKernels

/// Attention over paged KV blocks: several sequences with scattered block tables in one call,
/// against the Double reference on each sequence's contiguous history.
struct PagedAttentionTests {
    /// Sequences as (new tokens, first position); block tables are shuffled so that neighbouring
    /// positions never sit in neighbouring blocks.
    struct Case: Sendable, CustomTestStringConvertible {
        let sequences: [(tokens: Int, firstPosition: Int)]
        let window: Int?
        let half: Bool
        var testDescription: String { "\(sequences) window \(window.map(String.init) ?? "none") \(half ? "f16" : "f32")" }
    }

    static let cases: [Case] = [
        Case(sequences: [(1, 0), (1, 40), (1, 95)], window: nil, half: false),
        Case(sequences: [(70, 0), (1, 33), (5, 12)], window: nil, half: false),
        Case(sequences: [(1, 130), (100, 20), (1, 7)], window: 48, half: false),
        Case(sequences: [(1, 61), (66, 3)], window: nil, half: true),
        Case(sequences: [(130, 0), (1, 200)], window: 64, half: true),
        // Histories longer than `splitPositions` (1,024) run in chunks merged afterwards.
        Case(sequences: [(1, 2100), (1, 700), (1, 1030)], window: nil, half: true),
        Case(sequences: [(1, 2500), (20, 1100)], window: 1500, half: false),
    ]

    @Test(arguments: cases)
    func pagedAttentionMatchesReferencePerSequence(_ test: Case) {
        let heads = 6, kvHeads = 2, hd = 64, blockTokens = 16
        var g = SeededGenerator(seed: UInt64(test.sequences.count * 31 + (test.window ?? 0)))
        let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDimension: hd, capacity: 0, scale: 0.125)
        // Storage for every block of every sequence, each block (2, kvHeads, blockTokens, hd).
        let lengths = test.sequences.map { $0.tokens + $0.firstPosition }
        let blockCounts = lengths.map { ($0 + blockTokens - 1) / blockTokens }
        let totalBlocks = blockCounts.reduce(0, +)
        let element = test.half ? 2 : 4
        let blockBytes = 2 * kvHeads * blockTokens * hd * element
        let storage = UnsafeMutableRawPointer.allocate(byteCount: totalBlocks * blockBytes, alignment: 64)
        defer { storage.deallocate() }
        let view = PagedKVView(base: storage, blockBytes: blockBytes, valueOffset: blockBytes / 2,
                               blockTokens: blockTokens, kvHeads: kvHeads, headDimension: hd, half: test.half)
        var freeBlocks = (0 ..< Int32(totalBlocks)).shuffled(using: &g)
        var tables: [[Int32]] = []
        var histories: [(keys: [Float], values: [Float])] = []
        for (s, length) in lengths.enumerated() {
            tables.append((0 ..< blockCounts[s]).map { _ in freeBlocks.removeLast() })
            // Contiguous (kvHeads, length, hd) history, rounded to half when the view holds halves.
            func values(_ range: ClosedRange<Float>) -> [Float] {
                [Float].random(count: kvHeads * length * hd, in: range, using: &g).map { test.half ? Float(Float16($0)) : $0 }
            }
            let keys = values(-2 ... 2), vals = values(-1 ... 1)
            for h in 0 ..< kvHeads {
                for p in 0 ..< length {
                    let block = tables[s][p / blockTokens], offset = (p % blockTokens) * hd * element
                    keys.withUnsafeBufferPointer { view.store($0.baseAddress! + (h * length + p) * hd, into: view.keys(block: block, head: h) + offset, count: hd) }
                    vals.withUnsafeBufferPointer { view.store($0.baseAddress! + (h * length + p) * hd, into: view.values(block: block, head: h) + offset, count: hd) }
                }
            }
            histories.append((keys, vals))
        }
        let rows = test.sequences.reduce(0) { $0 + $1.tokens }
        let queries = [Float].random(count: rows * heads * hd, in: -2 ... 2, using: &g)
        func run(_ indices: [Int], threads: Int) -> [Float] {
            var output = [Float](repeating: .nan, count: rows * heads * hd)
            var firstRow = 0
            var descriptors: [AttentionSequence] = []
            let tableCopies = tables.map { UnsafeMutableBufferPointer<Int32>.allocate(capacity: $0.count) }
            defer { tableCopies.forEach { $0.deallocate() } }
            for (s, table) in tables.enumerated() { _ = tableCopies[s].initialize(from: table) }
            var rowOf: [Int] = []
            for s in test.sequences.indices {
                rowOf.append(firstRow)
                firstRow += test.sequences[s].tokens
            }
            for s in indices {
                descriptors.append(AttentionSequence(firstRow: rowOf[s], tokens: test.sequences[s].tokens,
                                                     firstPosition: test.sequences[s].firstPosition,
                                                     blocks: UnsafePointer(tableCopies[s].baseAddress!)))
            }
            Attention.paged(queries: queries, kv: view, sequences: descriptors, output: &output, shape: shape,
                            window: test.window, pool: ThreadPool(threads: threads))
            return output
        }
        let together = run(Array(test.sequences.indices), threads: 2)
        #expect(together.map(\.bitPattern) == run(Array(test.sequences.indices), threads: 1).map(\.bitPattern),
                "results must not depend on the thread count")
        var firstRow = 0
        for (s, sequence) in test.sequences.enumerated() {
            let width = heads * hd, range = firstRow * width ..< (firstRow + sequence.tokens) * width
            var reference = [Float](repeating: 0, count: sequence.tokens * width)
            let sequenceShape = AttentionShape(heads: heads, kvHeads: kvHeads, headDimension: hd,
                                               capacity: lengths[s], scale: shape.scale)
            Array(queries[range]).withUnsafeBufferPointer { q in
                ReferenceAttention.causal(queries: q.baseAddress!, keys: histories[s].keys, values: histories[s].values,
                                          output: &reference, shape: sequenceShape, tokens: sequence.tokens,
                                          firstPosition: sequence.firstPosition, window: test.window)
            }
            #expect(normalisedError(Array(together[range]), reference) < 1e-5)
            // Batch invariance: the sequence alone gives bitwise the rows it gets in the batch.
            let alone = run([s], threads: 2)
            #expect(Array(alone[range]).map(\.bitPattern) == Array(together[range]).map(\.bitPattern))
            firstRow += sequence.tokens
        }
    }

    /// A prompt token's output depends on its position and history only, not on the chunk that
    /// computes it (what lets the prefix cache share prompts block by block): one sequence's 200
    /// positions run as one chunk and as chunks cut at unaligned points give bitwise the same rows.
    @Test(arguments: [(nil, false), (48, false), (nil, true), (100, true)] as [(Int?, Bool)])
    func promptTokensGiveTheSameRowsWhicheverChunkComputesThem(window: Int?, half: Bool) {
        let heads = 4, kvHeads = 2, hd = 64, blockTokens = 16, length = 200
        var g = SeededGenerator(seed: 5 + UInt64(window ?? 0))
        let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDimension: hd, capacity: 0, scale: 0.125)
        let blocks = (length + blockTokens - 1) / blockTokens, element = half ? 2 : 4
        let blockBytes = 2 * kvHeads * blockTokens * hd * element
        let storage = UnsafeMutableRawPointer.allocate(byteCount: blocks * blockBytes, alignment: 64)
        defer { storage.deallocate() }
        let view = PagedKVView(base: storage, blockBytes: blockBytes, valueOffset: blockBytes / 2,
                               blockTokens: blockTokens, kvHeads: kvHeads, headDimension: hd, half: half)
        let table = (0 ..< Int32(blocks)).shuffled(using: &g)
        for h in 0 ..< kvHeads {
            for p in 0 ..< length {
                let keys = [Float].random(count: hd, in: -2 ... 2, using: &g), values = [Float].random(count: hd, in: -1 ... 1, using: &g)
                let offset = (p % blockTokens) * hd * element
                view.store(keys, into: view.keys(block: table[p / blockTokens], head: h) + offset, count: hd)
                view.store(values, into: view.values(block: table[p / blockTokens], head: h) + offset, count: hd)
            }
        }
        let width = heads * hd
        let queries = [Float].random(count: length * width, in: -2 ... 2, using: &g)
        func run(cuts: [Int]) -> [UInt32] {
            var output = [Float](repeating: .nan, count: length * width)
            table.withUnsafeBufferPointer { blockTable in
                for (from, to) in zip([0] + cuts, cuts + [length]) {
                    let sequence = AttentionSequence(firstRow: 0, tokens: to - from, firstPosition: from,
                                                     blocks: blockTable.baseAddress!)
                    queries.withUnsafeBufferPointer { q in
                        output.withUnsafeMutableBufferPointer { out in
                            Attention.paged(queries: q.baseAddress! + from * width, kv: view, sequences: [sequence],
                                            output: out.baseAddress! + from * width, shape: shape, window: window,
                                            pool: ThreadPool(threads: 2))
                        }
                    }
                }
            }
            return output.map(\.bitPattern)
        }
        let whole = run(cuts: [])
        #expect(!whole.contains(Float.nan.bitPattern))
        for cuts in [[37, 96, 161], [64, 128], [2, 4, 130, 198]] {
            let differing = zip(run(cuts: cuts), whole).filter { $0 != $1 }.count
            #expect(differing == 0, "chunks cut at \(cuts): \(differing) of \(whole.count) values differ")
        }
    }
}

