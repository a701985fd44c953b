/// New tokens of one sequence for a forward pass, appended after the positions it already holds.
public struct BatchChunk: Sendable {
    public var sequence: SequenceID
    public var tokens: [TokenID]
    /// Which of its tokens' logits are returned.
    public var logits: LogitsSelection

    public init(sequence: SequenceID, tokens: [TokenID], logits: LogitsSelection = .last) {
        self.sequence = sequence
        self.tokens = tokens
        self.logits = logits
    }
}

/// A model's inference state that advances several sequences in one forward pass.
public protocol BatchLanguageModelContext: AnyObject {
    var vocabularySize: Int { get }
    var endOfSequenceTokens: Set<TokenID> { get }
    /// The KV memory of the context's sequences.
    var kv: KVBlockPool { get }
    /// One pass over new tokens of several sequences (at most one chunk per sequence); the logits
    /// of each chunk in order: (vocabularySize) for `.last`, (tokens, vocabularySize) for `.all`.
    func forward(_ batch: [BatchChunk]) throws -> [[Float]]
}

/// Generates for many requests at once (continuous batching): every `step()` is one forward pass
/// over the next token of every running request plus prompt chunks of waiting ones; requests join
/// and leave at any step.
///
/// Prompts are cut into chunks of `promptChunk` tokens counted from their start, and a step takes
/// whole chunks until `tokenBudget` is reached (running requests' tokens count first), so a long
/// prompt never stalls the running streams for more than one chunk. Because chunk boundaries do not
/// depend on the other requests and the context's kernels are batch-invariant, a request's tokens
/// are the same whatever else is running.
public final class BatchGenerator {
    public typealias RequestID = Int

    /// What a step produced for one request.
    public struct Event: Sendable, Equatable {
        public var request: RequestID
        public var token: TokenID
        /// Set on the request's last token.
        public var finished: GenerationStatistics.StopReason?
    }

    struct Request {
        let sequence: SequenceID
        var pending: [TokenID]       // prompt tokens not yet run (or the last sampled token)
        var selector: TokenSelector
        let options: GenerationOptions
        var generated = 0
        let capacity: Int
    }

    public let context: any BatchLanguageModelContext
    public let promptChunk: Int
    public let tokenBudget: Int
    private var requests: [RequestID: Request] = [:]
    private var order: [RequestID] = []
    private var nextID = 0

    /// - Parameters:
    ///   - promptChunk: prompt tokens per chunk.
    ///   - tokenBudget: the most tokens per forward pass (at least one chunk is always admitted).
    public init(context: any BatchLanguageModelContext, promptChunk: Int = 512, tokenBudget: Int = 512) {
        self.context = context
        self.promptChunk = max(1, promptChunk)
        self.tokenBudget = max(1, tokenBudget)
    }

    /// Requests not finished.
    public var activeRequests: Int { requests.count }

    /// Queues a request; its sequence lives in the context's KV pool until it finishes or is cancelled.
    /// - Parameter contextSize: the most positions its sequence may hold (prompt + generated).
    public func submit(prompt: [TokenID], options: GenerationOptions, sampling: SamplingOptions,
                       contextSize: Int) throws -> RequestID {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        guard prompt.count < contextSize else {
            throw GenerationError.promptTooLong(promptTokens: prompt.count, contextSize: contextSize)
        }
        for t in prompt where t < 0 || Int(t) >= context.vocabularySize {
            throw GenerationError.invalidToken(t, vocabularySize: context.vocabularySize)
        }
        defer { nextID += 1 }
        requests[nextID] = Request(sequence: context.kv.createSequence(), pending: prompt,
                                   selector: TokenSelector(options: sampling, history: prompt), options: options,
                                   capacity: contextSize)
        order.append(nextID)
        return nextID
    }

    /// Stops a request and frees its KV blocks.
    public func cancel(_ id: RequestID) {
        guard let request = requests.removeValue(forKey: id) else { return }
        context.kv.release(request.sequence)
        order.removeAll { $0 == id }
    }

    /// One forward pass. Returns a token for every request whose prompt finished or that decoded.
    public func step() throws -> [Event] {
        var chunks: [BatchChunk] = [], ids: [RequestID] = [], budget = tokenBudget
        // Running requests first (one token each), then prompt chunks in arrival order.
        for id in order where requests[id]!.pending.count == 1 && requests[id]!.generated > 0 {
            chunks.append(BatchChunk(sequence: requests[id]!.sequence, tokens: requests[id]!.pending))
            ids.append(id)
            budget -= 1
        }
        for id in order where !(requests[id]!.pending.count == 1 && requests[id]!.generated > 0) {
            let request = requests[id]!
            let done = context.kv.length(of: request.sequence)
            let size = min(promptChunk - done % promptChunk, request.pending.count)
            guard size <= budget || chunks.isEmpty else { break }
            chunks.append(BatchChunk(sequence: request.sequence, tokens: Array(request.pending.prefix(size))))
            ids.append(id)
            budget -= size
        }
        guard !chunks.isEmpty else { return [] }
        let logits = try context.forward(chunks)
        var events: [Event] = []
        for (i, id) in ids.enumerated() {
            var request = requests[id]!
            request.pending.removeFirst(chunks[i].tokens.count)
            guard request.pending.isEmpty else { requests[id] = request; continue }
            let token = request.selector.select(logits[i])
            request.generated += 1
            var finished: GenerationStatistics.StopReason?
            if request.options.stopAtEndOfSequence && context.endOfSequenceTokens.contains(token) {
                finished = .endOfSequence
            } else if request.generated >= request.options.maxNewTokens {
                finished = .maxTokens
            } else if context.kv.length(of: request.sequence) >= request.capacity {
                finished = .contextFull
            }
            events.append(Event(request: id, token: token, finished: finished))
            if finished != nil {
                requests[id] = request
                cancel(id)
            } else {
                request.pending = [token]
                requests[id] = request
            }
        }
        return events
    }

    /// Runs steps until every request has finished; the tokens of each, by request id.
    public func run() throws -> [RequestID: [TokenID]] {
        var tokens: [RequestID: [TokenID]] = [:]
        while activeRequests > 0 {
            for event in try step() { tokens[event.request, default: []].append(event.token) }
        }
        return tokens
    }
}
