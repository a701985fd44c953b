/// An error raised while building or loading a tokenizer. The description is one line.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    /// Human-readable, single-line explanation.
    public let message: String

    /// Creates an error with a one-line message.
    public init(_ message: String) { self.message = message }

    public var description: String { "TokenizerError: \(message)" }
}
