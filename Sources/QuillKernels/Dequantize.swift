/// Plain scalar dequantisation: the obviously-correct reference that optimised kernels are tested
/// against. Speed is not a goal here; clarity is.
public enum ReferenceDequantizer {
    /// Converts `count` consecutive elements of `type` starting at `source` to Float.
    ///
    /// `count` must be a whole number of blocks. `source` needs no alignment: quantised blocks are
    /// 18, 20 or 34 bytes, so every read is an unaligned load.
    public static func dequantize(_ type: TensorType, _ source: UnsafeRawPointer, count: Int,
                                  into destination: UnsafeMutablePointer<Float>) {
        precondition(count >= 0 && count % type.blockSize == 0, "count must be a whole number of blocks")
        switch type {
        case .f32:
            for i in 0..<count {
                destination[i] = source.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
            }
        case .f16:
            for i in 0..<count {
                destination[i] = QuillKernels.halfToFloat(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            }
        case .bf16:
            for i in 0..<count {
                destination[i] = QuillKernels.bf16ToFloat(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            }
        case .q8_0:
            for b in 0..<count / 32 {
                let block = source + b * 34
                let d = QuillKernels.halfToFloat(block.loadUnaligned(as: UInt16.self))
                let out = destination + b * 32
                for j in 0..<32 {
                    out[j] = d * Float(block.load(fromByteOffset: 2 + j, as: Int8.self))
                }
            }
        case .q4_0:
            for b in 0..<count / 32 {
                let block = source + b * 18
                let d = QuillKernels.halfToFloat(block.loadUnaligned(as: UInt16.self))
                let out = destination + b * 32
                for j in 0..<16 {
                    let q = block.load(fromByteOffset: 2 + j, as: UInt8.self)
                    out[j] = d * Float(Int(q & 0x0F) - 8)
                    out[j + 16] = d * Float(Int(q >> 4) - 8)
                }
            }
        case .q4_1:
            for b in 0..<count / 32 {
                let block = source + b * 20
                let d = QuillKernels.halfToFloat(block.loadUnaligned(as: UInt16.self))
                let m = QuillKernels.halfToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                let out = destination + b * 32
                for j in 0..<16 {
                    let q = block.load(fromByteOffset: 4 + j, as: UInt8.self)
                    out[j] = d * Float(q & 0x0F) + m
                    out[j + 16] = d * Float(q >> 4) + m
                }
            }
        }
    }

    /// Dequantises rows `rows` of `m` into `destination`, row after row
    /// (`rows.count * m.columns` floats).
    public static func dequantizeRows(_ m: WeightMatrix, rows: Range<Int>,
                                      into destination: UnsafeMutablePointer<Float>) {
        precondition(rows.lowerBound >= 0 && rows.upperBound <= m.rows, "rows out of range")
        for (i, r) in rows.enumerated() {
            dequantize(m.type, m.row(r), count: m.columns, into: destination + i * m.columns)
        }
    }

    /// Dequantises the whole matrix into a new array of `rows * columns` floats.
    public static func dequantize(_ m: WeightMatrix) -> [Float] {
        [Float](unsafeUninitializedCapacity: m.rows * m.columns) { buffer, initialised in
            if let base = buffer.baseAddress { dequantizeRows(m, rows: 0..<m.rows, into: base) }
            initialised = m.rows * m.columns
        }
    }

    /// IEEE half bits → Float; same as the module-level `halfToFloat`.
    @inlinable public static func halfToFloat(_ bits: UInt16) -> Float { QuillKernels.halfToFloat(bits) }
    /// Float → IEEE half bits (round to nearest even); same as the module-level `floatToHalf`.
    @inlinable public static func floatToHalf(_ value: Float) -> UInt16 { QuillKernels.floatToHalf(value) }
    /// bfloat16 bits → Float; same as the module-level `bf16ToFloat`.
    @inlinable public static func bf16ToFloat(_ bits: UInt16) -> Float { QuillKernels.bf16ToFloat(bits) }
}
