/// Obviously-correct matrix-vector products that the fast `MatVec` kernels are tested against.
/// Scalar, single-threaded, Double accumulation; speed is not a goal.
public enum ReferenceMatVec {
    /// `y[r] = Σ_c W[r, c]·x[c]` with `W` dequantised exactly (scalar `ReferenceDequantizer`).
    public static func multiply(_ w: WeightMatrix, _ x: UnsafePointer<Float>,
                                into y: UnsafeMutablePointer<Float>) {
        let row = UnsafeMutablePointer<Float>.allocate(capacity: max(w.columns, 1))
        defer { row.deallocate() }
        for r in 0..<w.rows {
            ReferenceDequantizer.dequantize(w.type, w.row(r), count: w.columns, into: row)
            var sum: Double = 0
            for c in 0..<w.columns { sum += Double(row[c]) * Double(x[c]) }
            y[r] = Float(sum)
        }
    }

    /// The product the int8 kernels approximate: exactly dequantised `W` times the int8-quantised
    /// activations `d·q` (Double accumulation). The fast `.int8` path must match this to f32
    /// rounding; the gap to `multiply(_:_:into:)` is the activation quantisation error alone.
    public static func multiply(_ w: WeightMatrix, _ xq: QuantizedActivations,
                                into y: UnsafeMutablePointer<Float>) {
        precondition(xq.count == w.columns, "activation length must equal the matrix column count")
        let x = UnsafeMutablePointer<Float>.allocate(capacity: max(w.columns, 1))
        defer { x.deallocate() }
        for c in 0..<w.columns { x[c] = xq.dequantized(c) }
        multiply(w, UnsafePointer(x), into: y)
    }
}
