import FoundationEssentials
import QuillGeneration
import QuillModels
import QuillTokenizers

/// Turns one validated request into engine work and the engine's events into OpenAI responses.
struct CompletionHandler: Sendable {
    let engine: InferenceEngine
    let metrics: ServerMetrics
    let template: ChatTemplate?
    let modelName: String

    var model: TextModel { engine.model }

    typealias Submission = (id: InferenceEngine.JobID, events: AsyncStream<EngineEvent>)

    /// A prepared request: its prompt tokens and engine job.
    struct Prepared: Sendable {
        let request: CompletionRequest
        let prompt: [TokenID]
        let job: EngineJob
        let id: String
        let created = Int(Date().timeIntervalSince1970)
    }

    func prepare(_ request: CompletionRequest) throws(APIError) -> Prepared {
        let prompt: [TokenID]
        switch request.input {
        case let .messages(messages):
            guard let template else {
                throw .invalid("This model has no chat template; use /v1/completions with a prompt.", param: "messages")
            }
            do { try template.validate(messages) } catch { throw .invalid("\(error)", param: "messages") }
            // Message text is never parsed for control tokens: only the template's markers are.
            prompt = template.encode(messages, addGenerationPrompt: true, for: model)
        case let .text(text):
            prompt = model.encodePrompt(text)
        case let .tokens(tokens):
            for t in tokens where Int(t) >= model.model.vocabularySize {
                throw .invalid("Token id \(t) is outside the vocabulary (\(model.model.vocabularySize) tokens).", param: "prompt")
            }
            prompt = tokens
        }
        let param = request.kind == .chat ? "messages" : "prompt"
        guard !prompt.isEmpty else { throw .invalid("The prompt is empty.", param: param) }
        let limit = engine.sequenceLimit
        guard prompt.count < limit else {
            throw .contextLengthExceeded("The prompt has \(prompt.count) tokens; this server's context holds \(limit) per sequence, and at least one must be left to generate.", param: param)
        }
        let room = limit - prompt.count
        let options = GenerationOptions(maxNewTokens: min(request.maxTokens ?? room, room),
                                        stopAtEndOfSequence: !request.ignoreEOS)
        let job = EngineJob(prompt: prompt, options: options, sampling: request.choiceSampling, logprobs: request.logprobs)
        let prefix = request.kind == .chat ? "chatcmpl-" : "cmpl-"
        return Prepared(request: request, prompt: prompt, job: job,
                        id: prefix + UUID().uuidString.replacing("-", with: "").lowercased())
    }

    /// Runs a prepared request to the end and returns the whole response body.
    func respond(_ p: Prepared, submission: Submission, arrival: ContinuousClock.Instant) async throws(APIError) -> JSONValue {
        let (jobID, events) = submission
        var choices = choiceTexts(p)
        var cached = 0, first = true, failure: APIError?
        // A client that goes away cancels this task: stop its generation too.
        await withTaskCancellationHandler {
            for await event in events {
                switch event {
                case let .admitted(cachedTokens), let .promptCached(cachedTokens): cached = cachedTokens
                case let .failed(error): failure = error
                case let .token(choice, token, logprobs, finished):
                    if first { metrics.observeTimeToFirstToken(seconds(since: arrival)); first = false }
                    if choices[choice].append(token, logprobs: logprobs, finished: finished).stoppedByString {
                        engine.cancel(jobID, choice: choice)
                    }
                }
            }
        } onCancel: { engine.cancel(jobID) }
        if let failure { throw failure }
        if Task.isCancelled { throw .server("The request was cancelled.") }
        let generated = choices.reduce(0) { $0 + $1.tokens }
        metrics.countTokens(prompt: p.prompt.count, cached: cached, generated: generated)
        return [
            "id": .string(p.id), "object": p.request.kind == .chat ? "chat.completion" : "text_completion",
            "created": JSONValue(p.created), "model": .string(modelName),
            "choices": .array(choices.enumerated().map { i, c in choiceBody(p, index: i, choice: c) }),
            "usage": usage(prompt: p.prompt.count, cached: cached, generated: generated),
        ]
    }

    /// The text state of each choice of a request, before its first token.
    private func choiceTexts(_ p: Prepared) -> [ChoiceText] {
        (0 ..< p.job.sampling.count).map { _ in
            ChoiceText(model: model, stop: p.request.stop, hideEndOfSequence: !p.request.ignoreEOS)
        }
    }

    private func choiceBody(_ p: Prepared, index: Int, choice c: ChoiceText) -> JSONValue {
        let wantsLogprobs = p.request.logprobs != nil
        switch p.request.kind {
        case .chat:
            return ["index": JSONValue(index), "message": ["role": "assistant", "content": .string(c.text)],
                    "logprobs": wantsLogprobs ? ["content": .array(ChoiceText.chatLogprobs(c.logprobs, model: model))] : nil,
                    "finish_reason": .string(c.finishReason ?? "length")]
        case .completion:
            return ["index": JSONValue(index), "text": .string(c.text),
                    "logprobs": wantsLogprobs ? ChoiceText.completionLogprobs(c.logprobs, model: model, textOffset: 0) : nil,
                    "finish_reason": .string(c.finishReason ?? "length")]
        }
    }

    private func usage(prompt: Int, cached: Int, generated: Int) -> JSONValue {
        ["prompt_tokens": JSONValue(prompt), "completion_tokens": JSONValue(generated), "total_tokens": JSONValue(prompt + generated),
         "prompt_tokens_details": ["cached_tokens": JSONValue(cached)]]
    }

    /// Runs a prepared request, handing each server-sent event's JSON to `send` as it is ready;
    /// `send` throwing (the client went away) cancels the request. Ends with `[DONE]`.
    func stream(_ p: Prepared, submission: Submission, arrival: ContinuousClock.Instant,
                send: (String) async throws -> Void) async throws {
        let (jobID, events) = submission
        var choices = choiceTexts(p)
        let isChat = p.request.kind == .chat
        var cached = 0, first = true
        func chunk(_ choiceList: [JSONValue], usage: JSONValue? = nil) -> String {
            var body: [String: JSONValue] = ["id": .string(p.id), "object": isChat ? "chat.completion.chunk" : "text_completion",
                                             "created": JSONValue(p.created), "model": .string(modelName), "choices": .array(choiceList)]
            if p.request.includeUsage { body["usage"] = usage ?? .null }
            return Self.json(.object(body))
        }
        do {
            try await withTaskCancellationHandler {
            for await event in events {
                switch event {
                case let .admitted(cachedTokens):
                    cached = cachedTokens
                    if isChat {
                        try await send(chunk((0 ..< choices.count).map {
                            ["index": JSONValue($0), "delta": ["role": "assistant", "content": ""], "logprobs": nil, "finish_reason": nil]
                        }))
                    }
                case let .promptCached(tokens):
                    cached = tokens
                case let .failed(error):
                    try await send(Self.json(error.body))
                    return
                case let .token(choice, token, logprobs, finished):
                    if first { metrics.observeTimeToFirstToken(seconds(since: arrival)); first = false }
                    let before = choices[choice].logprobs.count, offset = choices[choice].text.utf8.count
                    let (delta, stopped) = choices[choice].append(token, logprobs: logprobs, finished: finished)
                    if stopped { engine.cancel(jobID, choice: choice) }
                    let newLogprobs = Array(choices[choice].logprobs[before...])
                    let reason = JSONValue(choices[choice].finishReason)
                    guard !delta.isEmpty || !newLogprobs.isEmpty || choices[choice].isFinished else { continue }
                    var item: [String: JSONValue] = ["index": JSONValue(choice), "finish_reason": reason, "logprobs": nil]
                    if isChat {
                        item["delta"] = delta.isEmpty && choices[choice].isFinished ? [:] : ["content": .string(delta)]
                        if p.request.logprobs != nil { item["logprobs"] = ["content": .array(ChoiceText.chatLogprobs(newLogprobs, model: model))] }
                    } else {
                        item["text"] = .string(delta)
                        if p.request.logprobs != nil {
                            item["logprobs"] = ChoiceText.completionLogprobs(newLogprobs, model: model, textOffset: offset)
                        }
                    }
                    try await send(chunk([.object(item)]))
                }
            }
            } onCancel: { engine.cancel(jobID) }
        } catch {
            engine.cancel(jobID)
            throw error
        }
        let generated = choices.reduce(0) { $0 + $1.tokens }
        metrics.countTokens(prompt: p.prompt.count, cached: cached, generated: generated)
        if p.request.includeUsage {
            try await send(chunk([], usage: usage(prompt: p.prompt.count, cached: cached, generated: generated)))
        }
        try await send("[DONE]")
    }

    /// Compact JSON text with unescaped slashes, as JSONSerialization's `.withoutEscapingSlashes`
    /// wrote it (same escapes and number text); "{}" if a number is not finite, as before.
    static func json(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}
