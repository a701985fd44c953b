import QuillGeneration
import QuillTokenizers

/// A conversation with a model that keeps its KV cache between turns.
///
/// The session keeps the conversation as the model saw it: the ids of every prompt and of every reply
/// *as generated* (re-tokenizing a reply can give other ids, which would invalidate the cache from
/// there on). A new turn renders the conversation with the chat template, takes the text after what
/// is already there (for ChatML: `<|im_end|>\n<|im_start|>user\n…<|im_start|>assistant\n`), tokenizes
/// only that, and runs only the ids after the longest prefix shared with the cache. A template whose
/// rendering of the past changes (not the case for ChatML) falls back to tokenizing everything.
public final class ChatSession: @unchecked Sendable {
    public let model: TextModel
    public let template: ChatTemplate
    /// The conversation so far (user and assistant turns; a system message if one was given).
    public private(set) var messages: [ChatMessage]
    private let systemPrompt: String?
    private let cache: KVCache
    /// The ids whose keys and values are in `cache`, position by position.
    private var cachedTokens: [TokenID] = []
    /// The conversation so far as ids (replies as generated) and the rendered text they stand for.
    private var conversationTokens: [TokenID] = []
    private var conversationText = ""

    /// What one turn cost.
    public struct TurnStatistics: Sendable {
        /// Generation counts and timings; `promptTokens` is the number of ids actually processed this turn.
        public var generation: GenerationStatistics
        /// Ids of the rendered conversation that were already in the cache and not processed again.
        public var reusedTokens: Int
        /// The assistant's reply as shown (stop strings removed).
        public var reply: String
    }

    /// - Parameters:
    ///   - contextSize: the most tokens the whole conversation may hold.
    ///   - systemPrompt: replaces the template's default system prompt when given.
    public init(model: TextModel, contextSize: Int, systemPrompt: String? = nil, template: ChatTemplate? = nil) throws {
        self.model = model
        self.template = try template ?? ChatTemplate(model: model)
        self.systemPrompt = systemPrompt
        messages = systemPrompt.map { [.system($0)] } ?? []
        cache = try model.model.makeCache(capacity: contextSize)
    }

    /// Tokens currently held in the cache.
    public var cachedTokenCount: Int { cachedTokens.count }

    /// Forgets the conversation (and the cache).
    public func reset() {
        messages = systemPrompt.map { [.system($0)] } ?? []
        cache.reset()
        cachedTokens = []
        conversationTokens = []
        conversationText = ""
    }

    /// Adds `userText` as the user's turn, generates the reply (streamed through `onEvent`, which
    /// returns false to stop) and adds it to the conversation.
    public func respond(to userText: String, options: TextGenerationOptions,
                        onEvent: (TextGenerationEvent) throws -> Bool) throws -> TurnStatistics {
        // Only the template's own markup becomes control tokens: a message that spells `<|im_start|>`
        // gets those characters, not a new turn. The templates write BOS themselves where they want it.
        let chat = template.renderedChat(messages + [.user(userText)], addGenerationPrompt: true)
        let rendered = chat.text
        let tokens: [TokenID]
        if !conversationTokens.isEmpty, rendered.utf8.starts(with: conversationText.utf8) {
            let offset = conversationText.utf8.count
            let delta = String(decoding: rendered.utf8.dropFirst(offset), as: UTF8.self)
            let markup = chat.markup.compactMap { range -> Range<Int>? in
                range.upperBound <= offset ? nil : max(range.lowerBound, offset) - offset ..< range.upperBound - offset
            }
            tokens = conversationTokens + model.encode(delta, specialTokens: .within(markup))
        } else {
            tokens = model.encode(rendered, specialTokens: .within(chat.markup))
        }
        guard tokens.count < cache.capacity else {
            throw GenerationError.promptTooLong(promptTokens: tokens.count, contextSize: cache.capacity)
        }
        var common = zip(tokens, cachedTokens).prefix { $0 == $1 }.count
        // At least one id must run to get logits for the reply.
        if common == tokens.count { common -= 1 }
        // A sliding-window model may keep less than asked (its window dropped older positions).
        common = cache.truncate(to: common)
        cachedTokens.removeLast(cachedTokens.count - common)
        let newTokens = Array(tokens[common...])

        var generated: [TokenID] = []
        var reply = ""
        var limited = options
        limited.maxNewTokens = min(options.maxNewTokens, cache.capacity - tokens.count)
        let statistics = try model.generate(prompt: newTokens, cache: cache, history: cachedTokens, options: limited) { event in
            switch event {
            case let .token(id): generated.append(id)
            case let .text(piece): reply += piece
            case .finished: break
            }
            return try onEvent(event)
        }
        // The cache now holds the prompt and every generated id but the last (never fed back).
        cachedTokens = Array((tokens + generated).prefix(cache.count))
        // Keep the reply's ids as generated when they spell exactly the reply (not so after a stop
        // string or a cut character); otherwise its tokenization stands in.
        let replyTokens = generated.filter { !model.model.endOfSequenceTokens.contains($0) }
        let exact = model.bytes(of: replyTokens) == Array(reply.utf8)
        conversationTokens = tokens + (exact ? replyTokens : model.encode(reply, parseSpecialTokens: false))
        conversationText = rendered + reply
        messages.append(.user(userText))
        messages.append(.assistant(reply))
        return TurnStatistics(generation: statistics, reusedTokens: common, reply: reply)
    }
}
