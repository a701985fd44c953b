import FoundationEssentials
import QuillTokenizers

/// Resolves what a user passes to `-m`: a short model name that `Weights/fetch` knows (`smollm2`,
/// `gemma3-270m`, `qwen2.5-coder-0.5b`, `whisper-base`), a file or folder path, or nothing (the default
/// model).
///
/// Names resolve to where `Weights/fetch` stores the model: `${QUILL_HOME:-~/.cache/quill}/models/`.
/// A file or folder that exists under the given spelling wins over a name, so a path never changes
/// meaning; a known name that is not fetched is a one-line error naming the fetch command.
public enum ModelLocator {
    /// A model `Weights/fetch` downloads.
    public struct KnownModel: Sendable, Equatable {
        /// The short name (`Weights/fetch NAME`, `-m NAME`).
        public let name: String
        /// The file (or folder) under the models directory.
        public let storedAs: String
        /// What `-m` loads: `storedAs`, or for a folder model the file inside it whose presence says it is fetched.
        let marker: String?
    }

    /// The models `Weights/fetch` knows, in its order (keep both lists in step).
    public static let known: [KnownModel] = [
        KnownModel(name: "smollm2", storedAs: DefaultModel.fileName, marker: nil),
        KnownModel(name: "gemma3-270m", storedAs: "gemma-3-270m-q4_k_m.gguf", marker: nil),
        KnownModel(name: "qwen2.5-coder-0.5b", storedAs: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", marker: nil),
        KnownModel(name: "whisper-base", storedAs: "whisper-base", marker: "model.bin"),
    ]

    /// `${QUILL_HOME:-~/.cache/quill}/models`, where `Weights/fetch` puts everything.
    public static var modelsDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        let home = environment["QUILL_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? FileManager.default.homeDirectoryForCurrentUser.path.appendingPathComponent(".cache/quill")
        return home.appendingPathComponent("models")
    }

    /// The known model with this short name, if any.
    public static func knownModel(named name: String) -> KnownModel? {
        known.first { $0.name == name }
    }

    /// Where the named model is (or would be, once fetched).
    public static func path(of model: KnownModel) -> String {
        modelsDirectory.appendingPathComponent(model.storedAs)
    }

    /// The path `argument` stands for, without checking that it exists: nil gives the default model
    /// (`DefaultModel.path`), an existing path itself, a known name its fetched location, anything else
    /// itself (so that the caller's "no such file" names what the user typed).
    public static func path(for argument: String?) -> String {
        guard let argument else { return DefaultModel.path }
        if FileManager.default.fileExists(atPath: argument) { return argument }
        if let model = knownModel(named: argument) { return path(of: model) }
        return argument
    }

    /// The path `argument` stands for (see `path(for:)`), checked to exist.
    /// - Throws: `ModelLocatorError` naming `Weights/fetch NAME` for a known model that is not fetched,
    ///   or the missing path otherwise.
    public static func resolve(_ argument: String?) throws -> String {
        let resolved = path(for: argument)
        let name = argument ?? "smollm2"
        if let model = knownModel(named: name), argument == nil || !FileManager.default.fileExists(atPath: name) {
            // The default model can also come from $QUILL_MODEL; only the fetched location gets the fetch advice.
            let isFetchedLocation = resolved == path(of: model)
            let checked = model.marker.map { resolved.appendingPathComponent($0) } ?? resolved
            if isFetchedLocation && !FileManager.default.fileExists(atPath: checked) {
                throw ModelLocatorError(description: "model '\(model.name)' is not fetched (expected at \(resolved)); run Weights/fetch \(model.name)")
            }
        }
        guard FileManager.default.fileExists(atPath: resolved) else {
            let names = known.map(\.name).joined(separator: ", ")
            throw ModelLocatorError(description: "\(resolved): no such model file or folder (short names: \(names))")
        }
        return resolved
    }
}

/// A model that `-m` cannot find, as one line.
public struct ModelLocatorError: Error, CustomStringConvertible, Equatable {
    public let description: String
}
