import Foundation
import QuillGeneration
import QuillModels
import Testing

/// `TextModel.beamSearch` (what `quill complete --beam` runs) against transformers'
/// `generate(num_beams=4, num_return_sequences=4)` on the f32 path; the fixture and the script
/// that made it are in Fixtures/smollm2 (beam4.jsonl, make_beam_reference.py).
@Suite(.serialized) struct BeamSearchReferenceTests {
    @Test func fourBeamsGiveTransformersHypothesesAndScores() throws {
        let model = try RealModel.load(precision: .f32)
        let cases = try ReferenceData.jsonLines("beam4.jsonl")
        #expect(cases.count == 4)
        for c in cases {
            let expected = c["hypotheses"] as! [[String: Any]]
            let hypotheses = try model.beamSearch(prompt: ReferenceData.ids(c["prompt_ids"]), beams: 4,
                                                  maxNewTokens: (c["max_new_tokens"] as! NSNumber).intValue,
                                                  nBest: expected.count, contextSize: 256)
            #expect(hypotheses.map(\.tokens) == expected.map { ReferenceData.ids($0["ids"]) }, "\(c["name"]!)")
            for (ours, theirs) in zip(hypotheses, expected) {
                #expect(abs(Double(ours.score) - (theirs["score"] as! NSNumber).doubleValue) < 1e-4, "\(c["name"]!)")
            }
        }
    }
}
