import Foundation
import QuillTokenizers
import Testing

/// Random inputs: nothing crashes, outputs are valid, and the guarantees that survive NFKC hold.
@Suite struct SentencePiecePropertyTests {
    static func randomString(_ rng: inout SplitMix64) -> String {
        let ranges: [ClosedRange<UInt32>] = [0x20...0x7E, 0x00...0x1F, 0xA0...0x24F, 0x300...0x36F, 0x2000...0x206F,
                                             0x3000...0x30FF, 0x4E00...0x4E80, 0xFF00...0xFFEF, 0x1F300...0x1F6FF, 0xFB00...0xFB06]
        var s = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...60, using: &rng) {
            let r = ranges[Int.random(in: 0..<ranges.count, using: &rng)]
            if let u = Unicode.Scalar(UInt32.random(in: r, using: &rng)) { s.append(u) }
        }
        return String(s)
    }

    @Test(arguments: ["marian", "t5", "bpe"])
    func randomStringsRoundTripAsFarAsGuaranteed(model: String) throws {
        let tok = try SentencePieceTests.model(model)
        var rng = SplitMix64(state: 42)
        var charsmapOnly = tok.normalizer.spec
        charsmapOnly.addDummyPrefix = false
        charsmapOnly.escapeWhitespaces = false
        let plain = try SentencePieceNormalizer(spec: charsmapOnly)
        for _ in 0..<2000 {
            let s = Self.randomString(&rng)
            let ids = tok.encode(s, addSpecialTokens: false)
            #expect(ids.allSatisfy { $0 >= 0 && Int($0) < tok.vocabularySize })
            let normalized = tok.normalizer.normalize(s)
            let text = String(decoding: normalized, as: UTF8.self)
            #expect(Array(text.utf8) == normalized, "normalised output is valid UTF-8")
            #expect(!text.contains("\u{2581}\u{2581}") && !text.hasSuffix("\u{2581}"))
            // Character map + whitespace folding is idempotent, except where a ligature expands next to a
            // combining mark: sentencepiece's longest-match map then composes on the second pass
            // ("ﬆ\u{30C}" -> "st\u{30C}" -> "sť"), which the library does too.
            if !s.unicodeScalars.contains(where: { (0x300...0x36F).contains($0.value) }) {
                let once = String(decoding: plain.normalize(s), as: UTF8.self)
                #expect(String(decoding: plain.normalize(once), as: UTF8.self) == once, "\(s.debugDescription)")
            }
            // Without unknown pieces, decoding gives back the normalised text.
            if !ids.contains(tok.specialTokenIds.unk ?? -1) {
                // Byte-level replacement: ▁ followed by a combining mark is one Character in Swift.
                var bytes: [UInt8] = []
                var k = 0
                while k < normalized.count {
                    if normalized[k] == 0xE2, k + 2 < normalized.count, normalized[k + 1] == 0x96, normalized[k + 2] == 0x81 {
                        bytes.append(0x20); k += 3
                    } else { bytes.append(normalized[k]); k += 1 }
                }
                if bytes.first == 0x20 { bytes.removeFirst() }
                let expected = String(decoding: bytes, as: UTF8.self)
                #expect(tok.decode(ids, skipSpecialTokens: true) == expected, "\(s.debugDescription)")
            }
        }
    }

    /// Arbitrary bytes (malformed UTF-8 included) through the normaliser: valid UTF-8 out, no crash.
    @Test func randomBytesThroughNormalizer() throws {
        let tok = try SentencePieceTests.model("t5")
        let hf = try TokenizerLoader.load(directory: Seq2SeqTokenizerTests.directory("tiny-t5"))
        var rng = SplitMix64(state: 7)
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let out = bytes.withUnsafeBufferPointer { tok.normalizer.normalize(utf8: $0) }
            #expect(Array(String(decoding: out, as: UTF8.self).utf8) == out)
            let ids = hf.encode(String(decoding: bytes, as: UTF8.self), addSpecialTokens: true)
            #expect(ids.last == hf.specialTokenIds.eos)
        }
    }

    /// Random ids decode without crashing for every tokenizer kind, including invalid ids.
    @Test func randomIdsDecode() throws {
        var rng = SplitMix64(state: 3)
        for model in Seq2SeqTokenizerTests.models {
            let tok = try TokenizerLoader.load(directory: Seq2SeqTokenizerTests.directory(model))
            for _ in 0..<300 {
                let ids = (0..<Int.random(in: 0...30, using: &rng)).map { _ in Int32.random(in: -2...Int32(tok.vocabularySize + 2), using: &rng) }
                _ = tok.decode(ids, skipSpecialTokens: true)
                _ = tok.decode(ids, skipSpecialTokens: false)
                for id in ids { _ = tok.tokenBytes(id); _ = tok.tokenString(id) }
            }
        }
    }

    /// Byte-level BART is lossless: decode(encode(s)) == s for any valid string.
    @Test func bartRoundTrip() throws {
        let tok = try TokenizerLoader.load(directory: Seq2SeqTokenizerTests.directory("tiny-bart"))
        var rng = SplitMix64(state: 11)
        for _ in 0..<1000 {
            let s = Self.randomString(&rng)
            #expect(tok.decode(tok.encode(s, addSpecialTokens: true), skipSpecialTokens: true) == s)
        }
    }
}
