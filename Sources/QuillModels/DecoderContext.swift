import FoundationEssentials
import QuillGeneration
import QuillKernels

/// Everything mutable that running a `DecoderModel` needs: the KV pool of its sequences, the thread
/// pool and scratch memory (llama.cpp's `llama_context`). One forward pass at a time; make one
/// context per concurrent user of a model, or batch the users' sequences through one.
public final class DecoderContext: BatchLanguageModelContext {
    public let model: DecoderModel
    /// Keys and values of every sequence of this context.
    public let kv: KVBlockPool
    let pool: ThreadPool

    public var vocabularySize: Int { model.vocabularySize }
    public var endOfSequenceTokens: Set<TokenID> { model.endOfSequenceTokens }

    /// True when every projection of a prompt chunk runs the int8 GEMM, whose tokens are separate
    /// lanes: with the row-wise norms, RoPE and attention (each prompt row computed on its own), a
    /// prompt token's result then depends on its position and history only. The f32 path's sgemm makes no
    /// such promise.
    public var promptTokensIndependentOfChunks: Bool {
        model.precision == .quantized && BlockInt8GEMM.hasFastKernel && everyProjectionHasInt8GEMM
    }

    /// Whether the int8 GEMM takes every layer matrix's type (fixed by the model; the scheduler asks
    /// `promptTokensIndependentOfChunks` several times per request and step).
    private let everyProjectionHasInt8GEMM: Bool

    init(model: DecoderModel, kvTokens: Int, threads: Int) throws {
        self.model = model
        everyProjectionHasInt8GEMM = model.layers.allSatisfy { $0.matrices.allSatisfy(BlockInt8GEMM.supports) }
        kv = try KVBlockPool(layout: model.kvLayout(model.kvCacheType), tokens: kvTokens)
        pool = ThreadPool(threads: max(1, threads))
    }

    /// Runs `tokens` of the sequence of `cache` (in passes of at most `model.maxBatch` tokens) and
    /// returns logits: (vocabularySize) for `.last`, (tokens, vocabularySize) for `.all`.
    public func forward(_ tokens: [TokenID], cache: KVCache, logits selection: LogitsSelection) throws -> [Float] {
        guard cache.count + tokens.count <= cache.capacity else {
            throw GenerationError.promptTooLong(promptTokens: cache.count + tokens.count, contextSize: cache.capacity)
        }
        return try forward(tokens, sequence: cache.sequence, logits: selection)
    }

    /// Runs `tokens` of `sequence` alone, in passes of at most `model.maxBatch` tokens.
    public func forward(_ tokens: [TokenID], sequence: SequenceID, logits selection: LogitsSelection) throws -> [Float] {
        guard !tokens.isEmpty else { throw GenerationError.emptyPrompt }
        var result: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(start + model.maxBatch, tokens.count)
            let part = try forward([BatchChunk(sequence: sequence, tokens: Array(tokens[start ..< end]), logits: selection)])[0]
            if selection == .all { result += part } else if end == tokens.count { result = part }
            start = end
        }
        return result
    }

    /// One forward pass over new tokens of several sequences (prompt chunks and decoding tokens mixed).
    /// Returns, per chunk in order, its logits: (vocabularySize) for `.last`, (tokens, vocabularySize)
    /// for `.all`.
    ///
    /// A sequence's results are bitwise the same whatever else is in the batch: decoding tokens (one
    /// per chunk) go through row-by-row kernels, each prompt chunk through its own GEMMs, and attention
    /// reads only the sequence's own history.
    public func forward(_ batch: [BatchChunk]) throws -> [[Float]] {
        let vocabulary = model.vocabularySize
        var seen = Set<SequenceID>()
        for chunk in batch {
            guard !chunk.tokens.isEmpty else { throw GenerationError.emptyPrompt }
            guard seen.insert(chunk.sequence).inserted else { throw KVCacheError.sequenceTwiceInOneBatch(chunk.sequence) }
            for t in chunk.tokens where t < 0 || Int(t) >= vocabulary {
                throw GenerationError.invalidToken(t, vocabularySize: vocabulary)
            }
        }
        for chunk in batch { try kv.reserve(chunk.sequence, appending: chunk.tokens.count) }
        guard !batch.isEmpty else { return [] }
        // Decoding tokens first, as rows 0 ..< decodeRows; then each prompt chunk's rows.
        let order = batch.indices.sorted { (batch[$0].tokens.count > 1 ? 1 : 0, $0) < (batch[$1].tokens.count > 1 ? 1 : 0, $1) }
        var plan = RowPlan()
        for i in order {
            plan.chunks.append(.init(index: i, sequence: batch[i].sequence, firstRow: plan.rows,
                                     tokens: batch[i].tokens.count, firstPosition: kv.length(of: batch[i].sequence)))
            if batch[i].tokens.count == 1 { plan.decodeRows += 1 }
            plan.rows += batch[i].tokens.count
        }
        let tokens = order.flatMap { batch[$0].tokens }
        let logits = run(tokens, plan: plan, wanted: batch.map(\.logits))
        model.passCounter.increment()
        for chunk in batch { kv.commit(chunk.sequence, appending: chunk.tokens.count) }
        return logits
    }
}

/// How the rows of one pass map to sequences.
struct RowPlan {
    struct Chunk {
        let index: Int          // position in the caller's batch
        let sequence: SequenceID
        let firstRow: Int
        let tokens: Int
        let firstPosition: Int
    }
    var chunks: [Chunk] = []
    var rows = 0
    /// Rows `0 ..< decodeRows` are single-token chunks.
    var decodeRows = 0
    var promptChunks: ArraySlice<Chunk> { chunks[chunks.count - chunks.filter { $0.tokens > 1 }.count ..< chunks.count] }
}
