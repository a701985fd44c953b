/// The hypotheses a search extends one token at a time, whatever the model: rows of an
/// encoder-decoder's decoder state, or forked sequences of a decoder-only model's KV pool.
/// `Seq2SeqSearch.beam(rows:…)` is written once against this.
public protocol BeamRows: AnyObject {
    var vocabularySize: Int { get }
    /// Feeds one token to every row; returns the raw logits, (rows, vocabularySize).
    func step(_ tokens: [TokenID]) throws -> [Float]
    /// Keeps `parents.count` rows: new row i continues old row `parents[i]`.
    func reorder(_ parents: [Int]) throws
}

/// The rows of an encoder-decoder's `DecoderState`.
final class EncoderDecoderBeamRows: BeamRows {
    let model: any EncoderDecoderModel
    let state: DecoderState
    init(model: any EncoderDecoderModel, state: DecoderState) {
        self.model = model
        self.state = state
    }
    var vocabularySize: Int { model.vocabularySize }
    func step(_ tokens: [TokenID]) throws -> [Float] { try model.decode(tokens, state: state) }
    func reorder(_ parents: [Int]) throws { state.reorder(parents) }
}

/// Beams of a decoder-only model: sequences of its context's KV pool. The prompt runs once; every
/// beam is a fork of it, and reordering forks the surviving parents, so beams share the blocks of
/// their common prefix (copy-on-write) instead of copying their caches.
public final class SequenceBeamRows: BeamRows {
    public let context: any BatchLanguageModelContext
    public private(set) var sequences: [SequenceID]
    public var vocabularySize: Int { context.vocabularySize }

    /// Runs all of `prompt` but its last token (the search feeds that one to every beam as its start
    /// token) and forks `beams` sequences from it.
    public init(context: any BatchLanguageModelContext, prompt: [TokenID], beams: Int, promptChunk: Int = 512) throws {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        self.context = context
        let base = context.kv.createSequence()
        defer { context.kv.release(base) }
        var start = 0
        while start < prompt.count - 1 {
            let end = min(start + promptChunk, prompt.count - 1)
            _ = try context.forward([BatchChunk(sequence: base, tokens: Array(prompt[start ..< end]))])
            start = end
        }
        sequences = try (0 ..< beams).map { _ in try context.kv.fork(base) }
    }

    deinit { for s in sequences { context.kv.release(s) } }

    public func step(_ tokens: [TokenID]) throws -> [Float] {
        let chunks = zip(sequences, tokens).map { BatchChunk(sequence: $0, tokens: [$1]) }
        return try context.forward(chunks).flatMap { $0 }
    }

    public func reorder(_ parents: [Int]) throws {
        let next = try parents.map { try context.kv.fork(sequences[$0]) }
        for s in sequences { context.kv.release(s) }
        sequences = next
    }
}
