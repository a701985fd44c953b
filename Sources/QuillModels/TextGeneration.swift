import FoundationEssentials
import Synchronization
import QuillGeneration
import QuillKernels
import QuillTokenizers

/// Everything that shapes one text generation: length, stop conditions and sampling.
public struct TextGenerationOptions: Sendable {
    /// The most new tokens (`-n`).
    public var maxNewTokens: Int = 256
    /// Stop at the model's end-of-sequence token (from its metadata); false = `--ignore-eos`.
    public var stopAtEndOfSequence = true
    /// How tokens are chosen (llama.cpp's defaults; `.greedy` for deterministic output).
    public var sampling = SamplingOptions()
    /// Generation ends when the decoded text contains one of these; the stop string is not shown.
    public var stopStrings: [String] = []
    /// Context size of the cache that `TextModel.generate(_:_:)` makes; nil = the trained context, at most 4096.
    public var contextSize: Int?

    public init() {}

    /// Options with the fields most callers set.
    public init(maxNewTokens: Int, sampling: SamplingOptions = SamplingOptions(), stopStrings: [String] = []) {
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
    }
}

/// What a generation stream yields.
public enum TextGenerationEvent: Sendable, Equatable {
    /// A generated token id (the end-of-sequence token included, as Hugging Face returns it).
    case token(TokenID)
    /// Text that is ready to show: complete characters only, never part of a stop string. It need not
    /// line up with tokens: a character or a possible stop string may be held back over several tokens.
    case text(String)
    /// The last event: counts, timings and why generation ended.
    case finished(GenerationStatistics)
}

extension TextModel {
    /// Generates after `prompt` (token ids placed at `cache.count`), reporting token and text events
    /// synchronously; `onEvent` returns false to stop (the stop reason is then `.stoppedByCaller`).
    ///
    /// - Parameter history: tokens already in `cache` (earlier turns), for the repetition penalties.
    public func generate(prompt: [TokenID], cache: KVCache, history: [TokenID] = [], options: TextGenerationOptions,
                         onEvent: (TextGenerationEvent) throws -> Bool) throws -> GenerationStatistics {
        let tokenizer = self.tokenizer
        var streamer = TextStreamer(tokenBytes: { tokenizer.tokenBytes($0) },
                                    hidden: options.stopAtEndOfSequence ? model.endOfSequenceTokens : [],
                                    stopStrings: options.stopStrings)
        var hitStopString = false
        let loopOptions = GenerationOptions(maxNewTokens: options.maxNewTokens,
                                            stopAtEndOfSequence: options.stopAtEndOfSequence)
        var statistics = try QuillGeneration.generate(
            model: model, prompt: prompt, cache: cache, options: loopOptions, sampling: options.sampling,
            history: history
        ) { token in
            guard try onEvent(.token(token)) else { return false }
            let (text, stopped) = streamer.append(token)
            if !text.isEmpty, try !onEvent(.text(text)) { return false }
            hitStopString = stopped
            return !stopped
        }
        if hitStopString {
            statistics.stopReason = .stopString
        } else {
            let tail = streamer.finish()
            if !tail.isEmpty { _ = try onEvent(.text(tail)) }
        }
        return statistics
    }

    /// Streams a completion of `prompt` (special tokens such as `<|im_start|>` are recognised):
    ///
    ///     for try await event in model.generate("Once upon a time", options) {
    ///         if case .text(let piece) = event { print(piece, terminator: "") }
    ///     }
    ///
    /// Generation runs on a thread of its own (it is long, blocking CPU work that should not occupy a
    /// Swift concurrency thread) with a fresh context (KV memory and threads) over the shared weights, so
    /// several streams may run from one `TextModel` at once. Ending the loop early or cancelling the
    /// consuming Task stops it after the current token (`.cancelled` in the statistics, which a consumer
    /// that stopped listening no longer receives).
    public func generate(_ prompt: String, _ options: TextGenerationOptions = TextGenerationOptions())
        -> AsyncThrowingStream<TextGenerationEvent, Error> {
        generate(tokens: encodePrompt(prompt), options)
    }

    /// Streams a completion of an already tokenized prompt (see `generate(_:_:)`).
    public func generate(tokens prompt: [TokenID], _ options: TextGenerationOptions = TextGenerationOptions())
        -> AsyncThrowingStream<TextGenerationEvent, Error> {
        AsyncThrowingStream { continuation in
            let state = StreamState()
            continuation.onTermination = { _ in state.cancel() }
            DetachedThread.start(stackSize: 8 << 20) { [self] in
                do {
                    let capacity = options.contextSize ?? min(model.trainedContextLength, 4096)
                    guard prompt.count < capacity else {
                        throw GenerationError.promptTooLong(promptTokens: prompt.count, contextSize: capacity)
                    }
                    let cache = try model.makeCache(capacity: capacity)
                    var statistics = try generate(prompt: prompt, cache: cache, options: options) { event in
                        guard !state.isCancelled, case .enqueued = continuation.yield(event) else { return false }
                        return true
                    }
                    if state.isCancelled { statistics.stopReason = .cancelled }
                    continuation.yield(.finished(statistics))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
        }
    }
}

/// Cancellation flag shared by a stream's consumer side and its generating thread.
private final class StreamState: Sendable {
    private let cancelled = Mutex(false)
    func cancel() { cancelled.withLock { $0 = true } }
    var isCancelled: Bool { cancelled.withLock { $0 } }
}
