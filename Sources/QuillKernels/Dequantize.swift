/// Plain scalar dequantisation: the obviously-correct reference that optimised kernels are tested
/// against. Speed is not a goal here; clarity is.
public enum ReferenceDequantizer {
    /// Converts `count` consecutive elements of `type` starting at `source` to Float.
    ///
    /// `count` must be a whole number of blocks. `source` needs no alignment: quantised blocks are
    /// 18 to 34 bytes (or 144 to 210 for the K-quants), so every read is an unaligned load.
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
        case .q5_0, .q5_1:
            // dequantize_row_q5_0 / _q5_1: q4_0's nibbles plus bit j of the 32-bit qh as bit 4 of element j.
            let offset = type == .q5_0 ? 2 : 4
            for b in 0..<count / 32 {
                let block = source + b * type.bytesPerBlock
                let d = QuillKernels.halfToFloat(block.loadUnaligned(as: UInt16.self))
                let m = type == .q5_1 ? QuillKernels.halfToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) : 0
                let qh = block.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
                let out = destination + b * 32
                for j in 0..<16 {
                    let byte = block.load(fromByteOffset: offset + 4 + j, as: UInt8.self)
                    let q0 = Int(byte & 0x0F) | Int((qh >> j) & 1) << 4
                    let q1 = Int(byte >> 4) | Int((qh >> (j + 16)) & 1) << 4
                    if type == .q5_0 {
                        out[j] = d * Float(q0 - 16)
                        out[j + 16] = d * Float(q1 - 16)
                    } else {
                        out[j] = d * Float(q0) + m
                        out[j + 16] = d * Float(q1) + m
                    }
                }
            }
        case .q4_K, .q5_K:
            let stride = type.bytesPerBlock
            for b in 0..<count / 256 {
                let block = source + b * stride
                let d = QuillKernels.halfToFloat(block.loadUnaligned(as: UInt16.self))
                let dmin = QuillKernels.halfToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                // Q5_K inserts qh[32] before the nibbles: sub-block j's fifth bits are bit j of qh[0..<32].
                let scales = block + 4, qh = block + 16, q = block + (type == .q5_K ? 48 : 16)
                func fifthBit(_ l: Int, _ j: Int) -> UInt8 {
                    type == .q5_K ? ((qh.load(fromByteOffset: l, as: UInt8.self) >> j) & 1) << 4 : 0
                }
                let out = destination + b * 256
                // dequantize_row_q4_K / _q5_K: each 64 values share 32 bytes, low nibbles first.
                for chunk in 0..<4 {
                    let (sc1, m1) = q4KScaleMin(scales, 2 * chunk)
                    let (sc2, m2) = q4KScaleMin(scales, 2 * chunk + 1)
                    let d1 = d * Float(sc1), min1 = dmin * Float(m1)
                    let d2 = d * Float(sc2), min2 = dmin * Float(m2)
                    for l in 0..<32 {
                        let byte = q.load(fromByteOffset: 32 * chunk + l, as: UInt8.self)
                        out[64 * chunk + l] = d1 * Float((byte & 0x0F) | fifthBit(l, 2 * chunk)) - min1
                        out[64 * chunk + 32 + l] = d2 * Float((byte >> 4) | fifthBit(l, 2 * chunk + 1)) - min2
                    }
                }
            }
        case .q6_K:
            for b in 0..<count / 256 {
                let block = source + b * 210
                let d = QuillKernels.halfToFloat(block.loadUnaligned(fromByteOffset: 208, as: UInt16.self))
                let out = destination + b * 256
                // dequantize_row_q6_K: two halves of 128 values, each 64 bytes of ql and 32 of qh.
                for half in 0..<2 {
                    let ql = block + 64 * half, qh = block + 128 + 32 * half
                    let sc = block + 192 + 8 * half
                    let y = out + 128 * half
                    func scale(_ i: Int) -> Float { d * Float(sc.load(fromByteOffset: i, as: Int8.self)) }
                    for l in 0..<32 {
                        let s = l / 16
                        let lo = Int(ql.load(fromByteOffset: l, as: UInt8.self))
                        let hi = Int(ql.load(fromByteOffset: l + 32, as: UInt8.self))
                        let h = Int(qh.load(fromByteOffset: l, as: UInt8.self))
                        let q1 = ((lo & 0xF) | ((h & 3) << 4)) - 32
                        let q2 = ((hi & 0xF) | (((h >> 2) & 3) << 4)) - 32
                        let q3 = ((lo >> 4) | (((h >> 4) & 3) << 4)) - 32
                        let q4 = ((hi >> 4) | (((h >> 6) & 3) << 4)) - 32
                        y[l] = scale(s) * Float(q1)
                        y[l + 32] = scale(s + 2) * Float(q2)
                        y[l + 64] = scale(s + 4) * Float(q3)
                        y[l + 96] = scale(s + 6) * Float(q4)
                    }
                }
            }
        }
    }

    /// Q4_K's 6-bit scale and min of sub-block `j` (0..<8) from the 12 packed bytes (ggml's
    /// `get_scale_min_k4`): sub-blocks 0–3 use the low 6 bits of bytes j and j + 4; sub-blocks 4–7
    /// take 4 low bits from byte j + 4 (low / high nibble) and their top 2 bits from the spare top
    /// bits of bytes j − 4 (scale) and j (min).
    @inlinable public static func q4KScaleMin(_ scales: UnsafeRawPointer, _ j: Int) -> (scale: UInt8, min: UInt8) {
        func byte(_ i: Int) -> UInt8 { scales.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 { return (byte(j) & 63, byte(j + 4) & 63) }
        return ((byte(j + 4) & 0xF) | ((byte(j - 4) >> 6) << 4), (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4))
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
