/// A problem with a GGUF file: unreadable, malformed, or lacking something the caller asked for.
public struct GGUFError: Error, CustomStringConvertible, Sendable {
    /// The file the problem is in.
    public let path: String
    /// What is wrong, without the path (one line).
    public let problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    /// One line: `<path>: <problem>`.
    public var description: String { "\(path): \(problem)" }
}
