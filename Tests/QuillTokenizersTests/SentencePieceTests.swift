import Foundation
import QuillTokenizers
import Testing

/// SentencePiece against the sentencepiece library (0.2.3) and hand-built models.
@Suite struct SentencePieceTests {
    struct LibraryCase: Decodable {
        let model: String
        let name: String
        let text: String
        let ids: [Int32]
        let normalized: String
        let decoded: String
    }

    static func model(_ name: String) throws -> SentencePieceTokenizer {
        switch name {
        case "marian": return try SentencePieceTokenizer(modelFile: Fixtures.url("source", "spm", "seq2seq/tiny-marian"))
        case "t5": return try SentencePieceTokenizer(modelFile: Fixtures.url("spiece", "model", "seq2seq/tiny-t5"))
        default: return try SentencePieceTokenizer(modelFile: Fixtures.url("bpe_bytefallback", "model", "sentencepiece"))
        }
    }

    /// 400 random strings × 3 models (unigram nmt_nfkc ×2, BPE + byte fallback + user-defined piece):
    /// ids, normalised text and decoded text equal the library's.
    @Test(arguments: ["marian", "t5", "bpe"])
    func libraryRandomCases(model: String) throws {
        let tok = try Self.model(model)
        let data = try Data(contentsOf: Fixtures.url("spm_random_cases", "jsonl", "sentencepiece"))
        let cases = try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(LibraryCase.self, from: Data($0)) }
            .filter { $0.model == model }
        #expect(cases.count == 400)
        var exact = 0
        for c in cases {
            let ids = tok.encode(c.text, addSpecialTokens: false)
            let norm = String(decoding: tok.normalizer.normalize(c.text), as: UTF8.self)
            let dec = tok.decode(c.ids, skipSpecialTokens: false)
            #expect(ids == c.ids, "\(c.name) \(c.text.debugDescription)")
            #expect(norm == c.normalized, "\(c.name) normalized")
            #expect(dec == c.decoded, "\(c.name) decoded")
            if ids == c.ids && norm == c.normalized && dec == c.decoded { exact += 1 }
        }
        print("sentencepiece \(model): \(exact)/\(cases.count) random cases exact")
    }

    @Test func parsesModelProto() throws {
        let url = Fixtures.url("spiece", "model", "seq2seq/tiny-t5")
        let proto = try SentencePieceModelProto(contentsOf: url)
        #expect(proto.pieces.count == 1000)
        #expect(proto.algorithm == .unigram)
        #expect(!proto.byteFallback)
        #expect(proto.pieces[0] == .init("<pad>", score: 0, type: .control))
        #expect(proto.pieces[1] == .init("</s>", score: 0, type: .control))
        #expect(proto.pieces[2] == .init("<unk>", score: 0, type: .unknown))
        #expect(proto.pieces[3].piece == "," && proto.pieces[3].score == -2.962087392807007)
        #expect((proto.unkId, proto.eosId, proto.padId, proto.bosId) == (2, 1, 0, -1))
        #expect(proto.normalizer.name == "nmt_nfkc")
        #expect(proto.normalizer.addDummyPrefix && proto.normalizer.removeExtraWhitespaces && proto.normalizer.escapeWhitespaces)
        #expect(proto.normalizer.precompiledCharsmap.count > 1000)
        // Serialising and parsing again gives the same model.
        #expect(try SentencePieceModelProto(bytes: proto.serialized()) == proto)
        let bpe = try SentencePieceModelProto(contentsOf: Fixtures.url("bpe_bytefallback", "model", "sentencepiece"))
        #expect(bpe.algorithm == .bpe && bpe.byteFallback && bpe.normalizer.name == "identity")
        #expect(bpe.pieces.filter { $0.type == .byte }.count == 256)
        #expect(bpe.pieces.contains { $0.piece == "<sep>" && $0.type == .userDefined })
    }

    /// Wire format checked byte by byte: field keys, varints (incl. negative int32), fixed32 floats,
    /// nested messages, and skipping of unknown fields of every wire type.
    @Test func protobufWireFormat() throws {
        var piece = ProtobufWriter()
        piece.string(1, "▁a")
        piece.float(2, -1.5)
        piece.int(3, 6)
        #expect(piece.bytes == [0x0A, 0x04, 0xE2, 0x96, 0x81, 0x61, 0x15, 0x00, 0x00, 0xC0, 0xBF, 0x18, 0x06])
        var trainer = ProtobufWriter()
        trainer.int(43, -1)  // pad_id = -1: ten-byte varint
        #expect(trainer.bytes == [0xD8, 0x02] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
        var model: [UInt8] = []
        model += [0x0A, UInt8(piece.bytes.count)] + piece.bytes
        model += [0x12, UInt8(trainer.bytes.count + 2)] + trainer.bytes + [0x18, 0x02]  // model_type = BPE
        model += [0x49] + [UInt8](repeating: 7, count: 8)  // unknown field 9, fixed64
        model += [0x55, 1, 2, 3, 4]  // unknown field 10, fixed32
        model += [0x58, 0x96, 0x01]  // unknown field 11, varint 150
        model += [0x62, 0x02, 0x41, 0x42]  // unknown field 12, bytes
        let proto = try SentencePieceModelProto(bytes: model)
        #expect(proto.pieces == [.init("▁a", score: -1.5, type: .byte)])
        #expect(proto.padId == -1 && proto.algorithm == .bpe)
        #expect(proto.normalizer == .init())  // absent: proto defaults
        // Truncated input and bad keys are errors, never crashes.
        for cut in 1..<model.count {
            _ = try? SentencePieceModelProto(bytes: Array(model[..<cut]))
        }
        #expect(throws: TokenizerError.self) { try SentencePieceModelProto(bytes: [0x0A, 0x05, 0x41]) }
        #expect(throws: TokenizerError.self) { try SentencePieceModelProto(bytes: [0x0B]) }  // group
        #expect(throws: TokenizerError.self) { try SentencePieceModelProto(bytes: []) }  // no pieces
    }

    /// A hand-built BPE model with byte fallback: merges by score, unknown characters as UTF-8 bytes,
    /// byte pieces reassembled on decode.
    @Test func byteFallbackOnHandBuiltModel() throws {
        var proto = SentencePieceModelProto()
        proto.algorithm = .bpe
        proto.byteFallback = true
        proto.normalizer.name = "identity"
        proto.pieces = [.init("<unk>", score: 0, type: .unknown), .init("<s>", score: 0, type: .control),
                        .init("</s>", score: 0, type: .control)]
        proto.pieces += (0..<256).map { .init(String(format: "<0x%02X>", $0), score: 0, type: .byte) }
        let normal: [(String, Float)] = [("▁", -1), ("a", -2), ("b", -3), ("c", -4), ("ab", -5), ("▁ab", -6),
                                         ("bc", -0.5)]
        proto.pieces += normal.map { .init($0.0, score: $0.1) }
        let tok = try SentencePieceTokenizer(proto: SentencePieceModelProto(bytes: proto.serialized()))
        func pieces(_ s: String) -> [String] { tok.encodeAsPieces(s) }
        // "bc" outranks "ab" (-0.5 > -5), so "abc" is a + bc (no "abc" piece), not ab + c.
        #expect(pieces("abc") == ["▁", "a", "bc"])
        #expect(pieces("ab") == ["▁ab"])
        #expect(pieces("aé") == ["▁", "a", "<0xC3>", "<0xA9>"])
        #expect(pieces("😀") == ["▁", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"])
        for s in ["aé b", "😀 ab", "x y z", "abc abc"] {
            #expect(tok.decode(tok.encode(s, addSpecialTokens: false), skipSpecialTokens: true) == s)
        }
        // A lone byte piece that is not valid UTF-8 decodes to U+FFFD.
        #expect(tok.decode([tok.id(of: "<0xC3>")!], skipSpecialTokens: true) == "\u{FFFD}")
        #expect(tok.tokenBytes(tok.id(of: "<0x41>")!) == [0x41])
        #expect(tok.tokenBytes(tok.id(of: "▁ab")!) == Array(" ab".utf8))
    }

    /// GGUF-style arrays (tokens / scores / token_type) give the same tokenizer as the .model file.
    @Test func arraysInitializerMatchesModelFile() throws {
        let url = Fixtures.url("bpe_bytefallback", "model", "sentencepiece")
        let proto = try SentencePieceModelProto(contentsOf: url)
        let fromFile = try SentencePieceTokenizer(proto: proto, addBOS: true)
        let fromArrays = try SentencePieceTokenizer(pieces: proto.pieces.map(\.piece), scores: proto.pieces.map(\.score),
                                                    types: proto.pieces.map { $0.type.rawValue }, model: .bpe,
                                                    byteFallback: true, unkId: 0, bosId: 1, eosId: 2, addBOS: true)
        for s in ["To be, or not to be: that is the question.", "Ophelia 😀 <sep> naïve"] {
            #expect(fromArrays.encode(s, addSpecialTokens: true) == fromFile.encode(s, addSpecialTokens: true))
            #expect(fromArrays.encode(s, addSpecialTokens: true).first == 1)
        }
        #expect(throws: TokenizerError.self) {
            try SentencePieceTokenizer(pieces: ["a", "b"], scores: [0], model: .unigram)
        }
        #expect(throws: TokenizerError.self) {
            try SentencePieceTokenizer(pieces: ["a"], scores: [0], types: [9], model: .unigram)
        }
    }
}

/// Word-by-word BPE (with its cache) must give what BPE over the whole text gives, also when some
/// pieces span a word boundary (Gemma 3 has `>▁</`): there the boundary is not used.
@Suite struct SentencePieceCrossingPieceTests {
    @Test func piecesThatSpanAWordBoundaryAreStillFound() throws {
        var spec = SentencePieceModelProto.Normalizer()
        spec.name = "identity"
        spec.addDummyPrefix = false
        spec.removeExtraWhitespaces = false
        let pieces = ["<unk>", "a", "b", "c", "▁", "▁b", "a▁", "a▁b"]
        let tok = try SentencePieceTokenizer(pieces: pieces, scores: [0, -1, -2, -3, -4, -5, -6, -0.5],
                                             types: [2, 1, 1, 1, 1, 1, 1, 1], model: .bpe, normalizer: spec)
        // "a b a c" is a▁b▁a▁c. Over the whole text, BPE merges ▁b (-5) first, then a + ▁b = a▁b (-0.5),
        // then the second a▁ (-6); nothing else is a piece: [a▁b, ▁, a▁, c]. Cutting words before every
        // ▁ would give [a, ▁b, ▁, a, ▁, c].
        #expect(tok.encodeAsPieces("a b a c") == ["a▁b", "▁", "a▁", "c"])
        // Where no crossing piece occurs, words are cut as usual: "b c" = b▁c -> [b, ▁, c].
        #expect(tok.encodeAsPieces("b c") == ["b", "▁", "c"])
    }
}
