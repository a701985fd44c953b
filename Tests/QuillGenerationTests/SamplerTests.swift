import Foundation
import QuillGeneration
import Testing

/// Pearson's chi-square statistic of `counts` against `probabilities`.
func chiSquare(_ counts: [Int], _ probabilities: [Double]) -> Double {
    let n = Double(counts.reduce(0, +))
    return zip(counts, probabilities).reduce(0) { sum, pair in
        let expected = n * pair.1
        return sum + (Double(pair.0) - expected) * (Double(pair.0) - expected) / expected
    }
}

/// A model whose logits are a fixed table per previous token, for sampling through the real loop.
final class TableModel: CausalLanguageModel, @unchecked Sendable {
    let vocabularySize = 6
    let trainedContextLength = 512
    let endOfSequenceTokens: Set<TokenID> = []

    func makeCache(capacity: Int) -> KVCache { KVCache(layers: 1, kvHeads: 1, headDimension: 2, capacity: capacity) }

    func forward(_ tokens: [TokenID], cache: KVCache, logits: LogitsSelection) throws -> [Float] {
        cache.advance(by: tokens.count)
        let last = Float(tokens.last!)
        return (0 ..< vocabularySize).map { Float(sin(Double(last) * 1.7 + Double($0))) }
    }
}

@Suite struct SamplerTests {
    @Test func xoshiroMatchesTheReferenceAlgorithm() {
        // xoshiro256** seeded by SplitMix64(42), computed with an independent Python transcription
        // of the reference C code (prng.di.unimi.it).
        var generator = Xoshiro256StarStar(seed: 42)
        #expect([generator.next(), generator.next(), generator.next()]
                    == [0x1578_0B2E_0C2E_C716, 0x6104_D986_6D11_3A7E, 0xAE17_5332_39E4_99A1])
        var uniform = Xoshiro256StarStar(seed: 1)
        let draws = (0 ..< 100_000).map { _ in uniform.nextUnitInterval() }
        #expect(draws.allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(abs(draws.reduce(0, +) / 100_000 - 0.5) < 0.005)
    }

    @Test func categoricalDrawsFollowTheDistribution() {
        let probabilities = [0.5, 0.25, 0.125, 0.0625, 0.0625]
        for seed: UInt64 in [1, 2, 3] {
            var sampler = CategoricalSampler(seed: seed)
            var counts = [Int](repeating: 0, count: 5)
            let candidates = TokenCandidates(logits: dyadicLogits)
            for _ in 0 ..< 40_000 { counts[Int(sampler.sample(candidates))] += 1 }
            // 4 degrees of freedom: 18.47 is the 0.1 % critical value.
            #expect(chiSquare(counts, probabilities) < 18.47, "seed \(seed): \(counts)")
        }
    }

    @Test func theWholeChainSamplesTheProcessedDistribution() {
        // top-k 3, then T = 0.5: p ∝ (1/2, 1/4, 1/8)² = 16:4:1.
        var options = SamplingOptions()
        options.topK = 3
        options.topP = 1
        options.minP = 0
        options.temperature = 0.5
        options.seed = 99
        var selector = TokenSelector(options: options)
        var counts = [Int](repeating: 0, count: 5)
        for _ in 0 ..< 21_000 { counts[Int(selector.select(dyadicLogits))] += 1 }
        #expect(counts[3] == 0 && counts[4] == 0)
        #expect(chiSquare(Array(counts[0 ..< 3]), [16.0 / 21, 4.0 / 21, 1.0 / 21]) < 13.82, "\(counts)")  // 2 dof, 0.1 %
    }

    @Test func greedySamplerPicksTheFirstMaximum() {
        #expect(GreedySampler().sample(TokenCandidates(ids: [7, 3, 5], logits: [1, 2, 2])) == 3)
        var selector = TokenSelector(options: .greedy)
        #expect(selector.select([0, 3, 1, 3]) == 1)
    }

    func sampledRun(seed: UInt64, temperature: Float = 1) throws -> [TokenID] {
        let model = TableModel()
        var options = SamplingOptions()
        options.seed = seed
        options.temperature = temperature
        options.topK = 0
        options.minP = 0
        var seen: [TokenID] = []
        _ = try generate(model: model, prompt: [0], cache: model.makeCache(capacity: 512),
                         options: GenerationOptions(maxNewTokens: 200), sampling: options) { seen.append($0); return true }
        return seen
    }

    @Test func aSeedFixesTheTokens() throws {
        let first = try sampledRun(seed: 1234)
        #expect(try sampledRun(seed: 1234) == first)
        #expect(try sampledRun(seed: 1235) != first)
        #expect(Set(first).count > 3)  // really sampling, not stuck on one token
    }

    @Test func temperatureZeroIsTheGreedyLoop() throws {
        let model = TableModel()
        var greedy: [TokenID] = []
        _ = try generate(model: model, prompt: [0], cache: model.makeCache(capacity: 64),
                         options: GenerationOptions(maxNewTokens: 20)) { greedy.append($0); return true }
        #expect(try sampledRun(seed: 1, temperature: 0).prefix(20) == greedy[...])
        #expect(try sampledRun(seed: 2, temperature: 0).prefix(20) == greedy[...])
    }

    @Test func penaltiesSeeThePromptAndEarlierTokens() throws {
        // Greedy with a huge presence penalty never repeats a token (6 tokens, so 5 fresh ones after the prompt).
        let model = TableModel()
        var options = SamplingOptions.greedy
        options.presencePenalty = 100
        options.repeatLastN = -1
        var seen: [TokenID] = []
        _ = try generate(model: model, prompt: [0], cache: model.makeCache(capacity: 64),
                         options: GenerationOptions(maxNewTokens: 5), sampling: options) { seen.append($0); return true }
        #expect(Set(seen + [0]).count == 6, "\(seen)")
    }

    @Test func cancellationStopsTheLoop() async throws {
        let model = TableModel()
        let task = Task.detached { () -> GenerationStatistics in
            try generate(model: model, prompt: [0], cache: model.makeCache(capacity: 512),
                         options: GenerationOptions(maxNewTokens: 500), sampling: .greedy) { _ in
                withUnsafeCurrentTask { $0?.cancel() }  // cancelled while generating
                return true
            }
        }
        let statistics = try await task.value
        #expect(statistics.stopReason == .cancelled)
        #expect(statistics.generatedTokens == 1)
    }
}
