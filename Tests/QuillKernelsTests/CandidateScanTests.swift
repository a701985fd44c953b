import Testing
import QuillKernels

@Suite struct CandidateScanTests {
    /// The first block the scan stops at holds a value whose sum beats the threshold, and no block it
    /// passed over does (checked with the search's own scalar sum and comparison), at every start,
    /// with a tail shorter than 16, with −∞ and NaN in the row, for the AVX-512 and portable paths.
    @Test func stopsAtTheFirstBlockWithACandidateOnly() {
        var g = SeededGenerator(seed: 6100)
        for count in [0, 15, 16, 37, 1000] {
            var x = [Float].random(count: count, in: -20...0, using: &g)
            if count > 40 { x[3] = -.infinity; x[21] = .nan; x[count - 2] = 5 }
            for (offset, threshold) in [(Float(-1.5), Float(-2)), (0, 1), (-0.25, -19.9), (3, -.infinity), (0, 4.9)] {
                for start in stride(from: 0, through: count, by: 16) {
                    for portable in [false, true] {
                        let found = MatVec.$usePortableKernels.withValue(portable) {
                            CandidateScan.firstBlockAbove(x, from: start, count: count, offset: offset, threshold: threshold)
                        }
                        let passes = { (block: Int) in (block..<min(block + 16, count)).contains { x[$0] + offset > threshold } }
                        #expect(found >= start && found <= count && (found - start) % 16 == 0)
                        for block in stride(from: start, to: found, by: 16) {
                            #expect(!passes(block), "\(count) values, passed over block \(block) with a candidate")
                        }
                        if found + 16 <= count {
                            // A stop at a whole block: a candidate, or a NaN the insertion loop skips.
                            #expect(passes(found) || (found..<(found + 16)).contains { x[$0].isNaN }, "stopped at block \(found)")
                        }
                    }
                }
            }
        }
    }
}

@Suite struct IndexOfLargestTests {
    /// The scalar rule the greedy search ran before (first largest; NaN passed over unless at 0).
    static func scalar(_ x: [Float]) -> Int {
        var best = 0
        for i in 1..<x.count where x[i] > x[best] { best = i }
        return best
    }

    /// Against the scalar loop on rows of every length around the 16-lane blocks, with ties inside
    /// and across lanes, −∞, +∞ and NaN placed in the vector part and in the tail.
    @Test func equalsTheScalarFirstLargest() {
        var g = SeededGenerator(seed: 4242)
        var rows: [[Float]] = []
        for count in [1, 2, 15, 16, 17, 31, 32, 33, 100, 58_101] {
            // Few distinct values, so ties are common.
            rows.append((0..<count).map { _ in Float(Int.random(in: -3...3, using: &g)) })
            rows.append([Float].random(count: count, in: -5...5, using: &g))
            var special = [Float].random(count: count, in: -5...5, using: &g)
            for _ in 0 ..< max(1, count / 8) {
                special[Int.random(in: 0..<count, using: &g)] = [Float.nan, -.infinity, .infinity, 5][Int.random(in: 0...3, using: &g)]
            }
            rows.append(special)
            rows.append([Float](repeating: -.infinity, count: count))
            var nanFirst = [Float](repeating: 1, count: count)
            nanFirst[0] = .nan
            rows.append(nanFirst)
            var allNaNButOne = [Float](repeating: .nan, count: count)
            allNaNButOne[0] = -.infinity
            rows.append(allNaNButOne)
        }
        for (n, row) in rows.enumerated() {
            #expect(indexOfLargest(row, count: row.count) == Self.scalar(row), "row \(n) of \(row.count) values")
        }
    }
}
