import Foundation
import QuillGeneration
import Testing

/// Logits whose softmax is exactly 1/2, 1/4, 1/8, 1/16, 1/16 (up to float rounding of the logarithms).
let dyadicLogits: [Float] = [0.5, 0.25, 0.125, 0.0625, 0.0625].map { Float(log($0)) }

func expectDistribution(_ candidates: TokenCandidates, _ expected: [TokenID: Double],
                        tolerance: Double = 1e-6, sourceLocation: SourceLocation = #_sourceLocation) {
    let actual = candidates.distribution()
    #expect(Set(actual.keys) == Set(expected.keys), "kept \(actual.keys.sorted())", sourceLocation: sourceLocation)
    for (token, p) in expected {
        #expect(abs((actual[token] ?? -1) - p) < tolerance, "token \(token): \(actual[token] ?? -1) vs \(p)",
                sourceLocation: sourceLocation)
    }
}

func processed(_ processor: any LogitsProcessor, _ logits: [Float] = dyadicLogits,
               history: [TokenID] = []) -> TokenCandidates {
    var candidates = TokenCandidates(logits: logits)
    processor.process(&candidates, history: history)
    return candidates
}

@Suite struct LogitsProcessorTests {
    @Test func untouchedLogitsGiveTheSoftmax() {
        expectDistribution(TokenCandidates(logits: dyadicLogits), [0: 0.5, 1: 0.25, 2: 0.125, 3: 0.0625, 4: 0.0625])
    }

    @Test func topKKeepsTheKLargestAndRenormalises() {
        expectDistribution(processed(TopK(2)), [0: 2.0 / 3, 1: 1.0 / 3])
        expectDistribution(processed(TopK(1)), [0: 1])
        // Ties at the boundary go to the smaller id, so k = 4 keeps token 3, not 4.
        expectDistribution(processed(TopK(4)), [0: 8.0 / 15, 1: 4.0 / 15, 2: 2.0 / 15, 3: 1.0 / 15])
        #expect(processed(TopK(0)).count == 5)
        #expect(processed(TopK(3), [1, 9, 3, 7, 5]).ids == [1, 3, 4])  // sorted, largest first
    }

    @Test func topKOnAWholeVocabularyMatchesSorting() {
        var generator = Xoshiro256StarStar(seed: 7)
        let logits = (0 ..< 5000).map { _ in Float(generator.nextUnitInterval() * 20 - 10) }
        let expected = logits.indices.sorted { logits[$0] > logits[$1] }.prefix(40).map { TokenID($0) }
        #expect(processed(TopK(40), logits).ids == expected)
    }

    @Test func topPKeepsTheSmallestPrefixReachingP() {
        // Cumulative: 0.5, 0.75, 0.875, 0.9375, 1.
        expectDistribution(processed(TopP(0.6)), [0: 2.0 / 3, 1: 1.0 / 3])
        expectDistribution(processed(TopP(0.8)), [0: 4.0 / 7, 1: 2.0 / 7, 2: 1.0 / 7])
        expectDistribution(processed(TopP(0.1)), [0: 1])  // at least one token
        #expect(processed(TopP(1)).count == 5)
    }

    @Test func minPKeepsTokensAtLeastPTimesTheBest() {
        // p_max = 0.5: 0.2 × 0.5 = 0.1 keeps 1/2, 1/4, 1/8.
        expectDistribution(processed(MinP(0.2)), [0: 4.0 / 7, 1: 2.0 / 7, 2: 1.0 / 7])
        expectDistribution(processed(MinP(0.6)), [0: 1])
        #expect(processed(MinP(0)).count == 5)
    }

    @Test func typicalKeepsTokensNearestTheEntropy() {
        // Entropy = 1.875 bits; surprisals 1, 2, 3, 4, 4 bits: distances 0.875, 0.125, 1.125, 2.125, 2.125.
        // Most typical first: token 1 (0.25), then token 0 (0.5), ... kept until the mass exceeds p.
        expectDistribution(processed(TypicalP(0.2)), [1: 1])  // the most likely token is dropped
        expectDistribution(processed(TypicalP(0.5)), [0: 2.0 / 3, 1: 1.0 / 3])
        expectDistribution(processed(TypicalP(0.8)), [0: 4.0 / 7, 1: 2.0 / 7, 2: 1.0 / 7])
        #expect(processed(TypicalP(1)).count == 5)
    }

    @Test func temperatureScalesLogits() {
        // T = 2: p ∝ sqrt(p₀).
        let roots = [0.5, 0.25, 0.125, 0.0625, 0.0625].map { $0.squareRoot() }
        let total = roots.reduce(0, +)
        let expected = Dictionary(uniqueKeysWithValues: roots.enumerated().map { (TokenID($0.offset), $0.element / total) })
        expectDistribution(processed(Temperature(2)), expected)
        // T = 0.5: p ∝ p₀².
        let squares = [0.25, 0.0625, 1.0 / 64, 1.0 / 256, 1.0 / 256]
        let sum = squares.reduce(0, +)
        expectDistribution(processed(Temperature(0.5)),
                           Dictionary(uniqueKeysWithValues: squares.enumerated().map { (TokenID($0.offset), $0.element / sum) }))
        expectDistribution(processed(Temperature(0), [1, 3, 3, 2]), [1: 1])  // greedy: first maximum
    }

    @Test func repetitionFrequencyAndPresencePenalties() {
        let logits: [Float] = [2, -2, 1, 0.5]
        let history: [TokenID] = [0, 1, 1, 3]
        let all = processed(RepetitionPenalty(lastN: -1, repeatPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25),
                            logits, history: history)
        // 0: 2/2 − 0.5 − 0.25; 1: −2·2 − 2·0.5 − 0.25; 2: unseen; 3: 0.5/2 − 0.5 − 0.25.
        #expect(all.logits == [0.25, -5.25, 1, -0.5])
        let window = processed(RepetitionPenalty(lastN: 2, repeatPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25),
                               logits, history: history)
        #expect(window.logits == [2, -4.75, 1, -0.5])  // only [1, 3] are in the window
        let repeatOnly = processed(RepetitionPenalty(lastN: 64, repeatPenalty: 1.25), logits, history: history)
        #expect(repeatOnly.logits == [1.6, -2.5, 1, 0.4])
        // The same on a filtered (not whole-vocabulary) candidate list.
        var filtered = TokenCandidates(ids: [3, 0], logits: [0.5, 2])
        RepetitionPenalty(lastN: -1, repeatPenalty: 2).process(&filtered, history: history)
        #expect(filtered.logits == [0.25, 1])
        #expect(processed(RepetitionPenalty(lastN: 0, repeatPenalty: 2), logits, history: history).logits == logits)
    }

    @Test func logitBiasAddsAndForbids() {
        let biased = processed(LogitBias([1: 1, 2: -.infinity]), [0, 0, 5, 0])
        #expect(biased.ids == [0, 1, 3])
        #expect(biased.logits == [0, 1, 0])
        var options = SamplingOptions.greedy
        options.forbiddenTokens = [2]
        var selector = TokenSelector(options: options)
        #expect(selector.select([0, 1, 5, 0]) == 1)
    }

    @Test func chainOrderIsLlamaCppsDefault() {
        var options = SamplingOptions()
        options.typicalP = 0.9
        options.repeatPenalty = 1.1
        options.logitBias = [5: 1]
        let names = options.processors.map { String(describing: type(of: $0)) }
        #expect(names == ["LogitBias", "RepetitionPenalty", "TopK", "TypicalP", "TopP", "MinP", "Temperature"])
        // llama.cpp's defaults.
        let defaults = SamplingOptions()
        #expect(defaults.temperature == 0.8 && defaults.topK == 40 && defaults.topP == 0.95 && defaults.minP == 0.05)
        #expect(defaults.typicalP == 1 && defaults.repeatPenalty == 1 && defaults.repeatLastN == 64)
        #expect(defaults.frequencyPenalty == 0 && defaults.presencePenalty == 0)
        #expect(SamplingOptions.greedy.processors.isEmpty)
    }

    @Test func filtersSeeTheUntemperedDistribution() {
        // min-p 0.2 before temperature keeps tokens 0–2; applying T = 4 first would have kept all five.
        var options = SamplingOptions()
        options.topK = 0
        options.topP = 1
        options.minP = 0.2
        options.temperature = 4
        var candidates = TokenCandidates(logits: dyadicLogits)
        for processor in options.processors { processor.process(&candidates, history: []) }
        #expect(Set(candidates.ids) == [0, 1, 2])
    }
}
