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
