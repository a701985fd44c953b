import FoundationEssentials
import QuillGeneration
import QuillKernels
import QuillTokenizers

/// Loads a CTranslate2 `TransformerSpec` model folder (`model.bin`, `config.json`,
/// `shared_vocabulary.json` or `target_vocabulary.json`), as `ct2-transformers-converter` writes
/// them for Marian / OPUS-MT / Argos models, onto the same encoder-decoder blocks as Quill's
/// safetensors loader:
///
/// - fused projections split into views of one matrix (self-attention `linear_0` = Q|K|V,
///   cross-attention `linear_1` = K|V); int8/int16 matrices are dequantised with their
///   `weight_scale` (`CTranslate2File.matrix`), then optionally requantised to Q8_0;
/// - `pre_norm`, `activation`, `scale_embeddings`, the stored position tables, optional
///   `layernorm_embedding`, final norms (pre-norm models), `projection` (+ bias: Marian's
///   `final_logits_bias`);
/// - `start_from_zero_embedding`: the first decoder input is a zero vector plus position 0, as
///   CTranslate2 (and Marian C++) decode. transformers instead embeds the pad token there, which is
///   the same for converted OPUS-MT checkpoints (their pad row is zero).
///
/// CTranslate2 drops Marian's pad token from the vocabulary, so the other ids are unchanged and
/// the pad token simply cannot be generated.
public enum CTranslate2Transformer {
    /// Reads the folder, checking every variable's shape.
    /// - Parameter quantize: requantise every matrix to 8 bits (as `Seq2SeqLoader.load(quantize:)`).
    public static func load(directory: String, threads: Int, quantize: Bool = false) throws -> Seq2SeqTransformer {
        let binPath = directory.appendingPathComponent("model.bin")
        guard FileManager.default.fileExists(atPath: binPath) else {
            throw CheckpointError(path: directory, problem: "no model.bin (a CTranslate2 model folder is expected)")
        }
        let file = try CTranslate2File(path: binPath)
        guard file.specName == "TransformerSpec" else {
            throw CheckpointError(path: binPath, problem: "spec is \(file.specName), not TransformerSpec (an encoder-decoder Transformer)")
        }
        let config = try Config(directory: directory)
        let storage = WeightStorage()
        let repacking = Seq2SeqTransformer.repacking(quantize: quantize)
        let parts = try Reader(file: file, storage: storage, quantize: quantize && repacking == .none, epsilon: config.layerNormEpsilon)
            .parts(settings: config.settings)
        return Seq2SeqTransformer(parts, file: file, storage: storage, threads: threads, quantized: quantize, repacking: repacking) {
            file.releaseResidentPages(of: $0)
        }
    }

    /// `config.json` plus the target vocabulary: the special tokens' ids.
    struct Config {
        let settings: Seq2SeqSettings
        let layerNormEpsilon: Float

        init(directory: String) throws {
            let path = directory.appendingPathComponent("config.json")
            guard let data = FileManager.default.contents(atPath: path),
                  let json = (try? JSONValue(parsing: data))?.objectValue else {
                throw CheckpointError(path: path, problem: "missing or not a JSON object")
            }
            let vocabulary = try Self.targetVocabulary(directory)
            func id(_ key: String, default fallback: String) throws -> TokenID {
                let token = json[key]?.stringValue ?? fallback
                guard let index = vocabulary[token] else {
                    throw CheckpointError(path: path, problem: "\(key) '\(token)' is not in the target vocabulary")
                }
                return TokenID(index)
            }
            let eos = try id("eos_token", default: "</s>")
            settings = Seq2SeqSettings(decoderStartToken: try id("decoder_start_token", default: "<s>"),
                                       endOfSequenceTokens: [eos], padToken: eos)
            layerNormEpsilon = json["layer_norm_epsilon"]?.bridgedFloat ?? 1e-5
        }

        /// token → id from `target_vocabulary.json` or `shared_vocabulary.json` (JSON arrays of tokens).
        static func targetVocabulary(_ directory: String) throws -> [String: Int] {
            for name in ["target_vocabulary.json", "shared_vocabulary.json"] {
                let path = directory.appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                guard let values = (try? JSONValue(parsing: data))?.arrayValue,
                      case let tokens = values.compactMap(\.stringValue), tokens.count == values.count else {
                    throw CheckpointError(path: path, problem: "not a JSON array of tokens")
                }
                var ids: [String: Int] = [:]
                for (i, token) in tokens.enumerated() where ids[token] == nil { ids[token] = i }
                return ids
            }
            throw CheckpointError(path: directory, problem: "no target_vocabulary.json or shared_vocabulary.json")
        }
    }

    /// Names the variables of a TransformerSpec and builds the blocks.
    struct Reader {
        let file: CTranslate2File
        let storage: WeightStorage
        let quantize: Bool
        let epsilon: Float

        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: file.path, problem: problem) }

        func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
            let m = try file.matrix(name, rows: rows, columns: columns, storage: storage)
            return quantize ? storage.quantizedQ80(m) : m
        }

        func linear(_ name: String, rows: Int, columns: Int) throws -> Linear {
            Linear(weight: try matrix(name + "/weight", rows: rows, columns: columns),
                   bias: file.variable(name + "/bias") != nil ? try file.vector(name + "/bias", count: rows) : nil)
        }

        /// Rows `part·rows ..< (part+1)·rows` of a fused projection, as its own Linear (no copy).
        func slice(_ fused: Linear, part: Int, rows: Int) -> Linear {
            let m = fused.weight
            return Linear(weight: WeightMatrix(type: m.type, rows: rows, columns: m.columns, data: m.row(part * rows)),
                          bias: fused.bias.map { Array($0[(part * rows)..<((part + 1) * rows)]) })
        }

        func norm(_ name: String, width: Int) throws -> Norm {
            .layer(weight: try file.vector(name + "/gamma", count: width), bias: try file.vector(name + "/beta", count: width),
                   epsilon: epsilon)
        }

        func optionalNorm(_ name: String, width: Int) throws -> Norm? {
            file.variable(name + "/gamma") != nil ? try norm(name, width: width) : nil
        }

        func flag(_ name: String) throws -> Bool { file.variable(name) != nil ? try file.scalar(name) != 0 : false }

        /// `scale_embeddings`: a boolean (× sqrt(width)) in older specs, the factor itself in newer ones.
        func embeddingScale(_ scope: String, width: Int) throws -> Float {
            guard let v = file.variable(scope + "/scale_embeddings") else { return 1 }
            let value = Float(try file.scalar(scope + "/scale_embeddings"))
            if v.dtype == .f32 || v.dtype == .f16 || v.dtype == .bf16 { return value }
            return value != 0 ? Float(width).squareRoot() : 1
        }

        func activation(_ scope: String) throws -> Activation {
            switch Int(try file.scalar(scope + "/activation")) {
            case 0: return .relu
            case 1: return .geluTanh
            case 2: return .silu
            case 3: return .gelu
            case let code: throw fail("\(scope)/activation \(code) is not supported (relu, gelu, gelu tanh, swish)")
            }
        }

        func layerCount(_ scope: String) -> Int {
            (0...).prefix { file.variable("\(scope)/layer_\($0)/ffn/linear_0/weight") != nil }.count
        }

        func parts(settings: Seq2SeqSettings) throws -> Seq2SeqTransformer.Parts {
            guard let embeddingShape = file.variable("decoder/embeddings/weight")?.shape, embeddingShape.count == 2 else {
                throw fail("missing decoder/embeddings/weight")
            }
            let vocabulary = embeddingShape[0], w = embeddingShape[1]
            let heads = Int(try file.scalar("encoder/num_heads"))
            guard heads > 0, w % heads == 0, Int(try file.scalar("decoder/num_heads")) == heads else {
                throw fail("unsupported head counts for width \(w)")
            }
            guard try flag("encoder/pre_norm") == flag("decoder/pre_norm") else { throw fail("encoder and decoder disagree on pre_norm") }
            if try flag("decoder/alibi") { throw fail("ALiBi is not supported") }
            if try flag("encoder/multi_query_attention") { throw fail("multi-query attention is not supported") }
            if file.variable("encoder/layer_0/self_attention/relative_position_keys") != nil
                || file.variable("encoder/layer_0/self_attention/relative_attention_bias") != nil {
                throw fail("relative positions are not supported")
            }
            guard let positionShape = file.variable("decoder/position_encodings/encodings")?.shape, positionShape.count == 2,
                  positionShape[1] == w, file.variable("encoder/position_encodings/encodings") != nil else {
                throw fail("missing position tables (encoder/decoder position_encodings/encodings)")
            }
            let positions = positionShape[0]
            let encoderLayerCount = layerCount("encoder"), decoderLayerCount = layerCount("decoder")
            guard encoderLayerCount > 0, decoderLayerCount > 0 else { throw fail("no encoder or decoder layers") }
            let encoderActivation = try activation("encoder"), decoderActivation = try activation("decoder")

            func feedForward(_ p: String, _ act: Activation) throws -> FeedForward {
                let ffn = file.variable(p + "/linear_0/weight")?.shape.first ?? 0
                return FeedForward(input: try linear(p + "/linear_0", rows: ffn, columns: w), up: nil,
                                   output: try linear(p + "/linear_1", rows: w, columns: ffn), activation: act)
            }
            func selfAttention(_ p: String) throws -> AttentionWeights {
                let fused = try linear(p + "/linear_0", rows: 3 * w, columns: w)
                return AttentionWeights(query: slice(fused, part: 0, rows: w), key: slice(fused, part: 1, rows: w),
                                        value: slice(fused, part: 2, rows: w), output: try linear(p + "/linear_1", rows: w, columns: w))
            }
            let encoderLayers = try (0..<encoderLayerCount).map { i in
                let p = "encoder/layer_\(i)"
                return EncoderLayer(attention: try selfAttention(p + "/self_attention"),
                                    attentionNorm: try norm(p + "/self_attention/layer_norm", width: w),
                                    feedForward: try feedForward(p + "/ffn", encoderActivation),
                                    feedForwardNorm: try norm(p + "/ffn/layer_norm", width: w))
            }
            let decoderLayers = try (0..<decoderLayerCount).map { i in
                let p = "decoder/layer_\(i)"
                let keyValue = try linear(p + "/attention/linear_1", rows: 2 * w, columns: w)
                let cross = AttentionWeights(query: try linear(p + "/attention/linear_0", rows: w, columns: w),
                                             key: slice(keyValue, part: 0, rows: w), value: slice(keyValue, part: 1, rows: w),
                                             output: try linear(p + "/attention/linear_2", rows: w, columns: w))
                return DecoderLayer(selfAttention: try selfAttention(p + "/self_attention"),
                                    selfAttentionNorm: try norm(p + "/self_attention/layer_norm", width: w),
                                    crossAttention: cross, crossAttentionNorm: try norm(p + "/attention/layer_norm", width: w),
                                    feedForward: try feedForward(p + "/ffn", decoderActivation),
                                    feedForwardNorm: try norm(p + "/ffn/layer_norm", width: w))
            }
            let encoderEmbeddingName = file.variable("encoder/embeddings_0/weight") != nil ? "encoder/embeddings_0/weight" : "encoder/embeddings/weight"
            guard file.variable("encoder/embeddings_1/weight") == nil else { throw fail("source factors (several encoder embeddings) are not supported") }
            let encoderEmbedding = try matrix(encoderEmbeddingName, rows: vocabulary, columns: w)
            let decoderEmbedding = try matrix("decoder/embeddings/weight", rows: vocabulary, columns: w)
            let projection = try matrix("decoder/projection/weight", rows: vocabulary, columns: w)
            let scale = try embeddingScale("decoder", width: w)
            guard try embeddingScale("encoder", width: w) == scale else { throw fail("encoder and decoder embedding scales differ") }
            var defaults = settings
            defaults.maxNewTokens = min(defaults.maxNewTokens, positions - 1)
            return Seq2SeqTransformer.Parts(
                modelType: "ctranslate2", width: w, heads: heads, headDimension: w / heads, vocabularySize: vocabulary,
                generationDefaults: defaults, encoderEmbedding: encoderEmbedding, decoderEmbedding: decoderEmbedding,
                embeddingScale: scale,
                positions: .absolute(encoder: try file.floats("encoder/position_encodings/encodings", shape: [positions, w]),
                                     decoder: try file.floats("decoder/position_encodings/encodings", shape: [positions, w]),
                                     rows: positions, offset: 0),
                encoderEmbeddingNorm: try optionalNorm("encoder/layernorm_embedding", width: w),
                decoderEmbeddingNorm: try optionalNorm("decoder/layernorm_embedding", width: w),
                preNorm: try flag("encoder/pre_norm"), encoderLayers: encoderLayers, decoderLayers: decoderLayers,
                encoderFinalNorm: try optionalNorm("encoder/layer_norm", width: w),
                decoderFinalNorm: try optionalNorm("decoder/layer_norm", width: w),
                attentionScale: 1 / Float(w / heads).squareRoot(), outputScale: 1, lmHead: projection,
                finalLogitsBias: file.variable("decoder/projection/bias") != nil
                    ? try file.vector("decoder/projection/bias", count: vocabulary) : nil,
                zeroFirstDecoderEmbedding: try flag("decoder/start_from_zero_embedding"))
        }
    }
}
