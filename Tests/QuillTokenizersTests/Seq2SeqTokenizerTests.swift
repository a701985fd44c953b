import Foundation
import QuillTokenizers
import Testing

/// The 4 × 61 reference cases of the seq2seq pack (transformers 5.24.0): ids with and without the
/// special tokens the tokenizer adds, and `decode(ids, skip_special_tokens=True)`.
@Suite struct Seq2SeqTokenizerTests {
    struct Case: Decodable {
        let name: String
        let text: String
        let ids: [Int32]
        let ids_no_special: [Int32]
        let pieces: [String]
        let decoded_skip_special: String
    }

    static let models = ["tiny-marian", "tiny-t5", "tiny-t5-gated", "tiny-bart"]

    static func directory(_ model: String) -> URL {
        Fixtures.url("tokenizer_cases", "jsonl", "seq2seq/\(model)").deletingLastPathComponent()
    }

    static func cases(_ model: String) throws -> [Case] {
        let data = try Data(contentsOf: directory(model).appendingPathComponent("tokenizer_cases.jsonl"))
        return try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(Case.self, from: Data($0)) }
    }

    @Test(arguments: models)
    func referenceCases(model: String) throws {
        let tok = try TokenizerLoader.load(directory: Self.directory(model))
        let cases = try Self.cases(model)
        #expect(cases.count == 61)  // the pack README says 60; the files hold 61 lines (tok-00 … tok-60)
        var passed = 0
        for c in cases {
            let ids = tok.encode(c.text, addSpecialTokens: true)
            let plain = tok.encode(c.text, addSpecialTokens: false)
            let decoded = tok.decode(c.ids, skipSpecialTokens: true)
            #expect(ids == c.ids, "\(c.name) \(c.text.debugDescription)")
            #expect(plain == c.ids_no_special, "\(c.name) no special")
            #expect(decoded == c.decoded_skip_special, "\(c.name) decode")
            #expect(c.ids.map { tok.tokenString($0) ?? "?" } == c.pieces, "\(c.name) pieces")
            if ids == c.ids && plain == c.ids_no_special && decoded == c.decoded_skip_special { passed += 1 }
        }
        print("\(model): \(passed)/\(cases.count) tokenizer cases exact")
    }

    @Test func loaderPicksTheRightTokenizer() throws {
        #expect(try TokenizerLoader.load(directory: Self.directory("tiny-marian")) is HFSentencePieceTokenizer)
        #expect(try TokenizerLoader.load(directory: Self.directory("tiny-t5")) is HFSentencePieceTokenizer)
        #expect(try TokenizerLoader.load(directory: Self.directory("tiny-bart")) is BPETokenizer)
        let t5 = try TokenizerLoader.load(directory: Self.directory("tiny-t5"))
        #expect(t5.vocabularySize == 1100)
        #expect(t5.id(of: "<extra_id_0>") == 1099 && t5.id(of: "<extra_id_99>") == 1000)
        #expect(t5.specialTokenIds == SpecialTokenIds(eos: 1, pad: 0, unk: 2))
        let marian = try TokenizerLoader.load(directory: Self.directory("tiny-marian"))
        #expect(marian.vocabularySize == 1000)
        #expect(marian.specialTokenIds == SpecialTokenIds(eos: 0, pad: 999, unk: 1))
        let bart = try TokenizerLoader.load(directory: Self.directory("tiny-bart"))
        #expect(bart.specialTokenIds == SpecialTokenIds(bos: 0, eos: 2, pad: 1, unk: 3))
        #expect(bart.id(of: "<mask>") == 1499 && bart.isSpecial(1499))
    }

    @Test func loaderErrorsAreOneLine() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("quill-empty-\(getpid())")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        for dir in [empty, empty.appendingPathComponent("missing")] {
            do {
                _ = try TokenizerLoader.load(directory: dir)
                Issue.record("expected an error for \(dir.path)")
            } catch let e as TokenizerError {
                #expect(!e.message.contains("\n"))
            }
        }
    }

    /// Special-token text in the middle of a sentence, without surrounding spaces.
    @Test func specialTokensWithoutSpaces() throws {
        let t5 = try TokenizerLoader.load(directory: Self.directory("tiny-t5"))
        let ids = t5.encode("a<extra_id_3>b</s>", addSpecialTokens: false)
        #expect(ids.contains(1096) && ids.last == 1)
        #expect(t5.decode(ids, skipSpecialTokens: false).contains("<extra_id_3>"))
    }
}

/// Both corpus fixtures (~400 kB of English) through the T5 and BART tokenizers (reference: HF
/// `tokenizers` with the pack's tokenizer.json) and the byte-fallback BPE model (sentencepiece).
@Suite struct Seq2SeqCorpusTests {
    struct Entry: Decodable {
        let count: Int
        let first_500: [Int32]
        let sha256: String
    }

    @Test(arguments: ["t5", "bart", "bpe"], ["hamlet.md", "kjv_genesis.txt"])
    func corpus(model: String, file: String) throws {
        let ref = try JSONDecoder().decode([String: Entry].self,
                                           from: Data(contentsOf: Fixtures.url("corpus_ids", "json", "sentencepiece")))
        let entry = try #require(ref["\(model)/\(file)"])
        let parts = file.split(separator: ".")
        let text = try String(contentsOf: Fixtures.url(String(parts[0]), String(parts[1]), "corpus"), encoding: .utf8)
        let tok: any Tokenizer = model == "bpe" ? try SentencePieceTests.model("bpe")
            : try TokenizerLoader.load(directory: Seq2SeqTokenizerTests.directory("tiny-\(model)"))
        let ids = tok.encode(text, addSpecialTokens: false)
        #expect(ids.count == entry.count)
        #expect(Array(ids.prefix(500)) == entry.first_500)
        #expect(SHA256.hex(Array(ids.map(String.init).joined(separator: ",").utf8)) == entry.sha256)
        if model == "bart" {  // byte-level BPE is lossless (the SentencePiece models fold whitespace)
            #expect(tok.decode(ids, skipSpecialTokens: false) == text)
        }
    }
}
