import Foundation
import QuillTokenizers
import Testing

/// Token ids in tokenizer files size the vocabulary array: ids of 10¹², beyond Int32 or negative, and
/// absurd sentinel counts, are one-line `TokenizerError`s, never an aborted allocation or a trap.
@Suite struct VocabularyLimitTests {
    let seq2seq = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/seq2seq")

    /// A temporary folder holding `files` (name → contents); removed by the caller.
    func folder(_ files: [String: Data]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("quill-vocab-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        for (name, data) in files { try data.write(to: url.appendingPathComponent(name)) }
        return url
    }

    func expectError(_ files: [String: Data], mentioning fragment: String,
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        let url = try folder(files)
        defer { try? FileManager.default.removeItem(at: url) }
        do {
            _ = try TokenizerLoader.load(directory: url)
            Issue.record("loaded", sourceLocation: sourceLocation)
        } catch let error as TokenizerError {
            #expect(error.message.contains(fragment) && !error.description.contains("\n"), "\(error)",
                    sourceLocation: sourceLocation)
        }
    }

    /// The tiny BART vocabulary with `entry` added.
    func bartVocabulary(adding entry: (String, Int)) throws -> Data {
        let url = seq2seq.appendingPathComponent("tiny-bart/vocab.json")
        var vocabulary = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        vocabulary[entry.0] = entry.1
        return try JSONSerialization.data(withJSONObject: vocabulary)
    }

    /// A minimal byte-level BPE tokenizer.json whose vocabulary holds `id` for one token.
    func tokenizerJSON(vocabularyID id: Int, addedID: Int = 1) throws -> Data {
        let json: [String: Any] = [
            "model": ["type": "BPE", "vocab": ["a": 0, "b": id], "merges": [String]()],
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
            "added_tokens": [["id": addedID, "content": "<s>", "special": true]],
        ]
        return try JSONSerialization.data(withJSONObject: json)
    }

    @Test(arguments: [1_000_000_000_000, 3_000_000_000, 1 << 24])
    func tokenizerJSONVocabularyIDs(id: Int) throws {
        try expectError(["tokenizer.json": try tokenizerJSON(vocabularyID: id)], mentioning: "token id \(id)")
    }

    @Test func tokenizerJSONAddedTokenID() throws {
        try expectError(["tokenizer.json": try tokenizerJSON(vocabularyID: 1, addedID: 5_000_000_000)],
                        mentioning: "token id 5000000000")
    }

    @Test(arguments: [-1, Int(Int32.max)])
    func vocabJSONIDs(id: Int) throws {
        let merges = try Data(contentsOf: seq2seq.appendingPathComponent("tiny-bart/merges.txt"))
        try expectError(["vocab.json": try bartVocabulary(adding: ("zz", id)), "merges.txt": merges],
                        mentioning: "token id \(id)")
    }

    @Test(arguments: [-1, 1 << 40, Int.max])
    func t5SentinelCounts(extra: Int) throws {
        let model = try Data(contentsOf: seq2seq.appendingPathComponent("tiny-t5/spiece.model"))
        let config = try JSONSerialization.data(withJSONObject: ["tokenizer_class": "T5Tokenizer", "extra_ids": extra])
        try expectError(["spiece.model": model, "tokenizer_config.json": config], mentioning: "extra_ids \(extra)")
    }
}
