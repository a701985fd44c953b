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
