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

    /// Its keys depend on position and prefix only, so it may declare so (block-sized prefix reuse).
    var promptTokensIndependentOfChunks = false

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

    /// Submits `prompts` together and runs them to the end; each one's tokens and reported cached tokens.
    func runTogether(prefixCaching: Bool, tokenBudget: Int, prompts: [[TokenID]] = prompts(),
                     independentOfChunks: Bool = false) throws
        -> (tokens: [[TokenID]], cached: [Int], generator: BatchGenerator, context: PrefixHashingContext) {
        let context = try PrefixHashingContext(blocks: 256, prefixCaching: prefixCaching)
        context.promptTokensIndependentOfChunks = independentOfChunks
        let generator = BatchGenerator(context: context, promptChunk: Self.chunk, tokenBudget: tokenBudget)
        let ids = try prompts.map {
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

    /// A context whose prompt tokens do not depend on their chunk shares prompts block by block: 16
    /// prompts with 30 common tokens (not a whole number of 8-token chunks) compute the 30 common
    /// tokens once — the 7 common 4-token blocks and the first 2 positions of the 8th, which each
    /// prompt copies before writing its own tail — where whole-chunk sharing takes only 24 of them.
    @Test(arguments: [8, 64])
    func aChunkIndependentContextSharesPromptsBlockByBlock(tokenBudget: Int) throws {
        let common = Array(Self.shared.prefix(30))
        let prompts = (0 ..< 16).map { i in common + (0 ..< 5).map { TokenID(20 + (i * 5 + $0) % 29) } }
        func run(prefixCaching: Bool, independent: Bool) throws -> (tokens: [[TokenID]], cached: [Int], computed: Int) {
            let run = try runTogether(prefixCaching: prefixCaching, tokenBudget: tokenBudget, prompts: prompts,
                                      independentOfChunks: independent)
            #expect(run.context.kv.freeBlocks == run.context.kv.capacityBlocks && run.context.kv.sequenceCount == 0)
            return (run.tokens, run.cached, run.generator.computedPromptTokens)
        }
        let blockwise = try run(prefixCaching: true, independent: true)
        let chunkwise = try run(prefixCaching: true, independent: false)
        let uncached = try run(prefixCaching: false, independent: true)
        #expect(uncached.computed == 16 * 35)
        #expect(chunkwise.computed == 35 + 15 * (35 - 24), "whole chunks: 24 common tokens shared")
        #expect(blockwise.computed == 35 + 15 * (35 - 30), "blocks and a partial block: all 30 common tokens shared")
        #expect(blockwise.cached.sorted() == [0] + [Int](repeating: 30, count: 15))
        #expect(blockwise.tokens == uncached.tokens && chunkwise.tokens == uncached.tokens)
    }

    /// With block-sized reuse at least two prompt tokens are left to compute (a single one would take
    /// the decoding path, where the uncached run computes it inside a prompt chunk).
    @Test func blockwiseReuseLeavesAtLeastTwoTokensToCompute() throws {
        let context = try PrefixHashingContext(blocks: 64, prefixCaching: true)
        context.promptTokensIndependentOfChunks = true
        let generator = BatchGenerator(context: context, promptChunk: Self.chunk, tokenBudget: 64)
        let options = GenerationOptions(maxNewTokens: 1, stopAtEndOfSequence: false)
        _ = try generator.submit(prompt: Array(Self.shared.prefix(14)) + [40, 41], options: options, sampling: .greedy, contextSize: 64)
        _ = try generator.run()                              // registers blocks 0–3
        let prompt = Array(Self.shared.prefix(13))
        let submission = try generator.submit(prompt: prompt, options: options, sampling: [.greedy], contextSize: 64)
        #expect(submission.cachedTokens == 11, "blocks 0-1 and 3 positions of block 2: 12 would leave one")
        _ = try generator.run()
        #expect(context.computedChunks.last == Array(prompt[11...]), "the last two tokens run as a prompt chunk")
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

    /// A context whose prompt tokens do not depend on their chunk lets chunks start anywhere: the
    /// step's budget is filled exactly, and no chunk of one token is made or left (one token alone
    /// would take the decoding path).
    @Test func chunkIndependentPromptsFillTheBudgetAndNeverRunOneTokenAlone() throws {
        let context = try PrefixHashingContext(blocks: 64, prefixCaching: false)
        context.promptTokensIndependentOfChunks = true
        let generator = BatchGenerator(context: context, promptChunk: Self.chunk, tokenBudget: 12)
        let options = GenerationOptions(maxNewTokens: 1, stopAtEndOfSequence: false)
        let long: [TokenID] = Array(1 ... 16), nine: [TokenID] = Array(21 ... 29)
        for prompt in [long, nine] {
            _ = try generator.submit(prompt: prompt, options: options, sampling: .greedy, contextSize: 64)
        }
        _ = try generator.step()
        #expect(context.computedChunks == [Array(long.prefix(8)), Array(nine.prefix(4))], "8 + 4: the budget filled")
        _ = try generator.step()
        #expect(context.computedChunks.suffix(2) == [Array(long.suffix(8)), Array(nine[4 ..< 7])],
                "4 of the 5 left would fit but leave one token, so 3 run")
        _ = try generator.run()
        #expect(context.computedChunks.last == Array(nine.suffix(2)))
        #expect(context.computedChunks.allSatisfy { $0.count >= 2 })
    }
}

