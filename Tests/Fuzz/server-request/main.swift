import Foundation

// The server's request decoder: any body gives a request or a 400-style APIError, never a trap.
// (Sources/QuillServer/{APIError,JSONValue,CompletionRequest}.swift are compiled into this harness:
// they need no HTTP, so the harness does not have to build Hummingbird.)
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzServerRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let body = Data(input(data, size))
    for kind in [CompletionRequest.Kind.chat, .completion] {
        do {
            let request = try CompletionRequest(body: body, kind: kind)
            _ = request.choiceSampling.map(\.processors)
        } catch {
            precondition(error.status == 400 && !error.message.isEmpty, "a refused body is a 400 with a message")
            _ = error.json
        }
    }
    return 0
}
