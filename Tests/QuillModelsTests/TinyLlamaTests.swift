import Foundation
import QuillGeneration
import QuillModels
import QuillTokenizers
import Testing

/// A tiny random Llama written as a GGUF file, checked against a plain Double-precision forward pass
/// written here from the architecture's definition (not from Quill's kernels): the model code must be
/// right for shapes it was not tuned on (GQA 4:2, head dim 8, several layers, odd vocabulary).
struct TinyLlama {
    let layers = 2, width = 32, heads = 4, kvHeads = 2, ffn = 48
    let vocabulary: Int
    let ropeBase: Float = 10_000, epsilon: Float = 1e-5
    var headDimension: Int { width / heads }
    var tensors: [String: (dims: [Int], values: [Float])] = [:]

    init(seed: UInt64, vocabulary: Int = 37) {
        self.vocabulary = vocabulary
        var g = Xoshiro256StarStar(seed: seed)
        func matrix(_ rows: Int, _ columns: Int, scale: Float) -> (dims: [Int], values: [Float]) {
            ([columns, rows], (0 ..< rows * columns).map { _ in Float.random(in: -scale ... scale, using: &g) })
        }
        func norm() -> (dims: [Int], values: [Float]) { ([width], (0 ..< width).map { _ in Float.random(in: 0.8 ... 1.2, using: &g) }) }
        tensors["token_embd.weight"] = matrix(vocabulary, width, scale: 1)
        tensors["output_norm.weight"] = norm()
        tensors["output.weight"] = matrix(vocabulary, width, scale: 0.5)
        let kv = kvHeads * headDimension
        for l in 0 ..< layers {
            let p = "blk.\(l)."
            tensors[p + "attn_norm.weight"] = norm()
            tensors[p + "attn_q.weight"] = matrix(width, width, scale: 0.3)
            tensors[p + "attn_k.weight"] = matrix(kv, width, scale: 0.3)
            tensors[p + "attn_v.weight"] = matrix(kv, width, scale: 0.3)
            tensors[p + "attn_output.weight"] = matrix(width, width, scale: 0.3)
            tensors[p + "ffn_norm.weight"] = norm()
            tensors[p + "ffn_gate.weight"] = matrix(ffn, width, scale: 0.3)
            tensors[p + "ffn_up.weight"] = matrix(ffn, width, scale: 0.3)
            tensors[p + "ffn_down.weight"] = matrix(width, ffn, scale: 0.3)
        }
    }

    func gguf(overridingDims: [String: [Int]] = [:], extraMetadata: [(String, GGUFValue)] = []) -> [UInt8] {
        var writer = GGUFWriter()
        writer.metadata = [
            ("general.architecture", .string("llama")),
            ("llama.block_count", .uint32(UInt32(layers))),
            ("llama.embedding_length", .uint32(UInt32(width))),
            ("llama.feed_forward_length", .uint32(UInt32(ffn))),
            ("llama.attention.head_count", .uint32(UInt32(heads))),
            ("llama.attention.head_count_kv", .uint32(UInt32(kvHeads))),
            ("llama.context_length", .uint32(64)),
            ("llama.rope.freq_base", .float32(ropeBase)),
            ("llama.attention.layer_norm_rms_epsilon", .float32(epsilon)),
        ] + extraMetadata
        for (name, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
            let dims = overridingDims[name] ?? tensor.dims
            let bytes = tensor.values.withUnsafeBytes { Array($0) }
            writer.tensors.append(.init(name: name, dims: dims.map(UInt64.init), type: 0, data: bytes))
        }
        return writer.build().bytes
    }

    /// Logits of every position, computed directly from the definition in Double.
    func referenceLogits(_ tokens: [Int32]) -> [[Double]] {
        func w(_ name: String) -> [Double] { tensors[name]!.values.map(Double.init) }
        func project(_ name: String, _ x: [Double]) -> [Double] {
            let m = w(name), columns = x.count
            return (0 ..< m.count / columns).map { r in (0 ..< columns).reduce(0.0) { $0 + m[r * columns + $1] * x[$1] } }
        }
        func rmsNorm(_ x: [Double], _ name: String) -> [Double] {
            let s = 1 / (x.reduce(0) { $0 + $1 * $1 } / Double(x.count) + Double(epsilon)).squareRoot()
            return zip(x, w(name)).map { $0 * s * $1 }
        }
        func rotate(_ v: inout [Double], position: Int) {
            let hd = headDimension
            for h in 0 ..< v.count / hd {
                for i in 0 ..< hd / 2 {
                    let angle = Double(position) * pow(Double(ropeBase), -Double(2 * i) / Double(hd))
                    let a = v[h * hd + 2 * i], b = v[h * hd + 2 * i + 1]
                    v[h * hd + 2 * i] = a * cos(angle) - b * sin(angle)
                    v[h * hd + 2 * i + 1] = a * sin(angle) + b * cos(angle)
                }
            }
        }
        let embedding = w("token_embd.weight")
        var x = tokens.map { t in Array(embedding[Int(t) * width ..< (Int(t) + 1) * width]) }
        let hd = headDimension
        for l in 0 ..< layers {
            let p = "blk.\(l)."
            var keys: [[Double]] = [], values: [[Double]] = []
            var queries: [[Double]] = []
            for (t, row) in x.enumerated() {
                let n = rmsNorm(row, p + "attn_norm.weight")
                var q = project(p + "attn_q.weight", n), k = project(p + "attn_k.weight", n)
                rotate(&q, position: t)
                rotate(&k, position: t)
                queries.append(q); keys.append(k); values.append(project(p + "attn_v.weight", n))
            }
            for t in 0 ..< x.count {
                var attended = [Double](repeating: 0, count: width)
                for h in 0 ..< heads {
                    let g = h / (heads / kvHeads)
                    let scores = (0 ... t).map { s in
                        (0 ..< hd).reduce(0.0) { $0 + queries[t][h * hd + $1] * keys[s][g * hd + $1] } / Double(hd).squareRoot()
                    }
                    let m = scores.max()!, e = scores.map { exp($0 - m) }, total = e.reduce(0, +)
                    for s in 0 ... t { for i in 0 ..< hd { attended[h * hd + i] += e[s] / total * values[s][g * hd + i] } }
                }
                x[t] = zip(x[t], project(p + "attn_output.weight", attended)).map(+)
                let n = rmsNorm(x[t], p + "ffn_norm.weight")
                let gate = project(p + "ffn_gate.weight", n), up = project(p + "ffn_up.weight", n)
                let hidden = zip(gate, up).map { g, u in g / (1 + exp(-g)) * u }
                x[t] = zip(x[t], project(p + "ffn_down.weight", hidden)).map(+)
            }
        }
        return x.map { project("output.weight", rmsNorm($0, "output_norm.weight")) }
    }
}

@Suite struct TinyLlamaTests {
    let tokens: [Int32] = [3, 17, 0, 36, 36, 9, 21, 5, 12, 30, 1]

    func load(_ bytes: [UInt8], directory: TempDirectory, threads: Int = 2) throws -> DecoderModel {
        let file = try GGUFFile(path: try directory.write(bytes))
        return try DecoderModel(gguf: file, threads: threads, precision: .f32, endOfSequenceTokens: [])
    }

    @Test(arguments: [1, 2])
    func batchedAndStepwiseForwardMatchTheDefinition(threads: Int) throws {
        let tiny = TinyLlama(seed: 42)
        let directory = try TempDirectory()
        let model = try load(tiny.gguf(), directory: directory, threads: threads)
        let expected = tiny.referenceLogits(tokens)
        let v = tiny.vocabulary

        let batched = try model.forward(tokens, cache: try model.makeCache(capacity: 16), logits: .all)
        let cache = try model.makeCache(capacity: 16)
        var stepwise: [Float] = []
        // A prompt of 4, then one token at a time: exercises the KV cache and the mat-vec path.
        stepwise += try model.forward(Array(tokens[0 ..< 4]), cache: cache, logits: .all)
        for t in tokens[4...] { stepwise += try model.forward([t], cache: cache, logits: .last) }

        for (name, ours) in [("batched", batched), ("stepwise", stepwise)] {
            var worst = 0.0
            for t in tokens.indices {
                for i in 0 ..< v { worst = max(worst, abs(Double(ours[t * v + i]) - expected[t][i])) }
            }
            #expect(worst < 1e-4, "\(name): max |Δlogit| \(worst)")
        }
    }

    @Test func wrongTensorShapeIsAClearError() throws {
        let tiny = TinyLlama(seed: 1)
        let directory = try TempDirectory()
        #expect {
            _ = try load(tiny.gguf(overridingDims: ["blk.1.attn_k.weight": [32, 24]]), directory: directory)
        } throws: { error in
            "\(error)".contains("blk.1.attn_k.weight") && "\(error)".contains("expected")
        }
    }

    @Test func missingTensorIsAClearError() throws {
        var tiny = TinyLlama(seed: 1)
        tiny.tensors["blk.0.ffn_up.weight"] = nil
        let directory = try TempDirectory()
        #expect {
            _ = try load(tiny.gguf(), directory: directory)
        } throws: { error in
            "\(error)".contains("blk.0.ffn_up.weight")
        }
    }
}

/// A Llama whose GGUF carries a SentencePiece (`llama`) vocabulary, as Llama 2 / Mistral files do:
/// `TextModel` must tokenize with it, add BOS, and stream text that spells the generated ids.
@Suite struct SentencePieceVocabularyModelTests {
    @Test func textModelRunsWithASentencePieceVocabulary() async throws {
        let modelURL = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/sentencepiece/bpe_bytefallback.model")
        let proto = try SentencePieceModelProto(contentsOf: modelURL)
        let tiny = TinyLlama(seed: 5, vocabulary: proto.pieces.count)
        let bytes = tiny.gguf(extraMetadata: [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.tokens", .array(proto.pieces.map { .string($0.piece) })),
            ("tokenizer.ggml.scores", .array(proto.pieces.map { .float32($0.score) })),
            ("tokenizer.ggml.token_type", .array(proto.pieces.map { .int32($0.type.rawValue) })),
            ("tokenizer.ggml.bos_token_id", .uint32(UInt32(proto.bosId))),
            ("tokenizer.ggml.eos_token_id", .uint32(UInt32(proto.eosId))),
        ])
        let directory = try TempDirectory()
        let model = try TextModel(path: try directory.write(bytes), threads: 2, precision: .f32)
        let expected = try SentencePieceTokenizer(modelFile: modelURL).encode("And God said", addSpecialTokens: false)
        #expect(model.encodePrompt("And God said") == [proto.bosId] + expected)

        var options = TextGenerationOptions(maxNewTokens: 12, sampling: .greedy)
        options.stopAtEndOfSequence = false
        var tokens: [TokenID] = [], text = ""
        for try await event in model.generate("And God said", options) {
            switch event {
            case let .token(id): tokens.append(id)
            case let .text(piece): text += piece
            case .finished: break
            }
        }
        #expect(tokens.count == 12)
        // The random model emits stray byte pieces: each invalid sequence shows as one U+FFFD,
        // exactly as a lossy UTF-8 decode of all the bytes at once.
        #expect(text == String(decoding: model.bytes(of: tokens), as: UTF8.self))
    }
}

@Suite struct UnsupportedLlamaVariantTests {
    @Test func ropeScalingIsRefusedNotApproximated() throws {
        let tiny = TinyLlama(seed: 3)
        let directory = try TempDirectory()
        let path = try directory.write(tiny.gguf(extraMetadata: [("llama.rope.scaling.type", .string("yarn"))]))
        #expect {
            _ = try DecoderModel(gguf: try GGUFFile(path: path), threads: 1, endOfSequenceTokens: [])
        } throws: { "\($0)".contains("RoPE scaling 'yarn'") }
    }
}
