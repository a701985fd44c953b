import Foundation
import QuillGeneration
import QuillModels
import Testing

/// Text in, text out, through each folder's own tokenizer (the fixtures hold the tokenizer files too).
@Suite struct Seq2SeqPipelineTests {
    func pipeline(_ model: String, prefix: String = "") throws -> Seq2SeqPipeline {
        try Seq2SeqPipeline(directory: Seq2SeqFixtures.directory(model), threads: 2, sourcePrefix: prefix)
    }

    @Test(arguments: ["tiny-marian", "tiny-bart", "tiny-t5-gated"])
    func textToGreedyTextInOrderWithEmptyLines(model name: String) throws {
        let pipeline = try pipeline(name)
        let cases = Array(try Seq2SeqFixtures.cases(name).prefix(4))
        var settings = Seq2SeqFixtures.settings(pipeline.model)
        settings.numReturnSequences = 1
        // Empty and blank lines stay in place and are not sent to the model.
        var lines = cases.map { $0["source_text"] as! String }
        lines.insert("", at: 0)
        lines.insert("   ", at: 3)
        var seen: [(Int, [Seq2SeqHypothesis])] = []
        try pipeline.run(lines, settings: settings) { seen.append(($0, $1)) }
        #expect(seen.map(\.0) == Array(lines.indices))
        #expect(seen[0].1.isEmpty && seen[3].1.isEmpty)
        let produced = seen.filter { !$0.1.isEmpty }
        for (case_, result) in zip(cases, produced) {
            #expect(pipeline.sourceIDs(case_["source_text"] as! String) == Seq2SeqFixtures.ids(case_["source_ids"]))
            #expect(result.1[0].tokens == Seq2SeqFixtures.ids(case_["greedy_ids"]), "\(case_["name"]!)")
            #expect(pipeline.text(result.1[0]) == case_["greedy_text"] as! String, "\(case_["name"]!)")
        }
    }

    @Test func t5SummaryPrefix() throws {
        let pipeline = try pipeline("tiny-t5", prefix: "summarize: ")
        let case_ = try Seq2SeqFixtures.cases("tiny-t5")[4]
        let text = (case_["source_text"] as! String).replacingOccurrences(of: "summarize: ", with: "")
        #expect(pipeline.sourceIDs(text) == Seq2SeqFixtures.ids(case_["source_ids"]))
    }

    @Test func onlyEmptyLines() throws {
        let pipeline = try pipeline("tiny-bart")
        var seen: [Int] = []
        try pipeline.run(["", ""], settings: pipeline.model.generationDefaults) { index, hypotheses in
            #expect(hypotheses.isEmpty)
            seen.append(index)
        }
        #expect(seen == [0, 1])
    }
}
