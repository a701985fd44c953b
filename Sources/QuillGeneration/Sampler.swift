/// Picks the next token from the processed candidates.
public protocol TokenSampler: Sendable {
    mutating func sample(_ candidates: TokenCandidates) -> TokenID
}

/// Always the most likely candidate (the smaller id on ties, as `argmax` does).
public struct GreedySampler: TokenSampler {
    public init() {}
    public func sample(_ candidates: TokenCandidates) -> TokenID {
        candidates.ids[candidates.indexOfMaximum]
    }
}

/// Draws a candidate with probability softmax(logits), from a seeded `Xoshiro256StarStar`.
///
/// One uniform number u in [0, 1) per draw; the token is the first whose cumulative probability (in
/// candidate order, summed in Double) exceeds u × total. The same seed and the same candidates
/// therefore give the same token everywhere.
public struct CategoricalSampler: TokenSampler {
    public private(set) var generator: Xoshiro256StarStar

    public init(seed: UInt64) { generator = Xoshiro256StarStar(seed: seed) }

    public mutating func sample(_ candidates: TokenCandidates) -> TokenID {
        let probabilities = candidates.probabilities()
        let target = generator.nextUnitInterval() * probabilities.reduce(0, +)
        var cumulative = 0.0
        for (i, p) in probabilities.enumerated() {
            cumulative += p
            if target < cumulative { return candidates.ids[i] }
        }
        // Only rounding can get here (u × total ≥ the final sum): the last token with any weight.
        return candidates.ids[probabilities.lastIndex { $0 > 0 } ?? candidates.count - 1]
    }
}

/// How the next token is chosen: the processors of llama.cpp's default chain and their defaults.
///
/// Order (llama.cpp `common_sampler` with default `--samplers`): logit bias and forbidden tokens →
/// penalties (repeat, frequency, presence over the last `repeatLastN` tokens) → top-k → typical-p →
/// top-p → min-p → temperature → a draw from the remaining distribution. Filters therefore see the
/// untempered distribution; the temperature only shapes the final draw. A temperature ≤ 0 is greedy
/// decoding over the biased and penalised logits (the filters cannot change the maximum then, apart
/// from typical-p, and are skipped).
public struct SamplingOptions: Sendable, Equatable {
    /// 0 = greedy. llama.cpp: 0.8.
    public var temperature: Float = 0.8
    /// 0 = off. llama.cpp: 40.
    public var topK: Int = 40
    /// 1 = off. llama.cpp: 0.95.
    public var topP: Float = 0.95
    /// 0 = off. llama.cpp: 0.05.
    public var minP: Float = 0.05
    /// 1 = off. llama.cpp: 1.0.
    public var typicalP: Float = 1
    /// 1 = off. llama.cpp: 1.0.
    public var repeatPenalty: Float = 1
    /// Penalty window in tokens; 0 = off, −1 = the whole context. llama.cpp: 64.
    public var repeatLastN: Int = 64
    /// 0 = off (OpenAI's definition).
    public var frequencyPenalty: Float = 0
    /// 0 = off (OpenAI's definition).
    public var presencePenalty: Float = 0
    /// Added to the logits of chosen tokens before anything else.
    public var logitBias: [TokenID: Float] = [:]
    /// Tokens that are never chosen.
    public var forbiddenTokens: Set<TokenID> = []
    /// Seed of the generator; a fresh random one unless set, so that a run can be repeated.
    public var seed: UInt64 = UInt64.random(in: 0 ... UInt64.max)

    /// llama.cpp's defaults with a random seed.
    public init() {}

    /// Greedy decoding (temperature 0, no penalties).
    public static var greedy: SamplingOptions {
        var options = SamplingOptions()
        options.temperature = 0
        return options
    }

    public var isGreedy: Bool { temperature <= 0 }

    /// The processors in the order they run.
    public var processors: [any LogitsProcessor] {
        var bias = logitBias
        for token in forbiddenTokens { bias[token] = -.infinity }
        var chain: [any LogitsProcessor] = []
        if !bias.isEmpty { chain.append(LogitBias(bias)) }
        let penalty = RepetitionPenalty(lastN: repeatLastN, repeatPenalty: repeatPenalty,
                                        frequencyPenalty: frequencyPenalty, presencePenalty: presencePenalty)
        if !penalty.isIdentity { chain.append(penalty) }
        if isGreedy { return chain }
        if topK > 0 { chain.append(TopK(topK)) }
        if typicalP < 1 { chain.append(TypicalP(typicalP)) }
        if topP < 1 { chain.append(TopP(topP)) }
        if minP > 0 { chain.append(MinP(minP)) }
        chain.append(Temperature(temperature))
        return chain
    }
}

/// Runs the processor chain and the sampler for one sequence, remembering the history the penalties need.
public struct TokenSelector: Sendable {
    public let options: SamplingOptions
    private let processors: [any LogitsProcessor]
    private var sampler: any TokenSampler
    /// Tokens seen so far (prompt and generated), for the penalties.
    public private(set) var history: [TokenID]

    /// - Parameter history: the tokens already in the context (the prompt, earlier turns).
    public init(options: SamplingOptions, history: [TokenID] = []) {
        self.options = options
        processors = options.processors
        sampler = options.isGreedy ? GreedySampler() as any TokenSampler : CategoricalSampler(seed: options.seed)
        self.history = history
    }

    /// Adds tokens that entered the context without being chosen here (a new prompt, a new turn).
    public mutating func observe(_ tokens: [TokenID]) { history += tokens }

    /// Chooses the next token from the raw logits and adds it to the history.
    public mutating func select(_ logits: [Float]) -> TokenID {
        let token: TokenID
        if processors.isEmpty && options.isGreedy {
            token = argmax(logits)  // the plain greedy path: no copies of the vocabulary
        } else {
            var candidates = TokenCandidates(logits: logits)
            for processor in processors { processor.process(&candidates, history: history) }
            token = sampler.sample(candidates)
        }
        history.append(token)
        return token
    }
}
