/// Small SIMD building blocks shared by the kernels. Vectors are contiguous `Float` buffers.
///
/// `SIMD16<Float>.sum()` lowers to a long shuffle chain, so reductions add halves instead.
@inlinable @inline(__always)
public func horizontalSum(_ v: SIMD16<Float>) -> Float {
    let h8 = v.lowHalf + v.highHalf
    let h4 = h8.lowHalf + h8.highHalf
    let h2 = h4.lowHalf + h4.highHalf
    return h2.x + h2.y
}

/// Dot product of two `count`-element vectors.
@inlinable
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var acc0 = SIMD16<Float>(repeating: 0)
    var acc1 = SIMD16<Float>(repeating: 0)
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 32 <= count {
        acc0.addProduct(ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self),
                        rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self))
        acc1.addProduct(ra.loadUnaligned(fromByteOffset: (i + 16) * 4, as: SIMD16<Float>.self),
                        rb.loadUnaligned(fromByteOffset: (i + 16) * 4, as: SIMD16<Float>.self))
        i += 32
    }
    while i + 16 <= count {
        acc0.addProduct(ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self),
                        rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self))
        i += 16
    }
    var sum = horizontalSum(acc0 + acc1)
    while i < count {
        sum += a[i] * b[i]
        i += 1
    }
    return sum
}

/// `y += alpha * x` over `count` elements.
@inlinable
public func addScaled(_ x: UnsafePointer<Float>, scale alpha: Float, into y: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
    let a = SIMD16<Float>(repeating: alpha)
    while i + 16 <= count {
        var v = ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
        v.addProduct(a, rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self))
        ry.storeBytes(of: v, toByteOffset: i * 4, as: SIMD16<Float>.self)
        i += 16
    }
    while i < count {
        y[i] += alpha * x[i]
        i += 1
    }
}

/// `y[i] += x[i]` (the residual connection).
@inlinable
public func addInPlace(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
    addScaled(x, scale: 1, into: y, count: count)
}

/// `e^x` for 16 lanes: Cephes' `expf` (x = n·ln2 + r, a degree-7 polynomial for e^r, 2^n built in the
/// exponent bits), within 2 ulp of `expf` for x in [-87, 88]; inputs are clamped to that range, so
/// very negative x gives ~1e-38 rather than 0. Vectorised because scalar `expf` calls dominated
/// softmax and SwiGLU.
@inlinable @_transparent  // mandatory: nested in other @inline(__always) helpers it was left as a call with its lanes split
public func exp16(_ x: SIMD16<Float>) -> SIMD16<Float> {
    // Compare-and-select rather than pointwiseMin/Max, whose NaN rules lower to scalar code.
    let lo = SIMD16<Float>(repeating: -87), hi = SIMD16<Float>(repeating: 88)
    let v = x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
    // Adding 1.5·2^23 rounds v·log2(e) to an integer that lands in the low mantissa bits.
    let shifter = SIMD16<Float>(repeating: 12_582_912)
    let t = v * 1.442_695_04 + shifter
    let n = t - shifter
    let r = (v - n * 0.693_359_375) + n * 2.121_944_40e-4  // ln 2 split in two for an exact reduction
    var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_91e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * (r * r) + r + 1
    let bits = (unsafeBitCast(t, to: SIMD16<UInt32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: SIMD16<Float>.self)
}

/// The largest of `count` values (−∞ for none), 16 lanes at a time: a scalar `max` loop does not
/// vectorise, and any order gives the maximum exactly.
@inlinable @inline(__always)
public func largestValue(_ x: UnsafePointer<Float>, count: Int) -> Float {
    let raw = UnsafeRawPointer(x)
    var vmax = SIMD16<Float>(repeating: -.infinity)
    var i = 0
    while i + 16 <= count {
        let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
        vmax.replace(with: v, where: v .> vmax)
        i += 16
    }
    var maximum = vmax.max()
    while i < count { maximum = Swift.max(maximum, x[i]); i += 1 }
    return maximum
}

/// The index of the largest of `count` (≥ 1) values, the first one on ties (torch.argmax's rule),
/// 16 lanes at a time: exactly what `best = 0; for i in 1..<count where x[i] > x[best] { best = i }`
/// gives, NaNs included (passed over, except at index 0, which then stays the answer).
@inlinable
public func indexOfLargest(_ x: UnsafePointer<Float>, count: Int) -> Int {
    precondition(count >= 1)
    if x[0].isNaN { return 0 }
    let raw = UnsafeRawPointer(x)
    // Per lane: the largest value seen and where (strictly greater replaces, so each lane keeps its
    // first occurrence); a lane that saw nothing above −∞ keeps Int32.max.
    var best = SIMD16<Float>(repeating: -.infinity)
    var index = SIMD16<Int32>(repeating: .max)
    var lanes = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    var i = 0
    while i + 16 <= count {
        let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
        let greater = v .> best
        best.replace(with: v, where: greater)
        index.replace(with: lanes, where: greater)
        lanes &+= 16
        i += 16
    }
    var maximum = best.max()
    var position = maximum > -.infinity ? Int(index.replacing(with: .max, where: best .!= maximum).min()) : 0
    while i < count {
        if x[i] > maximum { maximum = x[i]; position = i }
        i += 1
    }
    // Nothing above −∞: x[0] (−∞ itself, as it is not NaN) is the first largest.
    return maximum > -.infinity ? position : 0
}

/// `x[i] = e^(x[i] − max)` over `count` values, returning their sum (the softmax numerators and
/// denominator; the caller scales by 1/sum).
@inlinable
public func exponentiateShifted(_ x: UnsafeMutablePointer<Float>, count: Int) -> Float {
    exponentiateShifted(x, count: count, maximum: largestValue(x, count: count))
}

/// The same with the shift given: `maximum` must be `largestValue(x, count: count)` (for callers
/// that keep it, such as the chunks of a split attention history).
@inlinable
public func exponentiateShifted(_ x: UnsafeMutablePointer<Float>, count: Int, maximum: Float) -> Float {
    let raw = UnsafeMutableRawPointer(x)
    var vsum = SIMD16<Float>(repeating: 0)
    let m = SIMD16<Float>(repeating: maximum)
    var i = 0
    while i + 16 <= count {
        let e = exp16(raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self) - m)
        raw.storeBytes(of: e, toByteOffset: 4 * i, as: SIMD16<Float>.self)
        vsum += e
        i += 16
    }
    if i < count {
        // The tail as one vector padded with −∞ (e^−∞ → ~0, and those lanes are not stored).
        var tail = SIMD16<Float>(repeating: -.infinity)
        for j in 0..<(count - i) { tail[j] = x[i + j] }
        let e = exp16(tail - m)
        for j in 0..<(count - i) { x[i + j] = e[j]; vsum[j] += e[j] }
    }
    return horizontalSum(vsum)
}

/// `x[i] *= factor`.
@inlinable
public func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
    let raw = UnsafeMutableRawPointer(x)
    var i = 0
    while i + 16 <= count {
        raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self) * factor,
                       toByteOffset: 4 * i, as: SIMD16<Float>.self)
        i += 16
    }
    while i < count { x[i] *= factor; i += 1 }
}
