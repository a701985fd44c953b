import Foundation
import QuillGeneration
import QuillKernels
import QuillModels
import Testing

/// Gemma 3 270M and Qwen2.5-Coder 0.5B (real Q4_K_M files) against transformers fp32 on the
/// dequantised weights, with the reference pack's tolerances (README sections gemma3-270m and
/// qwen2.5-coder-0.5b): greedy ids exact, top-20 logits and logsumexp within 1e-3, perplexity ±0.01
/// on the f32 path; the quantised path no further from transformers than llama.cpp is.
@Suite(.serialized) struct GGUFModelReferenceTests {
    /// A pack model: its fixture folder, named as `Weights/fetch NAME` and `-m NAME` name it.
    struct PackModel: Sendable, CustomTestStringConvertible {
        let name: String
        var testDescription: String { name }

        static let gemma = PackModel(name: "gemma3-270m")
        static let qwen = PackModel(name: "qwen2.5-coder-0.5b")
        static let all = [gemma, qwen]

        /// Where `Weights/fetch` stores the model.
        var path: String { ModelLocator.path(for: name) }

        func fixture(_ path: String) -> URL {
            Bundle.module.resourceURL!.appendingPathComponent("Fixtures/\(name)/" + path)
        }

        func jsonLines(_ path: String) throws -> [[String: Any]] {
            try String(contentsOf: fixture(path), encoding: .utf8).split(separator: "\n").map {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            }
        }

        func json(_ path: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(contentsOf: fixture(path))) as! [String: Any]
        }

        /// The model's weights (no tokenizer: the cases carry token ids).
        func load(_ precision: ComputePrecision, endOfSequence: Set<TokenID> = []) throws -> DecoderModel {
            guard FileManager.default.fileExists(atPath: path) else {
                Issue.record("\(path) is missing: run Weights/fetch \(name)")
                throw CancellationError()
            }
            return try DecoderModel(gguf: try GGUFFile(path: path), threads: 2, precision: precision,
                                    endOfSequenceTokens: endOfSequence)
        }
    }

    @Test(arguments: PackModel.all)
    func greedyContinuationsAreTokenExact(_ pack: PackModel) throws {
        let cases = try pack.jsonLines("greedy.jsonl")
        let stops = Set(ReferenceData.ids(cases[0]["stop_ids"]))
        let model = try pack.load(.f32, endOfSequence: stops)
        for c in cases {
            var produced: [TokenID] = []
            _ = try generate(model: model, prompt: ReferenceData.ids(c["prompt_ids"]), cache: try model.makeCache(capacity: 256),
                             options: GenerationOptions(maxNewTokens: (c["max_new_tokens"] as! NSNumber).intValue)) {
                produced.append($0)
                return true
            }
            #expect(produced == ReferenceData.ids(c["greedy_ids"]), "\(pack.name) \(c["name"]!)")
        }
    }

    /// Largest |Δ| over transformers' top-20 ids and of the logsumexp, per position of `rows`.
    func worstDifferences(_ logits: [Float], _ rows: [[String: Any]], vocabulary: Int) -> (logit: Double, logsumexp: Double) {
        var worst = (logit: 0.0, logsumexp: 0.0)
        for (position, row) in rows.enumerated() {
            let ours = logits[position * vocabulary ..< (position + 1) * vocabulary]
            for pair in row["top20"] as! [[NSNumber]] {
                worst.logit = max(worst.logit, abs(Double(ours[ours.startIndex + pair[0].intValue]) - pair[1].doubleValue))
            }
            worst.logsumexp = max(worst.logsumexp, abs(logSumExp(ours) - (row["logsumexp"] as! NSNumber).doubleValue))
        }
        return worst
    }

    @Test(arguments: PackModel.all)
    func teacherForcedLogitsWithin1e3(_ pack: PackModel) throws {
        let model = try pack.load(.f32)
        var files = ["logits/seq0.jsonl", "logits/seq1.jsonl", "logits/seq2.jsonl", "logits/seq3.jsonl"]
        // Gemma's 1024-token sequence crosses the 512-position sliding window of its local layers.
        if pack.name == "gemma3-270m" { files.append("logits/long1024.jsonl") }
        for file in files {
            let rows = try pack.jsonLines(file)
            let tokens = rows.map { TokenID(($0["token_id"] as! NSNumber).intValue) }
            let logits = try model.forward(tokens, cache: try model.makeCache(capacity: tokens.count), logits: .all)
            let worst = worstDifferences(logits, rows, vocabulary: model.vocabularySize)
            print("\(pack.name) \(file): max |Δlogit| (top-20) \(worst.logit), max |Δlogsumexp| \(worst.logsumexp)")
            #expect(worst.logit <= 1e-3 && worst.logsumexp <= 1e-3, "\(pack.name) \(file)")
        }
    }

    /// Gemma's local layers keep only their window: the 1024-token sequence run in 100-token chunks,
    /// so that their blocks are freed behind the window between chunks, still meets the reference,
    /// while those layers never hold more than the window's blocks and the global layers hold all.
    @Test func gemmasLocalLayersKeepOnlyTheirWindowAndStillMeetTheReference() throws {
        let pack = PackModel.gemma
        let model = try pack.load(.f32)
        let rows = try pack.jsonLines("logits/long1024.jsonl")
        let tokens = rows.map { TokenID(($0["token_id"] as! NSNumber).intValue) }
        let context = try model.makeContext(kvTokens: tokens.count)
        let sequence = context.kv.createSequence()
        var logits: [Float] = []
        for start in stride(from: 0, to: tokens.count, by: 100) {
            logits += try context.forward(Array(tokens[start ..< min(start + 100, tokens.count)]), sequence: sequence, logits: .all)
        }
        let worst = worstDifferences(logits, rows, vocabulary: model.vocabularySize)
        #expect(worst.logit <= 1e-3 && worst.logsumexp <= 1e-3, "max |Δlogit| \(worst.logit), |Δlogsumexp| \(worst.logsumexp)")
        let blockTokens = context.kv.blockTokens
        print("gemma3-270m long1024 in 100-token chunks: \(context.kv.residentWindowedBlocks) local-layer blocks written, \(context.kv.residentBlocks) global")
        #expect(context.kv.residentBlocks == tokens.count / blockTokens, "the global layers keep every position")
        // The window (512), a 100-token chunk and a partial block at each end.
        #expect(context.kv.residentWindowedBlocks <= (512 + 100) / blockTokens + 2)
        #expect(context.kv.windowedBlocks(of: sequence).prefix(10).allSatisfy { $0 == -1 }, "the first blocks are freed")
    }

    /// Every position through the decoding (int8) kernels, one token at a time, against transformers:
    /// mean |Δ| over the top-20, KL over the top-20 plus the rest, argmax agreement — each no worse
    /// than llama.cpp's own figures on the same sequences.
    @Test(arguments: PackModel.all)
    func quantisedPathIsNoFurtherFromTransformersThanLlamaCpp(_ pack: PackModel) throws {
        let model = try pack.load(.quantized)
        let index = try pack.json("logits/index.json")["sequences"] as! [[String: Any]]
        for (k, sequence) in index.enumerated() {
            let rows = try pack.jsonLines("logits/seq\(k).jsonl")
            let cache = try model.makeCache(capacity: rows.count)
            var meanDifference = 0.0, meanKL = 0.0, agree = 0
            for row in rows {
                let logits = try model.forward([TokenID((row["token_id"] as! NSNumber).intValue)], cache: cache, logits: .last)
                let top = (row["top20"] as! [[NSNumber]]).map { (Int($0[0].intValue), $0[1].doubleValue) }
                let ours = logSumExp(logits[...]), theirs = (row["logsumexp"] as! NSNumber).doubleValue
                meanDifference += top.reduce(0) { $0 + abs(Double(logits[$1.0]) - $1.1) } / 20
                // KL(transformers ‖ ours) over the top-20 ids plus one bucket for everything else.
                var kl = 0.0, restP = 1.0, restQ = 1.0
                for (id, value) in top {
                    let p = exp(value - theirs), q = exp(Double(logits[id]) - ours)
                    kl += p * log(p / q)
                    restP -= p
                    restQ -= q
                }
                if restP > 0 && restQ > 0 { kl += restP * log(restP / restQ) }
                meanKL += kl
                if argmax(logits) == TokenID(top[0].0) { agree += 1 }
            }
            meanDifference /= Double(rows.count)
            meanKL /= Double(rows.count)
            let yardstick = sequence["llamacpp_vs_transformers"] as! [String: Any]
            let theirDifference = (yardstick["mean_abs_logit_diff_top20"] as! NSNumber).doubleValue
            let theirKL = (yardstick["mean_kl_top20_plus_rest"] as! NSNumber).doubleValue
            let theirAgree = (yardstick["argmax_agree_positions"] as! NSNumber).intValue
            print("\(pack.name) seq\(k): mean |Δlogit| \(meanDifference) (llama.cpp \(theirDifference)), KL \(meanKL) (\(theirKL)), argmax \(agree)/\(rows.count) (\(theirAgree))")
            #expect(meanDifference <= theirDifference && meanKL <= theirKL && agree >= theirAgree, "\(pack.name) seq\(k)")
        }
    }

    @Test(arguments: PackModel.all)
    func perplexityOnHamletWithin001(_ pack: PackModel) throws {
        let reference = try pack.json("perplexity.json")
        guard FileManager.default.fileExists(atPath: pack.path) else {
            Issue.record("\(pack.path) is missing: run Weights/fetch \(pack.name)")
            return
        }
        let model = try TextModel(path: pack.path, threads: 2, precision: .f32)
        let text = try String(contentsOf: ReferenceData.url("hamlet.md"), encoding: .utf8)
        var tokens = Array(model.encodePrompt(text).prefix(8 * 512))
        // As llama-perplexity (and the pack): with a BOS model every window starts with BOS.
        if let bos = model.beginningOfSequence { for w in 0 ..< 8 { tokens[w * 512] = bos } }
        let result = try Perplexity.measure(model: model.model, tokens: tokens, window: 512)
        let expected = reference["transformers"] as! [String: Any]
        let all = (expected["ppl_all_positions"] as! NSNumber).doubleValue
        let half = (expected["ppl_second_half"] as! NSNumber).doubleValue
        print("\(pack.name) perplexity \(result.perplexity) (\(all)), second half \(result.secondHalfPerplexity) (\(half))")
        #expect(abs(result.perplexity - all) <= 0.01 && abs(result.secondHalfPerplexity - half) <= 0.01)
    }
}
