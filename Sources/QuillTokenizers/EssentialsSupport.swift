import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Small pieces of the full Foundation that FoundationEssentials lacks, with the same results, so
// that messages and decoded text stay as they were when the modules imported Foundation.

extension StringProtocol {
    /// `trimmingCharacters(in: .whitespacesAndNewlines)`: drops leading and trailing Unicode
    /// `White_Space` scalars (tab, LF, VT, FF, CR, space, U+0085, U+00A0, U+1680, U+2000–U+200A,
    /// U+2028, U+2029, U+202F, U+205F, U+3000) and U+200B, which Foundation's set still holds
    /// (compared with it over every scalar). Works on scalars, not `Character`s, as Foundation does:
    /// trimming " \u{301}a" leaves "\u{301}a".
    package func trimmingWhitespaceAndNewlines() -> String {
        trimmingScalars { $0.isFoundationWhitespace }
    }

    /// `trimmingCharacters(in: .whitespaces)`: the same without the line and paragraph separators
    /// (U+000A–U+000D, U+0085, U+2028, U+2029).
    package func trimmingWhitespace() -> String {
        trimmingScalars { $0.isFoundationWhitespace && !$0.isLineSeparator }
    }

    /// Every occurrence of `target` replaced, compared scalar by scalar. Unlike the standard
    /// library's `replacing(_:with:)`, which matches whole `Character`s, this finds "\n" inside
    /// "\r\n", as Foundation's `replacingOccurrences(of:with:)` did. (Foundation also skipped a match
    /// directly followed by a combining mark; every caller here means the scalar itself.)
    package func replacingScalars(_ target: String, with replacement: String) -> String {
        String(String(self).unicodeScalars.replacing(target.unicodeScalars, with: replacement.unicodeScalars))
    }

    private func trimmingScalars(_ trim: (Unicode.Scalar) -> Bool) -> String {
        let scalars = String(self).unicodeScalars
        guard let first = scalars.firstIndex(where: { !trim($0) }),
              let last = scalars.lastIndex(where: { !trim($0) }) else { return "" }
        return String(scalars[first ... last])
    }
}

private extension Unicode.Scalar {
    var isFoundationWhitespace: Bool { properties.isWhitespace || value == 0x200B }

    var isLineSeparator: Bool {
        (0x0A ... 0x0D).contains(value) || value == 0x85 || value == 0x2028 || value == 0x2029
    }
}

/// The message Foundation's `error.localizedDescription` gave for an error from reading a file
/// (`Data(contentsOf:)`, `String(contentsOf:)`), which FoundationEssentials does not provide:
/// "The operation could not be completed. The file doesn’t exist." and so on.
package func fileErrorDescription(_ error: any Error) -> String {
    let prefix = "The operation could not be completed. "
    if let error = error as? CocoaError {
        let reasons: [Int: String] = [
            4: "The file doesn’t exist.", 255: "The file couldn’t be locked.", 257: "You don’t have permission.",
            258: "The file name is invalid.", 259: "The file isn’t in the correct format.", 260: "The file doesn’t exist.",
            261: "The specified text encoding isn’t applicable.", 262: "The specified URL type isn’t supported.",
            263: "The item is too large.", 264: "The text encoding of the contents couldn’t be determined.",
            513: "You don’t have permission.", 640: "There isn’t enough space.",
        ]
        return prefix + (reasons[error.code.rawValue] ?? "(NSCocoaErrorDomain error \(error.code.rawValue).)")
    }
    if let error = error as? POSIXError {
        return prefix + String(cString: strerror(error.code.rawValue))
    }
    return String(describing: error)
}

extension String {
    /// `(self as NSString).appendingPathComponent(component)`: joined with one "/" unless this
    /// path is empty or already ends in "/"; nothing else is normalised (as on Linux).
    package func appendingPathComponent(_ component: String) -> String {
        if component.isEmpty { return self }
        if isEmpty { return component }
        return hasSuffix("/") ? self + component : self + "/" + component
    }

    /// `(self as NSString).lastPathComponent`: the part after the last "/" once trailing slashes are
    /// dropped ("a/b/" gives "b"); "/" stays "/".
    package var lastPathComponent: String {
        if self == "/" { return self }
        var path = Substring(self)
        while path.hasSuffix("/") { path = path.dropLast() }
        guard let slash = path.lastIndex(of: "/") else { return String(path) }
        return String(path[path.index(after: slash)...])
    }
}
