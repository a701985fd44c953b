import Foundation
import QuillTokenizers

// tokenizer.json (byte-level BPE): load, then encode and decode sample text, and spell the first ids.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizerJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let url = writeScratch("tokenizer.json", input(data, size)[...])
    guard let tokenizer = try? BPETokenizer(tokenizerJSON: url) else { return 0 }
    for special in [true, false] {
        let ids = tokenizer.encode(sampleText, parseSpecialTokens: special)
        _ = tokenizer.decode(ids)
    }
    for id in 0..<Int32(min(tokenizer.vocabularySize, 64)) { _ = tokenizer.tokenBytes(id) }
    return 0
}
