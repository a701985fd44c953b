import FoundationEssentials
import QuillTokenizers
import QuillGeneration
import QuillModels

/// A `/v1/chat/completions` or `/v1/completions` request, validated.
///
/// Defaults follow OpenAI, not llama.cpp: temperature 1, top_p 1, no top-k or min-p, no penalties;
/// `max_tokens` defaults to 16 for completions (OpenAI's legacy default) and to the rest of the
/// context for chat. The extensions `top_k`, `min_p`, `repeat_penalty` and `ignore_eos` are llama.cpp's.
struct CompletionRequest: Sendable {
    enum Kind: Sendable { case chat, completion }
    enum Input: Equatable, Sendable {
        case messages([ChatMessage])
        case text(String)
        case tokens([TokenID])
    }

    var kind: Kind
    var input: Input
    var model: String?
    var maxTokens: Int?
    var sampling = SamplingOptions()
    var seedGiven = false
    var stop: [String] = []
    var choices = 1
    /// Alternatives per token to report; nil = no logprobs.
    var logprobs: Int?
    var stream = false
    var includeUsage = false
    var ignoreEOS = false

    static let maxChoices = 16
    static let maxStopStrings = 4

    init(body: Data, kind: Kind) throws(APIError) {
        let f = RequestFields(try JSONValue.object(from: body))
        self.kind = kind
        model = try f.string("model")
        switch kind {
        case .chat:
            guard f["messages"] != nil else { throw .invalid("'messages' is required.", param: "messages") }
            input = .messages(try Self.messages(f))
        case .completion:
            guard let prompt = f["prompt"] else { throw .invalid("'prompt' is required.", param: "prompt") }
            input = try Self.prompt(prompt)
        }
        maxTokens = try f.integer("max_completion_tokens", in: 1 ... 1 << 30)
        if maxTokens == nil { maxTokens = try f.integer("max_tokens", in: 1 ... 1 << 30) }
        if kind == .completion && maxTokens == nil { maxTokens = 16 }

        sampling.temperature = Float(try f.number("temperature", in: 0 ... 2) ?? 1)
        sampling.topP = Float(try f.number("top_p", in: 0 ... 1) ?? 1)
        sampling.topK = try f.integer("top_k", in: -1 ... 1 << 30).map { max($0, 0) } ?? 0
        sampling.minP = Float(try f.number("min_p", in: 0 ... 1) ?? 0)
        sampling.repeatPenalty = Float(try f.number("repeat_penalty", in: 0 ... 10) ?? 1)
        sampling.presencePenalty = Float(try f.number("presence_penalty", in: -2 ... 2) ?? 0)
        sampling.frequencyPenalty = Float(try f.number("frequency_penalty", in: -2 ... 2) ?? 0)
        // OpenAI's penalties count every token generated so far.
        if sampling.presencePenalty != 0 || sampling.frequencyPenalty != 0 { sampling.repeatLastN = -1 }
        if let seed = try f.integer("seed", in: Int64.min ... Int64.max) {
            sampling.seed = UInt64(bitPattern: Int64(seed))
            seedGiven = true
        }
        if let bias = try f.object("logit_bias") {
            for (key, _) in bias.fields {
                guard let token = Int32(key), token >= 0 else {
                    throw .invalid("'logit_bias' keys must be token ids, not '\(key)'.", param: "logit_bias")
                }
                if let value = try bias.number(key, in: -100 ... 100) { sampling.logitBias[token] = Float(value) }
            }
        }
        stop = try Self.stopStrings(f)
        choices = try f.integer("n", in: 1 ... Int64(Self.maxChoices)) ?? 1
        stream = try f.bool("stream") ?? false
        if let options = try f.object("stream_options") { includeUsage = try options.bool("include_usage") ?? false }
        ignoreEOS = try f.bool("ignore_eos") ?? false
        switch kind {
        case .chat:
            if try f.bool("logprobs") == true { logprobs = try f.integer("top_logprobs", in: 0 ... 20) ?? 0 }
            else if f["top_logprobs"] != nil {
                throw .invalid("'top_logprobs' needs 'logprobs': true.", param: "top_logprobs")
            }
        case .completion:
            logprobs = try f.integer("logprobs", in: 0 ... 5)
        }
        _ = try f.string("user")
    }

    private static func messages(_ f: RequestFields) throws(APIError) -> [ChatMessage] {
        guard case let .array(items)? = f["messages"] else { throw f.wrongType("messages", expected: "an array") }
        guard !items.isEmpty else { throw .invalid("'messages' must not be empty.", param: "messages") }
        var messages: [ChatMessage] = []
        for (i, item) in items.enumerated() {
            let param = "messages[\(i)]"
            guard case let .object(fields) = item else { throw .invalid("'\(param)' must be an object.", param: param) }
            let m = RequestFields(fields, path: param)
            guard var role = try m.string("role") else { throw .invalid("'\(param).role' is required.", param: "\(param).role") }
            if role == "developer" { role = "system" }
            guard ["system", "user", "assistant"].contains(role) else {
                throw .invalid("'\(param).role' must be system, user or assistant, not '\(role)'.", param: "\(param).role")
            }
            messages.append(ChatMessage(role: role, content: try content(m)))
        }
        return messages
    }

    /// A message's content: a string, or an array of `{"type": "text", "text": …}` parts (joined).
    private static func content(_ m: RequestFields) throws(APIError) -> String {
        switch m["content"] {
        case nil: return ""
        case let .string(s)?: return s
        case let .array(parts)?:
            var text = ""
            for (j, part) in parts.enumerated() {
                let param = m.param("content") + "[\(j)]"
                guard case let .object(fields) = part else { throw .invalid("'\(param)' must be an object.", param: param) }
                let p = RequestFields(fields, path: param)
                guard try p.string("type") == "text", let t = try p.string("text") else {
                    throw .invalid("'\(param)' must be a text part ({\"type\": \"text\", \"text\": …}); this model reads text only.", param: param)
                }
                text += t
            }
            return text
        case let other?:
            throw .invalid("'\(m.param("content"))' must be a string or an array of text parts, not \(other.typeName).",
                           param: m.param("content"))
        }
    }

    /// A completion prompt: a string, an array of token ids, or an array holding one of those.
    private static func prompt(_ value: JSONValue) throws(APIError) -> Input {
        switch value {
        case let .string(s): return .text(s)
        case let .array(items):
            if items.count == 1, case let .string(s) = items[0] { return .text(s) }
            if items.count == 1, case .array = items[0] { return try prompt(items[0]) }
            var tokens: [TokenID] = []
            for item in items {
                guard case let .integer(t) = item, t >= 0, t <= Int64(Int32.max) else {
                    throw .invalid("'prompt' must be a string, an array of token ids, or an array with one of those (several prompts per request are not supported; send one request each).", param: "prompt")
                }
                tokens.append(TokenID(t))
            }
            return .tokens(tokens)
        default:
            throw .invalid("'prompt' must be a string or an array of token ids, not \(value.typeName).", param: "prompt")
        }
    }

    private static func stopStrings(_ f: RequestFields) throws(APIError) -> [String] {
        switch f["stop"] {
        case nil: return []
        case let .string(s)?: return s.isEmpty ? [] : [s]
        case let .array(items)?:
            guard items.count <= maxStopStrings else {
                throw .invalid("'stop' takes at most \(maxStopStrings) strings.", param: "stop")
            }
            var stops: [String] = []
            for item in items {
                guard case let .string(s) = item else { throw .invalid("'stop' must be a string or an array of strings.", param: "stop") }
                if !s.isEmpty { stops.append(s) }
            }
            return stops
        case let other?:
            throw .invalid("'stop' must be a string or an array of strings, not \(other.typeName).", param: "stop")
        }
    }

    /// The sampling of each choice: the same options, seeds one apart so that choices differ.
    var choiceSampling: [SamplingOptions] {
        (0 ..< choices).map { i in
            var s = sampling
            s.seed = sampling.seed &+ UInt64(i)
            return s
        }
    }
}
