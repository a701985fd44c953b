import Foundation
import QuillGeneration
import QuillModels
import Testing

/// Many sequences through one context: a sequence's tokens never depend on what else is in the
/// batch, and several tasks can generate from one loaded model at once.
@Suite(.serialized) struct BatchedDecodingTests {
    static let prompts = [
        "The capital of France is", "Once upon a time", "def fibonacci(n):", "The three primary colours are",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", "In 1969, the first", "Water boils at",
        "A haiku about the sea:",
    ]

    func sampling(seed: UInt64) -> SamplingOptions {
        var options = SamplingOptions()
        options.temperature = 0.8
        options.seed = seed
        return options
    }

    /// Tokens of request `index` run alone in a fresh context (prompt cut into the same chunks).
    func alone(_ model: TextModel, _ index: Int, newTokens: Int) throws -> [TokenID] {
        let generator = BatchGenerator(context: try model.model.makeContext(kvTokens: 256), promptChunk: 4, tokenBudget: 12)
        let id = try generator.submit(prompt: model.encodePrompt(Self.prompts[index]),
                                      options: GenerationOptions(maxNewTokens: newTokens, stopAtEndOfSequence: false),
                                      sampling: sampling(seed: UInt64(100 + index)), contextSize: 256)
        return try generator.run()[id] ?? []
    }

    @Test(arguments: ComputePrecision.allCases)
    func aSequencesTokensAreTheSameAloneAndAmongSevenOthers(precision: ComputePrecision) throws {
        let model = try RealModel.load(precision: precision)
        let newTokens = 20
        let generator = BatchGenerator(context: try model.model.makeContext(kvTokens: 8 * 256), promptChunk: 4,
                                       tokenBudget: 12)
        var ids: [Int] = []
        var tokens: [Int: [TokenID]] = [:]
        func step() throws {
            for event in try generator.step() { tokens[event.request, default: []].append(event.token) }
        }
        // Requests join while others decode, and prompts run in 4-token chunks beside decoding rows.
        for (index, prompt) in Self.prompts.enumerated() {
            ids.append(try generator.submit(prompt: model.encodePrompt(prompt),
                                            options: GenerationOptions(maxNewTokens: newTokens, stopAtEndOfSequence: false),
                                            sampling: sampling(seed: UInt64(100 + index)), contextSize: 256))
            if index % 3 == 0 { try step(); try step() }
        }
        while generator.activeRequests > 0 { try step() }
        for index in [0, 4, 7] {
            let expected = try alone(model, index, newTokens: newTokens)
            #expect(expected.count == newTokens)
            #expect(tokens[ids[index]] == expected, "request \(index) changed when batched (\(precision))")
        }
    }

    @Test func batchedGreedyDecodingGivesTheReferenceContinuations() throws {
        let model = try RealModel.load(precision: .f32)
        let cases = try ReferenceData.jsonLines("greedy.jsonl")
        let generator = BatchGenerator(context: try model.model.makeContext(kvTokens: cases.count * 256))
        var ids: [Int] = []
        for c in cases {
            ids.append(try generator.submit(prompt: ReferenceData.ids(c["prompt_ids"]), options: GenerationOptions(maxNewTokens: 48),
                                            sampling: .greedy, contextSize: 256))
        }
        let tokens = try generator.run()
        for (c, id) in zip(cases, ids) { #expect(tokens[id] == ReferenceData.ids(c["greedy_ids"]), "\(c["name"]!)") }
    }

    @Test func badBatchesAreOneLineErrorsAndChangeNothing() throws {
        let model = try RealModel.load(precision: .quantized)
        let context = try model.model.makeContext(kvTokens: 64)
        let sequence = context.kv.createSequence()
        #expect(throws: KVCacheError.sequenceTwiceInOneBatch(sequence)) {
            try context.forward([BatchChunk(sequence: sequence, tokens: [1]), BatchChunk(sequence: sequence, tokens: [2])])
        }
        let unknown = SequenceID(rawValue: 999)
        #expect(throws: KVCacheError.unknownSequence(unknown)) { try context.forward([BatchChunk(sequence: unknown, tokens: [1])]) }
        // More positions than the pool holds: the pool's error, and the sequence is still empty.
        #expect(throws: KVCacheError.self) { try context.forward([BatchChunk(sequence: sequence, tokens: Array(repeating: 1, count: 65))]) }
        #expect(context.kv.length(of: sequence) == 0)
    }

    @Test func severalTasksGenerateFromOneModelAtOnce() async throws {
        let model = try RealModel.load(precision: .f32, threads: 1)
        let expected: [TokenID] = [7042, 30, 198, 198, 504, 2988, 314, 42, 216, 34, 32, 33]
        let options = TextGenerationOptions(maxNewTokens: expected.count, sampling: .greedy)
        try await withThrowingTaskGroup(of: [TokenID].self) { group in
            for _ in 0 ..< 3 {
                group.addTask {
                    var tokens: [TokenID] = []
                    for try await event in model.generate("The capital of France is", options) {
                        if case let .token(id) = event { tokens.append(id) }
                    }
                    return tokens
                }
            }
            for try await tokens in group { #expect(tokens == expected) }
        }
    }

    /// The same on the quantised path, whose decoding reads the shared `WeightPanels` (immutable
    /// after loading): three tasks at once each get the tokens one task gets alone.
    @Test func severalTasksShareOneQuantisedModelsPanels() async throws {
        let model = try RealModel.load(precision: .quantized, threads: 1)
        let options = TextGenerationOptions(maxNewTokens: 12, sampling: .greedy)
        @Sendable func generate() async throws -> [TokenID] {
            var tokens: [TokenID] = []
            for try await event in model.generate("The capital of France is", options) {
                if case let .token(id) = event { tokens.append(id) }
            }
            return tokens
        }
        let alone = try await generate()
        #expect(alone.count == 12)
        try await withThrowingTaskGroup(of: [TokenID].self) { group in
            for _ in 0 ..< 3 { group.addTask { try await generate() } }
            for try await tokens in group { #expect(tokens == alone) }
        }
    }
}
