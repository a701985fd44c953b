import QuillTokenizers
import QuillGeneration
import QuillModels

/// The text side of one choice: tokens in, text deltas out, stop strings applied, and what the
/// response reports at the end (finish reason, token count, logprobs).
struct ChoiceText {
    private var streamer: TextStreamer
    private let model: TextModel
    private(set) var text = ""
    private(set) var tokens = 0
    private(set) var finishReason: String?
    private(set) var logprobs: [TokenLogprobs] = []

    init(model: TextModel, stop: [String], hideEndOfSequence: Bool) {
        self.model = model
        let tokenizer = model.tokenizer
        streamer = TextStreamer(tokenBytes: { tokenizer.tokenBytes($0) },
                                hidden: hideEndOfSequence ? model.model.endOfSequenceTokens : [], stopStrings: stop)
    }

    var isFinished: Bool { finishReason != nil }

    /// Adds a token; returns the text that became ready. Sets `finishReason` when the choice ended,
    /// either because the engine said so or because a stop string was reached (the caller then
    /// cancels the choice).
    mutating func append(_ token: TokenID, logprobs entry: TokenLogprobs?,
                         finished: GenerationStatistics.StopReason?) -> (delta: String, stoppedByString: Bool) {
        guard finishReason == nil else { return ("", false) }
        tokens += 1
        if let entry { logprobs.append(entry) }
        var (delta, stopped) = streamer.append(token)
        if stopped {
            finishReason = "stop"
        } else if let finished {
            delta += streamer.finish()
            finishReason = finished == .endOfSequence ? "stop" : "length"
        }
        text += delta
        return (delta, stopped)
    }

    /// The text a token stands for (for logprobs), invalid UTF-8 replaced.
    static func tokenText(_ token: TokenID, model: TextModel) -> String {
        String(decoding: model.tokenizer.tokenBytes(token), as: UTF8.self)
    }

    /// Chat's `logprobs.content` entries.
    static func chatLogprobs(_ entries: [TokenLogprobs], model: TextModel) -> [JSONValue] {
        entries.map { entry in
            func item(_ t: TokenLogprob) -> [String: JSONValue] {
                ["token": .string(tokenText(t.token, model: model)), "logprob": JSONValue(Double(t.logprob)),
                 "bytes": .array(model.tokenizer.tokenBytes(t.token).map { JSONValue(Int($0)) })]
            }
            var result = item(entry.chosen)
            result["top_logprobs"] = .array(entry.top.map { .object(item($0)) })
            return .object(result)
        }
    }

    /// The legacy completions `logprobs` object.
    static func completionLogprobs(_ entries: [TokenLogprobs], model: TextModel, textOffset: Int) -> JSONValue {
        var offsets: [Int] = [], offset = textOffset
        for entry in entries {
            offsets.append(offset)
            offset += tokenText(entry.chosen.token, model: model).utf8.count
        }
        return [
            "tokens": .array(entries.map { .string(tokenText($0.chosen.token, model: model)) }),
            "token_logprobs": .array(entries.map { JSONValue(Double($0.chosen.logprob)) }),
            "top_logprobs": .array(entries.map { entry in
                .object(Dictionary(entry.top.map { (tokenText($0.token, model: model), Double($0.logprob)) }, uniquingKeysWith: max)
                    .mapValues { JSONValue($0) })
            }),
            "text_offset": .array(offsets.map { JSONValue($0) }),
        ]
    }
}
