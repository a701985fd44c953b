import Testing
import QuillKernels

// Q5_0 and Q5_1 (32-value blocks, 5-bit values): hand-built blocks against values worked out from
// ggml-common.h's layout, and the SIMD dequantiser (GEMM panels) against the scalar reference.

/// The hand block's 5-bit values: q_j = (7j + 3) mod 32.
private let q5Values: [Int] = (0..<32).map { (7 * $0 + 3) % 32 }

/// Packs 32 five-bit values as block_q5_0 / _q5_1 do: qs[j] holds the low 4 bits of value j (low
/// nibble) and j + 16 (high nibble); bit j of the little-endian 32-bit qh is bit 4 of value j.
private func packFiveBit(_ q: [Int]) -> (qh: [UInt8], qs: [UInt8]) {
    var qh: UInt32 = 0
    for j in 0..<32 where q[j] >= 16 { qh |= 1 << j }
    let qs = (0..<16).map { j in UInt8(q[j] & 15) | UInt8(q[j + 16] & 15) << 4 }
    return ((0..<4).map { UInt8((qh >> (8 * $0)) & 0xFF) }, qs)
}

private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

/// Dequantises `bytes` placed `shift` bytes into a buffer (unaligned loads), by the reference or SIMD.
private func values(_ type: TensorType, _ bytes: [UInt8], simd: Bool, shift: Int = 3) -> [Float] {
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: bytes.count + shift, alignment: 64)
    defer { scratch.deallocate() }
    bytes.withUnsafeBytes { (scratch + shift).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    let count = bytes.count / type.bytesPerBlock * 32
    var out = [Float](repeating: .nan, count: count)
    out.withUnsafeMutableBufferPointer { o in
        if simd {
            FiveBitQuants.dequantize(type, scratch + shift, count: count, into: o.baseAddress!)
        } else {
            ReferenceDequantizer.dequantize(type, scratch + shift, count: count, into: o.baseAddress!)
        }
    }
    return out
}

@Test func fiveBitTypesAndSizes() {
    #expect(TensorType(rawValue: 6) == .q5_0 && TensorType(rawValue: 7) == .q5_1)
    #expect(TensorType.q5_0.description == "Q5_0" && TensorType.q5_1.description == "Q5_1")
    // block_q5_0: 2 + 4 + 16 bytes; block_q5_1: 2 + 2 + 4 + 16.
    #expect(TensorType.q5_0.bytesPerBlock == 22 && TensorType.q5_1.bytesPerBlock == 24)
    #expect(TensorType.q5_0.byteCount(elements: 640) == 440 && TensorType.q5_1.byteCount(elements: 896) == 672)
    #expect(TensorType.q5_0.byteCount(elements: 48) == nil)
}

@Test func q5_0HandBlock() {
    let (qh, qs) = packFiveBit(q5Values)
    // The fifth bits by hand: values ≥ 16 at j = 2, 3, 4, 7 | 8, 11, 12, 13 | 16, 17, 21, 22 | 25, 26, 30, 31.
    #expect(qh == [0x9C, 0x39, 0x63, 0xC6])
    let block = le16(0x3800) + qh + qs  // d = 0.5
    #expect(block.count == TensorType.q5_0.bytesPerBlock)
    let got = values(.q5_0, block, simd: false)
    #expect(got == q5Values.map { 0.5 * Float($0 - 16) })
    // By hand: q_0 = 3 → 0.5·(3 − 16) = −6.5; q_5 = 38 mod 32 = 6 → −5; q_16 = 115 mod 32 = 19 → 1.5;
    // q_31 = 220 mod 32 = 28 → 6.
    #expect(got[0] == -6.5 && got[5] == -5 && got[16] == 1.5 && got[31] == 6)
    #expect(values(.q5_0, block, simd: true).map(\.bitPattern) == got.map(\.bitPattern))
    // ggml's Q5_0 quantiser stores d = max / −16, usually negative. With d = −0.5 (0xB800) the signs flip,
    // and q_11 = 80 mod 32 = 16 gives −0.5·0 = −0 (the SIMD path must not turn it into +0).
    let negative = values(.q5_0, le16(0xB800) + qh + qs, simd: false)
    #expect(negative == q5Values.map { -0.5 * Float($0 - 16) } && negative[11].sign == .minus)
    #expect(values(.q5_0, le16(0xB800) + qh + qs, simd: true).map(\.bitPattern) == negative.map(\.bitPattern))
}

@Test func q5_1HandBlock() {
    let (qh, qs) = packFiveBit(q5Values)
    let block = le16(0x3400) + le16(0xC000) + qh + qs  // d = 0.25, m = −2
    #expect(block.count == TensorType.q5_1.bytesPerBlock)
    let got = values(.q5_1, block, simd: false)
    #expect(got == q5Values.map { 0.25 * Float($0) - 2 })
    // By hand: q_0 = 3 → 0.75 − 2 = −1.25; q_16 = 19 → 4.75 − 2 = 2.75; q_31 = 28 → 7 − 2 = 5.
    #expect(got[0] == -1.25 && got[16] == 2.75 && got[31] == 5)
    #expect(values(.q5_1, block, simd: true).map(\.bitPattern) == got.map(\.bitPattern))
}

@Test(arguments: [TensorType.q5_0, .q5_1]) func fiveBitSIMDDequantMatchesReference(type: TensorType) {
    var g = SeededGenerator(seed: 600 + UInt64(type.rawValue))
    let w = RandomWeights(type, rows: 3, columns: 896, using: &g)
    defer { w.free() }
    // Negative scales in every other block, as ggml's quantisers write them (sign bit of the f16 d).
    let data = UnsafeMutableRawPointer(mutating: w.matrix.data)
    for b in stride(from: 0, to: 3 * 896 / 32, by: 2) {
        let p = data + b * type.bytesPerBlock
        p.storeBytes(of: p.loadUnaligned(as: UInt16.self) | 0x8000, as: UInt16.self)
    }
    let reference = ReferenceDequantizer.dequantize(w.matrix)
    let bytes = [UInt8](UnsafeRawBufferPointer(start: w.matrix.data, count: 3 * w.matrix.rowBytes))
    #expect(values(type, bytes, simd: true, shift: 5).map(\.bitPattern) == reference.map(\.bitPattern))
    #expect(reference.allSatisfy(\.isFinite) && reference.contains { $0 > 0.3 } && reference.contains { $0 < -0.1 })
}
