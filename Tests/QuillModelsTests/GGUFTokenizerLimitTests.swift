import Foundation
import QuillModels
import QuillTokenizers
import Testing

/// Special-token ids in GGUF metadata are checked against the vocabulary when the tokenizer is built:
/// an id past it (or beyond Int32, which once trapped in a conversion) is a one-line GGUFError.
@Suite struct GGUFTokenizerLimitTests {
    let modelURL = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/sentencepiece/bpe_bytefallback.model")

    @Test(arguments: [("bos_token_id", UInt64(1) << 40), ("eos_token_id", UInt64(3_000_000_000)),
                      ("eot_token_id", UInt64(1_000_000)), ("unknown_token_id", UInt64(UInt32.max))])
    func specialIDsOutsideTheVocabulary(key: String, id: UInt64) throws {
        let proto = try SentencePieceModelProto(contentsOf: modelURL)
        var writer = GGUFWriter()
        writer.metadata = [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.tokens", .array(proto.pieces.map { .string($0.piece) })),
            ("tokenizer.ggml.scores", .array(proto.pieces.map { .float32($0.score) })),
            ("tokenizer.ggml.token_type", .array(proto.pieces.map { .int32($0.type.rawValue) })),
            ("tokenizer.ggml." + key, .uint64(id)),
        ]
        let directory = try TempDirectory()
        let file = try GGUFFile(path: try directory.write(writer.build().bytes))
        do {
            _ = try GGUFTokenizer.load(from: file)
            Issue.record("loaded")
        } catch let error as GGUFError {
            #expect(error.problem.contains("tokenizer.ggml.\(key) \(id) is outside the vocabulary"), "\(error)")
        }
        // BOS beyond Int32 is not turned into an id (it used to trap).
        _ = GGUFTokenizer.beginningOfSequence(in: file)
    }
}
