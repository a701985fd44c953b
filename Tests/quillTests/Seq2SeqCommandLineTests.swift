import Foundation
import Testing

/// `quill translate` / `quill summarize` run as a user would, on the tiny reference checkpoints
/// (random weights, real tokenizers: the text is nonsense but must equal transformers' output).
@Suite(.serialized) struct Seq2SeqCommandLineTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../QuillModelsTests/Fixtures/seq2seq").standardized

    func model(_ name: String) -> String { Self.fixtures.appendingPathComponent(name).path }

    func cases(_ name: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: model(name) + "/cases.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    @Test(arguments: ["tiny-marian", "tiny-bart"])
    func translateWritesOneLinePerSourceInOrder(name: String) throws {
        let all = try cases(name)
        // An empty line in the middle must come back as an empty line, order kept.
        let sources = all.prefix(3).map { $0["source_text"] as! String }
        let input = [sources[0], "", sources[1], sources[2]].joined(separator: "\n") + "\n"
        let result = try QuillProcess.run(["translate", "-m", model(name)], input: Data(input.utf8))
        #expect(result.status == 0, "\(result.stderr)")
        let expected = all.prefix(3).map { $0["greedy_text"] as! String }
        #expect(result.text == [expected[0], "", expected[1], expected[2]].joined(separator: "\n") + "\n")
    }

    @Test func beamNBestIdsMatchTransformers() throws {
        let first = try cases("tiny-marian")[0]
        let result = try QuillProcess.run(["translate", "-m", model("tiny-marian"), "--beam", "4", "--n-best", "4", "--ids"],
                                          input: Data((first["source_text"] as! String + "\n").utf8))
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        let expected = (first["beam_all"] as! [[String: Any]]).map { hypothesis in
            (hypothesis["ids"] as! [Int]).dropFirst().map(String.init).joined(separator: " ")  // no decoder start
        }
        #expect(lines.count == 4)
        for (line, ids) in zip(lines, expected) {
            #expect(line.split(separator: "\t").first.map(String.init) == ids)
        }
    }

    @Test func summarizeAddsTheT5PrefixItself() throws {
        let summarized = try cases("tiny-t5").first { ($0["source_text"] as! String).hasPrefix("summarize: ") }!
        let document = String((summarized["source_text"] as! String).dropFirst("summarize: ".count))
        let result = try QuillProcess.run(["summarize", "-m", model("tiny-t5")], input: Data(document.utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.text == (summarized["greedy_text"] as! String) + "\n")
    }

    @Test func aFolderWithoutConfigIsAOneLineError() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("quill-empty-\(getpid())")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        let result = try QuillProcess.run(["translate", "-m", empty.path], input: Data("Hello\n".utf8))
        #expect(result.status != 0 && result.stdout.isEmpty)
        #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.contains("config.json"), "\(result.stderr)")
    }

    /// A copy of tiny-marian whose config.json sets `key` to `value` (other files linked).
    func editedMarian(_ key: String, _ value: Int) throws -> URL {
        let source = URL(fileURLWithPath: model("tiny-marian"))
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("quill-config-\(getpid())-\(key)-\(value)")
        try? FileManager.default.removeItem(at: copy)
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where name != "config.json" {
            try FileManager.default.createSymbolicLink(at: copy.appendingPathComponent(name),
                                                       withDestinationURL: source.appendingPathComponent(name))
        }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
        config[key] = value
        try JSONSerialization.data(withJSONObject: config).write(to: copy.appendingPathComponent("config.json"))
        return copy
    }

    /// The values that once corrupted the heap (0), crashed (-1) or aborted in an allocation (10¹² layers).
    @Test(arguments: [("max_position_embeddings", 0), ("max_position_embeddings", -1), ("decoder_layers", 1_000_000_000_000)])
    func hostileConfigValuesAreOneLineErrors(key: String, value: Int) throws {
        let folder = try editedMarian(key, value)
        defer { try? FileManager.default.removeItem(at: folder) }
        let result = try QuillProcess.run(["translate", "-m", folder.path], input: Data("Hello\n".utf8))
        #expect(result.status == 1 && result.stdout.isEmpty, "\(result.status) \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.contains("\(key) is \(value)"), "\(result.stderr)")
    }

    @Test(arguments: [["--max-length", "100000000"], ["--beam", "100000"], ["--batch-size", "0"]])
    func oversizedSearchFlagsAreOneLineErrors(flags: [String]) throws {
        let result = try QuillProcess.run(["translate", "-m", model("tiny-marian")] + flags, input: Data("Hello\n".utf8))
        #expect(result.status != 0 && result.stdout.isEmpty, "\(result.status)")
        #expect(result.stderr.contains(flags[0]), "\(result.stderr)")
    }

    @Test(arguments: [["-r", "1000000000000"], ["--batch", "100000000"], ["--sentences", "1000000000000"], ["--max-length", "-1"]])
    func benchRefusesOversizedCounts(flags: [String]) throws {
        let result = try QuillProcess.run(["bench", "-m", model("tiny-marian")] + flags, input: Data())
        #expect(result.status != 0 && result.stdout.isEmpty, "\(result.status)")
        #expect(result.stderr.contains(flags[0] == "-r" ? "--repetitions" : flags[0]), "\(result.stderr)")
    }

    @Test func tokenizeReadsHuggingFaceFolders() throws {
        let first = try cases("tiny-bart")[0]
        let result = try QuillProcess.run(["tokenize", "-m", model("tiny-bart")], input: Data((first["source_text"] as! String).utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.text == (first["source_ids"] as! [Int]).map(String.init).joined(separator: " ") + "\n")
    }
}
