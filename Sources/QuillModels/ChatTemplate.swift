import FoundationEssentials
import QuillTokenizers

/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    /// "system", "user" or "assistant".
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    public static func system(_ content: String) -> ChatMessage { ChatMessage(role: "system", content: content) }
    public static func user(_ content: String) -> ChatMessage { ChatMessage(role: "user", content: content) }
    public static func assistant(_ content: String) -> ChatMessage { ChatMessage(role: "assistant", content: content) }
}

/// A model's chat template, recognised by family rather than interpreted as Jinja.
///
/// Quill does not run the Jinja source in `tokenizer.chat_template`. It recognises the template's
/// family from the tokens the template writes and renders that family's format itself; a template
/// of another family is a clear error. Known families:
///
/// * ChatML (`<|im_start|>role\ncontent<|im_end|>\n`, SmolLM2, Qwen2.5, …). A default system prompt that
///   the template writes when the conversation does not start with one (SmolLM2: "You are a helpful AI
///   assistant named SmolLM, trained by Hugging Face"; Qwen2.5: "You are Qwen, created by Alibaba Cloud.
///   You are a helpful assistant.") is read from the template's string literal. Qwen's tool-calling
///   branches are not rendered (Quill passes no tools).
/// * Gemma (`<bos><start_of_turn>user\ncontent<end_of_turn>\n<start_of_turn>model\n…`): the template of
///   the Gemma 3 instruction-tuned checkpoints. It has no system role: a leading system message is
///   written at the start of the first turn followed by a blank line; `assistant` is spelled `model`;
///   every message is trimmed (Python's `str.strip`). Gemma 3 GGUFs converted from the base model carry
///   no template; `init(file:)` uses this one for them.
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: Sendable, Equatable {
        case chatML(defaultSystemPrompt: String?)
        case gemma
    }

    public let family: Family

    public init(family: Family) { self.family = family }

    /// Recognises the family of a Jinja chat template.
    public init(jinja source: String) throws {
        if source.contains("<|im_start|>") && source.contains("<|im_end|>") {
            family = .chatML(defaultSystemPrompt: ChatTemplate.defaultChatMLSystemPrompt(in: source))
            return
        }
        if source.contains("<start_of_turn>") && source.contains("<end_of_turn>") {
            family = .gemma
            return
        }
        let start = source.prefix(60).replacingScalars("\n", with: "\\n")
        throw ChatTemplateError(description: "unsupported chat template (Quill recognises ChatML, <|im_start|>role … <|im_end|>, and Gemma, <start_of_turn>role … <end_of_turn>); the template starts with: \(start)")
    }

    /// The template of a GGUF file (`tokenizer.chat_template`); for a `gemma3` file without one (a base
    /// model), Gemma 3's instruction-tuned template.
    public init(file: GGUFFile) throws {
        if let source = file.optionalString("tokenizer.chat_template") {
            try self.init(jinja: source)
        } else if file.optionalString("general.architecture") == "gemma3" {
            self.init(family: .gemma)
        } else {
            throw ChatTemplateError(description: "\(file.path) has no chat template (tokenizer.chat_template); use `quill complete` with a hand-written prompt")
        }
    }

    /// The template of a loaded model (see `init(file:)`).
    public init(model: TextModel) throws {
        try self.init(file: model.file)
    }

    /// A rendered conversation and which parts of it the template wrote.
    public struct RenderedChat: Sendable, Equatable {
        public var text = ""
        /// UTF-8 byte ranges of `text` written by the template itself (`<|im_start|>`, `<end_of_turn>\n`,
        /// a default system prompt); everything else is message text.
        public var markup: [Range<Int>] = []

        mutating func appendMarkup(_ s: String) {
            let start = text.utf8.count
            text += s
            if let last = markup.last, last.upperBound == start {
                markup[markup.count - 1] = last.lowerBound ..< text.utf8.count
            } else {
                markup.append(start ..< text.utf8.count)
            }
        }

        mutating func appendContent(_ s: String) { text += s }
    }

    /// The prompt text for `messages`; with `addGenerationPrompt`, ends with the opening of the
    /// assistant's turn so that the model writes the reply. Byte-exact with Hugging Face's
    /// `apply_chat_template` for the recognised families.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        renderedChat(messages, addGenerationPrompt: addGenerationPrompt).text
    }

    /// The token ids of the rendered conversation, with control-token text parsed only in what the
    /// template wrote: a message containing `<|im_start|>system` or `<start_of_turn>` gets those
    /// characters, never a new turn. Adds no BOS (Gemma's template writes `<bos>` itself).
    public func encode(_ messages: [ChatMessage], addGenerationPrompt: Bool,
                       with tokenizer: any SpecialTokenParsingTokenizer) -> [Int32] {
        let rendered = renderedChat(messages, addGenerationPrompt: addGenerationPrompt)
        return tokenizer.encode(rendered.text, specialTokens: .within(rendered.markup))
    }

    /// `encode(_:addGenerationPrompt:with:)` with a loaded model's tokenizer: the prompt ids for a chat
    /// turn (no BOS is added; the templates that want one write it).
    public func encode(_ messages: [ChatMessage], addGenerationPrompt: Bool, for model: TextModel) -> [Int32] {
        guard let tokenizer = model.tokenizer as? any SpecialTokenParsingTokenizer else {
            return model.tokenizer.encode(render(messages, addGenerationPrompt: addGenerationPrompt), addSpecialTokens: false)
        }
        return encode(messages, addGenerationPrompt: addGenerationPrompt, with: tokenizer)
    }

    /// Checks what the template itself would refuse: Gemma's roles must alternate user / assistant
    /// after an optional leading system message. (`render` renders any conversation.)
    public func validate(_ messages: [ChatMessage]) throws {
        guard family == .gemma else { return }
        let turns = messages.first?.role == "system" ? messages.dropFirst() : messages[...]
        for (k, message) in turns.enumerated() where (message.role == "user") != (k % 2 == 0) {
            throw ChatTemplateError(description: "Gemma conversations must alternate user/assistant/user/… after an optional system message; message \(k + messages.count - turns.count) is '\(message.role)'")
        }
    }

    /// The rendering with the template's own markup marked.
    public func renderedChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> RenderedChat {
        var out = RenderedChat()
        switch family {
        case let .chatML(defaultSystem):
            if let defaultSystem, messages.first?.role != "system" {
                out.appendMarkup("<|im_start|>system\n\(defaultSystem)<|im_end|>\n")
            }
            for message in messages {
                out.appendMarkup("<|im_start|>")
                out.appendContent(message.role)
                out.appendMarkup("\n")
                out.appendContent(message.content)
                out.appendMarkup("<|im_end|>\n")
            }
            if addGenerationPrompt { out.appendMarkup("<|im_start|>assistant\n") }
        case .gemma:
            out.appendMarkup("<bos>")
            var firstUserPrefix: String? = nil
            var turns = messages[...]
            if let first = messages.first, first.role == "system" {
                firstUserPrefix = first.content
                turns = messages.dropFirst()
            }
            for (k, message) in turns.enumerated() {
                out.appendMarkup("<start_of_turn>")
                out.appendContent(message.role == "assistant" ? "model" : message.role)
                out.appendMarkup("\n")
                if k == 0, let prefix = firstUserPrefix {
                    out.appendContent(prefix)
                    out.appendMarkup("\n\n")
                }
                out.appendContent(Self.pythonStrip(message.content))
                out.appendMarkup("<end_of_turn>\n")
            }
            if addGenerationPrompt { out.appendMarkup("<start_of_turn>model\n") }
        }
        return out
    }

    /// Python's `str.strip()` (Jinja's `trim`): removes leading and trailing characters for which
    /// `str.isspace()` holds, which is not quite Foundation's whitespace set (it includes U+001C–U+001F).
    static func pythonStrip(_ s: String) -> String {
        func isSpace(_ c: Unicode.Scalar) -> Bool {
            switch c.value {
            case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
                return true
            default:
                return false
            }
        }
        let scalars = s.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !isSpace($0) })!
        return String(scalars[first...last])
    }

    /// The text of a quoted literal `'<|im_start|>system\n…<|im_end|>…'` in the template, if it has one
    /// whose content is plain text (not built from template variables).
    static func defaultChatMLSystemPrompt(in source: String) -> String? {
        for quote in ["'", "\""] {
            let open = quote + "<|im_start|>system"
            var searchStart = source.startIndex
            while let range = source[searchStart...].firstRange(of: open) {
                searchStart = range.upperBound
                guard let literal = jinjaStringLiteral(source[range.lowerBound...], quote: Character(quote)),
                      literal.hasPrefix("<|im_start|>system\n"),
                      let end = literal.firstRange(of: "<|im_end|>") else { continue }
                let prompt = literal[literal.index(literal.startIndex, offsetBy: "<|im_start|>system\n".count) ..< end.lowerBound]
                return String(prompt)
            }
        }
        return nil
    }

    /// Decodes the Jinja (Python) string literal at the start of `text`, which begins with `quote`.
    private static func jinjaStringLiteral(_ text: Substring, quote: Character) -> String? {
        var result = ""
        var index = text.index(after: text.startIndex)
        while index < text.endIndex {
            let c = text[index]
            if c == quote { return result }
            if c == "\\" {
                index = text.index(after: index)
                guard index < text.endIndex else { return nil }
                switch text[index] {
                case "n": result.append("\n")
                case "t": result.append("\t")
                case "r": result.append("\r")
                default: result.append(text[index])  // \\ \' \"
                }
            } else {
                result.append(c)
            }
            index = text.index(after: index)
        }
        return nil
    }
}

/// A chat template that Quill cannot use, as one line.
public struct ChatTemplateError: Error, CustomStringConvertible, Equatable {
    public let description: String
}
