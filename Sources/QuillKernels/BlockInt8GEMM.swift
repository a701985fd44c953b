#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// Prompt tokens quantised to int8 in blocks of 32 (each block as `QuantizedActivations` quantises
/// it: the same bytes and scale the one-row int8 kernels see) and laid out for `BlockInt8GEMM`,
/// sixteen tokens per 512-bit vector.
///
/// Layout, for `vectors` groups of 16 tokens (token `t` is lane `t % 16` of vector `t / 16`;
/// lanes past `tokens` hold zeros):
/// - `bytes`: (vector, columns / 4, lane, 4) int8 — for each 4 columns, 64 bytes: the 4 values of
///   each of the 16 tokens, the operand `vpdpbusd` multiplies against a broadcast weight quad;
/// - `scales`: (vector, columns / 32, lane) the block scale `d`;
/// - `sums32`: (vector, columns / 32, lane) `d·Σq` over the block; `sums16`: the same over each half.
public struct InterleavedActivations: @unchecked Sendable {
    final class Storage {
        let bytes: UnsafeMutableRawPointer
        let floats: UnsafeMutablePointer<Float>
        let byteCount: Int, floatCount: Int
        init(vectors: Int, columns: Int) {
            byteCount = max(64, vectors * columns * 16)
            floatCount = max(16, vectors * (columns / 32) * 16 * 4)
            bytes = .allocate(byteCount: byteCount, alignment: 64)
            // 64-byte aligned: the kernel loads 16 lanes at once.
            floats = UnsafeMutableRawPointer.allocate(byteCount: 4 * floatCount, alignment: 64)
                .bindMemory(to: Float.self, capacity: floatCount)
        }
        deinit {
            bytes.deallocate()
            UnsafeMutableRawPointer(floats).deallocate()  // allocated raw, 64-byte aligned
        }
    }

    let storage: Storage
    /// Quantised tokens.
    public let tokens: Int
    /// Elements per token (a multiple of 32).
    public let columns: Int
    /// Groups of 16 tokens (token `t` is lane `t % 16` of vector `t / 16`). The kernel takes them
    /// two at a time and an odd last one alone, so no more than 15 lanes are padding.
    public let vectors: Int

    static func vectors(_ tokens: Int) -> Int { (tokens + 15) / 16 }

    var bytes: UnsafeRawPointer { UnsafeRawPointer(storage.bytes) }
    var scales: UnsafePointer<Float> { UnsafePointer(storage.floats) }
    var sums32: UnsafePointer<Float> { UnsafePointer(storage.floats + vectors * (columns / 32) * 16) }
    var sums16: UnsafePointer<Float> { UnsafePointer(storage.floats + 2 * vectors * (columns / 32) * 16) }

    /// Quantises `x` (tokens, columns), row-major; `columns` a multiple of 32. Token groups are
    /// spread over `pool`; each token is quantised alone, so the bytes never depend on the split.
    public init(_ x: UnsafePointer<Float>, tokens: Int, columns: Int, pool: ThreadPool) {
        precondition(tokens >= 0 && columns >= 0 && columns % 32 == 0, "tokens ≥ 0, columns a multiple of 32")
        self.tokens = tokens
        self.columns = columns
        vectors = InterleavedActivations.vectors(tokens)
        storage = Storage(vectors: vectors, columns: columns)
        storage.bytes.initializeMemory(as: UInt8.self, repeating: 0, count: storage.byteCount)
        storage.floats.initialize(repeating: 0, count: storage.floatCount)
        let blocks = columns / 32, steps = columns / 4, vectors = vectors
        let out = storage.bytes, scales = storage.floats
        let sums32 = scales + vectors * blocks * 16, sums16 = scales + 2 * vectors * blocks * 16
        pool.parallelRanges(total: tokens, minimumChunk: 16) { range in
            var q = SIMD32<Int8>()
            var pair: (Float, Float) = (0, 0)
            withUnsafeMutableBytes(of: &q) { qb in
                withUnsafeMutableBytes(of: &pair) { pb in
                    let q8 = qb.baseAddress!.assumingMemoryBound(to: Int8.self)
                    let p = pb.baseAddress!.assumingMemoryBound(to: Float.self)
                    for t in range {
                        let v = t / 16, lane = t % 16
                        for b in 0..<blocks {
                            QuantizedActivations.quantizeBlock(x + t * columns + 32 * b, q8, p)
                            for j in 0..<8 {
                                let quad = qb.loadUnaligned(fromByteOffset: 4 * j, as: UInt32.self)
                                out.storeBytes(of: quad, toByteOffset: ((v * steps + 8 * b + j) * 16 + lane) * 4, as: UInt32.self)
                            }
                            var low: Int32 = 0, high: Int32 = 0
                            for j in 0..<16 {
                                low += Int32(q8[j])
                                high += Int32(q8[j + 16])
                            }
                            let i = (v * blocks + b) * 16 + lane
                            scales[i] = p[0]
                            sums32[i] = p[1]
                            sums16[(v * 2 * blocks + 2 * b) * 16 + lane] = p[0] * Float(low)
                            sums16[(v * 2 * blocks + 2 * b + 1) * 16 + lane] = p[0] * Float(high)
                        }
                    }
                }
            }
        }
    }

    /// The int8 value of `token` at `column`, and its block's scale: for the reference and tests.
    public func value(token: Int, column: Int) -> (q: Int8, scale: Float) {
        precondition(token >= 0 && token < tokens && column >= 0 && column < columns)
        let v = token / 16, lane = token % 16
        let q = bytes.load(fromByteOffset: ((v * (columns / 4) + column / 4) * 16 + lane) * 4 + column % 4, as: Int8.self)
        return (q, scales[(v * (columns / 32) + column / 32) * 16 + lane])
    }

    /// `d·Σq` over the group of `size` (16 or 32) elements `group` of `token`.
    public func groupSum(token: Int, group: Int, size: Int) -> Float {
        let v = token / 16, lane = token % 16
        return size == 32 ? sums32[(v * (columns / 32) + group) * 16 + lane] : sums16[(v * (columns / 16) + group) * 16 + lane]
    }
}

/// `y[t, r] = Σ_k W[r, k]·x[t, k]` for prompt chunks on the quantised path: int8 activations
/// (`InterleavedActivations`) against the weights' own integers (`UnsignedWeightRows`), multiplied
/// by `vpdpbusd` — 64 byte products per instruction where an f32 FMA does 16, and no dequantised
/// panel for sgemm to pack.
///
/// Per (token, row) the arithmetic is fixed: for each weight group in order, the exact int32
/// `Σ q_w·q_x` is converted, `f = fma(Float(Σ), d_x·scale, f)`, then `f = fma(Σx, offset, f)` with
/// `Σx = d_x·Σq_x` over the group. Tokens are vector lanes and rows are independent, so a result
/// never depends on the other tokens, the chunk length, the tiling or the thread count, and it is
/// bitwise `ReferenceBlockInt8GEMM`'s.
public enum BlockInt8GEMM {
    /// Whether the VNNI kernel is compiled in and enabled (else callers keep their f32 path: the
    /// plain twin is far slower than sgemm).
    public static var hasFastKernel: Bool { MatVec.hasAVX512Kernels && !MatVec.usePortableKernels }

    /// Whether `w` can go through the GEMM: a quantised type whose blocks fill the row.
    public static func supports(_ w: WeightMatrix) -> Bool {
        UnsignedWeightRows.supports(w.type) && w.columns % 32 == 0 && w.columns % w.type.blockSize == 0
    }

    /// Rows unpacked and multiplied together: four broadcast weight quads per two token vectors.
    static let tileRows = 4

    /// `y_i = x·W_iᵀ` for matrices sharing the activations (Q, K and V; gate and up), in one
    /// parallel region over all their rows. Output `i` is (tokens, W_i.rows), row-major.
    public static func multiply(_ products: [(matrix: WeightMatrix, output: UnsafeMutablePointer<Float>)],
                                _ x: InterleavedActivations, pool: ThreadPool) {
        for (w, _) in products {
            precondition(supports(w) && w.columns == x.columns, "BlockInt8GEMM: a supported matrix of the activations' width")
        }
        guard x.tokens > 0 else { return }
        // Work units are row quads of every product, numbered across products.
        let quads = products.map { ($0.matrix.rows + tileRows - 1) / tileRows }
        let total = quads.reduce(0, +)
        let portable = !hasFastKernel
        // Token vectors per pass over the rows: their bytes (≤ 512 KiB) stay in L2 while every row
        // quad of the thread's range streams past them; the quads are unpacked again per pass.
        let passVectors = max(2, min(x.vectors, (512 * 1024 / (16 * x.columns)) / 2 * 2))
        pool.parallelRanges(total: total, minimumChunk: 4) { range in
            var panel = RowPanel(columns: x.columns, groupSize: 32)
            for firstVector in stride(from: 0, to: x.vectors, by: passVectors) {
                let vectors = firstVector..<min(x.vectors, firstVector + passVectors)
                var start = 0
                for ((w, y), count) in zip(products, quads) {
                    let lo = max(range.lowerBound, start), hi = min(range.upperBound, start + count)
                    if lo < hi {
                        if panel.groupSize != UnsignedWeightRows.groupSize(w.type) {
                            panel = RowPanel(columns: x.columns, groupSize: UnsignedWeightRows.groupSize(w.type))
                        }
                        for quad in (lo - start)..<(hi - start) {
                            panel.unpack(w, firstRow: quad * tileRows, portable: portable)
                            multiplyPanel(panel, w, firstRow: quad * tileRows, x, vectors: vectors, into: y, portable: portable)
                        }
                    }
                    start += count
                }
            }
        }
    }

    /// The tokens of `vectors` (pairs of token vectors) against one unpacked row quad.
    static func multiplyPanel(_ panel: RowPanel, _ w: WeightMatrix, firstRow: Int, _ x: InterleavedActivations,
                              vectors: Range<Int>, into y: UnsafeMutablePointer<Float>, portable: Bool) {
        let rows = min(tileRows, w.rows - firstRow)
        var tile = [Float](repeating: 0, count: tileRows * 32)
        tile.withUnsafeMutableBufferPointer { t in
            for v in stride(from: vectors.lowerBound, to: vectors.upperBound, by: 2) {
                #if canImport(COpenBLAS.AVX512VNNI)
                let odd = v + 1 == x.vectors    // an odd last vector: alone
                if !portable && panel.groupSize == 32 {
                    if odd { tile4(panel, x, vector: v, count: 1, steps: 8, into: t.baseAddress!) }
                    else { tile4(panel, x, vector: v, count: 2, steps: 8, into: t.baseAddress!) }
                } else if !portable {
                    if odd { tile4(panel, x, vector: v, count: 1, steps: 4, into: t.baseAddress!) }
                    else { tile4(panel, x, vector: v, count: 2, steps: 4, into: t.baseAddress!) }
                } else {
                    ReferenceBlockInt8GEMM.tile(panel, x, vector: v, into: t.baseAddress!)
                }
                #else
                ReferenceBlockInt8GEMM.tile(panel, x, vector: v, into: t.baseAddress!)
                #endif
                // (row, 32 tokens) → y (tokens, w.rows)
                for lane in 0..<min(32, x.tokens - 16 * v) {
                    let out = y + (16 * v + lane) * w.rows + firstRow
                    for r in 0..<rows { out[r] = t[r * 32 + lane] }
                }
            }
        }
    }

    #if canImport(COpenBLAS.AVX512VNNI)
    /// 4 rows × the 16 tokens of vector `v`, and of `v + 1` when `count` is 2: 8 int32 and 8 float
    /// accumulators as named locals (an array of them would live on the stack). Writes
    /// `out[r·32 + lane]`, lanes 0–15 only when `count` is 1 (an odd last vector).
    /// `count` (1 or 2) and `steps` (4-column steps per group, 8 or 4) are constants at each call
    /// site, so the second vector's work folds away and the loop unrolls.
    @inline(__always)
    static func tile4(_ panel: RowPanel, _ x: InterleavedActivations, vector v: Int, count: Int, steps: Int,
                      into out: UnsafeMutablePointer<Float>) {
        let two = count == 2
        let columns = x.columns, size = 4 * steps, groups = columns / size
        let a = x.bytes + v * columns * 16, stride = columns * 16  // vector v, then v + 1
        let q = UnsafeRawPointer(panel.q), sc = panel.scales, off = panel.offsets
        let blocks = columns / 32
        let dx = x.scales + v * blocks * 16
        let sums = (size == 32 ? x.sums32 : x.sums16) + v * groups * 16
        let sumStride = groups * 16
        var f00 = _mm512_setzero_ps(), f01 = f00, f10 = f00, f11 = f00, f20 = f00, f21 = f00, f30 = f00, f31 = f00
        var k = 0
        for g in 0..<groups {
            // The int32 sums start from the bits of 1.5·2²³: as long as |Σ| < 2²², the sum's bits are
            // the float 1.5·2²³ + Σ exactly (here |Σ| ≤ 255·127·32 < 2²⁰), and one subtraction gives Float(Σ) — an add on either
            // FMA port instead of vcvtdq2ps, which competes with vpdpbusd for port 0.
            let zero = _mm512_set1_epi32(0x4B40_0000)
            var i00 = zero, i01 = zero, i10 = zero, i11 = zero, i20 = zero, i21 = zero, i30 = zero, i31 = zero
            for _ in 0..<steps {
                let x0 = a.load(fromByteOffset: k * 16, as: __m512i.self)
                let x1 = two ? a.load(fromByteOffset: stride + k * 16, as: __m512i.self) : x0
                let w0 = _mm512_set1_epi32(q.loadUnaligned(fromByteOffset: k, as: Int32.self))
                i00 = _mm512_dpbusd_epi32(i00, w0, x0)
                if two { i01 = _mm512_dpbusd_epi32(i01, w0, x1) }
                let w1 = _mm512_set1_epi32(q.loadUnaligned(fromByteOffset: columns + k, as: Int32.self))
                i10 = _mm512_dpbusd_epi32(i10, w1, x0)
                if two { i11 = _mm512_dpbusd_epi32(i11, w1, x1) }
                let w2 = _mm512_set1_epi32(q.loadUnaligned(fromByteOffset: 2 * columns + k, as: Int32.self))
                i20 = _mm512_dpbusd_epi32(i20, w2, x0)
                if two { i21 = _mm512_dpbusd_epi32(i21, w2, x1) }
                let w3 = _mm512_set1_epi32(q.loadUnaligned(fromByteOffset: 3 * columns + k, as: Int32.self))
                i30 = _mm512_dpbusd_epi32(i30, w3, x0)
                if two { i31 = _mm512_dpbusd_epi32(i31, w3, x1) }
                k += 4
            }
            let block = g * size / 32
            let d0 = UnsafeRawPointer(dx + block * 16).load(as: __m512.self)
            let s0 = UnsafeRawPointer(sums + g * 16).load(as: __m512.self)
            let p = 4 * g
            @inline(__always) func step(_ f: inout __m512, _ i: __m512i, _ d: __m512, _ s: __m512, _ r: Int) {
                let sum = _mm512_sub_ps(_mm512_castsi512_ps(i), _mm512_set1_ps(12_582_912))
                f = _mm512_fmadd_ps(sum, _mm512_mul_ps(d, _mm512_set1_ps(sc[p + r])), f)
                f = _mm512_fmadd_ps(s, _mm512_set1_ps(off[p + r]), f)
            }
            step(&f00, i00, d0, s0, 0)
            step(&f10, i10, d0, s0, 1)
            step(&f20, i20, d0, s0, 2)
            step(&f30, i30, d0, s0, 3)
            if two {
                let d1 = UnsafeRawPointer(dx + (blocks + block) * 16).load(as: __m512.self)
                let s1 = UnsafeRawPointer(sums + sumStride + g * 16).load(as: __m512.self)
                step(&f01, i01, d1, s1, 0)
                step(&f11, i11, d1, s1, 1)
                step(&f21, i21, d1, s1, 2)
                step(&f31, i31, d1, s1, 3)
            }
        }
        let o = UnsafeMutableRawPointer(out)
        o.storeBytes(of: f00, toByteOffset: 0, as: __m512.self)
        o.storeBytes(of: f10, toByteOffset: 128, as: __m512.self)
        o.storeBytes(of: f20, toByteOffset: 256, as: __m512.self)
        o.storeBytes(of: f30, toByteOffset: 384, as: __m512.self)
        if two {
            o.storeBytes(of: f01, toByteOffset: 64, as: __m512.self)
            o.storeBytes(of: f11, toByteOffset: 192, as: __m512.self)
            o.storeBytes(of: f21, toByteOffset: 320, as: __m512.self)
            o.storeBytes(of: f31, toByteOffset: 448, as: __m512.self)
        }
    }
    #endif
}

/// Four weight rows unpacked by `UnsignedWeightRows` (rows past the matrix are zeros).
/// - `q`: (4, columns) unsigned values
/// - `scales`, `offsets`: (columns / groupSize, 4), interleaved so a group's four rows are adjacent
struct RowPanel {
    let columns: Int, groupSize: Int
    let q: UnsafeMutablePointer<UInt8>
    let scales: UnsafeMutablePointer<Float>
    let offsets: UnsafeMutablePointer<Float>
    private let owner: Owner

    final class Owner {
        let q: UnsafeMutablePointer<UInt8>, floats: UnsafeMutablePointer<Float>
        init(columns: Int) {
            q = .allocate(capacity: max(4 * columns, 64))
            floats = .allocate(capacity: max(4 * columns / 8, 8))  // 2 × 4 × columns/16
        }
        deinit {
            q.deallocate()
            floats.deallocate()
        }
    }

    init(columns: Int, groupSize: Int) {
        self.columns = columns
        self.groupSize = groupSize
        owner = Owner(columns: columns)
        q = owner.q
        scales = owner.floats
        offsets = owner.floats + 4 * (columns / 16)
    }

    func unpack(_ w: WeightMatrix, firstRow: Int, portable: Bool) {
        #if canImport(COpenBLAS.AVX512VNNI)
        if !portable, let panels = w.panels, firstRow + BlockInt8GEMM.tileRows <= w.rows {
            panels.unpackFourRows(firstRow, q: q, scales: scales, offsets: offsets)
            return
        }
        #endif
        let groups = columns / groupSize
        for r in 0..<BlockInt8GEMM.tileRows {
            if firstRow + r < w.rows {
                w.withRow(firstRow + r) { row in
                    UnsignedWeightRows.unpack(w.type, row, columns: columns, q: q + r * columns,
                                              scales: scales + r, offsets: offsets + r, stride: BlockInt8GEMM.tileRows, portable: portable)
                }
            } else {
                (q + r * columns).initialize(repeating: 0, count: columns)
                for g in 0..<groups {
                    scales[4 * g + r] = 0
                    offsets[4 * g + r] = 0
                }
            }
        }
    }
}

/// The plain twin of `BlockInt8GEMM`: the same integers and the same float operations in the same
/// order, one (row, token) at a time, so the fast kernel must match it bitwise.
public enum ReferenceBlockInt8GEMM {
    /// `y[t, r]` for every token of `x` and row of `w` (`y`: (x.tokens, w.rows), row-major).
    public static func multiply(_ w: WeightMatrix, _ x: InterleavedActivations, into y: UnsafeMutablePointer<Float>) {
        precondition(BlockInt8GEMM.supports(w) && w.columns == x.columns)
        for quad in 0..<(w.rows + 3) / 4 {
            let panel = RowPanel(columns: w.columns, groupSize: UnsignedWeightRows.groupSize(w.type))
            panel.unpack(w, firstRow: 4 * quad, portable: true)
            BlockInt8GEMM.multiplyPanel(panel, w, firstRow: 4 * quad, x, vectors: 0..<x.vectors, into: y, portable: true)
        }
    }

    /// 4 rows × 32 tokens from token vector `v`, as `BlockInt8GEMM.tile4` computes them.
    static func tile(_ panel: RowPanel, _ x: InterleavedActivations, vector v: Int, into out: UnsafeMutablePointer<Float>) {
        let size = panel.groupSize, groups = x.columns / size
        for r in 0..<4 {
            for lane in 0..<32 {
                let t = 16 * v + lane
                var f: Float = 0
                if t < x.tokens {
                    for g in 0..<groups {
                        var sum: Int32 = 0
                        for k in (g * size)..<((g + 1) * size) {
                            sum += Int32(panel.q[r * x.columns + k]) * Int32(x.value(token: t, column: k).q)
                        }
                        let d = x.value(token: t, column: g * size).scale
                        f = f.addingProduct(Float(sum), d * panel.scales[4 * g + r])
                        f = f.addingProduct(x.groupSum(token: t, group: g, size: size), panel.offsets[4 * g + r])
                    }
                }
                out[r * 32 + lane] = f
            }
        }
    }
}
