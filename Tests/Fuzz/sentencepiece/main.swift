import Foundation
import QuillTokenizers

// SentencePiece model protobuf: parse, build the tokenizer, encode and decode sample text.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSentencePiece(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let proto = try? SentencePieceModelProto(bytes: input(data, size)),
          let tokenizer = try? SentencePieceTokenizer(proto: proto, addBOS: true, addEOS: true) else { return 0 }
    let ids = tokenizer.encode(sampleText, addSpecialTokens: true)
    _ = tokenizer.decode(ids, skipSpecialTokens: false)
    for id in ids { _ = tokenizer.tokenBytes(id) }
    return 0
}
