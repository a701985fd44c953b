import QuillGeneration

extension TextModel {
    /// Beam search after `prompt` with Hugging Face `generate(num_beams:)` semantics (length penalty,
    /// `early_stopping=False` heuristic, n-best scores) over forked KV sequences that share their
    /// common prefix. Returns up to `nBest` hypotheses, best first; each one's tokens are the new
    /// tokens (with the end-of-sequence token that finished it, if any) and its score the
    /// length-normalised sum of log-probabilities.
    public func beamSearch(prompt: [TokenID], beams: Int, maxNewTokens: Int, nBest: Int = 1,
                           stopAtEndOfSequence: Bool = true, contextSize: Int) throws -> [Seq2SeqHypothesis] {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        guard prompt.count < contextSize else {
            throw GenerationError.promptTooLong(promptTokens: prompt.count, contextSize: contextSize)
        }
        let endTokens = stopAtEndOfSequence ? model.endOfSequenceTokens.sorted() : []
        // The search starts every beam from the prompt's last token.
        let settings = Seq2SeqSettings(decoderStartToken: prompt.last!, endOfSequenceTokens: endTokens, padToken: 0,
                                       maxNewTokens: max(1, min(maxNewTokens, contextSize - prompt.count)),
                                       numBeams: max(beams, nBest), numReturnSequences: nBest)
        // Beams × context past Int.max: asking for Int.max positions gives the pool's one-line memory error.
        let (kvTokens, overflow) = settings.numBeams.multipliedReportingOverflow(by: contextSize)
        let context = try model.makeContext(kvTokens: overflow ? Int.max : kvTokens)
        let rows = try SequenceBeamRows(context: context, prompt: prompt, beams: settings.numBeams, promptChunk: model.maxBatch)
        return try Seq2SeqSearch.beam(rows: rows, sources: 1, settings: settings)[0].map {
            Seq2SeqHypothesis(tokens: Array($0.tokens.dropFirst()), score: $0.score)
        }
    }
}
