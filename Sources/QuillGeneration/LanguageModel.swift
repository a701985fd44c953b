/// Which positions of a forward pass need logits.
public enum LogitsSelection: Sendable {
    /// Only the last token's (what generation needs).
    case last
    /// Every token's (teacher forcing, perplexity).
    case all
}

/// A decoder-only language model: token ids in, next-token logits out, state in a `KVCache`.
public protocol CausalLanguageModel: AnyObject, Sendable {
    /// Rows of the output matrix.
    var vocabularySize: Int { get }
    /// The context length the model was trained for.
    var trainedContextLength: Int { get }
    /// Tokens that end a generation (from the model's metadata).
    var endOfSequenceTokens: Set<TokenID> { get }

    /// A cache for up to `capacity` positions.
    func makeCache(capacity: Int) throws -> KVCache

    /// Runs `tokens` at positions `cache.count ..< cache.count + tokens.count`, appends their keys and
    /// values to `cache` and returns logits: (vocabularySize) for `.last`, (tokens, vocabularySize) for `.all`.
    func forward(_ tokens: [TokenID], cache: KVCache, logits: LogitsSelection) throws -> [Float]
}

/// Errors of the generation layer, each a one-line message.
public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case emptyPrompt
    case promptTooLong(promptTokens: Int, contextSize: Int)
    case invalidToken(TokenID, vocabularySize: Int)

    public var description: String {
        switch self {
        case .emptyPrompt:
            return "the prompt is empty"
        case let .promptTooLong(promptTokens, contextSize):
            return "the prompt has \(promptTokens) tokens but the context holds \(contextSize) (raise -c/--ctx-size)"
        case let .invalidToken(token, vocabularySize):
            return "token id \(token) is outside the vocabulary (0..<\(vocabularySize))"
        }
    }
}
