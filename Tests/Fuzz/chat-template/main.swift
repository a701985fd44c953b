import Foundation
import QuillModels

// Chat-template detection (tokenizer.chat_template text) and rendering a short conversation.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChatTemplate(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let source = String(decoding: input(data, size), as: UTF8.self)
    guard let template = try? ChatTemplate(jinja: source) else { return 0 }
    _ = template.render([.system("Be brief."), .user(sampleText), .assistant("Hi"), .user("Again")], addGenerationPrompt: true)
    _ = template.render([.user(sampleText)], addGenerationPrompt: false)
    return 0
}
