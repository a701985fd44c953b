import ArgumentParser
import FoundationEssentials
import QuillModels

/// Options shared by the commands that load a GGUF model (`quill complete`, `chat`, `bench`, …, and `quill-server`).
public struct ModelOptions: ParsableArguments {
    @Option(name: [.short, .customLong("model")], help: "GGUF model file, or a name Weights/fetch knows: smollm2, gemma3-270m, qwen2.5-coder-0.5b (default: $QUILL_MODEL or smollm2).")
    public var model: String?

    @Option(name: [.short, .customLong("threads")], help: "Threads; the default is the number of cores.")
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Compute path: 'quantized' (fast: 8-bit activations against the quantised weights) or 'f32' (exactly dequantised weights, f32 arithmetic; the reference).")
    public var precision: ComputePrecision = .quantized

    public init() {}

    /// The model file `-m` names (a path, a short name, or the default), not yet checked to exist.
    public var modelPath: String { ModelLocator.path(for: model) }

    public func validate() throws {
        guard threads >= 1 && threads <= 256 else { throw ValidationError("--threads must be between 1 and 256") }
    }

    /// Loads the model `-m` names with the thread count and compute path given.
    public func load(maxBatch: Int = 512) throws -> TextModel {
        return try TextModel(path: try ModelLocator.resolve(model), threads: threads, precision: precision, maxBatch: maxBatch)
    }
}

extension ComputePrecision: ExpressibleByArgument {}

/// An error that the command line reports as one line and exit code 1.
public struct CommandError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs `body`; any error becomes `quill: <message>` on stderr and exit code 1 (no stack trace).
public func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch { throw reported(error) }
}

/// The same for an async body (`quill-server`'s command).
public func reportingErrors(_ body: () async throws -> Void) async throws {
    do { try await body() } catch { throw reported(error) }
}

/// An `ExitCode` as it is; any other error printed as one line, then exit code 1.
private func reported(_ error: any Error) -> any Error {
    if error is ExitCode { return error }
    StandardError.write("quill: \(error)\n")
    return ExitCode(1)
}
