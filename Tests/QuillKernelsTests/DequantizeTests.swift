import QuillKernels
import Testing

// Hand-built blocks for every TensorType. Every expected value is exact in Float, so the
// comparisons are exact. Half-precision constants used below:
//   0x3800 = 0.5   0xBD00 = -1.25   0x4000 = 2.0   0x3C00 = 1.0   0xC000 = -2.0

/// Runs the reference dequantizer over `bytes`, starting at byte `shift` of a scratch buffer so the
/// loads are misaligned on purpose.
private func dequantize(_ type: TensorType, _ bytes: [UInt8], count: Int, shift: Int = 1) -> [Float] {
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: bytes.count + shift, alignment: 16)
    defer { scratch.deallocate() }
    bytes.withUnsafeBytes { (scratch + shift).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    var out = [Float](repeating: .nan, count: count)
    out.withUnsafeMutableBufferPointer {
        ReferenceDequantizer.dequantize(type, UnsafeRawPointer(scratch + shift), count: count, into: $0.baseAddress!)
    }
    return out
}

private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
private func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }

@Test func dequantizeF32() {
    // 0x3FC00000 = 1.5, 0xC0000000 = -2.0, 0x00000001 = 2^-149 (smallest subnormal)
    let bytes = le32(0x3FC0_0000) + le32(0xC000_0000) + le32(1)
    #expect(dequantize(.f32, bytes, count: 3) == [1.5, -2.0, Float.leastNonzeroMagnitude])
}

@Test func dequantizeF16NormalAndSubnormal() {
    // 0x3C00 = 1.0; 0xC000 = -2.0; 0x7BFF = 65504 (largest finite half);
    // 0x0001 = 2^-24 (smallest subnormal); 0x03FF = 1023·2^-24 (largest subnormal);
    // 0x0400 = 2^-14 (smallest normal); 0x3555 = 1365/4096 = 0.333251953125
    let halves: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x3555]
    let got = dequantize(.f16, halves.flatMap(le16), count: halves.count)
    let expected: [Float] = [1, -2, 65504, 0x1p-24, 1023 * 0x1p-24, 0x1p-14, 0.333251953125]
    #expect(got == expected)
}

@Test func dequantizeF16SpecialValues() {
    // 0x7C00 = +inf, 0xFC00 = -inf, 0x7E00 = quiet NaN, 0x8000 = -0
    let got = dequantize(.f16, [0x7C00, 0xFC00, 0x7E00, 0x8000].flatMap(le16), count: 4)
    #expect(got[0] == .infinity)
    #expect(got[1] == -.infinity)
    #expect(got[2].isNaN)
    #expect(got[3] == 0 && got[3].sign == .minus)
}

@Test func dequantizeBF16() {
    // bf16 is the top 16 bits of a Float: 0x3F80 → 0x3F800000 = 1.0; 0xC0A0 → -5.0;
    // 0x4049 → 0x40490000 = 3.140625; 0x7F80 → +inf; 0x0001 → 0x00010000 = 2^-133 (subnormal)
    let got = dequantize(.bf16, [0x3F80, 0xC0A0, 0x4049, 0x7F80, 0x0001].flatMap(le16), count: 5)
    #expect(got == [1.0, -5.0, 3.140625, .infinity, 0x1p-133])
}

@Test func dequantizeQ8_0() {
    // d = 0.5; qs = [-128, -1, 0, 1, 127, then q_j = j - 16 for j = 5...31]
    // → x = [-64, -0.5, 0, 0.5, 63.5, 0.5·(j-16) ...]  (j = 5 → -5.5, j = 31 → 7.5)
    var qs: [Int8] = [-128, -1, 0, 1, 127]
    qs += (5..<32).map { Int8($0 - 16) }
    let block = le16(0x3800) + qs.map { UInt8(bitPattern: $0) }
    #expect(block.count == 34)
    var expected: [Float] = [-64, -0.5, 0, 0.5, 63.5]
    expected += (5..<32).map { 0.5 * Float($0 - 16) }
    #expect(dequantize(.q8_0, block, count: 32) == expected)
}

@Test func dequantizeQ8_0NegativeScaleTwoBlocks() {
    // block 0: d = -1.25, all q = 4 → -5.0; block 1: d = 2.0, all q = -3 → -6.0
    let b0 = le16(0xBD00) + [UInt8](repeating: 4, count: 32)
    let b1 = le16(0x4000) + [UInt8](repeating: UInt8(bitPattern: -3), count: 32)
    let got = dequantize(.q8_0, b0 + b1, count: 64, shift: 3)
    #expect(got == [Float](repeating: -5, count: 32) + [Float](repeating: -6, count: 32))
}

@Test func dequantizeQ4_0() {
    // d = 0.5; qs[j] = (15 - j) << 4 | j, so element j (low nibble) is q = j and element j + 16
    // (high nibble) is q = 15 - j. x = d·(q - 8):
    //   elements 0..15  = 0.5·(j - 8)  = -4, -3.5, ..., 3.5
    //   elements 16..31 = 0.5·(7 - j)  = 3.5, 3, ..., -4
    let qs = (0..<16).map { UInt8((15 - $0) << 4 | $0) }
    let block = le16(0x3800) + qs
    #expect(block.count == 18)
    let expected: [Float] = [-4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5,
                             3.5, 3, 2.5, 2, 1.5, 1, 0.5, 0, -0.5, -1, -1.5, -2, -2.5, -3, -3.5, -4]
    #expect(dequantize(.q4_0, block, count: 32) == expected)
}

@Test func dequantizeQ4_0NibbleOrder() {
    // d = 1; every byte 0x88 (both nibbles 8 → 0) except qs[0] = 0xF0 and qs[15] = 0x1E.
    // qs[0]:  low nibble 0  → element 0  = -8;  high nibble 15 → element 16 = 7
    // qs[15]: low nibble 14 → element 15 = 6;   high nibble 1  → element 31 = -7
    var qs = [UInt8](repeating: 0x88, count: 16)
    qs[0] = 0xF0
    qs[15] = 0x1E
    let got = dequantize(.q4_0, le16(0x3C00) + qs, count: 32)
    var expected = [Float](repeating: 0, count: 32)
    expected[0] = -8
    expected[16] = 7
    expected[15] = 6
    expected[31] = -7
    #expect(got == expected)
}

@Test func dequantizeQ4_0NegativeScale() {
    // d = -1.25, all bytes 0x3C: low nibble 12 → -1.25·4 = -5; high nibble 3 → -1.25·(-5) = 6.25
    let got = dequantize(.q4_0, le16(0xBD00) + [UInt8](repeating: 0x3C, count: 16), count: 32, shift: 5)
    #expect(got == [Float](repeating: -5, count: 16) + [Float](repeating: 6.25, count: 16))
}

@Test func dequantizeQ4_1() {
    // d = -1.25, m = 2.0; qs[j] = (15 - j) << 4 | j. x = d·q + m:
    //   element j      = -1.25·j + 2         → 2, 0.75, -0.5, ..., -16.75
    //   element j + 16 = -1.25·(15 - j) + 2  → -16.75, ..., 0.75, 2
    let qs = (0..<16).map { UInt8((15 - $0) << 4 | $0) }
    let block = le16(0xBD00) + le16(0x4000) + qs
    #expect(block.count == 20)
    let low: [Float] = [2, 0.75, -0.5, -1.75, -3, -4.25, -5.5, -6.75,
                        -8, -9.25, -10.5, -11.75, -13, -14.25, -15.5, -16.75]
    #expect(dequantize(.q4_1, block, count: 32) == low + low.reversed())
}

@Test func dequantizeQ4_1TwoBlocks() {
    // block 0: d = 0.5, m = -2, bytes 0xF0 → low 0 → -2, high 15 → 5.5
    // block 1: d = 1,   m = 1,  bytes 0x21 → low 1 → 2,  high 2  → 3
    let b0 = le16(0x3800) + le16(0xC000) + [UInt8](repeating: 0xF0, count: 16)
    let b1 = le16(0x3C00) + le16(0x3C00) + [UInt8](repeating: 0x21, count: 16)
    let expected = [Float](repeating: -2, count: 16) + [Float](repeating: 5.5, count: 16)
        + [Float](repeating: 2, count: 16) + [Float](repeating: 3, count: 16)
    #expect(dequantize(.q4_1, b0 + b1, count: 64, shift: 7) == expected)
}

@Test func dequantizeRowsOfWeightMatrix() {
    // 3 rows × 64 columns of Q8_0 (2 blocks per row). Row r, block b has d = 1 and all q = 10r + b.
    var bytes: [UInt8] = []
    for r in 0..<3 {
        for b in 0..<2 { bytes += le16(0x3C00) + [UInt8](repeating: UInt8(10 * r + b), count: 32) }
    }
    bytes.withUnsafeBytes { raw in
        let m = WeightMatrix(type: .q8_0, rows: 3, columns: 64, data: raw.baseAddress!)
        var out = [Float](repeating: .nan, count: 2 * 64)
        out.withUnsafeMutableBufferPointer {
            ReferenceDequantizer.dequantizeRows(m, rows: 1..<3, into: $0.baseAddress!)
        }
        let expected = [Float](repeating: 10, count: 32) + [Float](repeating: 11, count: 32)
            + [Float](repeating: 20, count: 32) + [Float](repeating: 21, count: 32)
        #expect(out == expected)
        #expect(ReferenceDequantizer.dequantize(m).count == 3 * 64)
        #expect(Array(ReferenceDequantizer.dequantize(m)[64...]) == expected)
    }
}

@Test func halfConversionHelpers() {
    #expect(halfToFloat(0x3C00) == 1)
    #expect(floatToHalf(1) == 0x3C00)
    #expect(floatToHalf(-2) == 0xC000)
    #expect(floatToHalf(0x1p-24) == 0x0001)
    // 65520 is halfway between 65504 and the next (unrepresentable) step: rounds to +inf.
    #expect(floatToHalf(65520) == 0x7C00)
    // 1 + 2^-11 is a tie between 0x3C00 and 0x3C01: round to even → 0x3C00; 1 + 3·2^-11 → 0x3C02.
    #expect(floatToHalf(1 + 0x1p-11) == 0x3C00)
    #expect(floatToHalf(1 + 3 * 0x1p-11) == 0x3C02)
    #expect(floatToHalf(.nan) & 0x7C00 == 0x7C00 && floatToHalf(.nan) & 0x03FF != 0)
    // Every finite half round-trips exactly through Float.
    for bits in UInt16.min...UInt16.max where bits & 0x7C00 != 0x7C00 {
        #expect(floatToHalf(halfToFloat(bits)) == bits)
    }
    #expect(bf16ToFloat(0xBF80) == -1)
    #expect(ReferenceDequantizer.halfToFloat(0x3800) == 0.5)
    #expect(ReferenceDequantizer.bf16ToFloat(0x4000) == 2)
    #expect(ReferenceDequantizer.floatToHalf(0.5) == 0x3800)
}
