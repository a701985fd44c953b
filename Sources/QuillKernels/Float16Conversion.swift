/// IEEE 754 binary16 bits → Float (exact: every half value is representable as a Float).
///
/// Uses Swift's `Float16`, which with F16C compiles to `vcvtph2ps`.
@inlinable
public func halfToFloat(_ bits: UInt16) -> Float {
    Float(Float16(bitPattern: bits))
}

/// Float → IEEE 754 binary16 bits, rounding to nearest even (overflow becomes ±inf, NaN stays NaN).
@inlinable
public func floatToHalf(_ value: Float) -> UInt16 {
    Float16(value).bitPattern
}

/// bfloat16 bits → Float. bfloat16 is the top half of a Float, so widening is a shift;
/// Swift has no `BFloat16` type on Linux.
@inlinable
public func bf16ToFloat(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}
