import Foundation
import QuillTokenizers
import Testing

/// The SmolLM2 vocabulary built through the GGUF-style initialiser with each pre-tokenizer.
private enum Variants {
    static let parts: (tokens: [String], merges: [String], types: [Int32]) = {
        let url = Fixtures.url("tokenizer", "json")
        let root = try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let model = root["model"] as! [String: Any]
        let vocab = model["vocab"] as! [String: Any]
        var tokens = [String](repeating: "", count: vocab.count)
        for (t, id) in vocab { tokens[(id as! NSNumber).intValue] = t }
        let merges = (model["merges"] as! [[String]]).map { "\($0[0]) \($0[1])" }
        // GGUF marks ids 0-16 as control tokens (type 3); everything else is normal (type 1).
        let types = (0..<tokens.count).map { Int32($0 <= 16 ? 3 : 1) }
        return (tokens, merges, types)
    }()

    static func make(_ pre: PreTokenizer) -> BPETokenizer {
        try! BPETokenizer(tokens: parts.tokens, merges: parts.merges, tokenTypes: parts.types, preTokenizer: pre)
    }
}

@Suite struct RandomAndStreamingTests {
    struct RandomCase: Decodable {
        let text: String
        let smollm: [Int32]
        let gpt2: [Int32]
        let llama3: [Int32]
    }

    /// 1500 random strings (mixed scripts, all kinds of whitespace, digits, contractions, special-token
    /// text) against HF `tokenizers` with three pre-tokenizers; see Fixtures/make_random_cases.py.
    @Test func randomStringsMatchHuggingFace() throws {
        let data = try Data(contentsOf: Fixtures.url("random_cases", "jsonl"))
        let cases = try data.split(separator: UInt8(ascii: "\n")).map {
            try JSONDecoder().decode(RandomCase.self, from: Data($0))
        }
        #expect(cases.count == 1500)
        let smollm = Variants.make(.smollm), gpt2 = Variants.make(.gpt2), llama3 = Variants.make(.llama3)
        var failures = 0
        for (i, c) in cases.enumerated() {
            for (tok, expected, name) in [(smollm, c.smollm, "smollm"), (gpt2, c.gpt2, "gpt2"), (llama3, c.llama3, "llama3")] {
                let ids = tok.encode(c.text)
                if ids != expected && failures < 10 {
                    failures += 1
                    Issue.record("case \(i) \(name) \(c.text.debugDescription): \(ids) != \(expected)")
                }
            }
            #expect(Fixtures.smollm.encode(c.text) == c.smollm)  // the tokenizer.json path too
        }
    }

    @Test func ggufInitialiserMatchesTokenizerJSON() {
        let gguf = Variants.make(.smollm)
        let text = "<|im_start|>user\nWhat is 12*34?<|im_end|>\n"
        #expect(gguf.encode(text) == Fixtures.smollm.encode(text))
        #expect(gguf.encode(text, parseSpecialTokens: false) == Fixtures.smollm.encode(text, parseSpecialTokens: false))
        #expect(gguf.vocabularySize == 49152)
    }

    @Test func invalidConstructionThrows() {
        #expect(throws: TokenizerError.self) {
            try BPETokenizer(tokens: ["a", "b"], merges: ["ab"], tokenTypes: nil, preTokenizer: .gpt2)
        }
        #expect(throws: TokenizerError.self) {
            try BPETokenizer(tokens: ["a"], merges: [], tokenTypes: [1, 1], preTokenizer: .gpt2)
        }
        #expect(throws: TokenizerError.self) {
            try BPETokenizer(tokenizerJSON: URL(fileURLWithPath: "/nonexistent/tokenizer.json"))
        }
    }

    /// SmolLM2's vocabulary lacks 21 byte tokens (0x04 0x06 0x13 0x14 0x16 0x1D 0xC0 0xC1 0xF1 0xF2
    /// 0xF5-0xFF); like HF `tokenizers` (BPE without unk) those bytes are dropped, so such text cannot
    /// round-trip. Expected ids are from `tokenizers` 0.23.3.
    @Test func bytesMissingFromVocabularyAreDropped() {
        let tok = Fixtures.smollm
        #expect(tok.encode("a\u{13}b\u{50000}c") == [81, 82, 234, 218, 218, 83])
        let singleBytes = Set((0..<Int32(tok.vocabularySize)).map { tok.tokenBytes($0) }.filter { $0.count == 1 }.map { $0[0] })
        #expect(singleBytes.count == 256 - 21)
    }

    /// decode(encode(s)) == s for random scalar soups, with and without special-token parsing.
    @Test func randomRoundTrip() {
        var rng = SplitMix64(state: 42)
        let tok = Fixtures.smollm
        // Only text whose bytes all have a token can round-trip (see the test above).
        let singleBytes = Set((0..<Int32(tok.vocabularySize)).map { tok.tokenBytes($0) }.filter { $0.count == 1 }.map { $0[0] })
        let pools: [ClosedRange<UInt32>] = [0x20...0x7E, 0x0...0x20, 0x300...0x36F, 0x4E00...0x9FFF,
                                            0x1F300...0x1FAFF, 0x0...0x10FFFF, 0x2000...0x206F, 0x30...0x39]
        for _ in 0..<3000 {
            var s = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...40, using: &rng) {
                let pool = pools.randomElement(using: &rng)!
                if let u = Unicode.Scalar(UInt32.random(in: pool, using: &rng)),
                   String(u).utf8.allSatisfy(singleBytes.contains) { s.append(u) }
            }
            let text = String(s)
            #expect(tok.decode(tok.encode(text)) == Array(text.utf8))
            #expect(tok.decode(tok.encode(text, parseSpecialTokens: false)) == Array(text.utf8))
        }
        // Long runs exercise the heap merge path.
        for text in [String(repeating: "a", count: 5000), String(repeating: " ", count: 3000) + "x",
                     String(repeating: "😀", count: 500), String(repeating: "ab", count: 2000)] {
            #expect(tok.decode(tok.encode(text)) == Array(text.utf8))
        }
    }

    /// Feeds bytes through the detokenizer in the given chunks and returns the concatenated text.
    private func stream(_ chunks: [[UInt8]]) -> (pieces: [String], total: String) {
        var d = StreamingDetokenizer()
        var pieces = chunks.map { d.append($0) }
        pieces.append(d.finish())
        return (pieces, pieces.joined())
    }

    @Test func streamingHoldsSplitCharacters() {
        let emoji = Array("😀".utf8)  // F0 9F 98 80
        var r = stream([[0x41, emoji[0]], [emoji[1], emoji[2]], [emoji[3], 0x42]])
        #expect(r.pieces == ["A", "", "😀B", ""])
        r = stream([Array(emoji[0..<2]), Array(emoji[2...])])
        #expect(r.pieces == ["", "😀", ""])
        let cjk = Array("中文".utf8)
        r = stream([Array(cjk[0..<1]), Array(cjk[1..<4]), Array(cjk[4...])])
        #expect(r.pieces == ["", "中", "文", ""])
        // The real tokenizer splits this emoji across several tokens.
        let tok = Fixtures.smollm
        let family = "👨‍👩‍👧 家族 ok"
        var d = StreamingDetokenizer()
        var text = ""
        for id in tok.encode(family) {
            let piece = d.append(tok.tokenBytes(id))
            #expect(!piece.unicodeScalars.contains("\u{FFFD}"))
            text += piece
        }
        text += d.finish()
        #expect(text == family)
    }

    @Test func streamingInvalidBytesBecomeOneReplacementEach() {
        #expect(stream([[0x41, 0xFF, 0x42]]).total == "A\u{FFFD}B")
        #expect(stream([[0x80], [0x80]]).total == "\u{FFFD}\u{FFFD}")
        // A valid prefix interrupted by ASCII: one U+FFFD for the maximal subpart, then the ASCII.
        #expect(stream([[0xE4, 0xB8], [0x41]]).total == "\u{FFFD}A")
        // Surrogate encoding and overlong lead are invalid immediately, not held.
        #expect(stream([[0xED, 0xA0]]).pieces.first == "\u{FFFD}\u{FFFD}")
        #expect(stream([[0xC0, 0x80]]).total == "\u{FFFD}\u{FFFD}")
        // Dangling tail flushed by finish().
        let r = stream([[0x68, 0x69, 0xF0, 0x9F, 0x98]])
        #expect(r.pieces == ["hi", "\u{FFFD}"])
    }

    /// Any chunking gives the same text as decoding everything at once.
    @Test func streamingChunkingIsInvisible() {
        var rng = SplitMix64(state: 7)
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...24, using: &rng)).map { _ -> UInt8 in
                Bool.random(using: &rng) ? UInt8.random(in: 0x80...0xF5, using: &rng) : UInt8.random(in: 0...0xFF, using: &rng)
            }
            var chunks: [[UInt8]] = []
            var i = 0
            while i < bytes.count {
                let n = Int.random(in: 1...4, using: &rng)
                chunks.append(Array(bytes[i..<min(i + n, bytes.count)]))
                i += n
            }
            #expect(stream(chunks).total == String(decoding: bytes, as: UTF8.self))
        }
    }
}
