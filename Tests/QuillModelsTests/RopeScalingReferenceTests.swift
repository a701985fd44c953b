import Foundation
import QuillModels
import Testing

/// Llama 3.x RoPE scaling against transformers: two tiny random Llamas written as GGUF files the way
/// Llama converters write them — `llama3` scaling as `rope_freqs.weight` frequency factors, linear
/// scaling as `llama.rope.scaling.*` — with transformers' fp32 logits of every position of a
/// 192-token sequence (3× the llama3 model's original context of 64). `make_fixtures.py` beside the
/// fixtures made them and documents how.
@Suite struct RopeScalingReferenceTests {
    static let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/llama-rope-scaling")
    /// Largest |Δlogit| allowed against transformers: both are fp32, summing in other orders (logits
    /// have a standard deviation of 1.5 here; measured 0.8e-5–1.2e-5 at 1 and 2 threads, at positions
    /// 182–189; dropping the scaling moves them by 5.6 and 6.6).
    static let tolerance = 5e-5

    static func reference(_ name: String) throws -> (ids: [Int32], vocabulary: Int, logits: [Float], sensitivity: Double) {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("reference.json")))
        let model = try #require(((json as? [String: Any])?["models"] as? [String: Any])?[name] as? [String: Any])
        let ids = try #require(model["token_ids"] as? [NSNumber]).map { $0.int32Value }
        let vocabulary = try #require(model["vocabulary"] as? Int)
        let sensitivity = try #require(model["max_abs_logit_difference_without_scaling"] as? Double)
        let data = try Data(contentsOf: fixtures.appendingPathComponent(name + ".logits.f32"))
        let logits = data.withUnsafeBytes { raw in
            (0 ..< data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
        try #require(logits.count == ids.count * vocabulary, "\(name).logits.f32 has \(logits.count) values")
        return (ids, vocabulary, logits, sensitivity)
    }

    @Test(arguments: ["tiny-llama3-rope", "tiny-linear-rope"], [1, 2])
    func f32LogitsMatchTransformers(model name: String, threads: Int) throws {
        let (ids, vocabulary, expected, sensitivity) = try Self.reference(name)
        // The fixture must be one where the scaling matters far beyond the tolerance.
        #expect(sensitivity > 100 * Self.tolerance, "without scaling transformers' logits move only \(sensitivity)")

        let path = Self.fixtures.appendingPathComponent(name + ".gguf").path
        let model = try DecoderModel(gguf: try GGUFFile(path: path), threads: threads, precision: .f32,
                                     endOfSequenceTokens: [])
        let batched = try model.forward(ids, cache: try model.makeCache(capacity: ids.count), logits: .all)
        // A prompt of 100, then one token at a time: the decoding path at positions 100–191.
        let cache = try model.makeCache(capacity: ids.count)
        var stepwise = try model.forward(Array(ids[..<100]), cache: cache, logits: .all)
        for id in ids[100...] { stepwise += try model.forward([id], cache: cache, logits: .last) }

        for (path, ours) in [("batched", batched), ("stepwise", stepwise)] {
            try #require(ours.count == expected.count)
            var worst = 0.0, worstPosition = 0
            for i in ours.indices where Double(abs(ours[i] - expected[i])) > worst {
                worst = Double(abs(ours[i] - expected[i]))
                worstPosition = i / vocabulary
            }
            #expect(worst < Self.tolerance, "\(name) \(path): max |Δlogit| \(worst) at position \(worstPosition)")
        }
    }
}

@Suite struct RopeScalingValidationTests {
    func load(_ tiny: TinyLlama, extraMetadata: [(String, GGUFValue)] = []) throws -> DecoderModel {
        let directory = try TempDirectory()
        let path = try directory.write(tiny.gguf(extraMetadata: extraMetadata))
        return try DecoderModel(gguf: try GGUFFile(path: path), threads: 1, endOfSequenceTokens: [])
    }

    @Test func frequencyFactorsOfTheWrongLengthAreAClearError() throws {
        var tiny = TinyLlama(seed: 3)
        tiny.tensors["rope_freqs.weight"] = ([3], [1, 2, 4])  // head dimension 8 has 4 pairs
        #expect { _ = try load(tiny) } throws: { "\($0)".contains("rope_freqs.weight") && "\($0)".contains("expected [4]") }
    }

    @Test(arguments: [Float(0), -1, .nan, .infinity])
    func aFrequencyFactorThatIsNotPositiveIsRefused(factor: Float) throws {
        var tiny = TinyLlama(seed: 3)
        tiny.tensors["rope_freqs.weight"] = ([4], [1, factor, 4, 8])
        #expect { _ = try load(tiny) } throws: { "\($0)".contains("not a positive number") }
    }

    @Test(arguments: [Float(-2), .nan, .infinity])
    func aLinearFactorThatIsNotPositiveIsRefused(factor: Float) throws {
        #expect {
            _ = try load(TinyLlama(seed: 3), extraMetadata: [("llama.rope.scaling.type", .string("linear")),
                                                             ("llama.rope.scaling.factor", .float32(factor))])
        } throws: { "\($0)".contains("rope.scaling.factor must be a positive number") }
    }

    @Test func partialRotaryEmbeddingIsRefused() throws {
        #expect {
            _ = try load(TinyLlama(seed: 3), extraMetadata: [("llama.rope.dimension_count", .uint32(4))])
        } throws: { "\($0)".contains("partial RoPE (4 of 8") }
    }

    /// Linear scaling divides every frequency by the factor; factor 1 (or type none) is no scaling.
    @Test func linearScalingSetsTheRotaryFrequencies() throws {
        let plain = try load(TinyLlama(seed: 3)).architecture.rope
        let scaled = try load(TinyLlama(seed: 3), extraMetadata: [("llama.rope.scaling.type", .string("linear")),
                                                                  ("llama.rope.scaling.factor", .float32(4))])
            .architecture.rope
        #expect(zip(plain.inverseFrequencies, scaled.inverseFrequencies).allSatisfy { $0 / 4 == $1 })
        let none = try load(TinyLlama(seed: 3), extraMetadata: [("llama.rope.scaling.type", .string("none")),
                                                                ("llama.rope.scaling.factor", .float32(4))])
        #expect(none.architecture.rope == plain)
    }
}
