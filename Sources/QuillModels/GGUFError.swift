/// A problem with a GGUF file: unreadable, malformed, or lacking something the caller asked for.
public struct GGUFError: Error, CustomStringConvertible, Sendable {
    /// The file the problem is in.
    public let path: String
    /// What is wrong, without the path (one line).
    public let problem: String

    public init(path: String, problem: String) {
        self.path = path
        // Keys and tensor names come from the file; escape line breaks so the message stays one line.
        self.problem = problem.contains(where: \.isNewline) ? Self.escapingLineBreaks(problem) : problem
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
