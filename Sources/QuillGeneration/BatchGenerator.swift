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
    /// Whether a token's keys, values and logits depend only on its position and the tokens before
    /// it, not on which chunk of two or more tokens computes it (true when every kernel of the prompt
    /// path works token by token). Then the prefix cache shares prompts block by block rather than in
    /// whole chunks.
    var promptTokensIndependentOfChunks: Bool { get }
}

extension BatchLanguageModelContext {
    public var promptTokensIndependentOfChunks: Bool { false }
}

/// Generates for many requests at once (continuous batching): every `step()` is one forward pass
/// over the next token of every running request plus prompt chunks of waiting ones; requests join
/// and leave at any step.
///
/// Prompts are cut into chunks of at most `promptChunk` tokens, and a step takes the running
/// requests' tokens plus chunks of up to `tokenBudget` prompt tokens (at least one chunk; waiting
/// prompts in arrival order), so a long prompt never stalls the running streams for more than one
/// chunk. When the context's results depend on the chunk (`promptTokensIndependentOfChunks` false),
/// chunks are counted from the prompt's start, a chunk that does not fit the step waits and a later
/// prompt's smaller chunk may fill it; otherwise chunks start where the prompt stands and take what
/// the step has left. Either way chunk boundaries do not depend on the other requests in a way the
/// results could see, and the context's kernels are batch-invariant, so a request's tokens are the
/// same whatever else is running.
///
/// Prefix cache (when the context's pool has `prefixCaching` on and `promptChunk` is a multiple of
/// the block size): a request starts from cached blocks of an earlier prompt, and only blocks that
/// prompt chunks computed are registered, so reusing them changes no bit of the result. The unit of
/// reuse is one block when the context computes each prompt token independently of its chunk
/// (`promptTokensIndependentOfChunks`; at least two tokens are then left to compute, as a single
/// token would take the decoding path), and the match may end inside a cached block whose later
/// tokens differ (a shared system text followed by another question), which is copied on the first
/// write; otherwise a whole chunk, so that every cached position was
/// computed exactly as this request would compute it (the same chunk at the same offset, over the
/// same earlier positions). Positions computed while decoding are never shared.
///
/// In-flight sharing: prompts that arrive together find nothing cached yet. So before each chunk a
/// waiting prompt takes any units of reuse that others registered since it started, and a prompt
/// whose next unit (same tokens from position 0) another prompt computes in this very step waits
/// one step instead of computing it too, then takes the registered blocks (vLLM's and SGLang's
/// deduplication of concurrent prefills). A prompt only waits for a chunk that is in the
/// current forward pass, so it never waits for a producer that was cancelled or preempted: if the
/// blocks are gone by the next step, it computes them itself.
///
/// Memory: a prompt starts only when the KV pool can hold all of it (and its first new position)
/// beside what the running requests need this step, so a started prompt always finishes. When the
/// running requests cannot all grow by one position, the most recently started ones are preempted
/// (vLLM's recompute preemption): their blocks are released and they wait again, first in line, to
/// recompute their prompt and tokens so far (from the prefix cache where it still holds them), then
/// continue with the same sampler state.
public final class BatchGenerator {
    public typealias RequestID = Int

    /// What a step produced for one request.
    public struct Event: Sendable, Equatable {
        public var request: RequestID
        public var token: TokenID
        /// Set on the request's last token.
        public var finished: GenerationStatistics.StopReason?
        /// The token's log-probability and the most likely alternatives, when the request asked for them.
        public var logprobs: TokenLogprobs?
        /// Set on the request's first token: its prompt tokens taken from the prefix cache instead
        /// of computed (at submission or while waiting for chunks that other prompts computed).
        public var cachedPromptTokens: Int?
    }

    /// What `submit` queued.
    public struct Submission: Sendable, Equatable {
        /// One request per choice, in order; they share the prompt's KV blocks.
        public var requests: [RequestID]
        /// Leading prompt tokens found in the context's prefix cache (not computed again).
        public var cachedTokens: Int
    }

    struct Request {
        var sequence: SequenceID
        var pending: [TokenID]       // prompt tokens not yet run (or the last sampled token)
        var selector: TokenSelector
        let options: GenerationOptions
        let logprobs: Int?
        var generated = 0
        let capacity: Int
        /// Every token the sequence has been fed or will be: the prompt, then each sampled token
        /// (for the prefix cache and for recomputing after a preemption).
        var tokens: [TokenID]
        /// `pending` holds prompt tokens (a new request, or a preempted one recomputing).
        var prefilling = true
        /// Leading positions computed by whole prompt chunks, which the prefix cache may share.
        var shareable = 0
        /// Prompt tokens taken from the prefix cache rather than computed.
        var cachedPromptTokens = 0
        /// Further choices of the same prompt, started from its logits once the prompt has run.
        var siblings: [(id: RequestID, selector: TokenSelector)] = []
    }

    public let context: any BatchLanguageModelContext
    public let promptChunk: Int
    public let tokenBudget: Int
    private var requests: [RequestID: Request] = [:]
    private var order: [RequestID] = []
    private var nextID = 0

    /// - Parameters:
    ///   - promptChunk: prompt tokens per chunk.
    ///   - tokenBudget: the most prompt tokens per forward pass besides the running requests' one
    ///     token each (at least one chunk is always admitted).
    public init(context: any BatchLanguageModelContext, promptChunk: Int = 512, tokenBudget: Int = 512) {
        self.context = context
        self.promptChunk = max(1, promptChunk)
        self.tokenBudget = max(1, tokenBudget)
    }

    /// The unit of prefix reuse (one block, or one prompt chunk unless the context's prompt tokens are
    /// independent of their chunks), or nil when the prefix cache is off or chunks do not end on
    /// block boundaries.
    private var reuseGranularity: Int? {
        let kv = context.kv
        guard kv.prefixCaching && promptChunk % kv.blockTokens == 0 else { return nil }
        return context.promptTokensIndependentOfChunks ? kv.blockTokens : promptChunk
    }

    /// Whether a prompt may also take the first positions of a cached block whose later tokens
    /// differ from its own (block-sized reuse only: each position is then bitwise what this prompt
    /// would compute, whichever chunk computed it).
    private var reusesPartialBlocks: Bool { reuseGranularity == context.kv.blockTokens && context.promptTokensIndependentOfChunks }

    /// The tokens whose leading cached blocks a sequence may take: with block-sized reuse, all but the
    /// last, so that at least two are left to compute as a prompt chunk (one alone would decode,
    /// which is not bitwise the prompt path).
    private func reusable(_ tokens: [TokenID]) -> [TokenID] {
        reuseGranularity == context.kv.blockTokens && reuseGranularity != promptChunk ? Array(tokens.dropLast()) : tokens
    }

    /// Requests not finished (choices waiting for their prompt included).
    public var activeRequests: Int { requests.count + requests.values.reduce(0) { $0 + $1.siblings.count } }
    /// Requests whose prompt has not finished running (preempted ones included).
    public var waitingRequests: Int { requests.values.reduce(0) { $0 + ($1.prefilling ? 1 + $1.siblings.count : 0) } }
    /// Times a running request was preempted for lack of KV memory.
    public private(set) var preemptions = 0
    /// Prompt tokens run through the model (recomputed ones included; cached ones not).
    public private(set) var computedPromptTokens = 0
    /// Prompt chunks that waited a step because another prompt was computing the same chunk.
    public private(set) var chunksWaitedFor = 0

    /// Queues a request; its sequence lives in the context's KV pool until it finishes or is cancelled.
    /// - Parameter contextSize: the most positions its sequence may hold (prompt + generated).
    public func submit(prompt: [TokenID], options: GenerationOptions, sampling: SamplingOptions,
                       contextSize: Int) throws -> RequestID {
        try submit(prompt: prompt, options: options, sampling: [sampling], contextSize: contextSize).requests[0]
    }

    /// Queues `sampling.count` choices of one prompt (OpenAI's `n`): the prompt runs once and each
    /// choice continues from its own fork of the prompt's KV blocks with its own sampling. When the
    /// context's pool caches prefixes, the prompt's leading full blocks are taken from the cache.
    /// - Parameters:
    ///   - contextSize: the most positions each choice may hold (prompt + generated).
    ///   - logprobs: report each token's log-probability and this many most likely alternatives.
    public func submit(prompt: [TokenID], options: GenerationOptions, sampling: [SamplingOptions],
                       contextSize: Int, logprobs: Int? = nil) throws -> Submission {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        guard prompt.count < contextSize else {
            throw GenerationError.promptTooLong(promptTokens: prompt.count, contextSize: contextSize)
        }
        for t in prompt where t < 0 || Int(t) >= context.vocabularySize {
            throw GenerationError.invalidToken(t, vocabularySize: context.vocabularySize)
        }
        precondition(!sampling.isEmpty, "at least one choice")
        let kv = context.kv
        let promptBlocks = (prompt.count + kv.blockTokens) / kv.blockTokens
        guard promptBlocks <= kv.capacityBlocks else {
            throw KVCacheError.outOfBlocks(neededBlocks: promptBlocks, freeBlocks: kv.capacityBlocks, blockTokens: kv.blockTokens)
        }
        let (sequence, reused) = reuseGranularity.map {
            kv.createSequence(reusingPrefixOf: reusable(prompt), granularity: $0, throughPartialBlock: reusesPartialBlocks)
        } ?? (kv.createSequence(), 0)
        let ids = (0 ..< sampling.count).map { nextID + $0 }
        nextID += sampling.count
        var request = Request(sequence: sequence, pending: Array(prompt[reused...]),
                              selector: TokenSelector(options: sampling[0], history: prompt), options: options,
                              logprobs: logprobs, capacity: contextSize, tokens: prompt)
        request.shareable = reused
        request.cachedPromptTokens = reused
        request.siblings = zip(ids.dropFirst(), sampling.dropFirst()).map { ($0, TokenSelector(options: $1, history: prompt)) }
        requests[ids[0]] = request
        order.append(ids[0])
        return Submission(requests: ids, cachedTokens: reused)
    }

    /// Stops a request and frees its KV blocks. Cancelling the first choice of a prompt that has not
    /// finished running cancels its other choices too.
    public func cancel(_ id: RequestID) {
        if let request = requests.removeValue(forKey: id) {
            context.kv.release(request.sequence)
            order.removeAll { $0 == id }
            return
        }
        for (key, request) in requests where request.siblings.contains(where: { $0.id == id }) {
            requests[key]!.siblings.removeAll { $0.id == id }
        }
    }

    /// One forward pass. Returns a token for every request whose prompt finished or that decoded.
    public func step() throws -> [Event] {
        let kv = context.kv
        var chunks: [BatchChunk] = [], ids: [RequestID] = [], budget = tokenBudget
        // Running requests first (one token each); preempt the newest while the pool cannot hold them.
        var decoding = order.filter { !requests[$0]!.prefilling }
        func decodeBlocks() -> Int { decoding.reduce(0) { $0 + kv.blocksNeeded(appending: 1, to: requests[$1]!.sequence) } }
        var needed = decodeBlocks()
        while needed > kv.freeBlocks, let newest = decoding.popLast() {
            guard !decoding.isEmpty || order.contains(where: { requests[$0]!.prefilling && kv.length(of: requests[$0]!.sequence) > 0 }) else {
                throw KVCacheError.outOfBlocks(neededBlocks: needed, freeBlocks: kv.freeBlocks, blockTokens: kv.blockTokens)
            }
            preempt(newest)
            needed = decodeBlocks()
        }
        for id in decoding {
            chunks.append(BatchChunk(sequence: requests[id]!.sequence, tokens: requests[id]!.pending))
            ids.append(id)
        }
        // Then prompt chunks in arrival order, each only if the pool can hold the rest of its prompt.
        var available = kv.freeBlocks - needed
        // Prefix hashes of the units of reuse this step computes, which other prompts wait for.
        var computing: Set<UInt64> = []
        for id in order where requests[id]!.prefilling {
            let freeBefore = kv.freeBlocks
            reuseCachedPrefixIfPreempted(id, available: available)
            takeChunksComputedByOthers(id)
            available -= freeBefore - kv.freeBlocks     // idle cached blocks just taken
            let request = requests[id]!
            let done = kv.length(of: request.sequence)
            guard let size = nextChunkSize(pending: request.pending.count, computed: done, budget: budget) else { continue }
            let keys = shareableKeys(request, computed: done, chunk: size)
            if let first = keys.first, computing.contains(first) {
                chunksWaitedFor += 1
                continue
            }
            let whole = kv.blocksNeeded(appending: request.pending.count + 1, to: request.sequence)
            guard whole <= available else { continue }
            available -= whole
            computing.formUnion(keys)
            chunks.append(BatchChunk(sequence: request.sequence, tokens: Array(request.pending.prefix(size))))
            ids.append(id)
            budget -= size
        }
        if chunks.isEmpty {
            // Nothing fits: started prompts hold blocks that the others need. Restart the newest of them
            // so that the ones before it can finish.
            guard let stuck = order.last(where: { requests[$0]!.prefilling && kv.length(of: requests[$0]!.sequence) > 0 }),
                  order.contains(where: { $0 != stuck && requests[$0]!.prefilling }) else { return [] }
            preempt(stuck)
            return try step()
        }
        let logits = try context.forward(chunks)
        var events: [Event] = []
        for (i, id) in ids.enumerated() {
            var request = requests[id]!
            if request.prefilling { computedPromptTokens += chunks[i].tokens.count }
            request.pending.removeFirst(chunks[i].tokens.count)
            if request.prefilling, let unit = reuseGranularity, kv.length(of: request.sequence) / unit * unit > request.shareable {
                request.shareable = kv.length(of: request.sequence) / unit * unit
                kv.cachePrefix(of: request.sequence, tokens: Array(request.tokens.prefix(request.shareable)))
            }
            guard request.pending.isEmpty else { requests[id] = request; continue }
            request.prefilling = false
            // The prompt is done: its other choices fork from here and sample from the same logits.
            for sibling in request.siblings {
                var choice = request
                choice.siblings = []
                choice.selector = sibling.selector
                choice.sequence = try kv.fork(request.sequence)
                requests[sibling.id] = choice
                order.append(sibling.id)
                events.append(advance(sibling.id, logits: logits[i], firstToken: true))
            }
            request.siblings = []
            requests[id] = request
            events.append(advance(id, logits: logits[i], firstToken: request.generated == 0))
        }
        return events
    }

    /// Tokens of a waiting prompt's next chunk, given `budget` prompt tokens left in this step, or nil
    /// when it waits for the next step (first in line).
    ///
    /// When a token's result depends on its chunk, chunks run at fixed offsets (multiples of
    /// `promptChunk` from the prompt's start) and one that does not fit the rest of the budget waits;
    /// a later, smaller one (a prompt's last, partial chunk) may still fill the step. Otherwise a chunk
    /// starts wherever the prompt stands (after cached blocks, say) and takes what fits, but never
    /// leaves or makes a chunk of one token, which would take the decoding path.
    private func nextChunkSize(pending: Int, computed: Int, budget: Int) -> Int? {
        let first = budget == tokenBudget     // nothing admitted yet: one chunk always is
        guard context.promptTokensIndependentOfChunks else {
            let size = min(promptChunk - computed % promptChunk, pending)
            return size <= budget || first ? size : nil
        }
        let limit = first ? promptChunk : min(promptChunk, budget)
        if pending <= limit { return pending }
        if pending - limit > 1 { return limit >= 2 ? limit : nil }
        if limit >= 3 { return limit - 1 }
        return first ? pending : nil
    }

    /// The prefix hashes through the end of each unit of reuse that a prompt chunk of `chunk` tokens
    /// after `computed` positions completes and registers, which other prompts could take from the
    /// cache (not through the prompt's last token, which the cache never covers); the first one is
    /// what a prompt about to compute this chunk would wait for.
    private func shareableKeys(_ request: Request, computed: Int, chunk: Int) -> [UInt64] {
        guard let unit = reuseGranularity else { return [] }
        return stride(from: (computed / unit + 1) * unit, through: computed + chunk, by: unit)
            .filter { $0 < request.tokens.count }
            .map { context.kv.prefixHash(of: request.tokens[..<$0]) }
    }

    /// A waiting prompt whose positions so far are all whole cached chunks takes the chunks that
    /// follow from the cache, if other prompts have registered them since.
    private func takeChunksComputedByOthers(_ id: RequestID) {
        guard let granularity = reuseGranularity, var request = requests[id], request.prefilling else { return }
        let kv = context.kv
        let done = kv.length(of: request.sequence)
        guard done == request.shareable, request.tokens.count - request.pending.count == done else { return }
        let length = kv.extendFromCache(request.sequence, tokens: reusable(request.tokens), granularity: granularity,
                                        throughPartialBlock: reusesPartialBlocks)
        guard length > done else { return }
        request.pending = Array(request.tokens[length...])
        request.shareable = length
        request.cachedPromptTokens += length - done
        requests[id] = request
    }

    /// Frees a running request's blocks; it waits, first in line, to recompute its tokens.
    private func preempt(_ id: RequestID) {
        var request = requests[id]!
        context.kv.release(request.sequence)
        request.sequence = context.kv.createSequence()
        request.pending = request.tokens
        request.prefilling = true
        request.shareable = 0
        request.cachedPromptTokens = 0
        requests[id] = request
        order.removeAll { $0 == id }
        let firstWaiting = order.firstIndex { requests[$0]!.prefilling } ?? order.endIndex
        order.insert(id, at: firstWaiting)
        preemptions += 1
    }

    /// A preempted request about to recompute starts from the cached blocks of its tokens, if they
    /// are still there and the rest fits in `available` blocks.
    private func reuseCachedPrefixIfPreempted(_ id: RequestID, available: Int) {
        let kv = context.kv
        guard let granularity = reuseGranularity, var request = requests[id], request.generated > 0,
              kv.length(of: request.sequence) == 0, request.pending.count == request.tokens.count else { return }
        let cached = kv.cachedPrefixLength(of: reusable(request.tokens), granularity: granularity)
        guard cached > 0, (request.tokens.count - cached + kv.blockTokens) / kv.blockTokens <= available else { return }
        kv.release(request.sequence)
        let (sequence, reused) = kv.createSequence(reusingPrefixOf: reusable(request.tokens), granularity: granularity,
                                                   throughPartialBlock: reusesPartialBlocks)
        request.sequence = sequence
        request.pending = Array(request.tokens[reused...])
        request.shareable = reused
        request.cachedPromptTokens = reused
        requests[id] = request
    }

    /// Samples the next token of request `id` from `logits` and finishes it if that was its last.
    private func advance(_ id: RequestID, logits: [Float], firstToken: Bool) -> Event {
        var request = requests[id]!
        let token = request.selector.select(logits)
        request.generated += 1
        var finished: GenerationStatistics.StopReason?
        if request.options.stopAtEndOfSequence && context.endOfSequenceTokens.contains(token) {
            finished = .endOfSequence
        } else if request.generated >= request.options.maxNewTokens {
            finished = .maxTokens
        } else if context.kv.length(of: request.sequence) >= request.capacity {
            finished = .contextFull
        }
        let logprobs = request.logprobs.map { TokenLogprobs(logits: logits, chosen: token, alternatives: $0) }
        request.pending = [token]
        request.tokens.append(token)
        requests[id] = request
        if finished != nil { cancel(id) }
        return Event(request: id, token: token, finished: finished, logprobs: logprobs,
                     cachedPromptTokens: firstToken ? request.cachedPromptTokens : nil)
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
