import Foundation
import QuillModels
import QuillTokenizers
import Testing

/// GGUF `llama` vocabularies (SentencePiece BPE with byte fallback, as Llama 2 / Mistral / Gemma files
/// store them) go through `GGUFTokenizer`. The vocabulary here is a small model trained with the
/// sentencepiece library (fixture of the tokenizer tests), rewritten as GGUF arrays.
@Suite struct GGUFTokenizerTests {
    let modelURL = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/sentencepiece/bpe_bytefallback.model")

    func gguf(from proto: SentencePieceModelProto, extra: [(String, GGUFValue)] = []) throws -> (GGUFFile, TempDirectory) {
        var writer = GGUFWriter()
        writer.metadata = [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.tokens", .array(proto.pieces.map { .string($0.piece) })),
            ("tokenizer.ggml.scores", .array(proto.pieces.map { .float32($0.score) })),
            ("tokenizer.ggml.token_type", .array(proto.pieces.map { .int32($0.type.rawValue) })),
            ("tokenizer.ggml.unknown_token_id", .uint32(UInt32(proto.unkId))),
            ("tokenizer.ggml.bos_token_id", .uint32(UInt32(proto.bosId))),
            ("tokenizer.ggml.eos_token_id", .uint32(UInt32(proto.eosId))),
        ] + extra
        let directory = try TempDirectory()
        return (try GGUFFile(path: try directory.write(writer.build().bytes)), directory)
    }

    @Test func llamaVocabularyEncodesLikeTheSentencePieceModel() throws {
        let proto = try SentencePieceModelProto(contentsOf: modelURL)
        #expect(proto.algorithm == .bpe && proto.byteFallback)
        let (file, directory) = try gguf(from: proto)
        _ = directory
        let fromGGUF = try GGUFTokenizer.load(from: file)
        let fromModel = try SentencePieceTokenizer(modelFile: modelURL)
        // Text on which the model's own normaliser is the identity (ASCII, single inner spaces),
        // plus characters outside the vocabulary, which both spell as <0xXX> byte pieces.
        for text in ["Hello world", "And God said, Let there be light: and there was light.",
                     "To be, or not to be", "naïve Жук 🙂", "x"] {
            let ids = fromGGUF.encode(text, addSpecialTokens: false)
            #expect(ids == fromModel.encode(text, addSpecialTokens: false), "\(text)")
            #expect(fromGGUF.decode(ids, skipSpecialTokens: true) == text, "\(text)")
        }
        let bytes = fromGGUF.encode("Ж", addSpecialTokens: false).compactMap { fromGGUF.tokenString($0) }
        #expect(bytes.suffix(2) == ["<0xD0>", "<0x96>"])
    }

    @Test func llamaVocabulariesAddBOSUnlessTheFileSaysNot() throws {
        let proto = try SentencePieceModelProto(contentsOf: modelURL)
        let (file, d1) = try gguf(from: proto)
        #expect(GGUFTokenizer.beginningOfSequence(in: file) == proto.bosId)
        let (noBOS, d2) = try gguf(from: proto, extra: [("tokenizer.ggml.add_bos_token", .bool(false))])
        #expect(GGUFTokenizer.beginningOfSequence(in: noBOS) == nil)
        _ = (d1, d2)
    }

    @Test func llamaVocabularyKeepsWhitespaceAsLlamaCppDoes() throws {
        // No whitespace folding in GGUF vocabularies: two spaces stay two ▁ (the .model folds them).
        let proto = try SentencePieceModelProto(contentsOf: modelURL)
        let (file, directory) = try gguf(from: proto)
        _ = directory
        let tokenizer = try GGUFTokenizer.load(from: file)
        let pieces = tokenizer.encode("a  b", addSpecialTokens: false).compactMap { tokenizer.tokenString($0) }
        #expect(pieces.joined() == "▁a▁▁b")
    }

    @Test func unknownTokenizerModelIsAClearError() throws {
        var writer = GGUFWriter()
        writer.metadata = [("tokenizer.ggml.model", .string("rwkv"))]
        let directory = try TempDirectory()
        let file = try GGUFFile(path: try directory.write(writer.build().bytes))
        #expect { _ = try GGUFTokenizer.load(from: file) } throws: { "\($0)".contains("'rwkv'") }
    }
}
