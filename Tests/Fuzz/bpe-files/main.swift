import Foundation
import QuillTokenizers

// vocab.json + merges.txt (RoBERTa/BART/GPT-2 layout; input = the two files joined by the separator).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBPEFiles(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let parts = split(input(data, size), into: 2)
    // Ids from 10⁴ up to the limit (2²⁴) are valid and only make the vocabulary big and slow to build.
    if containsNumber(in: 10_000 ..< VocabularyLimits.maximumSize, parts[0]) { return 0 }
    writeScratch("vocab.json", parts[0])
    writeScratch("merges.txt", parts[1])
    guard let tokenizer = try? TokenizerLoader.load(directory: scratch) else { return 0 }
    let ids = tokenizer.encode(sampleText, addSpecialTokens: true)
    _ = tokenizer.decode(ids, skipSpecialTokens: false)
    _ = tokenizer.decode(ids, skipSpecialTokens: true)
    return 0
}
