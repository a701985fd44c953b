import Foundation
import QuillKernels

/// Int8 mat-vecs of the 32-block types over the file's row-major blocks against the same matrix
/// regrouped into `WeightPanels`, side by side, for SmolLM2-135M's shapes and 1–16 activation rows:
/// µs per call and the speed-up. Also checks the panel results against `ReferencePanelMatVec`.
func benchPanels(threads t: Int) {
    let pool = ThreadPool(threads: t)
    row(["type", "shape", "batch", "threads", "µs rows", "µs panels", "speed-up", "max |Δ| vs reference"])
    for type in [TensorType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0] {
        for (rows, columns) in [(576, 576), (1536, 576), (576, 1536), (49152, 576)] {
            let plain = randomMatrix(type, rows: rows, columns: columns)
            defer { plain.data.deallocate() }
            var paneled = plain
            paneled.panels = WeightPanels(plain)
            let bytes = Double(plain.rowBytes * rows)
            for batch in [1, 2, 4, 8, 16] {
                let x = (0..<batch * columns).map { _ in Float.random(in: -1...1) }
                var xq = QuantizedActivationBatch(rows: batch, columns: columns)
                xq.quantize(x, rows: batch, columns: columns)
                var single = QuantizedActivations(capacity: columns)
                x.withUnsafeBufferPointer { single.quantize($0.baseAddress!, count: columns) }
                var y = [Float](repeating: 0, count: batch * rows)
                let n = max(3, Int(3e7 / (bytes * Double(batch))))
                let run: (WeightMatrix) -> Void = { w in
                    if batch == 1 { MatVec.multiply(w, single, into: &y, pool: pool) } else { MatVec.multiply(w, xq, into: &y, pool: pool) }
                }
                let before = time(n) { run(plain) }
                let after = time(n) { run(paneled) }
                run(paneled)
                var expected = [Float](repeating: 0, count: batch * rows)
                let checkRows = 0..<min(rows, 64)
                xq.withQuantizedRows { qs, scales in
                    ReferencePanelMatVec.multiply(plain, qs: qs, scales: scales, count: batch, into: &expected, ldy: rows, rows: checkRows)
                }
                var worst: Float = 0
                for i in 0..<batch { for r in checkRows { worst = max(worst, abs(y[i * rows + r] - expected[i * rows + r])) } }
                row(["\(type)", "\(rows)×\(columns)", "\(batch)", "\(t)", f(before * 1e6), f(after * 1e6), f(before / after, 2) + "×",
                     "\(worst)"])
            }
        }
    }
}
