import Testing
import QuillKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Q4_K, Q5_K and Q6_K (llama.cpp's K-quants, 256 values per super-block): hand-built blocks against
// values worked out from ggml-common.h's layout, SIMD against the scalar reference, and the
// mat-vec / GEMM paths against ReferenceMatVec / ReferenceMatMul.

private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

/// Runs `body` on a copy of `bytes` that starts `shift` bytes into a buffer (misaligned loads).
private func withBytes<R>(_ bytes: [UInt8], shift: Int = 3, _ body: (UnsafeRawPointer) -> R) -> R {
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: bytes.count + shift, alignment: 64)
    defer { scratch.deallocate() }
    bytes.withUnsafeBytes { (scratch + shift).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    return body(UnsafeRawPointer(scratch + shift))
}

private func referenceValues(_ type: TensorType, _ bytes: [UInt8], count: Int) -> [Float] {
    withBytes(bytes) { p in
        var out = [Float](repeating: .nan, count: count)
        out.withUnsafeMutableBufferPointer { ReferenceDequantizer.dequantize(type, p, count: count, into: $0.baseAddress!) }
        return out
    }
}

private func simdValues(_ type: TensorType, _ bytes: [UInt8], count: Int) -> [Float] {
    withBytes(bytes, shift: 5) { p in
        var out = [Float](repeating: .nan, count: count)
        out.withUnsafeMutableBufferPointer { KQuants.dequantize(type, p, count: count, into: $0.baseAddress!) }
        return out
    }
}

// MARK: - Q4_K

/// Scales and mins of the hand-built Q4_K block: sub-blocks 4–7 have values ≥ 16, so their top two
/// bits go to the spare top bits of bytes 0–7.
private let q4Scales: [Int] = [1, 2, 3, 4, 17, 35, 50, 63]
private let q4Mins: [Int] = [0, 1, 2, 3, 20, 33, 48, 63]
/// The 12 packed bytes, worked out by hand from get_scale_min_k4:
///   bytes 0–3: sc_j | (sc_{j+4} >> 4) << 6     1|1<<6 = 0x41, 2|2<<6 = 0x82, 3|3<<6 = 0xC3, 4|3<<6 = 0xC4
///   bytes 4–7: m_j | (m_{j+4} >> 4) << 6       0|1<<6 = 0x40, 1|2<<6 = 0x81, 2|3<<6 = 0xC2, 3|3<<6 = 0xC3
///   bytes 8–11: (sc_{j+4} & 15) | (m_{j+4} & 15) << 4   1|4<<4 = 0x41, 3|1<<4 = 0x13, 2|0 = 0x02, 15|15<<4 = 0xFF
private let q4PackedScales: [UInt8] = [0x41, 0x82, 0xC3, 0xC4, 0x40, 0x81, 0xC2, 0xC3, 0x41, 0x13, 0x02, 0xFF]

/// d = 0.5 (0x3800), dmin = 1 (0x3C00); in each 32-byte chunk byte l holds low nibble l % 16 and
/// high nibble 15 − l % 16.
private func q4KBlock() -> [UInt8] {
    let qs = (0..<128).map { i -> UInt8 in let l = UInt8(i % 16); return l | (15 - l) << 4 }
    return le16(0x3800) + le16(0x3C00) + q4PackedScales + qs
}

@Test func q4KScalePacking() {
    withBytes(q4PackedScales) { p in
        for j in 0..<8 {
            let (sc, m) = ReferenceDequantizer.q4KScaleMin(p, j)
            #expect(Int(sc) == q4Scales[j] && Int(m) == q4Mins[j], "sub-block \(j)")
        }
    }
}

@Test func q4KHandBlock() {
    let block = q4KBlock()
    #expect(block.count == TensorType.q4_K.bytesPerBlock && TensorType.q4_K.blockSize == 256)
    let got = referenceValues(.q4_K, block, count: 256)
    // 64-value chunk c: sub-block 2c on the low nibbles (values 64c…64c+31), 2c+1 on the high ones.
    var expected = [Float](repeating: 0, count: 256)
    for c in 0..<4 {
        for l in 0..<32 {
            let low = l % 16, high = 15 - l % 16
            expected[64 * c + l] = 0.5 * Float(q4Scales[2 * c] * low) - Float(q4Mins[2 * c])
            expected[64 * c + 32 + l] = 0.5 * Float(q4Scales[2 * c + 1] * high) - Float(q4Mins[2 * c + 1])
        }
    }
    #expect(got == expected)
    // Spot values by hand: value 33 = sub-block 1, high nibble 14: 0.5·2·14 − 1 = 13;
    // value 131 = sub-block 4, low nibble 3: 0.5·17·3 − 20 = 5.5; value 229 = sub-block 7,
    // high nibble 10: 0.5·63·10 − 63 = 252; value 160 = sub-block 5, high nibble 15: 0.5·35·15 − 33 = 229.5.
    #expect(got[0] == 0 && got[33] == 13 && got[131] == 5.5 && got[229] == 252 && got[160] == 229.5)
    #expect(simdValues(.q4_K, block, count: 256).map(\.bitPattern) == got.map(\.bitPattern))
}

// MARK: - Q5_K

/// Q4_K's hand block with fifth bits: qh[l] = (37·l + 11) mod 256 (block layout d, dmin, scales,
/// qh[32], qs[128]); value 32j + l of sub-block j takes bit j of qh[l] as 16.
private func q5KHigh(_ l: Int) -> UInt8 { UInt8((37 * l + 11) % 256) }

private func q5KBlock() -> [UInt8] {
    let qs = (0..<128).map { i -> UInt8 in let l = UInt8(i % 16); return l | (15 - l) << 4 }
    return le16(0x3800) + le16(0x3C00) + q4PackedScales + (0..<32).map(q5KHigh) + qs
}

@Test func q5KHandBlock() {
    let block = q5KBlock()
    #expect(block.count == TensorType.q5_K.bytesPerBlock && TensorType.q5_K.blockSize == 256)
    let got = referenceValues(.q5_K, block, count: 256)
    var expected = [Float](repeating: 0, count: 256)
    for c in 0..<4 {
        for l in 0..<32 {
            let h = Int(q5KHigh(l))
            let low = l % 16 + 16 * ((h >> (2 * c)) & 1), high = 15 - l % 16 + 16 * ((h >> (2 * c + 1)) & 1)
            expected[64 * c + l] = 0.5 * Float(q4Scales[2 * c] * low) - Float(q4Mins[2 * c])
            expected[64 * c + 32 + l] = 0.5 * Float(q4Scales[2 * c + 1] * high) - Float(q4Mins[2 * c + 1])
        }
    }
    #expect(got == expected)
    // By hand: value 0: qh[0] = 11 = 0b1011, bit 0 set: q = 0 + 16, 0.5·1·16 − 0 = 8. Value 33 (sub-block 1,
    // l = 1): qh[1] = 48, bit 1 clear: q = 14, 0.5·2·14 − 1 = 13. Value 131 (sub-block 4, l = 3):
    // qh[3] = 122 = 0b0111_1010, bit 4 set: q = 3 + 16 = 19, 0.5·17·19 − 20 = 141.5. Value 229 (sub-block 7,
    // l = 5, high nibble 10): qh[5] = 196 = 0b1100_0100, bit 7 set: q = 26, 0.5·63·26 − 63 = 756.
    #expect(got[0] == 8 && got[33] == 13 && got[131] == 141.5 && got[229] == 756)
    #expect(simdValues(.q5_K, block, count: 256).map(\.bitPattern) == got.map(\.bitPattern))
}

// MARK: - Q6_K

/// The hand-built Q6_K block's 6-bit values (0…63) and int8 scales (one per 16 values).
private func q6Value(_ i: Int) -> Int { (i * 7) % 64 }
private let q6Scales: [Int8] = [-128] + (1..<15).map { Int8($0 - 8) } + [127]

/// Packs the values as ggml-common.h lays them out: per 128-value half h and l < 32, ql[64h + l]
/// holds the low 4 bits of values l (low nibble) and l + 64 (high), ql[64h + 32 + l] those of
/// l + 32 and l + 96, and qh[32h + l] the top 2 bits of l, l + 32, l + 64, l + 96 (bits 0–1 … 6–7).
/// d = 0.5 (0x3800).
private func q6KBlock() -> [UInt8] {
    var ql = [UInt8](repeating: 0, count: 128), qh = [UInt8](repeating: 0, count: 64)
    for h in 0..<2 {
        for l in 0..<32 {
            let q = (0..<4).map { UInt8(q6Value(128 * h + l + 32 * $0)) }
            ql[64 * h + l] = (q[0] & 15) | (q[2] & 15) << 4
            ql[64 * h + 32 + l] = (q[1] & 15) | (q[3] & 15) << 4
            qh[32 * h + l] = (q[0] >> 4) | (q[1] >> 4) << 2 | (q[2] >> 4) << 4 | (q[3] >> 4) << 6
        }
    }
    return ql + qh + q6Scales.map { UInt8(bitPattern: $0) } + le16(0x3800)
}

@Test func q6KHandBlock() {
    let block = q6KBlock()
    #expect(block.count == TensorType.q6_K.bytesPerBlock && TensorType.q6_K.blockSize == 256)
    let got = referenceValues(.q6_K, block, count: 256)
    let expected = (0..<256).map { i in 0.5 * Float(q6Scales[i / 16]) * Float(q6Value(i) - 32) }
    #expect(got == expected)
    // By hand: value 0: q = 0, scale −128: 0.5·(−128)·(−32) = 2048. Value 100 (top bits in qh[4]
    // bits 6–7): q = 700 mod 64 = 60, scale[6] = −2: 0.5·(−2)·28 = −28. Value 255: q = 57,
    // scale 127: 0.5·127·25 = 1587.5. Value 137 (second half, ql[73] high nibble… no: ql[64+9] low
    // nibble, qh[41] bits 0–1): q = 959 mod 64 = 63, scale[8] = 0 → 0; value 147: q = 1029 mod 64 = 5,
    // scale[9] = 1: 0.5·1·(−27) = −13.5.
    #expect(got[0] == 2048 && got[100] == -28 && got[255] == 1587.5 && got[137] == 0 && got[147] == -13.5)
    #expect(simdValues(.q6_K, block, count: 256).map(\.bitPattern) == got.map(\.bitPattern))
}

@Test func kQuantsLoadAsTensorTypes() {
    #expect(TensorType(rawValue: 12) == .q4_K && TensorType(rawValue: 13) == .q5_K && TensorType(rawValue: 14) == .q6_K)
    #expect(TensorType.q4_K.description == "Q4_K" && TensorType.q5_K.description == "Q5_K" && TensorType.q6_K.description == "Q6_K")
    #expect(TensorType.q4_K.byteCount(elements: 512) == 288 && TensorType.q6_K.byteCount(elements: 768) == 630)
    // Q5_K: 2 + 2 + 12 + 32 + 128 = 176 bytes per 256 values.
    #expect(TensorType.q5_K.byteCount(elements: 512) == 352)
    #expect(TensorType.q4_K.byteCount(elements: 576) == nil && TensorType.q5_K.byteCount(elements: 896) == nil)
}

// MARK: - Random matrices

let kQuantTypes: [TensorType] = [.q4_K, .q5_K, .q6_K]

@Test(arguments: kQuantTypes) func kQuantSIMDDequantMatchesReference(type: TensorType) {
    var g = SeededGenerator(seed: 700 + UInt64(type.rawValue))
    let w = RandomWeights(type, rows: 5, columns: 1536, using: &g)
    defer { w.free() }
    let reference = ReferenceDequantizer.dequantize(w.matrix)
    var simd = [Float](repeating: .nan, count: reference.count)
    simd.withUnsafeMutableBufferPointer { out in
        for r in 0..<5 { KQuants.dequantize(type, w.matrix.row(r), count: 1536, into: out.baseAddress! + 1536 * r) }
    }
    #expect(simd.map(\.bitPattern) == reference.map(\.bitPattern))
    #expect(reference.allSatisfy(\.isFinite) && reference.contains { $0 > 0.5 } && reference.contains { $0 < -0.5 })
}

/// The fused-products and pre-quantised-activation entry points (what DecoderModel's decode step
/// calls) agree with the plain f32 call and the reference.
@Test(arguments: kQuantTypes) func kQuantMatVecSharedActivations(type: TensorType) {
    var g = SeededGenerator(seed: 800 + UInt64(type.rawValue))
    let a = RandomWeights(type, rows: 70, columns: 512, using: &g), b = RandomWeights(.q4_1, rows: 33, columns: 512, using: &g)
    defer { a.free(); b.free() }
    let x = [Float].random(count: 512, using: &g)
    var xq = QuantizedActivations(capacity: 512)
    xq.quantize(x, count: 512)
    var outputs: [[Float]] = []
    for threads in [1, 2] {
        let pool = ThreadPool(threads: threads)
        var ya = [Float](repeating: .nan, count: 70), yb = [Float](repeating: .nan, count: 33)
        ya.withUnsafeMutableBufferPointer { pa in
            yb.withUnsafeMutableBufferPointer { pb in
                MatVec.multiply([(a.matrix, pa.baseAddress!), (b.matrix, pb.baseAddress!)], xq, pool: pool)
            }
        }
        var single = [Float](repeating: .nan, count: 70)
        MatVec.multiply(a.matrix, xq, into: &single, pool: pool)
        #expect(single.map(\.bitPattern) == ya.map(\.bitPattern))
        outputs.append(ya)
    }
    #expect(outputs[0].map(\.bitPattern) == outputs[1].map(\.bitPattern))
    var twin = [Float](repeating: 0, count: 70)
    ReferenceMatVec.multiply(a.matrix, xq, into: &twin)
    #expect(normalisedError(outputs[0], twin) <= 1e-5)
    var exact = [Float](repeating: 0, count: 70)
    ReferenceMatVec.multiply(a.matrix, x, into: &exact)
    #expect(normalisedError(outputs[0], exact) <= 1e-2)
}

@Test(arguments: kQuantTypes) func kQuantMatVecRowsAndColumns(type: TensorType) {
    var g = SeededGenerator(seed: 900 + UInt64(type.rawValue))
    let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
    for columns in [256, 512, 1536] {
        // int8 against the exact product is normalised over all rows of one width (per kernel): the
        // 5 dot products of a 5-row matrix are too few to measure the activation quantisation error.
        var int8Pooled: [Bool: (y: [Float], exact: [Float])] = [false: ([], []), true: ([], [])]
        for rows in [5, 37, 130] {
            let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
            defer { w.free() }
            let x = [Float].random(count: columns, using: &g)
            var expected = [Float](repeating: 0, count: rows)
            ReferenceMatVec.multiply(w.matrix, x, into: &expected)
            for precision in [MatVecPrecision.f32, .int8] {
                for portable in [false, true] {
                    let outputs = pools.map { pool in
                        var y = [Float](repeating: .nan, count: rows)
                        MatVec.$usePortableKernels.withValue(portable) {
                            MatVec.multiply(w.matrix, x, into: &y, precision: precision, pool: pool)
                        }
                        return y
                    }
                    let label = "\(type) \(rows)×\(columns) \(precision) portable=\(portable)"
                    #expect(outputs[0].map(\.bitPattern) == outputs[1].map(\.bitPattern), "\(label): threads differ")
                    if precision == .f32 {
                        let error = normalisedError(outputs[0], expected)
                        #expect(error <= 1e-5, "\(label): \(error)")
                    } else {
                        int8Pooled[portable]!.y += outputs[0]
                        int8Pooled[portable]!.exact += expected
                        // Against the same int8 activations: f32 rounding only (the VNNI kernels
                        // and the portable fallback alike).
                        var xq = QuantizedActivations(capacity: columns)
                        xq.quantize(x, count: columns)
                        var twin = [Float](repeating: 0, count: rows)
                        ReferenceMatVec.multiply(w.matrix, xq, into: &twin)
                        let e = normalisedError(outputs[0], twin)
                        #expect(e <= 1e-5, "\(label) vs quantised twin: \(e)")
                    }
                }
            }
        }
        for (portable, pooled) in int8Pooled {
            let error = normalisedError(pooled.y, pooled.exact)
            #expect(error <= 1e-2, "\(type) ×\(columns) int8 portable=\(portable): \(error)")
        }
    }
}

@Test(arguments: kQuantTypes) func kQuantMatMulMatchesReference(type: TensorType) {
    var g = SeededGenerator(seed: 1100 + UInt64(type.rawValue))
    let pool = ThreadPool(threads: 2)
    for (rows, columns) in [(37, 512), (300, 256)] {
        let w = RandomWeights(type, rows: rows, columns: columns, using: &g)
        defer { w.free() }
        for tokens in [1, 3, 17] {
            let x = [Float].random(count: tokens * columns, using: &g)
            var expected = [Float](repeating: 0, count: tokens * rows)
            ReferenceMatMul.multiply(w.matrix, x, tokens: tokens, into: &expected)
            for blas in [true, false] {
                var y = [Float](repeating: .nan, count: tokens * rows)
                MatMul.$disableBLAS.withValue(!blas) { MatMul.multiply(w.matrix, x, tokens: tokens, into: &y, pool: pool) }
                let error = normalisedError(y, expected)
                #expect(error <= 1e-5, "\(type) \(rows)×\(columns) tokens \(tokens) blas=\(blas): \(error)")
            }
        }
    }
}

/// Throughput of the K-quant mat-vec on a 4096×4096 matrix (QUILL_KERNEL_BENCH=1 only).
@Suite(.serialized, .enabled(if: getenv("QUILL_KERNEL_BENCH") != nil))
struct KQuantBench {
    @Test func matVec4096() {
        var g = SeededGenerator(seed: 11)
        for type in kQuantTypes {
            let w = RandomWeights(type, rows: 4096, columns: 4096, using: &g)
            defer { w.free() }
            let x = [Float].random(count: 4096, using: &g)
            var xq = QuantizedActivations(capacity: 4096)
            xq.quantize(x, count: 4096)
            var y = [Float](repeating: 0, count: 4096)
            let bytes = Double(w.matrix.rowBytes * 4096)
            for threads in [1, 2] {
                let pool = ThreadPool(threads: threads)
                func best(_ body: () -> Void) -> Double {
                    (0..<5).map { _ in
                        var ts = timespec(), te = timespec()
                        clock_gettime(CLOCK_MONOTONIC, &ts)
                        for _ in 0..<20 { body() }
                        clock_gettime(CLOCK_MONOTONIC, &te)
                        return (Double(te.tv_sec - ts.tv_sec) + Double(te.tv_nsec - ts.tv_nsec) * 1e-9) / 20
                    }.min()!
                }
                let tF32 = best { MatVec.multiply(w.matrix, x, into: &y, precision: .f32, pool: pool) }
                let tInt8 = best { MatVec.multiply(w.matrix, xq, into: &y, pool: pool) }
                print("BENCH threads=\(threads) \(type) 4096x4096 (\(Int(bytes) >> 20) MiB): f32 \(bytes / tF32 / 1e9) GB/s "
                      + "(\(tF32 * 1e6) µs), int8 \(bytes / tInt8 / 1e9) GB/s (\(tInt8 * 1e6) µs)")
            }
        }
    }
}
