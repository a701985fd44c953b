import Testing
import QuillKernels

struct WeightArenaTests {
    @Test func copiesAreByteForByteAndKeepTheStreamingHint() {
        var g = SeededGenerator(seed: 11)
        let shapes = [(3, 64), (5, 96), (7, 32)]
        let sources = shapes.map { rows, columns in
            (0..<rows * columns / 32 * 20).map { _ in UInt8.random(in: 0...255, using: &g) }
        }
        let arena = WeightArena(bytes: sources.reduce(0) { $0 + $1.count + 64 })
        for (i, (rows, columns)) in shapes.enumerated() {
            let copy: WeightMatrix = sources[i].withUnsafeBytes { bytes in
                var m = WeightMatrix(type: .q4_1, rows: rows, columns: columns, data: bytes.baseAddress!)
                m.streaming = i == 1
                return arena.copy(m)
            }
            #expect(copy.streaming == (i == 1))
            #expect(Int(bitPattern: copy.data) % 64 == 0)
            #expect(Array(UnsafeRawBufferPointer(start: copy.data, count: sources[i].count)) == sources[i])
        }
    }
}
