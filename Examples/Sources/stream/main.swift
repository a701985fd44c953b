import Quill

// Streams a completion from the default model (run `Weights/fetch` once first).
let model = try TextModel(path: DefaultModel.path, threads: 2)
for try await case .text(let piece) in model.generate("Once upon a time", .init(maxNewTokens: 32)) { print(piece, terminator: "") }
print()
