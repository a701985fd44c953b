import Foundation
import Testing

/// Runs the `quill` executable that SwiftPM built next to the test bundle.
struct QuillProcess {
    static var executable: URL {
        // Tests run from <build>/<config>/QuillPackageTests.xctest; the executable sits beside it.
        var directory = Bundle.main.bundleURL
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("quill").path),
              directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("quill")
    }

    struct Result {
        var status: Int32
        var stdout: Data
        var stderr: String
        var text: String { String(decoding: stdout, as: UTF8.self) }
    }

    /// Runs quill with `arguments`, `input` on stdin; `environment` entries are added to ours.
    static func run(_ arguments: [String], input: Data, environment: [String: String] = [:],
                    shellPipeline: String? = nil) throws -> Result {
        let process = Process()
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        if let pipeline = shellPipeline {
            // e.g. `"$QUILL" complete | head -c 10`: quill's stdout goes to another process.
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = ["-c", pipeline]
        } else {
            process.executableURL = executable
            process.arguments = arguments
        }
        process.environment = ProcessInfo.processInfo.environment
            .merging(environment) { $1 }
            .merging(["QUILL": executable.path]) { $1 }
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Write and close stdin off this thread so a large input cannot deadlock against full pipes.
        let writer = Thread {
            try? stdin.fileHandleForWriting.write(contentsOf: input)
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        // Drain stderr on another thread while this one drains stdout, so neither pipe fills up.
        let errorReader = ErrorReader(stderr.fileHandleForReading)
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: out, stderr: errorReader.text())
    }
}

/// Reads a pipe to its end on a thread of its own.
final class ErrorReader: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }.start()
    }

    func text() -> String {
        done.wait()
        return String(decoding: data, as: UTF8.self)
    }
}

@Suite(.serialized) struct CommandLineTests {
    let modelPath = ProcessInfo.processInfo.environment["QUILL_MODEL"]
        ?? (NSHomeDirectory() + "/.cache/quill/models/SmolLM2-135M-Instruct.Q4_1.gguf")

    func oneLineError(_ result: QuillProcess.Result, mentioning words: [String]) {
        #expect(result.status != 0)
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)")
        for word in words { #expect(result.stderr.contains(word), "stderr: \(result.stderr)") }
    }

    @Test func emptyStdinIsAClearError() throws {
        let result = try QuillProcess.run(["complete", "-m", modelPath], input: Data())
        oneLineError(result, mentioning: ["empty"])
    }

    @Test func missingModelIsAClearError() throws {
        let result = try QuillProcess.run(["complete", "-m", "/nonexistent/model.gguf"], input: Data("Hi".utf8))
        oneLineError(result, mentioning: ["/nonexistent/model.gguf"])
    }

    @Test func aFileThatIsNotGGUFIsAClearError() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("not-a-model-\(getpid()).gguf")
        try Data("this is not a model file at all".utf8).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let result = try QuillProcess.run(["complete", "-m", path.path], input: Data("Hi".utf8))
        oneLineError(result, mentioning: [path.path])
    }

    @Test func truncatedModelIsAClearError() throws {
        // The first 1 MB of the real file: a valid header whose tensor data runs past the end.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("truncated-\(getpid()).gguf")
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: modelPath))
        try handle.readData(ofLength: 1 << 20).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let result = try QuillProcess.run(["complete", "-m", path.path], input: Data("Hi".utf8))
        oneLineError(result, mentioning: [path.path])
    }

    @Test func promptLongerThanTheContextNamesBothLengths() throws {
        let prompt = String(repeating: " word", count: 100)  // 100 tokens
        let result = try QuillProcess.run(["complete", "-m", modelPath, "-c", "32"], input: Data(prompt.utf8))
        oneLineError(result, mentioning: ["100 tokens", "32"])
    }

    @Test func aContextThatCannotFitInMemoryIsOneLine() throws {
        // 10^8 positions of SmolLM2's f16 KV cache are 2 TiB: more than any machine here has.
        for command in ["complete", "chat"] {
            let result = try QuillProcess.run([command, "-m", modelPath, "-c", "100000000"], input: Data("Hello".utf8))
            oneLineError(result, mentioning: ["KV cache of 100000000 tokens", "-c/--ctx-size"])
        }
    }

    @Test func invalidUTF8IsRejectedClearly() throws {
        let result = try QuillProcess.run(["complete", "-m", modelPath], input: Data([0x48, 0x69, 0xFF, 0xFE, 0x20]))
        oneLineError(result, mentioning: ["UTF-8"])
    }

    @Test func closedStdoutExitsQuietly() throws {
        let result = try QuillProcess.run([], input: Data("Once upon a time".utf8),
                                          shellPipeline: "set -o pipefail; \"$QUILL\" complete -m '\(modelPath)' -n 200 --ignore-eos 2>/tmp/quill-closed-stderr | head -c 10; echo \" status=$?\"")
        let stderr = (try? String(contentsOfFile: "/tmp/quill-closed-stderr", encoding: .utf8)) ?? ""
        #expect(result.text.hasSuffix(" status=141\n"), "\(result.text)")
        #expect(!stderr.contains("Fatal") && !stderr.contains("Crash") && !stderr.contains("backtrace"), "\(stderr)")
    }

    @Test func greedyIdsMatchTheReferenceEngine() throws {
        // greedy-00 of the reference pack, f32 path: transformers' greedy ids, ending with EOS (2).
        let result = try QuillProcess.run(["complete", "-m", modelPath, "--precision", "f32", "--temp", "0", "--ids", "-n", "48"],
                                          input: Data("The capital of France is".utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.text == "7042 30 198 198 504 2988 314 42 216 34 32 33 40 29 32 33 29 34 34 216 33 34 42 33 34 42 37 35 30 2\n")
    }

    @Test func streamsTextAndReportsTimings() throws {
        let result = try QuillProcess.run(["complete", "-m", modelPath, "--precision", "f32", "--temp", "0", "-n", "48"],
                                          input: Data("The capital of France is".utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.text == " Paris.\n\nThe answer is: 2018-01-22 12:12:53.")
        #expect(result.stderr.contains("prompt 5 tokens") && result.stderr.contains("generated 30 tokens"))
    }

    @Test func tokenizePrintsIdsWithSpecialTokensParsed() throws {
        let result = try QuillProcess.run(["tokenize", "-m", modelPath], input: Data("<|im_start|>user".utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.text == "1 4093\n")
    }

    @Test func perplexityWithAnOverflowingChunkCountScoresTheWholeFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("quill-ppl-\(getpid()).txt")
        try Data("a b c d e f g h i j k l m n o p\n".utf8).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        // chunks × ctx-size overflows Int: it used to trap.
        let result = try QuillProcess.run(["perplexity", "-m", modelPath, "-f", path.path, "-c", "4",
                                           "--chunks", "4611686018427387904", "-t", "1"], input: Data())
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.text.hasPrefix("windows "), "\(result.text)")
    }
}

/// `-m` takes the short names `Weights/fetch` knows as well as paths.
@Suite struct ModelNameCommandLineTests {
    @Test func aKnownNameThatIsNotFetchedNamesTheFetchCommand() throws {
        let emptyHome = FileManager.default.temporaryDirectory.appendingPathComponent("quill-empty-home-\(getpid())")
        try FileManager.default.createDirectory(at: emptyHome, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: emptyHome) }
        for command in ["complete", "tokenize"] {
            let result = try QuillProcess.run([command, "-m", "qwen2.5-coder-0.5b"], input: Data("Hi".utf8),
                                              environment: ["QUILL_HOME": emptyHome.path])
            #expect(result.status != 0 && result.stdout.isEmpty)
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
            #expect(result.stderr.contains("Weights/fetch qwen2.5-coder-0.5b"), "\(result.stderr)")
        }
    }

    @Test func aNameResolvesToTheFetchedFile() throws {
        // The default model under its short name tokenizes exactly as under its path.
        let home = ProcessInfo.processInfo.environment["QUILL_HOME"] ?? (NSHomeDirectory() + "/.cache/quill")
        let path = home + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        let byPath = try QuillProcess.run(["tokenize", "-m", path], input: Data("Hello, world".utf8))
        let byName = try QuillProcess.run(["tokenize", "-m", "smollm2"], input: Data("Hello, world".utf8))
        #expect(byPath.status == 0 && !byPath.stdout.isEmpty, "\(byPath.stderr)")
        #expect(byName.status == 0 && byName.stdout == byPath.stdout, "\(byName.stderr)")
    }
}
