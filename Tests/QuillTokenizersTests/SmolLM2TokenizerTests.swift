import Foundation
import QuillTokenizers
import Testing

@Suite struct SmolLM2TokenizerTests {
    let tok = Fixtures.smollm

    @Test func sha256SelfCheck() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func vocabularyAndSpecialTokens() {
        #expect(tok.vocabularySize == 49152)
        #expect(tok.id(of: "<|endoftext|>") == 0)
        #expect(tok.id(of: "<|im_start|>") == 1)
        #expect(tok.id(of: "<|im_end|>") == 2)
        #expect(tok.id(of: "no such token") == nil)
        #expect(tok.tokenBytes(2) == Array("<|im_end|>".utf8))
        #expect(tok.tokenBytes(216) == [0x20])  // "Ġ"
        #expect(tok.tokenBytes(-1).isEmpty && tok.tokenBytes(49152).isEmpty)
    }

    /// All 266 reference strings: ids with and without special-token parsing, and the round trip.
    @Test func referenceCases() {
        let cases = Fixtures.tokenizerCases()
        #expect(cases.count == 266)
        var checkedAsText = 0
        for c in cases {
            let (name, text, expected) = (c.name, c.text, c.ids)
            #expect(text.utf8.count == c.utf8_bytes, "\(name) fixture text")
            let ids = tok.encode(text)
            #expect(ids == expected, "\(name) \(text.debugDescription)")
            #expect(tok.decode(ids) == Array(text.utf8), "\(name) decode")
            if let asText = c.ids_special_as_text {
                checkedAsText += 1
                #expect(tok.encode(text, parseSpecialTokens: false) == asText, "\(name) special as text")
                #expect(tok.decode(asText) == Array(text.utf8))
            }
        }
        #expect(checkedAsText == 12)
    }

    @Test(arguments: ["hamlet.md", "kjv_genesis.txt"])
    func corpus(file: String) throws {
        let ref = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Fixtures.url("tokenizer_corpus", "json", "corpus"))) as! [String: Any]
        let entry = (ref["files"] as! [String: Any])[file] as! [String: Any]
        let parts = file.split(separator: ".")
        let url = Fixtures.url(String(parts[0]), String(parts[1]), "corpus")
        let bytes = try Data(contentsOf: url)
        #expect(bytes.count == (entry["bytes"] as! NSNumber).intValue)
        let text = String(decoding: bytes, as: UTF8.self)
        let ids = tok.encode(text)
        #expect(ids.count == (entry["token_count"] as! NSNumber).intValue)
        #expect(Array(ids.prefix(2000)) == Fixtures.ids(entry["first_2000_ids"])!)
        let joined = ids.map(String.init).joined(separator: ",")
        #expect(SHA256.hex(Array(joined.utf8)) == entry["ids_sha256"] as! String)
        #expect(tok.decode(ids) == Array(bytes))
    }

    /// Prints encode throughput (release, one thread); asserts only that results are stable.
    @Test func throughput() throws {
        var text = ""
        for f in ["hamlet", "kjv_genesis"] {
            let ext = f == "hamlet" ? "md" : "txt"
            text += try String(contentsOf: Fixtures.url(f, ext, "corpus"), encoding: .utf8)
        }
        let reference = tok.encode(text)
        let rounds = 10
        let start = Date()
        for _ in 0..<rounds { #expect(tok.encode(text).count == reference.count) }
        let seconds = Date().timeIntervalSince(start)
        let mb = Double(text.utf8.count * rounds) / 1e6
        print("encode throughput: \(String(format: "%.1f", mb / seconds)) MB/s (\(text.utf8.count) bytes x \(rounds))")
    }
}
