#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension String {
    /// `value` with `decimals` digits after the point: the text of `String(format: "%.<decimals>f", value)`
    /// byte for byte (both come from C's printf in the C locale), without Foundation.
    package init(fixed value: Double, decimals: Int) {
        let format = "%.*f"
        let length = withVaList([Int32(decimals), value]) { vsnprintf(nil, 0, format, $0) }
        precondition(length >= 0, "vsnprintf failed")
        var buffer = [CChar](repeating: 0, count: Int(length) + 1)
        _ = withVaList([Int32(decimals), value]) { vsnprintf(&buffer, buffer.count, format, $0) }
        self = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
