import Foundation
import QuillGeneration
import QuillModels
import Testing

/// A copy of a fixture folder whose config.json / generation_config.json keys are overridden; the other
/// files are symbolic links to the fixture's.
struct EditedCheckpoint: ~Copyable {
    let path: String

    init(_ model: String, config: [String: Any] = [:], generation: [String: Any] = [:]) throws {
        let source = Seq2SeqFixtures.directory(model)
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("quill-edited-\(getpid())-\(UUID().uuidString)").path
        let files = FileManager.default
        try files.createDirectory(atPath: path, withIntermediateDirectories: true)
        for name in try files.contentsOfDirectory(atPath: source) {
            let target = (source as NSString).appendingPathComponent(name)
            let copy = (path as NSString).appendingPathComponent(name)
            let edits = name == "config.json" ? config : name == "generation_config.json" ? generation : [:]
            if edits.isEmpty {
                try files.createSymbolicLink(atPath: copy, withDestinationPath: target)
            } else {
                var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: target))) as! [String: Any]
                for (key, value) in edits { json[key] = value }
                try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: copy))
            }
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Sizes and ids from config.json / generation_config.json are checked before anything is allocated
/// or indexed with them: each bad value is a one-line `CheckpointError` naming the key.
@Suite struct Seq2SeqConfigLimitTests {
    /// Loads `checkpoint` and returns the error's description, recording an issue when it loads.
    func loadError(_ checkpoint: borrowing EditedCheckpoint, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        do {
            _ = try Seq2SeqLoader.load(directory: checkpoint.path, threads: 1)
            Issue.record("the edited checkpoint loaded", sourceLocation: sourceLocation)
            return ""
        } catch {
            let text = "\(error)"
            #expect(!text.contains("\n"), sourceLocation: sourceLocation)
            return text
        }
    }

    @Test(arguments: [0, -1, 1 << 40])
    func maxPositionEmbeddingsOutOfRange(value: Int) throws {
        let checkpoint = try EditedCheckpoint("tiny-marian", config: ["max_position_embeddings": value])
        let message = loadError(checkpoint)
        #expect(message.contains("max_position_embeddings is \(value)"), "\(message)")
    }

    @Test(arguments: ["decoder_layers", "encoder_layers"])
    func layerCountsBeyondTheWeights(key: String) throws {
        let checkpoint = try EditedCheckpoint("tiny-marian", config: [key: 1_000_000_000_000])
        let message = loadError(checkpoint)
        #expect(message.contains("\(key) is 1000000000000 but model.safetensors holds"), "\(message)")
    }

    @Test(arguments: [("d_model", 0), ("d_model", -8), ("vocab_size", 0), ("vocab_size", 1 << 40),
                      ("encoder_ffn_dim", -1), ("encoder_attention_heads", 0), ("pad_token_id", -5),
                      ("decoder_start_token_id", 1 << 40), ("eos_token_id", 99_999_999)])
    func bartFamilySizesAndIds(key: String, value: Int) throws {
        let checkpoint = try EditedCheckpoint("tiny-bart", config: [key: value])
        let message = loadError(checkpoint)
        #expect(message.contains(key), "\(message)")
    }

    @Test func headsThatDoNotDivideTheWidth() throws {
        let checkpoint = try EditedCheckpoint("tiny-marian", config: ["encoder_attention_heads": 7, "decoder_attention_heads": 7])
        let message = loadError(checkpoint)
        #expect(message.contains("head counts"), "\(message)")
    }

    @Test(arguments: [("relative_attention_num_buckets", 0), ("relative_attention_num_buckets", 2),
                      ("relative_attention_max_distance", -1), ("relative_attention_max_distance", 1 << 40),
                      ("num_layers", -3), ("num_heads", 0), ("d_kv", 1 << 30)])
    func t5Sizes(key: String, value: Int) throws {
        let checkpoint = try EditedCheckpoint("tiny-t5", config: [key: value])
        let message = loadError(checkpoint)
        #expect(message.contains(key), "\(message)")
    }

    @Test(arguments: [("max_new_tokens", 0), ("max_new_tokens", 1 << 40), ("max_length", -1), ("num_beams", 0),
                      ("num_beams", 1_000_000), ("min_length", -2), ("no_repeat_ngram_size", -1),
                      ("decoder_start_token_id", -1), ("forced_bos_token_id", 1 << 35)])
    func generationConfigValues(key: String, value: Int) throws {
        let checkpoint = try EditedCheckpoint("tiny-bart", generation: [key: value])
        let message = loadError(checkpoint)
        #expect(message.contains("generation_config.json") && message.contains(key), "\(message)")
    }

    @Test func aSearchAskingForTooMuchIsRefused() throws {
        let model = try Seq2SeqFixtures.load("tiny-marian")
        var settings = model.generationDefaults
        settings.maxNewTokens = Int.max
        #expect(throws: Seq2SeqError.self) { try Seq2SeqSearch.greedy(model: model, sources: [[5, 0]], settings: settings) }
        settings.maxNewTokens = 8
        settings.numBeams = 1_000_000
        #expect(throws: Seq2SeqError.self) { try Seq2SeqSearch.beam(model: model, sources: [[5, 0]], settings: settings) }
        settings.numBeams = 1
        settings.decoderStartToken = Int32(model.vocabularySize)
        #expect(throws: GenerationError.self) { try Seq2SeqSearch.greedy(model: model, sources: [[5, 0]], settings: settings) }
    }
}
