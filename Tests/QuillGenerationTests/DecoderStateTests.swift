import QuillGeneration
import Testing

/// `DecoderState.reorder` against a plain model of the rows' caches (arrays copied per row): after
/// every reordering each row holds exactly its parent's keys and values, whatever the pattern —
/// permutations, one parent with several children, dropped rows, rows growing back.
@Suite struct DecoderStateTests {
    let layers = 2, heads = 2, hd = 4, capacity = 6

    /// The filled part of row `row`'s keys and values, all layers, as one array (F16 widened).
    func contents(_ state: DecoderState, row: Int) -> [Float] {
        var out: [Float] = []
        for layer in 0..<layers {
            for pointer in [state.keyBytes(layer: layer, row: row), state.valueBytes(layer: layer, row: row)] {
                for h in 0..<heads {
                    out += (0 ..< state.count * hd).map { i in
                        let index = h * capacity * hd + i
                        return state.cacheType == .f32 ? pointer.load(fromByteOffset: 4 * index, as: Float.self)
                            : Float(Float16(bitPattern: pointer.load(fromByteOffset: 2 * index, as: UInt16.self)))
                    }
                }
            }
        }
        return out
    }

    /// Both cache types (the stored values are integers below 2,048, exact in F16).
    @Test(arguments: [KVCacheType.f32, .f16])
    func reorderedRowsHoldTheirParentsCaches(cacheType: KVCacheType) throws {
        let encoder = EncoderStates(layers: layers, heads: heads, headDimension: hd, lengths: [3, 2, 4, 1])
        let state = try DecoderState(encoder: encoder, rowSources: [0, 1, 2, 3], capacity: capacity, cacheType: cacheType)
        var model: [[Float]] = Array(repeating: [], count: 4)   // (rows) → contents
        var sources = [0, 1, 2, 3]
        let patterns: [[Int]] = [
            [0, 1, 2, 3],      // unchanged
            [1, 0, 3, 2],      // a permutation
            [2, 2, 2, 0],      // one parent, three children; rows 1 and 3 dropped
            [0, 1],            // finished rows removed
            [1, 1, 0, 0],      // grows back to four rows
            [3],               // one row left
        ]
        for (step, parents) in patterns.enumerated() {
            // Every row stores a new position whose values say (step, row, layer, keys|values, head, i).
            for layer in 0..<layers {
                let n = state.rows * heads * hd
                let keys = (0..<n).map { Float(step * 128 + layer * 64 + $0) }
                let values = keys.map { -$0 }
                state.store(layer: layer, newKeys: keys, newValues: values)
            }
            state.advance()
            for r in 0..<state.rows { model[r] = contents(state, row: r) }
            // What a row holds is what was stored for it (layer 0's keys: head 0's, then head 1's).
            if step == 0 { #expect(Array(model[1][0 ..< 2 * hd]) == (0 ..< 2 * hd).map { Float(heads * hd + $0) }) }
            state.reorder(parents)
            model = parents.map { model[$0] }
            sources = parents.map { sources[$0] }
            #expect(state.rows == parents.count)
            #expect(state.rowSources == sources, "step \(step)")
            for r in 0..<state.rows { #expect(contents(state, row: r) == model[r], "step \(step), row \(r)") }
        }
    }
}
