#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// An activation vector quantised to int8 in blocks of 32, as ggml's `Q8_0` / `Q8_1` do for the
/// right-hand side of quantised dot products: per block `d = amax / 127`, `q = round(x / d)`
/// (ties to even), plus the block sum `d·Σq` that the Q4_0 / Q4_1 / Q8_0 kernels need for their
/// zero-point / offset terms.
///
/// Quantise once, then pass to `MatVec.multiply(_:_:into:pool:)` for every matrix that shares the
/// input (Q, K and V; gate and up). The value keeps its buffers between `quantize` calls, so a
/// decoder allocates one per distinct input width and reuses it every token.
public struct QuantizedActivations: @unchecked Sendable {
    /// Storage is a class so copies are cheap; `quantize` copies it first if it is shared.
    final class Storage {
        let capacity: Int
        /// `capacity` int8 values, 64-byte aligned.
        let qs: UnsafeMutablePointer<Int8>
        /// Per block the pair (d, d·Σq): the kernels load both with one 64-bit load.
        let scales: UnsafeMutablePointer<Float>

        init(capacity: Int) {
            self.capacity = capacity
            let raw = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 64), alignment: 64)
            qs = raw.bindMemory(to: Int8.self, capacity: max(capacity, 64))
            scales = .allocate(capacity: max(2 * (capacity / 32), 2))
        }

        deinit {
            qs.deallocate()
            scales.deallocate()
        }
    }

    var storage: Storage
    /// Number of quantised elements (a multiple of 32).
    public private(set) var count: Int = 0

    /// Creates buffers for vectors of up to `capacity` elements (`capacity` a multiple of 32).
    public init(capacity columns: Int) {
        precondition(columns >= 0 && columns % 32 == 0, "capacity must be a multiple of 32")
        storage = Storage(capacity: columns)
    }

    /// Maximum vector length this value can hold.
    public var capacity: Int { storage.capacity }

    /// Quantises `x[0..<count]` (`count` a multiple of 32, at most `capacity`).
    public mutating func quantize(_ x: UnsafePointer<Float>, count: Int) {
        precondition(count % 32 == 0 && count <= storage.capacity, "count must be a multiple of 32 within capacity")
        if !isKnownUniquelyReferenced(&storage) { storage = Storage(capacity: storage.capacity) }
        self.count = count
        let qs = storage.qs, scales = storage.scales
        for b in 0..<count / 32 {
            QuantizedActivations.quantizeBlock(x + 32 * b, qs + 32 * b, scales + 2 * b)
        }
    }

    /// Int8 values of block `b`..., and `(d, d·Σq)` pairs; valid until the next `quantize`.
    var qs: UnsafePointer<Int8> { UnsafePointer(storage.qs) }
    var scales: UnsafePointer<Float> { UnsafePointer(storage.scales) }
    /// Both, as the kernels take them (valid until the next `quantize`).
    var quantizedRow: QuantizedRow { QuantizedRow(qs: qs, scales: scales) }

    /// The element value the kernels effectively see: `d·q`. For tests and diagnostics.
    public func dequantized(_ index: Int) -> Float {
        precondition(index >= 0 && index < count)
        return storage.scales[2 * (index / 32)] * Float(storage.qs[index])
    }

    /// Quantises 32 floats. The portable and AVX-512 variants give identical bytes: the same
    /// f32 operations (max |x|, /127, 1/d, x·(1/d), round-to-nearest-even) in the same order.
    @inline(__always)
    static func quantizeBlock(_ x: UnsafePointer<Float>, _ q: UnsafeMutablePointer<Int8>,
                              _ scale: UnsafeMutablePointer<Float>) {
        #if canImport(COpenBLAS.AVX512VNNI)
        let raw = UnsafeRawPointer(x)
        let v0 = raw.loadUnaligned(as: __m512.self)
        let v1 = raw.loadUnaligned(fromByteOffset: 64, as: __m512.self)
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)))
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        let vid = _mm512_set1_ps(id)
        // cvtps rounds with MXCSR's default round-to-nearest-even; |x·id| ≤ 127 so no saturation.
        let i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid))
        let i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid))
        let b0 = _mm512_cvtsepi32_epi8(i0), b1 = _mm512_cvtsepi32_epi8(i1)
        let out = UnsafeMutableRawPointer(q)
        out.storeBytes(of: b0, as: __m128i.self)
        out.storeBytes(of: b1, toByteOffset: 16, as: __m128i.self)
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1))
        scale[0] = d
        scale[1] = d * Float(sum)
        #else
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        var sum: Int32 = 0
        for j in 0..<32 {
            let v = Int32((x[j] * id).rounded(.toNearestOrEven))
            q[j] = Int8(v)
            sum += v
        }
        scale[0] = d
        scale[1] = d * Float(sum)
        #endif
    }
}

/// One quantised activation row as the kernels read it: `qs` its int8 values, `scales` its
/// `(d, d·Σq)` pair per 32-block. A `QuantizedActivations` or one row of a `QuantizedActivationBatch`.
struct QuantizedRow {
    let qs: UnsafePointer<Int8>
    let scales: UnsafePointer<Float>
}
