import QuillGeneration
import Testing

/// A model whose next token is always (last token + 1) mod vocabulary, recording each forward call.
final class CountingModel: CausalLanguageModel, @unchecked Sendable {
    let vocabularySize = 10
    let trainedContextLength = 32
    let endOfSequenceTokens: Set<TokenID> = [9]
    var calls: [[TokenID]] = []

    func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: 1, kvHeads: 1, headDimension: 2, capacity: capacity)
    }

    func forward(_ tokens: [TokenID], cache: KVCache, logits: LogitsSelection) throws -> [Float] {
        calls.append(tokens)
        cache.advance(by: tokens.count)
        var result = [Float](repeating: 0, count: vocabularySize)
        result[Int(tokens.last! + 1) % vocabularySize] = 1
        return result
    }
}

@Suite struct GenerationLoopTests {
    @Test func promptRunsOnceThenOneTokenPerStep() throws {
        let model = CountingModel()
        var seen: [TokenID] = []
        let stats = try generate(model: model, prompt: [1, 2, 3], cache: model.makeCache(capacity: 32),
                                 options: GenerationOptions(maxNewTokens: 3)) { seen.append($0); return true }
        #expect(seen == [4, 5, 6])
        #expect(model.calls == [[1, 2, 3], [4], [5]])  // the third token needs no further pass
        #expect(stats.promptTokens == 3 && stats.generatedTokens == 3 && stats.stopReason == .maxTokens)
    }

    @Test func stopsAtEndOfSequenceAndReportsIt() throws {
        let model = CountingModel()
        var seen: [TokenID] = []
        let stats = try generate(model: model, prompt: [6], cache: model.makeCache(capacity: 32),
                                 options: GenerationOptions(maxNewTokens: 10)) { seen.append($0); return true }
        #expect(seen == [7, 8, 9])
        #expect(stats.stopReason == .endOfSequence)
    }

    @Test func ignoresEndOfSequenceWhenAsked() throws {
        let model = CountingModel()
        var seen: [TokenID] = []
        _ = try generate(model: model, prompt: [8], cache: model.makeCache(capacity: 32),
                         options: GenerationOptions(maxNewTokens: 3, stopAtEndOfSequence: false)) { seen.append($0); return true }
        #expect(seen == [9, 0, 1])
    }

    @Test func callerCanStop() throws {
        let model = CountingModel()
        var seen: [TokenID] = []
        let stats = try generate(model: model, prompt: [0], cache: model.makeCache(capacity: 32),
                                 options: GenerationOptions(maxNewTokens: 10)) { seen.append($0); return seen.count < 2 }
        #expect(seen == [1, 2] && stats.stopReason == .stoppedByCaller)
    }

    @Test func stopsWhenTheContextIsFull() throws {
        let model = CountingModel()
        var seen: [TokenID] = []
        let stats = try generate(model: model, prompt: [0, 0, 0], cache: model.makeCache(capacity: 4),
                                 options: GenerationOptions(maxNewTokens: 10, stopAtEndOfSequence: false)) { seen.append($0); return true }
        #expect(stats.stopReason == .contextFull)
        #expect(seen.count == 2)  // one from the prompt pass, one from the only free position
    }

    @Test func rejectsBadPrompts() {
        let model = CountingModel()
        #expect(throws: GenerationError.emptyPrompt) {
            try generate(model: model, prompt: [], cache: model.makeCache(capacity: 4), options: .init()) { _ in true }
        }
        #expect(throws: GenerationError.promptTooLong(promptTokens: 5, contextSize: 4)) {
            try generate(model: model, prompt: [1, 2, 3, 4, 5], cache: model.makeCache(capacity: 4), options: .init()) { _ in true }
        }
        #expect(throws: GenerationError.invalidToken(12, vocabularySize: 10)) {
            try generate(model: model, prompt: [12], cache: model.makeCache(capacity: 4), options: .init()) { _ in true }
        }
        #expect(model.calls.isEmpty)
    }

    @Test func argmaxTakesTheFirstOfEqualMaxima() {
        #expect(argmax([0, 3, 1, 3]) == 1)
        #expect(argmax([-5, -2, -9]) == 1)
    }

    /// The vectorised argmax against the scalar rule it replaced (first strictly larger than all
    /// before it, starting from −∞) on rows across the 16-lane blocks, with ties, ±∞ and NaN anywhere.
    @Test func argmaxMatchesTheScalarRule() {
        func scalar(_ x: [Float]) -> TokenID {
            var best = 0, bestValue = -Float.infinity
            for (i, v) in x.enumerated() where v > bestValue { best = i; bestValue = v }
            return TokenID(best)
        }
        var rng = Xoshiro256StarStar(seed: 31)
        let specials: [Float] = [.nan, -.infinity, .infinity, 2]
        for count in [0, 1, 2, 15, 16, 17, 33, 49_152] {
            for pattern in 0 ..< 6 {
                var x = (0 ..< count).map { _ in Float(Int.random(in: -2...2, using: &rng)) }
                switch pattern {
                case 1: x = x.map { _ in .nan }
                case 2: x = x.map { _ in -.infinity }
                case 3: if count > 0 { x[0] = .nan }
                case 4: for _ in 0 ..< count / 4 { x[Int.random(in: 0 ..< count, using: &rng)] = specials.randomElement(using: &rng)! }
                case 5: if count > 1 { x = x.map { _ in .nan }; x[count - 1] = -.infinity }
                default: break
                }
                #expect(argmax(x) == scalar(x), "\(count) values, pattern \(pattern): \(x.prefix(20))")
            }
        }
    }

    @Test func cacheStoresEachHeadsPositionsContiguouslyWithinABlock() {
        let cache = KVCache(layers: 2, kvHeads: 2, headDimension: 3, capacity: 4)
        // Two tokens, (tokens, kvHeads, hd): token t head h element i = 100t + 10h + i.
        let k: [Float] = [0, 1, 2, 10, 11, 12, 100, 101, 102, 110, 111, 112]
        let v = k.map { -$0 }
        try? cache.reserve(2)
        cache.store(layer: 1, newKeys: k, newValues: v, tokens: 2)
        cache.advance(by: 2)
        let view = cache.pool.view(layer: 1), block = cache.pool.blocks(of: cache.sequence)[0]
        let bt = cache.pool.blockTokens
        let keys = view.keys(block: block, head: 1).assumingMemoryBound(to: Float.self)
        let values = view.values(block: block, head: 0).assumingMemoryBound(to: Float.self)
        // Head 1 of the block: (blockTokens, hd); position 1 starts at 3.
        #expect(Array(UnsafeBufferPointer(start: keys + 3, count: 3)) == [110, 111, 112])
        #expect(Array(UnsafeBufferPointer(start: keys, count: 3)) == [10, 11, 12])
        #expect(Array(UnsafeBufferPointer(start: values + 3, count: 3)) == [-100, -101, -102])
        #expect(view.values(block: block, head: 0) - view.keys(block: block, head: 0) == 2 * bt * 3 * 4)
        #expect(cache.count == 2)
        cache.truncate(to: 1)
        #expect(cache.count == 1)
    }

}
