import Foundation
import QuillTokenizers

// Streaming UTF-8 detokenizer: the input bytes, cut into chunks whose lengths the first byte seeds, must
// decode to exactly what decoding them at once gives (a difference is reported as a crash).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDetokenizer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = input(data, size)
    guard let seed = bytes.first else { return 0 }
    var state = UInt32(seed) | 1
    var detokenizer = StreamingDetokenizer()
    var text = "", i = 1
    while i < bytes.count {
        state = state &* 1_103_515_245 &+ 12_345
        let length = Int(state >> 16) % 5
        let end = min(bytes.count, i + length)
        text += detokenizer.append(Array(bytes[i..<end]))
        i = end
    }
    text += detokenizer.finish()
    let whole = String(decoding: bytes.dropFirst(), as: UTF8.self)
    if text != whole { fatalError("streamed text differs from decoding at once") }
    return 0
}
