/// A problem with a GGUF file: unreadable, malformed, or lacking something the caller asked for.
public struct GGUFError: Error, CustomStringConvertible, Sendable {
    /// The file the problem is in.
    public let path: String
    /// What is wrong, without the path (one line).
    public let problem: String

    public init(path: String, problem: String) {
        self.path = path
        // Keys and tensor names come from the file: a corrupt length can make one of them megabytes
        // long, so keep the message's start and end only; escape line breaks so it stays one line.
        let short = problem.utf8.count > Self.longestProblem ? Self.shortened(problem) : problem
        self.problem = short.contains(where: \.isNewline) ? Self.escapingLineBreaks(short) : short
    }

    /// Bytes of a problem kept whole; a longer one keeps its first and last `longestProblem / 2`.
    static let longestProblem = 480

    private static func shortened(_ s: String) -> String {
        let utf8 = s.utf8, half = longestProblem / 2
        // Cutting inside a character leaves invalid UTF-8 at the cut, which decodes as U+FFFD.
        return String(decoding: utf8.prefix(half), as: UTF8.self) + " … (\(utf8.count - 2 * half) bytes left out) … "
            + String(decoding: utf8.suffix(half), as: UTF8.self)
    }

    private static func escapingLineBreaks(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\u{0B}", "\u{0C}", "\u{85}", "\u{2028}", "\u{2029}":
                out += scalar.escaped(asASCII: true)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// One line: `<path>: <problem>`.
    public var description: String { "\(path): \(problem)" }
}
