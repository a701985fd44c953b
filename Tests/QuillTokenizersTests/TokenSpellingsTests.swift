import QuillTokenizers
import Testing

/// The BPE tokenizer's flat spelling index (`TokenSpellings`) answers as a `[String: Int32]` built
/// the obvious way would: the first id of a repeated spelling, nil for absent ones, every spelling
/// back by id — over a vocabulary larger than any cache line or probe run could hide. Spellings are
/// compared as bytes (as Hugging Face's Rust strings are): "é" and "e" + U+0301 are two tokens, where a
/// Swift `String` key would have merged them as canonically equivalent.
@Suite struct TokenSpellingsTests {
    @Test func idsAndSpellingsAgreeWithADictionary() throws {
        var g = SplitMix64(state: 20261201)
        let alphabet = Array("abcdeĠĊ✓🦙<|>_ ") + ["é", "\u{0301}"]
        var tokens = (0..<256).map { String(UnicodeScalar(UInt8($0))) }  // ASCII and Latin-1 single characters
        for _ in 0..<70_000 {
            let length = Int.random(in: 1...9, using: &g)
            tokens.append(String((0..<length).map { _ in alphabet.randomElement(using: &g)! }))
        }
        tokens += ["", "ab", "ab", "<|im_end|>", "é", "e\u{0301}"]  // empty, repeated, canonically equivalent
        let tokenizer = try BPETokenizer(tokens: tokens, merges: [], tokenTypes: nil, preTokenizer: .gpt2)

        var expected: [[UInt8]: Int32] = [:]
        for (i, t) in tokens.enumerated() where expected[Array(t.utf8)] == nil { expected[Array(t.utf8)] = Int32(i) }
        #expect(tokenizer.vocabularySize == tokens.count)
        for (bytes, id) in expected {
            let spelling = String(decoding: bytes, as: UTF8.self)
            #expect(tokenizer.id(of: spelling) == id, "\(spelling)")
        }
        #expect(tokenizer.id(of: "é") != tokenizer.id(of: "e\u{0301}"))
        for (i, t) in tokens.enumerated() { #expect(tokenizer.tokenString(Int32(i)) == t) }
        for absent in ["zz", "abcdefghijk", "<|im_start|>", "Ġ Ġ Ġ Ġ Ġ Ġ Ġ Ġ Ġ Ġ"] where expected[Array(absent.utf8)] == nil {
            #expect(tokenizer.id(of: absent) == nil, "\(absent)")
        }
        #expect(tokenizer.tokenString(-1) == nil && tokenizer.tokenString(Int32(tokens.count)) == nil)

        // Each token's bytes come from its spelling through GPT-2's byte alphabet: printable Latin-1 is
        // itself, Ġ a space and Ċ a newline; anything else (a raw space, ✓, 🦙, U+0301) stays UTF-8.
        func alphabetBytes(_ spelling: String) -> [UInt8] {
            spelling.unicodeScalars.flatMap { s -> [UInt8] in
                switch s.value {
                case 0x21...0x7E, 0xA1...0xAC, 0xAE...0xFF: return [UInt8(s.value)]
                case 0x120: return [0x20]
                case 0x10A: return [0x0A]
                default: return Array(String(s).utf8)
                }
            }
        }
        for (i, t) in tokens.enumerated() { #expect(tokenizer.tokenBytes(Int32(i)) == alphabetBytes(t), "\(t)") }
        let ids = (0..<Int32(tokens.count)).map { _ in Int32.random(in: -2...Int32(tokens.count), using: &g) }
        let valid = ids.filter { $0 >= 0 && Int($0) < tokens.count }
        #expect(tokenizer.decode(ids) == valid.flatMap { alphabetBytes(tokens[Int($0)]) })
    }
}
