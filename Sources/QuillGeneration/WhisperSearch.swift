import QuillKernels

/// Settings of Whisper decoding with CTranslate2's semantics (`models::Whisper::generate` without
/// timestamps, CTranslate2 4.8).
public struct WhisperSearchSettings: Sendable, Equatable {
    /// 1: greedy search; more: beam search (patience 1, length penalty 1).
    public var beamSize: Int
    /// CTranslate2's `max_length` (448): at most `min(maxLength / 2, maxLength − (prompt − 1))` new tokens.
    public var maxLength: Int
    /// Banned at every step (config.json `suppress_ids`).
    public var suppressIds: [TokenID]
    /// Also banned at the first generated step (`suppress_ids_begin`: the blank and end-of-text).
    public var suppressIdsBegin: [TokenID]
    /// `<|endoftext|>`: ends a hypothesis and is not part of the returned ids.
    public var endOfText: TokenID

    public init(beamSize: Int = 5, maxLength: Int = 448, suppressIds: [TokenID], suppressIdsBegin: [TokenID], endOfText: TokenID) {
        self.beamSize = beamSize
        self.maxLength = maxLength
        self.suppressIds = suppressIds
        self.suppressIdsBegin = suppressIdsBegin
        self.endOfText = endOfText
    }

    /// New tokens allowed after `promptLength` prompt tokens.
    public func maxNewTokens(promptLength: Int) -> Int { min(maxLength / 2, maxLength - (promptLength - 1)) }
}

/// One finished Whisper hypothesis.
public struct WhisperHypothesis: Sendable, Equatable {
    /// Generated ids, without the prompt and without the end-of-text token.
    public var ids: [TokenID]
    /// Sum of the log-probabilities of every generated token (end-of-text included) divided by `ids.count`.
    public var score: Float
    /// The hypothesis reached the length limit instead of ending with end-of-text.
    public var stoppedByLength: Bool
}

/// Greedy and beam search over an encoder-decoder model with CTranslate2's Whisper rules:
///
/// - the prompt minus its last token fills the decoder cache; the last prompt token is the input of
///   the first step;
/// - at every step the suppressed ids get Float's lowest value (at the first step also
///   `suppressIdsBegin`), then log-softmax; nothing else (no timestamp rules, penalties or minimum);
/// - greedy: the first maximum; beam: the best `2·beams` of all beams × vocabulary (step 0: the one
///   prompt state), candidates among the first `beams` that are end-of-text (or reach the length
///   limit) finish with score `sum / ids` and their slot takes the next not-finished candidate of
///   the remaining ones; the search stops once `beams` hypotheses have finished or at the limit;
///   the hypotheses are returned best first.
public enum WhisperSearch {
    /// Decodes one utterance whose encoder output is `encoder` (one source).
    /// - Returns: greedy: one hypothesis; beam: every finished hypothesis, best first.
    public static func decode(model: any EncoderDecoderModel, encoder: EncoderStates, prompt: [TokenID],
                              settings: WhisperSearchSettings) throws -> [WhisperHypothesis] {
        guard settings.beamSize >= 1 else { throw Seq2SeqError.badSettings("the beam count must be at least 1") }
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        for token in prompt where token < 0 || Int(token) >= model.vocabularySize {
            throw GenerationError.invalidToken(token, vocabularySize: model.vocabularySize)
        }
        let maxNew = settings.maxNewTokens(promptLength: prompt.count)
        guard maxNew >= 1 else {
            throw GenerationError.promptTooLong(promptTokens: prompt.count, contextSize: settings.maxLength)
        }
        let beams = settings.beamSize, vocabulary = model.vocabularySize
        let state = try DecoderState(encoder: encoder, rowSources: Array(repeating: 0, count: beams),
                                 capacity: prompt.count + maxNew, cacheType: model.decoderCacheType)
        state.reorder([0])   // the prompt is decoded once, in one row
        for token in prompt.dropLast() { try model.prefill([token], state: state) }

        var tokens = [prompt.last!]           // input of each live row
        var sequences: [[TokenID]] = [[]]     // generated ids of each live row
        var cumulative: [Float] = [0]         // summed log-probabilities of each live row
        var finished: [WhisperHypothesis] = []
        for step in 0..<maxNew {
            var logits = try model.decode(tokens, state: state)   // (rows, vocab)
            let last = step + 1 == maxNew
            let rows = tokens.count
            logits.withUnsafeMutableBufferPointer { buffer in
                for r in 0..<rows {
                    let row = buffer.baseAddress! + r * vocabulary
                    suppress(row, vocabulary: vocabulary, step: step, settings: settings)
                    logSoftmaxVectorised(row, count: vocabulary)
                }
            }
            if beams == 1 {
                let best = logits.withUnsafeBufferPointer { indexOfLargest($0.baseAddress!, count: vocabulary) }
                cumulative[0] += logits[best]
                let token = TokenID(best)
                if token == settings.endOfText || last {
                    if token != settings.endOfText { sequences[0].append(token) }
                    let ids = sequences[0]
                    return [WhisperHypothesis(ids: ids, score: cumulative[0] / Float(max(1, ids.count)),
                                              stoppedByLength: token != settings.endOfText)]
                }
                sequences[0].append(token)
                tokens = [token]
                continue
            }
            // Beam search: the best 2·beams candidates over rows × vocabulary, earlier index first on ties.
            let top = bestCandidates(logits, rows: rows, vocabulary: vocabulary, running: cumulative, count: 2 * beams)
            var next: [Int] = []          // candidate index continuing in each slot
            var spare = beams             // the next candidate that may refill a finished slot
            for k in 0..<beams {
                var chosen = k
                let candidate = top[k]
                if candidate.token == settings.endOfText || last {
                    var ids = sequences[candidate.row]
                    if candidate.token != settings.endOfText { ids.append(candidate.token) }
                    finished.append(WhisperHypothesis(ids: ids, score: candidate.score / Float(max(1, ids.count)),
                                                      stoppedByLength: candidate.token != settings.endOfText))
                    while spare < top.count {
                        defer { spare += 1 }
                        if top[spare].token != settings.endOfText { chosen = spare; break }
                    }
                }
                next.append(chosen)
            }
            if last || finished.count >= beams { break }
            state.reorder(next.map { top[$0].row })
            sequences = next.map { sequences[top[$0].row] + [top[$0].token] }
            tokens = next.map { top[$0].token }
            cumulative = next.map { top[$0].score }
        }
        // Best first; equal scores keep their finishing order (Python's stable sort in the reference port).
        return finished.enumerated().sorted { a, b in
            a.element.score != b.element.score ? a.element.score > b.element.score : a.offset < b.offset
        }.map(\.element)
    }

    /// Probabilities of the language tokens at the first decoder position (input `startOfTranscript`):
    /// softmax over the language tokens' logits only, most likely first.
    public static func detectLanguage(model: any EncoderDecoderModel, encoder: EncoderStates, startOfTranscript: TokenID,
                                      languageIds: [TokenID]) throws -> [(token: TokenID, probability: Float)] {
        guard !languageIds.isEmpty, languageIds.allSatisfy({ $0 >= 0 && Int($0) < model.vocabularySize }) else {
            throw Seq2SeqError.badSettings("language ids must be non-empty and inside the vocabulary")
        }
        let state = try DecoderState(encoder: encoder, rowSources: [0], capacity: 1, cacheType: model.decoderCacheType)
        let logits = try model.decode([startOfTranscript], state: state)
        var values = languageIds.map { logits[Int($0)] }
        values.withUnsafeMutableBufferPointer { logSoftmaxInPlace($0.baseAddress!, count: $0.count) }
        let ranked = zip(languageIds, values.map { expf($0) }).enumerated().sorted { a, b in
            a.element.1 != b.element.1 ? a.element.1 > b.element.1 : a.offset < b.offset
        }
        return ranked.map { (token: $0.element.0, probability: $0.element.1) }
    }

    /// CTranslate2 writes Float's lowest value (not −∞) into suppressed logits.
    static func suppress(_ row: UnsafeMutablePointer<Float>, vocabulary: Int, step: Int, settings: WhisperSearchSettings) {
        for id in settings.suppressIds where id >= 0 && Int(id) < vocabulary { row[Int(id)] = -Float.greatestFiniteMagnitude }
        if step == 0 {
            for id in settings.suppressIdsBegin where id >= 0 && Int(id) < vocabulary { row[Int(id)] = -Float.greatestFiniteMagnitude }
        }
    }

    struct Candidate {
        var score: Float
        var row: Int
        var token: TokenID
    }

    /// The `count` best `running[row] + logProbs[row, token]`, best first; ties keep the lower flat index.
    static func bestCandidates(_ logProbs: [Float], rows: Int, vocabulary: Int, running: [Float], count: Int) -> [Candidate] {
        var top: [Candidate] = []
        top.reserveCapacity(count + 1)
        logProbs.withUnsafeBufferPointer { buffer in
            for r in 0..<rows {
                let row = buffer.baseAddress! + r * vocabulary
                for i in 0..<vocabulary {
                    let score = row[i] + running[r]
                    if top.count == count, !(score > top[count - 1].score) { continue }
                    var position = top.count
                    while position > 0 && score > top[position - 1].score { position -= 1 }
                    top.insert(Candidate(score: score, row: r, token: TokenID(i)), at: position)
                    if top.count > count { top.removeLast() }
                }
            }
        }
        return top
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
