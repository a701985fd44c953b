import Foundation
import QuillGeneration
import QuillModels
import Testing

/// Sequences that share KV blocks through one context: a prompt's choices (`n > 1`) fork its blocks,
/// and the prefix cache lets a later prompt start from an earlier one's full blocks. Neither may
/// change a sequence's tokens.
@Suite(.serialized) struct SharedPrefixTests {
    /// A long prompt: the start of the perplexity fixture's text.
    static func longPrompt(_ model: TextModel, tokens: Int) throws -> [TokenID] {
        let text = try String(contentsOf: ReferenceData.url("hamlet.md"), encoding: .utf8)
        let ids = model.encodePrompt(text)
        try #require(ids.count >= tokens)
        return Array(ids.prefix(tokens))
    }

    func sampling(seed: UInt64) -> SamplingOptions {
        var options = SamplingOptions()
        options.temperature = 0.9
        options.seed = seed
        return options
    }

    /// Tokens of one prompt run alone in a fresh context without a prefix cache.
    func alone(_ model: TextModel, _ prompt: [TokenID], sampling: SamplingOptions, newTokens: Int) throws -> [TokenID] {
        let generator = BatchGenerator(context: try model.model.makeContext(kvTokens: 1024), promptChunk: 64, tokenBudget: 64)
        let id = try generator.submit(prompt: prompt, options: GenerationOptions(maxNewTokens: newTokens, stopAtEndOfSequence: false),
                                      sampling: sampling, contextSize: 1024)
        return try generator.run()[id] ?? []
    }

    @Test(arguments: ComputePrecision.allCases)
    func aPromptFoundInThePrefixCacheGivesTheSameTokens(precision: ComputePrecision) throws {
        let model = try RealModel.load(precision: precision)
        let prompt = try Self.longPrompt(model, tokens: 150)
        let other = Array(prompt.prefix(100)) + [504, 3575, 282, 4649, 314]   // shares 3 full blocks, then differs
        let context = try model.model.makeContext(kvTokens: 2048)
        context.kv.prefixCaching = true
        let generator = BatchGenerator(context: context, promptChunk: 64, tokenBudget: 64)
        let options = GenerationOptions(maxNewTokens: 16, stopAtEndOfSequence: false)
        func submit(_ p: [TokenID], seed: UInt64) throws -> BatchGenerator.Submission {
            try generator.submit(prompt: p, options: options, sampling: [sampling(seed: seed)], contextSize: 1024)
        }
        let first = try submit(prompt, seed: 7)
        var tokens = try generator.run()
        #expect(first.cachedTokens == 0)
        let again = try submit(prompt, seed: 7), partly = try submit(other, seed: 8)
        tokens.merge(try generator.run()) { $1 }
        #expect(again.cachedTokens == 128, "two whole 64-token chunks")
        // The quantised path computes each prompt token independently of its chunk, so it shares
        // blocks; the f32 path's sgemm does not promise that, so it shares whole chunks.
        #expect(context.promptTokensIndependentOfChunks == (precision == .quantized))
        // 100 tokens match: on the quantised path 3 blocks and the first 4 positions of the first
        // prompt's fourth block (taken, then copied before this prompt writes its own tail into it).
        #expect(partly.cachedTokens == (precision == .quantized ? 100 : 64), "3 blocks and 4 positions, or 1 whole chunk")
        let reference = try alone(model, prompt, sampling: sampling(seed: 7), newTokens: 16)
        #expect(tokens[first.requests[0]] == reference)
        #expect(tokens[again.requests[0]] == reference, "\(precision): reusing cached blocks changed the tokens")
        #expect(tokens[partly.requests[0]] == (try alone(model, other, sampling: sampling(seed: 8), newTokens: 16)))
        #expect(context.kv.sequenceCount == 0 && context.kv.freeBlocks == context.kv.capacityBlocks,
                "every block is free or idle in the cache once the requests end")
    }

    @Test func promptsSubmittedTogetherShareTheirCommonChunksAndGiveTheSameTokens() throws {
        let model = try RealModel.load(precision: .quantized)
        let common = try Self.longPrompt(model, tokens: 128)                 // two whole 64-token chunks
        let tails: [[TokenID]] = [[504, 3575, 282], [4649, 314, 504, 3575], [282, 4649]]
        let context = try model.model.makeContext(kvTokens: 2048)
        context.kv.prefixCaching = true
        let generator = BatchGenerator(context: context, promptChunk: 64, tokenBudget: 192)
        let options = GenerationOptions(maxNewTokens: 8, stopAtEndOfSequence: false)
        let ids = try tails.enumerated().map { i, tail in
            try generator.submit(prompt: common + tail, options: options, sampling: [sampling(seed: UInt64(20 + i))],
                                 contextSize: 1024).requests[0]
        }
        let tokens = try generator.run()
        #expect(generator.computedPromptTokens == 128 + tails.reduce(0) { $0 + $1.count }, "the common chunks ran once")
        for (i, tail) in tails.enumerated() {
            #expect(tokens[ids[i]] == (try alone(model, common + tail, sampling: sampling(seed: UInt64(20 + i)), newTokens: 8)),
                    "prompt \(i): taking another prompt's chunks changed its tokens")
        }
    }

    @Test func choicesShareThePromptsBlocksAndEachMatchesASingleRun() throws {
        let model = try RealModel.load(precision: .quantized)
        let prompt = try Self.longPrompt(model, tokens: 70)        // 2 full blocks and a partial one
        let context = try model.model.makeContext(kvTokens: 1024)
        let generator = BatchGenerator(context: context, promptChunk: 64, tokenBudget: 64)
        let seeds: [UInt64] = [11, 12, 13]
        let submission = try generator.submit(prompt: prompt, options: GenerationOptions(maxNewTokens: 12, stopAtEndOfSequence: false),
                                              sampling: seeds.map { sampling(seed: $0) }, contextSize: 1024)
        #expect(generator.activeRequests == 3 && generator.waitingRequests == 3)
        var tokens: [Int: [TokenID]] = [:]
        var blocksWhenForked: Int?
        while generator.activeRequests > 0 {
            let events = try generator.step()
            for event in events { tokens[event.request, default: []].append(event.token) }
            if blocksWhenForked == nil && !events.isEmpty {
                blocksWhenForked = context.kv.capacityBlocks - context.kv.freeBlocks
            }
        }
        #expect(blocksWhenForked == 3, "three choices hold one copy of the prompt's three blocks")
        for (id, seed) in zip(submission.requests, seeds) {
            #expect(tokens[id] == (try alone(model, prompt, sampling: sampling(seed: seed), newTokens: 12)), "choice with seed \(seed)")
        }
        #expect(context.kv.freeBlocks == context.kv.capacityBlocks)
    }

    @Test func logprobsAreTheLogSoftmaxOfTheModelsLogits() throws {
        let model = try RealModel.load(precision: .f32)
        let cases = try ReferenceData.jsonLines("greedy.jsonl")
        let prompt = ReferenceData.ids(cases[0]["prompt_ids"])
        let context = try model.model.makeContext(kvTokens: 256)
        let logits = try context.forward(prompt, sequence: context.kv.createSequence(), logits: .last)
        let generator = BatchGenerator(context: try model.model.makeContext(kvTokens: 256))
        let submission = try generator.submit(prompt: prompt, options: GenerationOptions(maxNewTokens: 1),
                                              sampling: [.greedy], contextSize: 256, logprobs: 5)
        let event = try #require(try generator.step().first)
        let entry = try #require(event.logprobs)
        #expect(event.request == submission.requests[0])
        // Independent reference: log-softmax in Double, then the five largest.
        let total = logSumExp(logits[...])
        let ranked = logits.indices.sorted { (logits[$0], -$0) > (logits[$1], -$1) }
        #expect(entry.chosen.token == event.token && abs(Double(entry.chosen.logprob) - (Double(logits[Int(event.token)]) - total)) < 1e-4)
        #expect(entry.top.map(\.token) == ranked.prefix(5).map { TokenID($0) })
        for (item, index) in zip(entry.top, ranked) { #expect(abs(Double(item.logprob) - (Double(logits[index]) - total)) < 1e-4) }
    }
}

/// A KV pool too small for every running sequence: the newest are preempted and recomputed, and
/// every request still gets all its tokens.
@Suite(.serialized) struct PreemptionTests {
    @Test func requestsThatOutgrowThePoolArePreemptedAndStillFinish() throws {
        let model = try RealModel.load(precision: .quantized)
        let context = try model.model.makeContext(kvTokens: 8 * 32)             // 8 blocks
        let generator = BatchGenerator(context: context, promptChunk: 32, tokenBudget: 32)
        let prompt = try SharedPrefixTests.longPrompt(model, tokens: 40)
        var ids: [Int] = []
        for seed in 0 ..< 3 {                                                   // 3 × (40 + 60) positions = 12 blocks' worth
            var sampling = SamplingOptions()
            sampling.seed = UInt64(seed)
            ids.append(try generator.submit(prompt: prompt, options: GenerationOptions(maxNewTokens: 60, stopAtEndOfSequence: false),
                                            sampling: sampling, contextSize: 256))
        }
        var steps = 0
        var tokens: [Int: [TokenID]] = [:]
        while generator.activeRequests > 0 && steps < 2000 {
            for event in try generator.step() { tokens[event.request, default: []].append(event.token) }
            steps += 1
        }
        #expect(generator.activeRequests == 0, "finished within \(steps) steps")
        #expect(generator.preemptions > 0, "the pool forced preemptions")
        for id in ids { #expect(tokens[id]?.count == 60) }
        #expect(context.kv.freeBlocks == context.kv.capacityBlocks)
    }
}
