import Foundation
import QuillModels
import Testing

/// The real Gemma 3 and Qwen2.5 GGUFs (`Weights/fetch gemma3-270m qwen2.5-coder-0.5b`) and the reference
/// data copied from their packs (`shared/reference/<name>/`, under `Fixtures/<name>/`).
enum GGUFModelPack: String, CaseIterable, CustomStringConvertible {
    case gemma3 = "gemma3-270m"
    case qwen2 = "qwen2.5-coder-0.5b"

    var description: String { rawValue }

    func url(_ file: String) -> URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures/\(rawValue)/\(file)")
    }

    func jsonLines(_ file: String) throws -> [[String: Any]] {
        let text = try String(contentsOf: url(file), encoding: .utf8)
        return try text.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    func json(_ file: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(file))) as! [String: Any]
    }

    /// The fetched model file; a missing file is a recorded failure naming the fetch command.
    func modelPath() throws -> String {
        let path = ModelLocator.path(of: ModelLocator.knownModel(named: rawValue)!)
        guard FileManager.default.fileExists(atPath: path) else {
            Issue.record("\(rawValue) not found at \(path): run `Weights/fetch \(rawValue)` first")
            throw CancellationError()
        }
        return path
    }

    /// The file's metadata only (its tensors need not be computable to tokenize).
    func metadata() throws -> GGUFFile {
        try GGUFFile(path: try modelPath(), tensorInfos: .skip)
    }
}
