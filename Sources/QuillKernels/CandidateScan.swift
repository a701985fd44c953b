#if canImport(COpenBLAS.AVX512VNNI)
@_implementationOnly import COpenBLAS.AVX512VNNI
@_implementationOnly import _Builtin_intrinsics.intel
#endif

/// The scan of a beam search's top-k over a vocabulary of log-probabilities: once its list is full,
/// almost no token beats the list's last score, so whole blocks of 16 are passed over here and only
/// blocks holding a candidate go through the search's one-by-one insertion.
public enum CandidateScan {
    /// The start of the first block of 16 values, from `start` on in steps of 16, in which some
    /// `x[i] + offset > threshold` (the search's own float sum and comparison, so a block passed over
    /// holds no token the insertion loop would have taken; a block may also be returned for a NaN,
    /// which that loop then skips). When no whole block passes, the start of the remaining tail of
    /// fewer than 16 values (possibly `count`).
    public static func firstBlockAbove(_ x: UnsafePointer<Float>, from start: Int, count: Int, offset: Float, threshold: Float) -> Int {
        var i = start
        #if canImport(COpenBLAS.AVX512VNNI)
        if !MatVec.usePortableKernels {
            let o = _mm512_set1_ps(offset), t = _mm512_set1_ps(threshold), raw = UnsafeRawPointer(x)
            while i + 16 <= count {
                // sum > threshold ⇔ threshold − sum < 0 (distinct floats never subtract to zero); a
                // NaN may set the sign too, which only sends its block to the caller's exact loop.
                let sums = _mm512_add_ps(raw.loadUnaligned(fromByteOffset: 4 * i, as: __m512.self), o)
                if _mm512_movepi32_mask(_mm512_castps_si512(_mm512_sub_ps(t, sums))) != 0 { return i }
                i += 16
            }
            return i
        }
        #endif
        while i + 16 <= count {
            for j in i..<(i + 16) where x[j] + offset > threshold { return i }
            i += 16
        }
        return i
    }
}
