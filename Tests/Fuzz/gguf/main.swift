import Foundation
import QuillGeneration
import QuillModels

// GGUF reader and model binding: parse, build the tokenizer, bind the weights, run one forward pass.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let url = writeScratch("model.gguf", input(data, size)[...])
    guard let file = try? GGUFFile(path: url.path) else { return 0 }
    _ = file.tensors.count
    _ = try? GGUFTokenizer.load(from: file)
    guard let model = try? TextModel(path: url.path, threads: 1) else { return 0 }
    let ids = model.encodePrompt(sampleText)
    _ = model.bytes(of: ids)
    guard let cache = try? model.model.makeCache(capacity: 16) else { return 0 }
    _ = try? model.model.forward(Array(ids.prefix(4)), cache: cache, logits: .last)
    return 0
}
