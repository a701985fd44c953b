import Foundation
import QuillGeneration
import QuillModels
import Testing

/// tiny-marian converted by CTranslate2 4.8.5's `ct2-transformers-converter` (float32 and int8,
/// `Fixtures/ct2-marian`, made by make.py there) against Quill's own safetensors load of the same
/// weights. CTranslate2 starts decoding from a zero embedding where transformers embeds the pad
/// token, so both sides use tiny-marian with its pad row zeroed (as real OPUS-MT conversions have it).
@Suite(.serialized) struct CTranslate2TransformerTests {
    static func directory(_ quantization: String) -> String {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures/ct2-marian/" + quantization).path
    }

    /// A temporary copy of tiny-marian whose embedding row 999 (pad, the decoder start) is zero.
    static func zeroPadCopy() throws -> String {
        let source = Seq2SeqFixtures.directory("tiny-marian")
        let copy = NSTemporaryDirectory() + "quill-ct2-marian-\(getpid())"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for name in ["config.json", "generation_config.json"] {
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: copy + "/" + name)
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: source + "/model.safetensors"))
        let headerLength = bytes.withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self)) }
        let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + headerLength))) as! [String: Any]
        let shared = header["model.shared.weight"] as! [String: Any]
        #expect(shared["dtype"] as? String == "F32" && (shared["shape"] as! [Int]) == [1000, 128])
        let start = 8 + headerLength + (shared["data_offsets"] as! [Int])[0] + 999 * 128 * 4
        bytes.replaceSubrange(start..<(start + 128 * 4), with: Data(count: 128 * 4))
        try bytes.write(to: URL(fileURLWithPath: copy + "/model.safetensors"))
        return copy
    }

    /// The reference calls' settings (24 new tokens) for the CTranslate2 load: its own start token and
    /// no pad ban (CTranslate2 dropped the pad token from the vocabulary).
    static func settings(_ reference: Seq2SeqSettings, for model: Seq2SeqTransformer) -> Seq2SeqSettings {
        var s = reference
        s.decoderStartToken = model.generationDefaults.decoderStartToken
        s.padToken = model.generationDefaults.padToken
        s.badWords = []
        return s
    }

    /// Teacher-forced logits over the first `vocabulary` ids of every step.
    static func logits(_ model: Seq2SeqTransformer, source: [Int32], decoderInput: [Int32], vocabulary: Int) throws -> [Float] {
        let all = try Seq2SeqFixtures.teacherForced(model, source: source, decoderInput: decoderInput)
        return (0..<decoderInput.count).flatMap { step in all[(step * model.vocabularySize)..<(step * model.vocabularySize + vocabulary)] }
    }

    @Test func float32ConversionMatchesTheSafetensorsLoad() throws {
        let copy = try Self.zeroPadCopy()
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let own = try Seq2SeqLoader.load(directory: copy, threads: 2)
        let converted = try CTranslate2Transformer.load(directory: Self.directory("float32"), threads: 2)
        #expect(converted.vocabularySize == 999, "CTranslate2 drops the pad token")
        let cases = try Seq2SeqFixtures.cases("tiny-marian")
        let sources = cases.map { Seq2SeqFixtures.ids($0["source_ids"]) }
        var worst: Float = 0
        for source in sources.prefix(4) {
            let greedy = try Seq2SeqSearch.greedy(model: own, sources: [source], settings: Seq2SeqFixtures.settings(own))[0].tokens
            let a = try Self.logits(own, source: source, decoderInput: Array(greedy.dropLast()), vocabulary: 999)
            let b = try Self.logits(converted, source: source,
                                    decoderInput: [converted.generationDefaults.decoderStartToken] + greedy.dropFirst().dropLast(),
                                    vocabulary: 999)
            worst = max(worst, zip(a, b).map { abs($0 - $1) }.max()!)
        }
        print("CTranslate2 float32 vs safetensors: max |Δlogit| = \(worst)")
        #expect(worst <= 1e-4)
        for beams in [1, 4] {
            let reference = Seq2SeqFixtures.settings(own, beams: beams)
            let expected = beams == 1 ? try Seq2SeqSearch.greedy(model: own, sources: sources, settings: reference).map { [$0] }
                : try Seq2SeqSearch.beam(model: own, sources: sources, settings: reference)
            let settings = Self.settings(reference, for: converted)
            let found = beams == 1 ? try Seq2SeqSearch.greedy(model: converted, sources: sources, settings: settings).map { [$0] }
                : try Seq2SeqSearch.beam(model: converted, sources: sources, settings: settings)
            for (i, (e, f)) in zip(expected, found).enumerated() {
                #expect(e.map { Array($0.generated) } == f.map { Array($0.generated) }, "case \(i), \(beams) beams")
            }
        }
    }

    /// The same greedy ids as CTranslate2 itself (float32, 24 new tokens, no forced EOS).
    @Test func float32ConversionGivesCTranslate2sIds() throws {
        let converted = try CTranslate2Transformer.load(directory: Self.directory("float32"), threads: 1)
        let outputs = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
            Bundle.module.resourceURL!.appendingPathComponent("Fixtures/ct2-marian/ct2_outputs.json").path))) as! [String: Any]
        let expected = ((outputs["greedy"] as! [String: Any])["float32"] as! [[NSNumber]]).map { $0.map(\.int32Value) }
        var settings = converted.generationDefaults
        settings.maxNewTokens = 24
        let sources = try Seq2SeqFixtures.cases("tiny-marian").map { Seq2SeqFixtures.ids($0["source_ids"]) }
        let found = try Seq2SeqSearch.greedy(model: converted, sources: sources, settings: settings)
        #expect(found.count == expected.count)
        for (i, (f, e)) in zip(found, expected).enumerated() { #expect(Array(f.generated) == e, "case \(i)") }
    }

    /// The int8 conversion (weights dequantised with their per-row scales): logits within int8
    /// quantisation error of the float32 conversion's.
    @Test func int8ConversionIsCloseToFloat32() throws {
        let float = try CTranslate2Transformer.load(directory: Self.directory("float32"), threads: 2)
        let int8 = try CTranslate2Transformer.load(directory: Self.directory("int8"), threads: 2)
        var difference = 0.0, norm = 0.0
        for case_ in try Seq2SeqFixtures.cases("tiny-marian").prefix(4) {
            let source = Seq2SeqFixtures.ids(case_["source_ids"])
            let input = [float.generationDefaults.decoderStartToken] + Array(Seq2SeqFixtures.ids(case_["greedy_ids"]).dropFirst().dropLast())
            let a = try Self.logits(float, source: source, decoderInput: input, vocabulary: 999)
            let b = try Self.logits(int8, source: source, decoderInput: input, vocabulary: 999)
            for (x, y) in zip(b, a) { difference += Double(x - y) * Double(x - y); norm += Double(y) * Double(y) }
        }
        let error = (difference / norm).squareRoot()
        print("CTranslate2 int8 vs float32 conversion: normalised logit error \(error)")
        #expect(error > 0 && error < 0.05)
    }
}
