import Foundation
import Testing

/// `quill transcribe` run as a user would, on the reference pack's clips (copied into the model tests'
/// fixtures) with the real whisper-base from `Weights/fetch whisper-base`.
@Suite(.serialized) struct TranscribeCommandLineTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../QuillModelsTests/Fixtures/whisper").standardized

    func clip(_ name: String) -> String { Self.fixtures.appendingPathComponent(name + ".wav").path }

    func requireModel() throws {
        let home = ProcessInfo.processInfo.environment["QUILL_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() as NSString).appendingPathComponent(".cache/quill")
        guard FileManager.default.fileExists(atPath: home + "/models/whisper-base/model.bin") else {
            Issue.record("whisper-base not found under \(home)/models: run `Weights/fetch whisper-base` first")
            throw CancellationError()
        }
    }

    func reference(_ clip: String, _ key: String) throws -> [String: Any] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("ct2_outputs.json"))) as! [String: Any]
        return (json[clip] as! [String: Any])[key] as! [String: Any]
    }

    @Test func transcribesWithDetectedLanguageOneLinePerFile() throws {
        try requireModel()
        let result = try QuillProcess.run(["transcribe", "-m", "whisper-base", clip("en"), clip("de"), "-t", "2"], input: Data())
        #expect(result.status == 0, "\(result.stderr)")
        let expected = [try reference("en", "transcribe_beam5")["text"] as! String, try reference("de", "transcribe_beam5")["text"] as! String]
        #expect(result.text == expected.joined(separator: "\n") + "\n")
        #expect(result.stderr.contains("detected language en (probability 0.925"))
        #expect(result.stderr.contains("detected language de"))
    }

    @Test func translateGreedyIds() throws {
        try requireModel()
        let result = try QuillProcess.run(["transcribe", "-m", "whisper-base", "--task", "translate", "--language", "fr",
                                           "--beam", "1", "--ids", clip("fr")], input: Data())
        #expect(result.status == 0, "\(result.stderr)")
        let ids = (try reference("fr", "translate_beam1")["ids"] as! [Int]).map(String.init).joined(separator: " ")
        #expect(result.text == ids + "\n")
        #expect(!result.stderr.contains("detected"))
    }

    /// A bad file gives its one-line error and an empty line; the others are still transcribed; exit code 1.
    @Test func badAudioGivesAnErrorLineAndAnEmptyOutputLine() throws {
        try requireModel()
        let text = FileManager.default.temporaryDirectory.appendingPathComponent("quill-not-audio-\(UUID().uuidString).wav")
        try Data("not audio".utf8).write(to: text)
        let result = try QuillProcess.run(["transcribe", "-m", "whisper-base", "--language", "en", "--beam", "1", text.path, clip("en")],
                                          input: Data())
        #expect(result.status == 1)
        let lines = result.text.split(separator: "\n", omittingEmptySubsequences: false)
        let english = try reference("en", "transcribe_beam1")["text"] as! String
        #expect(lines.count == 3 && lines[0].isEmpty && lines[1] == english)
        #expect(result.stderr.contains("not a WAV file") && result.stderr.split(separator: "\n").count == 1)
    }

    @Test func badOptionsAndMissingModel() throws {
        let badTask = try QuillProcess.run(["transcribe", "-m", "whisper-base", "--task", "summarize", clip("en")], input: Data())
        #expect(badTask.status != 0 && badTask.stderr.contains("--task"))
        let missing = try QuillProcess.run(["transcribe", "-m", "whisper-base", clip("en")], input: Data(),
                                           environment: ["QUILL_HOME": "/nonexistent-quill-home"])
        #expect(missing.status == 1 && missing.stderr.contains("Weights/fetch whisper-base"))
        let folder = try QuillProcess.run(["transcribe", "-m", "/nonexistent-model", clip("en")], input: Data())
        #expect(folder.status == 1 && folder.stderr.contains("no model.bin"))
    }
}
