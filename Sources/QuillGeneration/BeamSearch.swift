import QuillKernels

/// Beam search with the semantics of transformers 5.24 `GenerationMixin._beam_search`, per source:
///
/// 1. per beam, `log_softmax` of the raw logits (Float), then the processors (forced tokens 0,
///    banned −∞, no renormalisation), plus the beam's running sum;
/// 2. the top `2·numBeams` candidates over all beams × vocabulary;
/// 3. candidates among the first `numBeams` that end in EOS (or reach the length limit) become
///    finished hypotheses scored `sum / generatedLength^lengthPenalty` (generated length counts the
///    new token, not the start token); the best `numBeams` finished ones are kept;
/// 4. the best `numBeams` candidates that did not stop continue (finished ones pushed down by −1e9);
/// 5. a source is done when `numBeams` hypotheses have finished and the best running sum divided
///    by `(curLen − 1)^lengthPenalty` cannot beat the worst of them (the `early_stopping=False`
///    heuristic), or when the length limit is reached.
///
/// Constants (−1e9 for empty slots and initial beams) and Float arithmetic follow transformers, so
/// scores agree to rounding. The decoder cache of surviving beams is reordered in place; the prefix
/// is never re-run; cross-attention keys/values stay shared per source.
extension Seq2SeqSearch {
    static let veryNegative: Float = -1.0e9

    struct Candidate {
        var score: Float
        var beam: Int
        var token: TokenID
    }

    /// One source's search.
    struct SourceBeams {
        var sequences: [[TokenID]]
        var scores: [Float]
        /// Finished slots, best first: (tokens, score, finished); empty slots hold −1e9.
        var finished: [(tokens: [TokenID], score: Float, isFinished: Bool)]
        var improvementPossible = true
    }

    /// Beam search for every source; returns `numReturnSequences` hypotheses per source, best first.
    /// `onFinished(source, hypotheses)` is called as soon as a source is done; `shouldStop` as in `greedy`.
    public static func beam(model: any EncoderDecoderModel, sources: [[TokenID]], settings: Seq2SeqSettings,
                            shouldStop: () -> Bool = { false },
                            onFinished: (Int, [Seq2SeqHypothesis]) throws -> Void = { _, _ in }) throws -> [[Seq2SeqHypothesis]] {
        try validate(sources, settings, model)
        let encoded = try model.encode(sources)
        let state = try DecoderState(encoder: encoded, rowSources: sources.indices.flatMap { Array(repeating: $0, count: settings.numBeams) },
                                 capacity: settings.maxLength, cacheType: model.decoderCacheType)
        return try beam(rows: EncoderDecoderBeamRows(model: model, state: state), sources: sources.count,
                        settings: settings, shouldStop: shouldStop, onFinished: onFinished)
    }

    /// The search itself, over rows of any model that extends them one token at a time: `numBeams`
    /// rows per source, all starting from `settings.decoderStartToken`.
    /// `shouldStop` is asked before every step (an interrupted command); it ends the search with a
    /// `CancellationError`.
    public static func beam(rows: any BeamRows, sources: Int, settings: Seq2SeqSettings,
                            shouldStop: () -> Bool = { false },
                            onFinished: (Int, [Seq2SeqHypothesis]) throws -> Void = { _, _ in }) throws -> [[Seq2SeqHypothesis]] {
        let beams = settings.numBeams, vocabulary = rows.vocabularySize
        let processors = Seq2SeqProcessors(settings)
        let start = settings.decoderStartToken
        var searches = (0 ..< sources).map { _ in
            SourceBeams(sequences: Array(repeating: [start], count: beams),
                        scores: [0] + Array(repeating: veryNegative, count: beams - 1),
                        finished: Array(repeating: ([], veryNegative, false), count: beams))
        }
        var results = [[Seq2SeqHypothesis]?](repeating: nil, count: sources)
        var active = Array(0 ..< sources)  // beams of active[i] occupy rows i·beams ..< (i+1)·beams
        var curLen = 1
        func finish(_ source: Int) throws {
            let hypotheses = searches[source].finished.prefix(settings.numReturnSequences)
                .filter(\.isFinished).map { Seq2SeqHypothesis(tokens: $0.tokens, score: $0.score) }
            results[source] = hypotheses
            try onFinished(source, hypotheses)
        }
        while !active.isEmpty {
            if shouldStop() { throw CancellationError() }
            let tokens = active.flatMap { searches[$0].sequences.map { $0.last! } }
            var logits = try rows.step(tokens)  // (rows, vocab)
            let reachesLimit = curLen + 1 >= settings.maxLength
            var parents: [Int] = []
            var stillActive: [Int] = []
            try logits.withUnsafeMutableBufferPointer { buffer in
                for (slot, source) in active.enumerated() {
                    var search = searches[source]
                    var top: [Candidate] = []
                    top.reserveCapacity(2 * beams + 1)
                    for k in 0..<beams {
                        let row = buffer.baseAddress! + (slot * beams + k) * vocabulary
                        logSoftmaxVectorised(row, count: vocabulary)
                        processors.apply(row, vocabulary: vocabulary, sequence: search.sequences[k])
                        let running = search.scores[k]
                        var i = 0
                        while i < vocabulary {
                            // Once the list is full, the blocks of 16 in which no score beats its last
                            // are passed over (the same sums and comparisons as below).
                            if top.count == 2 * beams {
                                i = CandidateScan.firstBlockAbove(row, from: i, count: vocabulary, offset: running,
                                                                  threshold: top[top.count - 1].score)
                                if i == vocabulary { break }
                            }
                            for j in i..<min(i + 16, vocabulary) {
                                let score = row[j] + running
                                if top.count == 2 * beams, !(score > top[top.count - 1].score) { continue }
                                // Insertion keeps the earlier (beam, token) first among equal scores.
                                var position = top.count
                                while position > 0 && score > top[position - 1].score { position -= 1 }
                                top.insert(Candidate(score: score, beam: k, token: TokenID(j)), at: position)
                                if top.count > 2 * beams { top.removeLast() }
                            }
                            i = min(i + 16, vocabulary)
                        }
                    }
                    let hits = top.map { reachesLimit || settings.endOfSequenceTokens.contains($0.token) }
                    // Finished hypotheses: merge the stopping candidates among the first `beams`.
                    let penalty = Float(pow(Double(curLen), Double(settings.lengthPenalty)))
                    var merged = search.finished
                    for (j, candidate) in top.enumerated() {
                        let justFinished = hits[j] && j < beams
                        var score = candidate.score / penalty
                        if !search.improvementPossible { score += veryNegative }
                        if !justFinished { score += veryNegative }
                        merged.append((search.sequences[candidate.beam] + [candidate.token], score, justFinished))
                    }
                    search.finished = Array(stableSortedDescending(merged, by: \.score).prefix(beams))
                    // Running beams for the next step.
                    let continuing = stableSortedDescending(top.indices.map { j in
                        (j, top[j].score + (hits[j] ? veryNegative : 0))
                    }, by: \.1).prefix(beams)
                    search.sequences = continuing.map { search.sequences[top[$0.0].beam] + [top[$0.0].token] }
                    search.scores = continuing.map(\.1)
                    // The early-stopping heuristic, with the new length.
                    let best = search.scores[0] / Float(pow(Double(curLen), Double(settings.lengthPenalty)))
                    let worst = search.finished.allSatisfy(\.isFinished) ? search.finished.map(\.score).min()! : veryNegative
                    search.improvementPossible = search.improvementPossible && best > worst
                        && !(settings.earlyStopping && search.finished.allSatisfy(\.isFinished))
                    searches[source] = search
                    if search.improvementPossible && !reachesLimit && !hits.allSatisfy({ $0 }) {
                        parents += continuing.map { slot * beams + top[$0.0].beam }
                        stillActive.append(source)
                    } else {
                        try finish(source)
                    }
                }
            }
            curLen += 1
            if !stillActive.isEmpty { try rows.reorder(parents) }
            active = stillActive
        }
        return results.map { $0! }
    }

    /// Sorted by `key`, largest first; equal keys keep their order (torch.topk's usual CPU order).
    static func stableSortedDescending<T>(_ items: [T], by key: (T) -> Float) -> [T] {
        items.enumerated().sorted { a, b in
            let ka = key(a.element), kb = key(b.element)
            return ka != kb ? ka > kb : a.offset < b.offset
        }.map(\.element)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
