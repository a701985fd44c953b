import Foundation
import Testing

/// Ctrl-C (SIGINT) sent to the running binary once it has streamed its first output: it stops,
/// prints the timings so far and exits 130. Bounded by what it produced, never by a clock.
@Suite(.serialized) struct InterruptCommandLineTests {
    let modelPath = ProcessInfo.processInfo.environment["QUILL_MODEL"]
        ?? (NSHomeDirectory() + "/.cache/quill/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../QuillModelsTests/Fixtures/seq2seq").standardized

    struct Interrupted {
        var status: Int32
        /// Standard output read before the signal was sent, and all of it.
        var before: String, stdout: String
        var stderr: String
    }

    /// Runs quill with `input` on stdin (left open afterwards with `keepInputOpen`, as a terminal would),
    /// sends SIGINT as soon as stdout holds `lines` newline-terminated lines (or, with `lines` 0, any
    /// byte), then reads to the end.
    func interrupt(_ arguments: [String], input: String, keepInputOpen: Bool = false, afterLines lines: Int = 0) throws -> Interrupted {
        // The writer may still be blocked on a full pipe when quill exits: an EPIPE error, not a signal.
        signal(SIGPIPE, SIG_IGN)
        let process = Process()
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.executableURL = QuillProcess.executable
        process.arguments = arguments
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        let writer = Thread {
            try? stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
            if !keepInputOpen { try? stdin.fileHandleForWriting.close() }
        }
        writer.start()
        let errors = ErrorReader(stderr.fileHandleForReading)
        var received = Data()
        let reader = stdout.fileHandleForReading
        while true {
            let chunk = reader.availableData
            if chunk.isEmpty { break }  // the process ended before it was interrupted
            received += chunk
            let newlines = received.filter { $0 == UInt8(ascii: "\n") }.count
            if lines == 0 ? !received.isEmpty : newlines >= lines { break }
        }
        let before = String(decoding: received, as: UTF8.self)
        kill(process.processIdentifier, SIGINT)
        received += reader.readDataToEndOfFile()
        process.waitUntilExit()
        if keepInputOpen { try? stdin.fileHandleForWriting.close() }
        return Interrupted(status: process.terminationStatus, before: before,
                           stdout: String(decoding: received, as: UTF8.self), stderr: errors.text())
    }

    /// The `generated N tokens` count of a timing line.
    func generatedTokens(_ stderr: String) -> Int? {
        guard let range = stderr.range(of: #"generated (\d+) tokens"#, options: .regularExpression) else { return nil }
        return Int(stderr[range].split(separator: " ")[1])
    }

    @Test func completeStopsWithTheTimingsSoFar() throws {
        let result = try interrupt(["complete", "-m", modelPath, "-n", "100000", "--ignore-eos", "--temp", "0", "--ids"],
                                   input: "Once upon a time")
        #expect(result.status == 130, "\(result.stderr)")
        let seen = result.before.split(separator: " ").count
        let generated = try #require(generatedTokens(result.stderr), "\(result.stderr)")
        // Tokens produced after the signal: the one being computed, plus any the reader had not yet
        // read when it sent the signal. Uninterrupted there would be 100,000.
        #expect(generated >= seen && generated <= seen + 32, "\(seen) seen, \(generated) generated")
        #expect(result.stdout.split(separator: " ").count == generated || result.stdout.split(separator: " ").count == generated - 1)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    @Test func chatStopsWithTheTimingsSoFar() throws {
        let result = try interrupt(["chat", "-m", modelPath, "--temp", "0", "-n", "100000"],
                                   input: "Write a very long story about a dragon.\n", keepInputOpen: true)
        #expect(result.status == 130, "\(result.stderr)")
        // Interrupted mid-reply the turn's timings are printed; after the reply, quill was waiting for input.
        #expect(result.stderr.contains("quill: turn 1") || result.before.hasSuffix("\n"), "\(result.stderr)")
    }

    @Test func translateStopsBetweenDecoderStepsWithTheTimingsSoFar() throws {
        let model = Self.fixtures.appendingPathComponent("tiny-marian").path
        // 20,000 lines in batches of one with four beams would take minutes: the signal comes first.
        let input = String(repeating: "Hello world, this is a sentence to translate.\n", count: 20_000)
        let result = try interrupt(["translate", "-m", model, "--beam", "4", "--batch-size", "1"], input: input, afterLines: 1)
        #expect(result.status == 130, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).count - 1
        let range = try #require(result.stderr.range(of: #"\| (\d+) sentences"#, options: .regularExpression), "\(result.stderr)")
        let reported = Int(result.stderr[range].split(separator: " ")[1])!
        #expect(lines >= 1 && lines < 20_000 && reported == lines, "\(lines) lines, \(reported) reported")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }
}
