import Foundation

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
/// * ChatML (`<|im_start|>role\ncontent<|im_end|>\n`, SmolLM2, Qwen, …). A default system prompt that
///   the template writes when the conversation does not start with one (SmolLM2: "You are a helpful AI
///   assistant named SmolLM, trained by Hugging Face") is read from the template's string literal.
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: Sendable, Equatable {
        case chatML(defaultSystemPrompt: String?)
    }

    public let family: Family

    public init(family: Family) { self.family = family }

    /// Recognises the family of a Jinja chat template.
    public init(jinja source: String) throws {
        if source.contains("<|im_start|>") && source.contains("<|im_end|>") {
            family = .chatML(defaultSystemPrompt: ChatTemplate.defaultChatMLSystemPrompt(in: source))
            return
        }
        let start = source.prefix(60).replacingOccurrences(of: "\n", with: "\\n")
        throw ChatTemplateError(description: "unsupported chat template (Quill recognises the ChatML family, <|im_start|>role … <|im_end|>); the template starts with: \(start)")
    }

    /// The template of a loaded model (`tokenizer.chat_template`).
    public init(model: TextModel) throws {
        guard let source = model.file.optionalString("tokenizer.chat_template") else {
            throw ChatTemplateError(description: "\(model.file.path) has no chat template (tokenizer.chat_template); use `quill complete` with a hand-written prompt")
        }
        try self.init(jinja: source)
    }

    /// The prompt text for `messages`; with `addGenerationPrompt`, ends with the opening of the
    /// assistant's turn so that the model writes the reply. Byte-exact with Hugging Face's
    /// `apply_chat_template` for the recognised families.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        switch family {
        case let .chatML(defaultSystem):
            var text = ""
            if let defaultSystem, messages.first?.role != "system" {
                text += "<|im_start|>system\n\(defaultSystem)<|im_end|>\n"
            }
            for message in messages {
                text += "<|im_start|>\(message.role)\n\(message.content)<|im_end|>\n"
            }
            if addGenerationPrompt { text += "<|im_start|>assistant\n" }
            return text
        }
    }

    /// The text of a quoted literal `'<|im_start|>system\n…<|im_end|>…'` in the template, if it has one
    /// whose content is plain text (not built from template variables).
    static func defaultChatMLSystemPrompt(in source: String) -> String? {
        for quote in ["'", "\""] {
            let open = quote + "<|im_start|>system"
            var searchStart = source.startIndex
            while let range = source.range(of: open, range: searchStart ..< source.endIndex) {
                searchStart = range.upperBound
                guard let literal = jinjaStringLiteral(source[range.lowerBound...], quote: Character(quote)),
                      literal.hasPrefix("<|im_start|>system\n"),
                      let end = literal.range(of: "<|im_end|>") else { continue }
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
