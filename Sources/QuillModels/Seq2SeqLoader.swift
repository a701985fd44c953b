import FoundationEssentials
import QuillGeneration
import QuillKernels
import QuillTokenizers

/// Loads a Hugging Face encoder-decoder checkpoint folder (`config.json`, `generation_config.json`,
/// `model.safetensors`) as it is: Marian (`marian`), BART (`bart`) and T5 v1.0 / v1.1 / FLAN (`t5`).
public enum Seq2SeqLoader {
    /// The model types Quill reads.
    public static let supportedModelTypes = ["marian", "bart", "t5"]

    /// Reads the configs, maps the weights and checks every tensor's shape.
    /// - Parameters:
    ///   - threads: threads for the kernels
    ///   - quantize: 8-bit weights made at load time: where the VNNI kernel runs, every matrix in
    ///     CTranslate2's int8 format (per-row scales) and every product an int8 GEMM with per-row
    ///     quantised inputs (`RowScaledInt8GEMM`); elsewhere Q8_0 matrices with int8 dot products.
    ///     Otherwise the checkpoint's F32/F16/BF16 weights are used in place.
    public static func load(directory: String, threads: Int, quantize: Bool = false) throws -> Seq2SeqTransformer {
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory else {
            throw CheckpointError(path: directory, problem: "no such model folder")
        }
        let config = try HFModelConfig.load(directory: directory)
        guard supportedModelTypes.contains(config.modelType) else {
            throw CheckpointError(path: directory, problem:
                "unsupported model_type '\(config.modelType)' (Quill reads \(supportedModelTypes.joined(separator: ", ")))")
        }
        let generation = try HFGenerationConfig.load(directory: directory)
        let weightsPath = directory.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            let hasBin = FileManager.default.fileExists(atPath: directory.appendingPathComponent("pytorch_model.bin"))
            let sharded = FileManager.default.fileExists(atPath: directory.appendingPathComponent("model.safetensors.index.json"))
            throw CheckpointError(path: directory, problem: "no model.safetensors"
                + (sharded ? " (sharded checkpoints are not supported yet)" : hasBin ? " (pytorch_model.bin is not supported; convert it to safetensors)" : ""))
        }
        // With the VNNI kernel, the quantised path is CTranslate2's int8 scheme made from the checkpoint's
        // own values (Seq2SeqTransformer.repacking(quantize:)), so the matrices are not made Q8_0 first.
        let repacking = Seq2SeqTransformer.repacking(quantize: quantize)
        let reader = WeightReader(file: try SafetensorsFile(path: weightsPath), quantize: quantize && repacking == .none, owner: WeightStorage())
        try config.validate(path: directory.appendingPathComponent("config.json"),
                            tensorCount: reader.file.tensors.count)
        try generation.validate(path: directory.appendingPathComponent("generation_config.json"),
                                vocabulary: config.vocabSize)
        let settings = defaults(config: config, generation: generation)
        let parts: Seq2SeqTransformer.Parts
        switch config.modelType {
        case "marian": parts = try Marian.parts(config: config, weights: reader, settings: settings)
        case "bart": parts = try Bart.parts(config: config, weights: reader, settings: settings)
        default: parts = try T5.parts(config: config, weights: reader, settings: settings)
        }
        return Seq2SeqTransformer(parts, file: reader.file, storage: reader.owner, threads: threads, quantized: quantize,
                                  repacking: repacking) { reader.file.releaseResidentPages(of: $0) }
    }

    /// Generation settings as transformers derives them: generation_config.json first, then config.json.
    public static func defaults(config: HFModelConfig, generation g: HFGenerationConfig) -> Seq2SeqSettings {
        let eos = (g.eosTokenId ?? config.eosTokenId)?.ids ?? []
        let pad = g.padTokenId ?? config.padTokenId ?? eos.first ?? 0
        let start = g.decoderStartTokenId ?? config.decoderStartTokenId ?? pad
        let maxNew = g.maxNewTokens ?? g.maxLength.map { max(1, $0 - 1) } ?? 256
        return Seq2SeqSettings(
            decoderStartToken: TokenID(start), endOfSequenceTokens: eos.map { TokenID($0) }, padToken: TokenID(pad),
            forcedBOS: (g.forcedBosTokenId ?? config.forcedBosTokenId).map { TokenID($0) },
            forcedEOS: (g.forcedEosTokenId?.first ?? config.forcedEosTokenId).map { TokenID($0) },
            badWords: (g.badWordsIds ?? []).map { $0.map { TokenID($0) } },
            noRepeatNgramSize: g.noRepeatNgramSize ?? 0, minLength: g.minLength ?? 0, maxNewTokens: maxNew,
            numBeams: g.numBeams ?? 1, lengthPenalty: Float(g.lengthPenalty ?? 1), earlyStopping: g.earlyStopping ?? false,
            numReturnSequences: 1)
    }

    /// A config value that must be present.
    static func required<T>(_ value: T?, _ key: String, _ config: HFModelConfig) throws -> T {
        guard let value else { throw CheckpointError(path: "config.json", problem: "\(config.modelType) config lacks \(key)") }
        return value
    }

    /// The encoder and decoder layers of the BART family (BART, Marian): post-norm, biased
    /// projections, LayerNorm eps 1e-5.
    static func bartFamilyLayers(config c: HFModelConfig, weights: WeightReader, prefix: String)
        throws -> (encoder: [EncoderLayer], decoder: [DecoderLayer]) {
        let w = c.dModel
        let activationName = c.activationFunction ?? "gelu"
        guard let activation = Activation(huggingFaceName: activationName) else {
            throw CheckpointError(path: "config.json", problem: "unsupported activation_function '\(activationName)'")
        }
        let encoderFFN = try required(c.encoderFfnDim, "encoder_ffn_dim", c)
        let decoderFFN = try required(c.decoderFfnDim, "decoder_ffn_dim", c)
        func feedForward(_ p: String, _ ffn: Int) throws -> FeedForward {
            FeedForward(input: try weights.linear(p + ".fc1", rows: ffn, columns: w, bias: true), up: nil,
                        output: try weights.linear(p + ".fc2", rows: w, columns: ffn, bias: true), activation: activation)
        }
        let encoder = try (0..<(try required(c.encoderLayers, "encoder_layers", c))).map { i in
            let p = "\(prefix)encoder.layers.\(i)"
            return EncoderLayer(attention: try weights.bartAttention(p + ".self_attn", width: w),
                                attentionNorm: try weights.layerNorm(p + ".self_attn_layer_norm", width: w, epsilon: 1e-5),
                                feedForward: try feedForward(p, encoderFFN),
                                feedForwardNorm: try weights.layerNorm(p + ".final_layer_norm", width: w, epsilon: 1e-5))
        }
        let decoder = try (0..<(try required(c.decoderLayers, "decoder_layers", c))).map { i in
            let p = "\(prefix)decoder.layers.\(i)"
            return DecoderLayer(selfAttention: try weights.bartAttention(p + ".self_attn", width: w),
                                selfAttentionNorm: try weights.layerNorm(p + ".self_attn_layer_norm", width: w, epsilon: 1e-5),
                                crossAttention: try weights.bartAttention(p + ".encoder_attn", width: w),
                                crossAttentionNorm: try weights.layerNorm(p + ".encoder_attn_layer_norm", width: w, epsilon: 1e-5),
                                feedForward: try feedForward(p, decoderFFN),
                                feedForwardNorm: try weights.layerNorm(p + ".final_layer_norm", width: w, epsilon: 1e-5))
        }
        return (encoder, decoder)
    }

    /// Heads of a BART-family config; encoder and decoder must agree (they share the cache layout).
    static func bartFamilyHeads(_ c: HFModelConfig) throws -> Int {
        let heads = try required(c.encoderAttentionHeads, "encoder_attention_heads", c)
        guard heads == (c.decoderAttentionHeads ?? heads), heads > 0, c.dModel % heads == 0 else {
            throw CheckpointError(path: "config.json", problem: "unsupported head counts (encoder \(heads), decoder \(c.decoderAttentionHeads ?? heads), d_model \(c.dModel))")
        }
        return heads
    }

    /// The (vocab, width) matrix under the first present name.
    static func embedding(_ names: [String], weights: WeightReader, vocabulary: Int, width: Int) throws -> WeightMatrix {
        guard let name = weights.file.firstPresent(names) else {
            throw CheckpointError(path: weights.file.path, problem: "missing tensor \(names[0])")
        }
        return try weights.matrix(name, rows: vocabulary, columns: width)
    }
}
