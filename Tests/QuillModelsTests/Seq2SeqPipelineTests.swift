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

    /// One loaded model (weights and its thread pool shared) serving several tasks at once: each task
    /// gets, token for token and bit for bit in its scores, what it gets alone. Run under TSan by
    /// `Tests/Sanitizers/run.sh thread`.
    @Test(arguments: ["tiny-marian", "tiny-bart", "tiny-t5-gated"])
    func severalTasksTranslateWithOneModelAtOnce(model name: String) async throws {
        let pipeline = try pipeline(name)
        let sources = try Seq2SeqFixtures.cases(name).prefix(6).map { Seq2SeqFixtures.ids($0["source_ids"]) }
        func translate(_ sources: [[TokenID]], beams: Int) throws -> [[Seq2SeqHypothesis]] {
            var settings = Seq2SeqFixtures.settings(pipeline.model, beams: beams)
            settings.numReturnSequences = 1
            var results: [[Seq2SeqHypothesis]] = []
            try pipeline.run(sources: sources, settings: settings) { results.append($1) }
            return results
        }
        // Tasks differ in work (beams, how many sources) so that their steps interleave unevenly.
        let jobs = [(beams: 1, count: 6), (beams: 4, count: 3), (beams: 1, count: 2), (beams: 4, count: 6)]
        let alone = try jobs.map { try translate(Array(sources.prefix($0.count)), beams: $0.beams) }
        let together = try await withThrowingTaskGroup(of: (Int, [[Seq2SeqHypothesis]]).self) { group in
            for (index, job) in jobs.enumerated() {
                group.addTask { (index, try translate(Array(sources.prefix(job.count)), beams: job.beams)) }
            }
            var results = [[[Seq2SeqHypothesis]]](repeating: [], count: jobs.count)
            for try await (index, result) in group { results[index] = result }
            return results
        }
        for (index, job) in jobs.enumerated() {
            #expect(together[index].count == job.count)
            #expect(together[index] == alone[index], "\(name), job \(index) (beams \(job.beams))")
        }
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
