import QuillKernels

/// Settings of one generation's length and stop conditions; how tokens are chosen is `SamplingOptions`.
public struct GenerationOptions: Sendable {
    /// The most new tokens to produce (`-n`).
    public var maxNewTokens: Int
    /// Stop when the model emits one of its end-of-sequence tokens (`--ignore-eos` turns this off).
    public var stopAtEndOfSequence: Bool

    public init(maxNewTokens: Int = 128, stopAtEndOfSequence: Bool = true) {
        self.maxNewTokens = maxNewTokens
        self.stopAtEndOfSequence = stopAtEndOfSequence
    }
}

/// Counts and timings of one generation.
public struct GenerationStatistics: Sendable, Equatable {
    public var promptTokens = 0
    public var promptSeconds = 0.0
    public var generatedTokens = 0
    /// Time spent producing the generated tokens after the prompt (every decode step).
    public var generationSeconds = 0.0
    /// Why generation ended.
    public var stopReason: StopReason = .maxTokens

    public enum StopReason: Sendable, Equatable {
        case endOfSequence, maxTokens, contextFull, stoppedByCaller
        /// The decoded text reached a stop string (set by the text layer, which owns stop strings).
        case stopString
        /// The task running the generation was cancelled.
        case cancelled
    }

    public init() {}

    public var promptTokensPerSecond: Double { promptSeconds > 0 ? Double(promptTokens) / promptSeconds : 0 }
    /// Decode speed; the first generated token comes from the prompt pass, so it is not counted here.
    public var generationTokensPerSecond: Double {
        generationSeconds > 0 ? Double(max(generatedTokens - 1, 0)) / generationSeconds : 0
    }
}

/// The index of the largest logit; the first one on ties, as `torch.argmax` does. NaNs are passed
/// over; with nothing above −∞ (or no logits), 0.
public func argmax(_ logits: [Float]) -> TokenID {
    logits.withUnsafeBufferPointer { b in
        guard let first = b.firstIndex(where: { !$0.isNaN }) else { return 0 }
        // 16 lanes at a time from the first number on (`indexOfLargest` keeps a NaN at its start).
        let i = first + indexOfLargest(b.baseAddress! + first, count: b.count - first)
        return TokenID(b[i] > -.infinity ? i : 0)
    }
}

/// Runs the prompt through the model, then produces tokens one at a time against the KV cache.
///
/// The caller decides what a token becomes (text, ids, a stop-string check) in `onToken`, which
/// returns false to stop; it also sees the end-of-sequence token that ends a generation. `choose` picks the next token from the logits (greedy by default).
public func generate(model: any CausalLanguageModel, prompt: [TokenID], cache: KVCache,
                     options: GenerationOptions,
                     choose: (inout [Float]) -> TokenID = { argmax($0) },
                     onToken: (TokenID) throws -> Bool) throws -> GenerationStatistics {
    guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
    guard cache.count + prompt.count <= cache.capacity else {
        throw GenerationError.promptTooLong(promptTokens: cache.count + prompt.count, contextSize: cache.capacity)
    }
    for token in prompt where token < 0 || Int(token) >= model.vocabularySize {
        throw GenerationError.invalidToken(token, vocabularySize: model.vocabularySize)
    }
    var statistics = GenerationStatistics()
    statistics.promptTokens = prompt.count
    let clock = ContinuousClock()
    let promptStart = clock.now
    var logits = try model.forward(prompt, cache: cache, logits: .last)
    statistics.promptSeconds = seconds(clock.now - promptStart)

    let decodeStart = clock.now
    statistics.stopReason = .maxTokens
    while statistics.generatedTokens < options.maxNewTokens {
        // Checked once per token, so cancelling the surrounding Task stops within one decode step.
        if Task.isCancelled {
            statistics.stopReason = .cancelled
            break
        }
        let token = choose(&logits)
        statistics.generatedTokens += 1
        // The end-of-sequence token is reported too (as Hugging Face's generate returns it); the
        // caller decides whether it prints.
        let keepGoing = try onToken(token)
        if options.stopAtEndOfSequence && model.endOfSequenceTokens.contains(token) {
            statistics.stopReason = .endOfSequence
            break
        }
        guard keepGoing else {
            statistics.stopReason = .stoppedByCaller
            break
        }
        guard statistics.generatedTokens < options.maxNewTokens else { break }
        guard cache.count < cache.capacity else {
            statistics.stopReason = .contextFull
            break
        }
        logits = try model.forward([token], cache: cache, logits: .last)
    }
    statistics.generationSeconds = seconds(clock.now - decodeStart)
    return statistics
}

/// The same loop with tokens chosen by `sampling` (llama.cpp's processor chain and a seeded sampler).
///
/// - Parameter history: tokens already in `cache` before `prompt` (earlier turns of a conversation),
///   which the repetition penalties consider together with the prompt and the generated tokens.
public func generate(model: any CausalLanguageModel, prompt: [TokenID], cache: KVCache,
                     options: GenerationOptions, sampling: SamplingOptions, history: [TokenID] = [],
                     onToken: (TokenID) throws -> Bool) throws -> GenerationStatistics {
    var selector = TokenSelector(options: sampling, history: history + prompt)
    return try generate(model: model, prompt: prompt, cache: cache, options: options,
                        choose: { selector.select($0) }, onToken: onToken)
}

@inline(__always) func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}
