import Foundation
import QuillGeneration
import QuillModels
import Testing

/// The tiny random checkpoints of the reference pack (`shared/reference/seq2seq`), against
/// transformers 5.24 fp32: teacher-forced logits, greedy ids and beam-4 n-best ids and scores.
enum Seq2SeqFixtures {
    static let models = ["tiny-marian", "tiny-t5", "tiny-t5-gated", "tiny-bart"]

    static func directory(_ model: String) -> String {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures/seq2seq/" + model).path
    }

    static func cases(_ model: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: directory(model) + "/cases.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    static func load(_ model: String, quantize: Bool = false) throws -> Seq2SeqTransformer {
        try Seq2SeqLoader.load(directory: directory(model), threads: 2, quantize: quantize)
    }

    static func ids(_ value: Any?) -> [Int32] { (value as! [NSNumber]).map { $0.int32Value } }

    /// The settings of the reference calls: the checkpoint's generation config, 24 new tokens.
    static func settings(_ model: Seq2SeqTransformer, beams: Int = 1) -> Seq2SeqSettings {
        var s = model.generationDefaults
        s.maxNewTokens = 24
        s.numBeams = beams
        s.numReturnSequences = beams
        s.lengthPenalty = 1
        s.earlyStopping = false
        return s
    }

    /// Raw decoder logits of a teacher-forced pass (one step per token, the cache growing): (tokens, vocab).
    static func teacherForced(_ model: Seq2SeqTransformer, source: [Int32], decoderInput: [Int32]) throws -> [Float] {
        let encoded = try model.encode([source])
        let state = try DecoderState(encoder: encoded, rowSources: [0], capacity: decoderInput.count,
                                     cacheType: model.decoderCacheType)
        var all: [Float] = []
        for token in decoderInput { all += try model.decode([token], state: state) }
        return all
    }
}

@Suite(.serialized) struct Seq2SeqReferenceTests {
    @Test(arguments: Seq2SeqFixtures.models)
    func teacherForcedLogitsWithin1e4(model name: String) throws {
        let model = try Seq2SeqFixtures.load(name)
        let vocabulary = model.vocabularySize
        var worst = 0.0, worstLSE = 0.0
        for case_ in try Seq2SeqFixtures.cases(name) {
            let greedy = Seq2SeqFixtures.ids(case_["greedy_ids"])
            let logits = try Seq2SeqFixtures.teacherForced(model, source: Seq2SeqFixtures.ids(case_["source_ids"]),
                                                           decoderInput: Array(greedy.dropLast()))
            for (step, entry) in (case_["teacher_forced"] as! [[String: Any]]).enumerated() {
                let row = logits[step * vocabulary ..< (step + 1) * vocabulary]
                for pair in entry["top10"] as! [[NSNumber]] {
                    worst = max(worst, abs(Double(row[row.startIndex + pair[0].intValue]) - pair[1].doubleValue))
                }
                worstLSE = max(worstLSE, abs(logSumExp(row) - (entry["logsumexp"] as! NSNumber).doubleValue))
            }
        }
        print("\(name): teacher-forced max |Δlogit| (top-10) = \(worst), max |Δlogsumexp| = \(worstLSE)")
        #expect(worst <= 1e-4, "\(name): max |Δlogit| = \(worst)")
        #expect(worstLSE <= 1e-4, "\(name): max |Δlogsumexp| = \(worstLSE)")
    }

    /// Every logit of case 0 (the debug file), not just the top 10.
    @Test(arguments: Seq2SeqFixtures.models)
    func fullLogitsOfFirstCase(model name: String) throws {
        let model = try Seq2SeqFixtures.load(name)
        let case_ = try Seq2SeqFixtures.cases(name)[0]
        let greedy = Seq2SeqFixtures.ids(case_["greedy_ids"])
        let logits = try Seq2SeqFixtures.teacherForced(model, source: Seq2SeqFixtures.ids(case_["source_ids"]),
                                                       decoderInput: Array(greedy.dropLast()))
        let data = try Data(contentsOf: URL(fileURLWithPath: Seq2SeqFixtures.directory(name) + "/debug/case00.greedy_logits.f32"))
        let expected = data.withUnsafeBytes { raw in (0..<data.count / 4).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
        #expect(expected.count == logits.count)
        let worst = zip(logits, expected).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst <= 1e-4, "\(name): max |Δlogit| over all \(expected.count) logits = \(worst)")
    }

    @Test(arguments: Seq2SeqFixtures.models)
    func greedyIdsExact(model name: String) throws {
        let model = try Seq2SeqFixtures.load(name)
        let cases = try Seq2SeqFixtures.cases(name)
        // All 12 sources in one padded batch: padding must not change any result.
        let results = try Seq2SeqSearch.greedy(model: model, sources: cases.map { Seq2SeqFixtures.ids($0["source_ids"]) },
                                               settings: Seq2SeqFixtures.settings(model))
        for (case_, result) in zip(cases, results) {
            #expect(result.tokens == Seq2SeqFixtures.ids(case_["greedy_ids"]), "\(case_["name"]!)")
        }
    }

    @Test(arguments: Seq2SeqFixtures.models)
    func beamSearchNBestExact(model name: String) throws {
        let model = try Seq2SeqFixtures.load(name)
        let cases = try Seq2SeqFixtures.cases(name)
        let results = try Seq2SeqSearch.beam(model: model, sources: cases.map { Seq2SeqFixtures.ids($0["source_ids"]) },
                                             settings: Seq2SeqFixtures.settings(model, beams: 4))
        var worst: Float = 0
        for (case_, hypotheses) in zip(cases, results) {
            let expected = case_["beam_all"] as! [[String: Any]]
            #expect(hypotheses.map(\.tokens) == expected.map { Seq2SeqFixtures.ids($0["ids"]) }, "\(case_["name"]!)")
            for (h, e) in zip(hypotheses, expected) {
                worst = max(worst, abs(h.score - (e["score"] as! NSNumber).floatValue))
            }
        }
        print("\(name): beam score max error = \(worst)")
        #expect(worst <= 1e-5, "\(name): beam score max error \(worst)")
    }
}
