import QuillGeneration
import Testing

/// A batch context whose key at each position is a hash of the key before it and the position's
/// token, read back from the KV pool, so every cached position depends on the whole prefix (sharing
/// a wrong block changes the output). Its next token is that key modulo the vocabulary.
final class PrefixHashingContext: BatchLanguageModelContext {
    let vocabularySize = 50
    let endOfSequenceTokens: Set<TokenID> = []
    let kv: KVBlockPool
    /// Tokens of every chunk the model ran, in order.
    private(set) var computedChunks: [[TokenID]] = []

    init(blocks: Int, prefixCaching: Bool) throws {
        kv = try KVBlockPool(layout: KVLayout(layers: 1, kvHeads: 1, headDimension: 1, elementType: .f32),
                             tokens: blocks * 4, blockTokens: 4)
        kv.prefixCaching = prefixCaching
    }

    private func key(_ sequence: SequenceID, at position: Int) -> Float {
        let block = kv.blocks(of: sequence)[position / kv.blockTokens]
        return kv.view(layer: 0).keys(block: block, head: 0).assumingMemoryBound(to: Float.self)[position % kv.blockTokens]
    }

    func forward(_ batch: [BatchChunk]) throws -> [[Float]] {
        try batch.map { chunk in
            computedChunks.append(chunk.tokens)
            let start = kv.length(of: chunk.sequence)
            try kv.reserve(chunk.sequence, appending: chunk.tokens.count)
            var previous = start > 0 ? key(chunk.sequence, at: start - 1) : 0
            var keys: [Float] = []
            for token in chunk.tokens {
                previous = Float((Int(previous) * 31 + Int(token) + 7) % 65_521)   // exact in Float
                keys.append(previous)
            }
            kv.store(chunk.sequence, layer: 0, keys: keys, values: keys, tokens: keys.count)
            kv.commit(chunk.sequence, appending: keys.count)
            var logits = [Float](repeating: 0, count: vocabularySize)
            logits[Int(previous) % vocabularySize] = 1
            return logits
        }
    }
}

/// Prompts that arrive together and share leading chunks compute those chunks once: the others
/// wait for them and take the registered blocks (in-flight prefix sharing).
@Suite struct InFlightPrefixTests {
    static let chunk = 8
    static let shared: [TokenID] = (0 ..< 32).map { TokenID($0 % 13 + 1) }      // four whole chunks

    /// Sixteen prompts: the shared four chunks, then five tokens of their own.
    static func prompts() -> [[TokenID]] {
        (0 ..< 16).map { i in shared + (0 ..< 5).map { TokenID(20 + (i * 5 + $0) % 29) } }
    }

    func runTogether(prefixCaching: Bool, tokenBudget: Int) throws
        -> (tokens: [[TokenID]], cached: [Int], generator: BatchGenerator, context: PrefixHashingContext) {
        let context = try PrefixHashingContext(blocks: 256, prefixCaching: prefixCaching)
        let generator = BatchGenerator(context: context, promptChunk: Self.chunk, tokenBudget: tokenBudget)
        let ids = try Self.prompts().map {
            try generator.submit(prompt: $0, options: GenerationOptions(maxNewTokens: 4, stopAtEndOfSequence: false),
                                 sampling: .greedy, contextSize: 64)
        }
        var tokens: [Int: [TokenID]] = [:], cached: [Int: Int] = [:]
        while generator.activeRequests > 0 {
            for event in try generator.step() {
                tokens[event.request, default: []].append(event.token)
                if let c = event.cachedPromptTokens { cached[event.request] = c }
            }
        }
        return (ids.map { tokens[$0] ?? [] }, ids.map { cached[$0] ?? -1 }, generator, context)
    }

    @Test(arguments: [8, 64])
    func sixteenPromptsSubmittedTogetherComputeTheirCommonChunksOnce(tokenBudget: Int) throws {
        let with = try runTogether(prefixCaching: true, tokenBudget: tokenBudget)
        let without = try runTogether(prefixCaching: false, tokenBudget: tokenBudget)
        #expect(without.generator.computedPromptTokens == 16 * 37)
        #expect(with.generator.computedPromptTokens == 32 + 16 * 5, "the 32 shared tokens are computed once")
        #expect(with.context.computedChunks.filter { $0 == Array(Self.shared.prefix(Self.chunk)) }.count == 1)
        #expect(with.tokens == without.tokens, "sharing changed a sequence's tokens")
        #expect(with.tokens.allSatisfy { $0.count == 4 })
        #expect(with.cached.sorted() == [0] + [Int](repeating: 32, count: 15), "reported cached prompt tokens")
        if tokenBudget > Self.chunk {
            #expect(with.generator.chunksWaitedFor > 0, "a budget of several chunks makes prompts wait for each other")
        }
        #expect(with.context.kv.freeBlocks == with.context.kv.capacityBlocks && with.context.kv.sequenceCount == 0)
    }

    @Test func aPromptWhoseProducerIsCancelledComputesTheRestItself() throws {
        let context = try PrefixHashingContext(blocks: 64, prefixCaching: true)
        let generator = BatchGenerator(context: context, promptChunk: Self.chunk, tokenBudget: 64)
        let prompt = Self.prompts()[0]
        let options = GenerationOptions(maxNewTokens: 4, stopAtEndOfSequence: false)
        let producer = try generator.submit(prompt: prompt, options: options, sampling: .greedy, contextSize: 64)
        let waiter = try generator.submit(prompt: prompt, options: options, sampling: .greedy, contextSize: 64)
        _ = try generator.step()                              // the producer runs chunk 0, the waiter waits
        #expect(generator.computedPromptTokens == Self.chunk && generator.chunksWaitedFor == 1)
        generator.cancel(producer)
        let tokens = try generator.run()
        #expect(generator.computedPromptTokens == prompt.count, "chunk 0 taken from the cache, the rest computed once")
        let alone = try PrefixHashingContext(blocks: 64, prefixCaching: false)
        let reference = BatchGenerator(context: alone, promptChunk: Self.chunk, tokenBudget: 64)
        let id = try reference.submit(prompt: prompt, options: options, sampling: .greedy, contextSize: 64)
        #expect(tokens[waiter] == (try reference.run())[id])
        #expect(context.kv.freeBlocks == context.kv.capacityBlocks)
    }

    @Test func aPromptsSmallLastChunkFillsTheBudgetThatAnEarlierWholeChunkLeaves() throws {
        let context = try PrefixHashingContext(blocks: 64, prefixCaching: false)
        let generator = BatchGenerator(context: context, promptChunk: Self.chunk, tokenBudget: 12)
        let options = GenerationOptions(maxNewTokens: 1, stopAtEndOfSequence: false)
        let long: [TokenID] = Array(1 ... 16), other: [TokenID] = Array(21 ... 36), short: [TokenID] = [41, 42, 43, 44]
        for prompt in [long, other, short] {
            _ = try generator.submit(prompt: prompt, options: options, sampling: .greedy, contextSize: 64)
        }
        _ = try generator.step()
        #expect(context.computedChunks == [Array(long.prefix(8)), short], "8 + 4 tokens: the second whole chunk waits")
        _ = try generator.step()
        #expect(context.computedChunks.suffix(1) == [Array(long.suffix(8))], "the first prompt keeps its place")
    }
}
