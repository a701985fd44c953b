import Foundation
import QuillModels
import Testing

@Suite struct ChatTemplateTests {
    typealias Case = ChatTemplateCase

    /// The reference pack's conversations, rendered by transformers' `apply_chat_template` (jinja2).
    func cases() throws -> (template: String, cases: [Case]) {
        try ChatTemplateCase.load(ReferenceData.json("chat_template_cases.json"))
    }

    @Test func rendersTheReferenceConversationsByteExactly() throws {
        let (source, cases) = try cases()
        let template = try ChatTemplate(jinja: source)
        #expect(template.family == .chatML(defaultSystemPrompt: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        #expect(cases.count == 4)
        for c in cases {
            let rendered = template.render(c.messages, addGenerationPrompt: c.addGenerationPrompt)
            #expect(Array(rendered.utf8) == Array(c.rendered.utf8), "\(c.name)")
        }
    }

    @Test func theModelsOwnTemplateGivesTheReferenceIds() throws {
        let model = try RealModel.load(precision: .quantized)
        let template = try ChatTemplate(model: model)
        for c in try cases().cases {
            let ids = model.encodePrompt(template.render(c.messages, addGenerationPrompt: c.addGenerationPrompt))
            #expect(ids == c.ids, "\(c.name)")
            // The markup-only path gives the same ids when no message spells a marker.
            #expect(template.encode(c.messages, addGenerationPrompt: c.addGenerationPrompt, for: model) == c.ids, "\(c.name)")
        }
    }

    @Test func chatMLWithoutADefaultSystemPromptAddsNone() throws {
        let source = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        let template = try ChatTemplate(jinja: source)
        #expect(template.family == .chatML(defaultSystemPrompt: nil))
        #expect(template.render([.user("Hi")], addGenerationPrompt: true) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test func escapedNewlinesInTheLiteralAreDecoded() throws {
        // The same default system prompt written with a `\n` escape instead of a raw newline.
        let source = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nBe kind.<|im_end|>\\n' }}{% endif %}<|im_end|>"
        #expect(try ChatTemplate(jinja: source).family == .chatML(defaultSystemPrompt: "Be kind."))
    }

    @Test func unknownTemplatesAreAClearError() {
        let llama3 = "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
        do {
            _ = try ChatTemplate(jinja: llama3)
            Issue.record("accepted an unknown template")
        } catch let error as ChatTemplateError {
            #expect(error.description.contains("unsupported chat template"))
            #expect(error.description.contains("ChatML"))
            #expect(!error.description.contains("\n"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}

/// One conversation of a pack's `chat_template_cases.json`.
struct ChatTemplateCase {
    var name: String
    var messages: [ChatMessage]
    var addGenerationPrompt: Bool
    var rendered: String
    var ids: [Int32]

    /// The template source and the cases of a parsed `chat_template_cases.json`.
    static func load(_ json: [String: Any]) -> (template: String, cases: [ChatTemplateCase]) {
        let cases = (json["cases"] as! [[String: Any]]).map { c in
            ChatTemplateCase(name: c["name"] as! String,
                             messages: (c["messages"] as! [[String: String]]).map { ChatMessage(role: $0["role"]!, content: $0["content"]!) },
                             addGenerationPrompt: c["add_generation_prompt"] as! Bool,
                             rendered: c["rendered"] as! String,
                             ids: ReferenceData.ids(c["ids"]))
        }
        return (json["template"] as! String, cases)
    }
}
