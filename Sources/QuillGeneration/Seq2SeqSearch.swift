import QuillKernels

/// One generated hypothesis: the decoder sequence (start token first, the end-of-sequence token
/// last when it finished) and its beam score (`sequences_scores`; 0 for greedy search).
public struct Seq2SeqHypothesis: Sendable, Equatable {
    public var tokens: [TokenID]
    public var score: Float

    public init(tokens: [TokenID], score: Float) {
        self.tokens = tokens
        self.score = score
    }

    /// The generated tokens without the decoder start token.
    public var generated: ArraySlice<TokenID> { tokens.dropFirst() }
}

/// Limits on the sizes a checkpoint's configuration or a caller may ask an encoder-decoder model for.
public enum Seq2SeqLimits {
    /// Largest width, feed-forward size, head count or vocabulary accepted (products of two stay far
    /// below `Int.max`; real checkpoints are below 2¹⁸).
    public static let maximumDimension = 1 << 24
    /// Largest position table (`max_position_embeddings` rows × `d_model`) built in memory, in floats.
    public static let maximumPositionTableElements = 1 << 28
    /// The most new tokens per output (`max_new_tokens`, `max_length`, `--max-length`).
    public static let maximumNewTokens = 1 << 16
    /// The most beams (`num_beams`, `--beam`).
    public static let maximumBeams = 64
    /// T5 relative-attention distance limit.
    public static let maximumRelativeDistance = 1 << 16
}

/// Greedy and beam search over an `EncoderDecoderModel`, for a batch of sources at once.
public enum Seq2SeqSearch {
    /// Greedy decoding of every source (HF `num_beams=1, do_sample=False`): processors on the raw
    /// logits, then the first maximum. Finished rows leave the batch (the cache is compacted), so
    /// short outputs cost nothing later. `onFinished(source, hypothesis)` is called as each finishes.
    /// `shouldStop` is polled before every decoder step; when it returns true the search throws
    /// `CancellationError` (Ctrl-C in the command line).
    public static func greedy(model: any EncoderDecoderModel, sources: [[TokenID]], settings: Seq2SeqSettings,
                              shouldStop: () -> Bool = { false },
                              onFinished: (Int, Seq2SeqHypothesis) throws -> Void = { _, _ in }) throws -> [Seq2SeqHypothesis] {
        try validate(sources, settings, model)
        let encoded = try model.encode(sources)
        let state = try DecoderState(encoder: encoded, rowSources: Array(sources.indices), capacity: settings.maxLength,
                                     cacheType: model.decoderCacheType)
        let processors = Seq2SeqProcessors(settings)
        let vocabulary = model.vocabularySize
        var sequences = sources.map { _ in [settings.decoderStartToken] }
        var results = [Seq2SeqHypothesis?](repeating: nil, count: sources.count)
        var active = Array(sources.indices)   // row → source
        while !active.isEmpty {
            if shouldStop() { throw CancellationError() }
            var logits = try model.decode(active.map { sequences[$0].last! }, state: state)  // (rows, vocab)
            var keep: [Int] = []
            try logits.withUnsafeMutableBufferPointer { buffer in
                for (row, source) in active.enumerated() {
                    let scores = buffer.baseAddress! + row * vocabulary
                    processors.apply(scores, vocabulary: vocabulary, sequence: sequences[source])
                    let best = indexOfLargest(scores, count: vocabulary)
                    sequences[source].append(TokenID(best))
                    if settings.endOfSequenceTokens.contains(TokenID(best)) || sequences[source].count >= settings.maxLength {
                        let hypothesis = Seq2SeqHypothesis(tokens: sequences[source], score: 0)
                        results[source] = hypothesis
                        try onFinished(source, hypothesis)
                    } else {
                        keep.append(row)
                    }
                }
            }
            if keep.count != active.count { state.reorder(keep) }
            active = keep.map { active[$0] }
        }
        return results.map { $0! }
    }

    static func validate(_ sources: [[TokenID]], _ settings: Seq2SeqSettings, _ model: any EncoderDecoderModel) throws {
        guard (1...Seq2SeqLimits.maximumNewTokens).contains(settings.maxNewTokens) else {
            throw Seq2SeqError.badSettings("the most new tokens is \(settings.maxNewTokens); it must be between 1 and \(Seq2SeqLimits.maximumNewTokens)")
        }
        guard (1...Seq2SeqLimits.maximumBeams).contains(settings.numBeams) else {
            throw Seq2SeqError.badSettings("the beam count is \(settings.numBeams); it must be between 1 and \(Seq2SeqLimits.maximumBeams)")
        }
        for token in [settings.decoderStartToken, settings.padToken] + settings.endOfSequenceTokens
        where token < 0 || Int(token) >= model.vocabularySize {
            throw GenerationError.invalidToken(token, vocabularySize: model.vocabularySize)
        }
        guard (1...settings.numBeams).contains(settings.numReturnSequences) else {
            throw Seq2SeqError.badSettings("the hypotheses returned must be between 1 and the beam count (\(settings.numBeams))")
        }
        for source in sources {
            guard !source.isEmpty else { throw GenerationError.emptyPrompt }
            for token in source where token < 0 || Int(token) >= model.vocabularySize {
                throw GenerationError.invalidToken(token, vocabularySize: model.vocabularySize)
            }
        }
    }
}

/// Errors of encoder-decoder generation, each a one-line message.
public enum Seq2SeqError: Error, CustomStringConvertible, Equatable {
    case badSettings(String)

    public var description: String {
        switch self {
        case .badSettings(let message): return message
        }
    }
}
