import Foundation
import Testing

/// Sizes a user asks for that cannot fit: one line on stderr and exit 1, checked before any work is
/// done (nothing on stdout, not even bench's table header), and the sizes that can fit keep working.
@Suite(.serialized) struct ResourceLimitCommandLineTests {
    let modelPath = ProcessInfo.processInfo.environment["QUILL_MODEL"]
        ?? (NSHomeDirectory() + "/.cache/quill/models/SmolLM2-135M-Instruct.Q4_1.gguf")

    static let seq2seqFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../QuillModelsTests/Fixtures/seq2seq").standardized

    func expectOneLineError(_ result: QuillProcess.Result, mentioning words: [String]) {
        #expect(result.status == 1, "exit \(result.status): \(result.stderr)")
        #expect(result.stdout.isEmpty, "stdout: \(result.text)")
        #expect(result.stderr.split(separator: "\n").count == 1, "stderr: \(result.stderr)")
        for word in words { #expect(result.stderr.contains(word), "stderr: \(result.stderr)") }
    }

    /// SmolLM2's f16 KV cache is 23,040 bytes per position, so each of these asks for terabytes, or
    /// for more positions than an Int counts (the last two).
    @Test(arguments: [
        ["-p", "100000000"], ["-n", "100000000"], ["-d", "100000000"],
        ["-p", "512", "--parallel", "256", "-c", "10000000"],
        ["-p", "512,100000000"],  // a list is checked as a whole before the first test runs
        ["-p", "9223372036854775807"], ["-d", "9223372036854775000", "-p", "9223372036854775000"],
    ])
    func benchRefusesACacheThatCannotFitBeforeRunning(flags: [String]) throws {
        let result = try QuillProcess.run(["bench", "-m", modelPath, "-r", "1", "-t", "1"] + flags, input: Data())
        expectOneLineError(result, mentioning: ["needs a KV cache of", "is available", "lower -p/-n/-d/--parallel"])
    }

    /// A prompt test longer than one pass runs in passes of at most 512 tokens (llama-bench's n_ubatch),
    /// so its activation memory does not grow with -p.
    @Test func benchRunsAPromptLongerThanOnePass() throws {
        let result = try QuillProcess.run(["bench", "-m", modelPath, "-r", "1", "-t", "1", "-p", "600", "-n", "0",
                                           "--parallel", "2", "-o", "jsonl"], input: Data())
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.text.contains("\"n_prompt\": 600") && result.text.contains("\"n_parallel\": 2"), "\(result.text)")
    }

    /// `-n` larger than the context is not allocated up front: generation streams until the context
    /// is full and says so.
    @Test func completeWithAHugeTokenCountStopsAtTheEndOfTheContext() throws {
        let result = try QuillProcess.run(["complete", "-m", modelPath, "-n", "1000000000", "-c", "48", "--temp", "0",
                                           "--ignore-eos", "--ids", "-t", "1"], input: Data("Once upon a time".utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("stopped at the end of the context (48 tokens)"), "\(result.stderr)")
        // The rest of the 48 positions is generated, and one more token (from the last position's logits).
        let promptTokens = try #require(result.stderr.firstMatch(of: /prompt (\d+) tokens/).flatMap { Int($0.1) })
        let ids = result.text.split(separator: " ")
        #expect(ids.count == 48 - promptTokens + 1, "\(ids.count) ids: \(result.stderr)")
    }

    /// Every input line of a batch decodes `--beam` rows of up to `--max-length` positions: 1,024 lines
    /// × 64 beams × 65,537 positions of tiny-marian's decoder cache are 8 TiB (this aborted).
    @Test func translateAndBenchRefuseADecoderCacheThatCannotFit() throws {
        let lines = String(repeating: "Hello\n", count: 1024)
        let result = try QuillProcess.run(["translate", "-m", Self.seq2seqFixtures.appendingPathComponent("tiny-marian").path,
                                           "--batch-size", "1024", "--beam", "64", "--max-length", "65536", "-t", "1"],
                                          input: Data(lines.utf8))
        expectOneLineError(result, mentioning: ["decoder cache of 65536 rows", "is available"])

        // bench checks its largest test before printing the table.
        let bench = try QuillProcess.run(["bench", "-m", Self.seq2seqFixtures.appendingPathComponent("tiny-marian").path,
                                          "--batch", "1024", "--beam", "64", "--max-length", "65536", "--sentences", "1024",
                                          "-r", "1", "-t", "1"], input: Data())
        expectOneLineError(bench, mentioning: ["decoder cache of 65536 rows", "is available"])
    }
}
