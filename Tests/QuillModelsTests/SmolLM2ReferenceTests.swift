import Foundation
import QuillGeneration
import QuillModels
import Testing

/// The f32 reference path against Hugging Face transformers (fp32, weights dequantised from the same GGUF).
/// Tolerances from the reference pack's README: fp32 noise there is ≤ 1e-4 on the logits.
@Suite(.serialized) struct SmolLM2ReferenceTests {
    @Test func greedyContinuationsAreTokenExact() throws {
        let model = try RealModel.load(precision: .f32)
        for case_ in try ReferenceData.jsonLines("greedy.jsonl") {
            let prompt = ReferenceData.ids(case_["prompt_ids"])
            let expected = ReferenceData.ids(case_["greedy_ids"])
            // The prompt text must tokenize to the reference ids too.
            #expect(model.encodePrompt(case_["prompt_text"] as! String) == prompt, "\(case_["name"]!)")
            var produced: [Int32] = []
            _ = try generate(model: model.model, prompt: prompt, cache: try model.model.makeCache(capacity: 256),
                             options: GenerationOptions(maxNewTokens: 48)) { produced.append($0); return true }
            #expect(produced == expected, "\(case_["name"]!)")
        }
    }

    @Test(arguments: ["seq0", "seq1", "seq2", "seq3"])
    func teacherForcedLogitsWithin1e3(sequence: String) throws {
        let model = try RealModel.load(precision: .f32)
        let rows = try ReferenceData.jsonLines("logits/\(sequence).jsonl")
        let tokens = rows.map { Int32(($0["token_id"] as! NSNumber).intValue) }
        let vocabulary = model.model.vocabularySize
        let logits = try model.model.forward(tokens, cache: try model.model.makeCache(capacity: 64), logits: .all)
        #expect(logits.count == tokens.count * vocabulary)
        var worst = 0.0
        for (position, row) in rows.enumerated() {
            let ours = logits[position * vocabulary ..< (position + 1) * vocabulary]
            for pair in row["top20"] as! [[NSNumber]] {
                let difference = abs(Double(ours[ours.startIndex + pair[0].intValue]) - pair[1].doubleValue)
                worst = max(worst, difference)
            }
            let lse = (row["logsumexp"] as! NSNumber).doubleValue
            #expect(abs(logSumExp(ours) - lse) <= 1e-3, "\(sequence) position \(position) logsumexp")
        }
        #expect(worst <= 1e-3, "\(sequence): max |Δlogit| over the top-20 = \(worst)")
        print("f32 \(sequence): max |Δlogit| over the top-20 \(worst)")
    }

    @Test func perplexityOnHamletMatchesTransformers() throws {
        let model = try RealModel.load(precision: .f32)
        let reference = try ReferenceData.json("perplexity.json")
        let transformers = reference["transformers"] as! [String: Any]
        let secondHalf = transformers["llamacpp_style_second_half"] as! [String: Any]
        let text = try String(contentsOf: ReferenceData.url("hamlet.md"), encoding: .utf8)
        let tokens = Array(model.encodePrompt(text).prefix(4096))
        // Passes of 200 tokens, which do not divide the window: only one pass's logits are held at a
        // time (GGUFModelReferenceTests scores whole windows).
        let result = try Perplexity.measure(model: model.model, tokens: tokens, window: 512, passTokens: 200)
        let expectedFull = (transformers["ppl"] as! NSNumber).doubleValue
        let expectedHalf = (secondHalf["ppl"] as! NSNumber).doubleValue
        print("f32 perplexity: \(result.perplexity) (all), \(result.secondHalfPerplexity) (second halves)")
        #expect(abs(result.perplexity - expectedFull) <= 0.01, "all positions: \(result.perplexity) vs \(expectedFull)")
        #expect(abs(result.secondHalfPerplexity - expectedHalf) <= 0.01,
                "second half: \(result.secondHalfPerplexity) vs \(expectedHalf)")
    }
}
