import FoundationEssentials
import QuillGeneration
import QuillTokenizers

/// An encoder-decoder checkpoint folder loaded together with its tokenizer: text lines in,
/// hypotheses out, in input order, batched. What `quill translate` and `quill summarize` use.
public final class Seq2SeqPipeline: @unchecked Sendable {
    public let model: Seq2SeqTransformer
    /// Nil when loaded with `withTokenizer: false` (token-id input and output only).
    public let tokenizer: (any Tokenizer)?
    /// Text put before every source: `summarize: ` for T5 summaries, nothing otherwise.
    public let sourcePrefix: String

    /// Loads the model (see `Seq2SeqLoader.load`) and the tokenizer of the same folder.
    public init(directory: String, threads: Int, quantize: Bool = false, sourcePrefix: String = "",
                withTokenizer: Bool = true) throws {
        model = try Seq2SeqLoader.load(directory: directory, threads: threads, quantize: quantize)
        tokenizer = withTokenizer ? try TokenizerLoader.load(directory: URL(fileURLWithPath: directory)) : nil
        if let tokenizer, tokenizer.vocabularySize > model.vocabularySize {
            throw CheckpointError(path: directory, problem:
                "the tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(model.vocabularySize)")
        }
        self.sourcePrefix = sourcePrefix
    }

    /// The source ids of `text` with the tokenizer's special tokens; a source longer than the model's
    /// positions is cut (keeping its final end-of-sequence token), as transformers' pipelines truncate.
    public func sourceIDs(_ text: String) -> [TokenID] {
        guard let tokenizer else { preconditionFailure("Seq2SeqPipeline loaded without a tokenizer takes token ids") }
        var ids = tokenizer.encode(sourcePrefix + text, addSpecialTokens: true)
        let limit = model.maxPositions
        if ids.count > limit, let last = ids.last { ids = Array(ids.prefix(limit - 1)) + [last] }
        return ids
    }

    /// The text of a hypothesis (special tokens skipped, as `batch_decode(skip_special_tokens=True)`);
    /// its ids when no tokenizer was loaded.
    public func text(_ hypothesis: Seq2SeqHypothesis) -> String {
        guard let tokenizer else { return hypothesis.generated.map(String.init).joined(separator: " ") }
        return tokenizer.decode(Array(hypothesis.generated), skipSpecialTokens: true)
    }

    /// Generates for every line (greedy when `settings.numBeams == 1`, beam search otherwise) in
    /// one batch. `onResult(index, hypotheses)` is called in input order, each as soon as it and all
    /// earlier lines are done. Empty (or all-whitespace) lines are not sent to the model: they give
    /// no hypotheses, so the caller can print an empty line and keep the order.
    /// `shouldStop` is polled before every decoder step (see `Seq2SeqSearch.greedy`).
    public func run(_ lines: [String], settings: Seq2SeqSettings, shouldStop: () -> Bool = { false },
                    onResult: (Int, [Seq2SeqHypothesis]) throws -> Void) throws {
        try run(sources: lines.map { $0.allSatisfy(\.isWhitespace) ? [] : sourceIDs($0) }, settings: settings,
                shouldStop: shouldStop, onResult: onResult)
    }

    /// `run` for sources given as token ids (with their special tokens); empty sources give no hypotheses.
    public func run(sources lines: [[TokenID]], settings: Seq2SeqSettings, shouldStop: () -> Bool = { false },
                    onResult: (Int, [Seq2SeqHypothesis]) throws -> Void) throws {
        var pending = [[Seq2SeqHypothesis]?](repeating: nil, count: lines.count)
        var next = 0
        func flush() throws {
            while next < lines.count, let ready = pending[next] {
                try onResult(next, ready)
                pending[next] = nil
                next += 1
            }
        }
        func deliver(_ index: Int, _ hypotheses: [Seq2SeqHypothesis]) throws {
            pending[index] = hypotheses
            try flush()
        }
        let real = lines.indices.filter { !lines[$0].isEmpty }
        for index in lines.indices where lines[index].isEmpty { pending[index] = [] }
        try flush()
        guard !real.isEmpty else { return }
        let sources = real.map { lines[$0] }
        if settings.numBeams == 1 {
            _ = try Seq2SeqSearch.greedy(model: model, sources: sources, settings: settings, shouldStop: shouldStop) { try deliver(real[$0], [$1]) }
        } else {
            _ = try Seq2SeqSearch.beam(model: model, sources: sources, settings: settings, shouldStop: shouldStop) { try deliver(real[$0], $1) }
        }
    }
}
