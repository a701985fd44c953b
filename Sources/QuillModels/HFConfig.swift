import FoundationEssentials
import QuillTokenizers

/// One token id or a list of them: HF writes `eos_token_id` either way.
public struct TokenIDList: Codable, Sendable, Equatable {
    public var ids: [Int]
    public init(_ ids: [Int]) { self.ids = ids }
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(Int.self) { ids = [one] } else { ids = try container.decode([Int].self) }
    }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        if ids.count == 1 { try container.encode(ids[0]) } else { try container.encode(ids) }
    }
    public var first: Int? { ids.first }
}

/// `config.json` of a Hugging Face encoder-decoder checkpoint (Marian, BART, T5), with HF key names.
/// Fields that one family does not use are nil; `Seq2SeqArchitecture` turns them into one description.
public struct HFModelConfig: Codable, Sendable {
    public var modelType: String
    public var vocabSize: Int
    public var dModel: Int
    // BART / Marian
    public var encoderLayers: Int?
    public var decoderLayers: Int?
    public var encoderAttentionHeads: Int?
    public var decoderAttentionHeads: Int?
    public var encoderFfnDim: Int?
    public var decoderFfnDim: Int?
    public var activationFunction: String?
    public var maxPositionEmbeddings: Int?
    public var scaleEmbedding: Bool?
    public var normalizeBefore: Bool?
    public var addFinalLayerNorm: Bool?
    public var decoderVocabSize: Int?
    public var shareEncoderDecoderEmbeddings: Bool?
    // T5
    public var numLayers: Int?
    public var numDecoderLayers: Int?
    public var numHeads: Int?
    public var dKv: Int?
    public var dFf: Int?
    public var feedForwardProj: String?
    public var denseActFn: String?
    public var isGatedAct: Bool?
    public var layerNormEpsilon: Double?
    public var relativeAttentionNumBuckets: Int?
    public var relativeAttentionMaxDistance: Int?
    // Shared
    public var tieWordEmbeddings: Bool?
    public var padTokenId: Int?
    public var eosTokenId: TokenIDList?
    public var bosTokenId: Int?
    public var decoderStartTokenId: Int?
    public var forcedBosTokenId: Int?
    public var forcedEosTokenId: Int?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", dModel = "d_model"
        case encoderLayers = "encoder_layers", decoderLayers = "decoder_layers"
        case encoderAttentionHeads = "encoder_attention_heads", decoderAttentionHeads = "decoder_attention_heads"
        case encoderFfnDim = "encoder_ffn_dim", decoderFfnDim = "decoder_ffn_dim"
        case activationFunction = "activation_function", maxPositionEmbeddings = "max_position_embeddings"
        case scaleEmbedding = "scale_embedding", normalizeBefore = "normalize_before"
        case addFinalLayerNorm = "add_final_layer_norm", decoderVocabSize = "decoder_vocab_size"
        case shareEncoderDecoderEmbeddings = "share_encoder_decoder_embeddings"
        case numLayers = "num_layers", numDecoderLayers = "num_decoder_layers", numHeads = "num_heads"
        case dKv = "d_kv", dFf = "d_ff", feedForwardProj = "feed_forward_proj", denseActFn = "dense_act_fn"
        case isGatedAct = "is_gated_act", layerNormEpsilon = "layer_norm_epsilon"
        case relativeAttentionNumBuckets = "relative_attention_num_buckets"
        case relativeAttentionMaxDistance = "relative_attention_max_distance"
        case tieWordEmbeddings = "tie_word_embeddings", padTokenId = "pad_token_id", eosTokenId = "eos_token_id"
        case bosTokenId = "bos_token_id", decoderStartTokenId = "decoder_start_token_id"
        case forcedBosTokenId = "forced_bos_token_id", forcedEosTokenId = "forced_eos_token_id"
    }
}

/// `generation_config.json` (all optional; absent keys fall back to config.json, then to defaults).
public struct HFGenerationConfig: Codable, Sendable {
    public var maxNewTokens: Int?
    public var maxLength: Int?
    public var minLength: Int?
    public var numBeams: Int?
    public var lengthPenalty: Double?
    public var earlyStopping: Bool?
    public var noRepeatNgramSize: Int?
    public var badWordsIds: [[Int]]?
    public var padTokenId: Int?
    public var eosTokenId: TokenIDList?
    public var bosTokenId: Int?
    public var decoderStartTokenId: Int?
    public var forcedBosTokenId: Int?
    public var forcedEosTokenId: TokenIDList?

    enum CodingKeys: String, CodingKey {
        case maxNewTokens = "max_new_tokens", maxLength = "max_length", minLength = "min_length"
        case numBeams = "num_beams", lengthPenalty = "length_penalty", earlyStopping = "early_stopping"
        case noRepeatNgramSize = "no_repeat_ngram_size", badWordsIds = "bad_words_ids"
        case padTokenId = "pad_token_id", eosTokenId = "eos_token_id", bosTokenId = "bos_token_id"
        case decoderStartTokenId = "decoder_start_token_id"
        case forcedBosTokenId = "forced_bos_token_id", forcedEosTokenId = "forced_eos_token_id"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        maxNewTokens = try c.decodeIfPresent(Int.self, forKey: .maxNewTokens)
        maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength)
        minLength = try c.decodeIfPresent(Int.self, forKey: .minLength)
        numBeams = try c.decodeIfPresent(Int.self, forKey: .numBeams)
        lengthPenalty = try c.decodeIfPresent(Double.self, forKey: .lengthPenalty)
        // `early_stopping` may also be the string "never"; Quill treats that like false.
        earlyStopping = (try? c.decodeIfPresent(Bool.self, forKey: .earlyStopping)) ?? nil
        noRepeatNgramSize = try c.decodeIfPresent(Int.self, forKey: .noRepeatNgramSize)
        badWordsIds = try c.decodeIfPresent([[Int]].self, forKey: .badWordsIds)
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId)
        eosTokenId = try c.decodeIfPresent(TokenIDList.self, forKey: .eosTokenId)
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        decoderStartTokenId = try c.decodeIfPresent(Int.self, forKey: .decoderStartTokenId)
        forcedBosTokenId = try c.decodeIfPresent(Int.self, forKey: .forcedBosTokenId)
        forcedEosTokenId = try c.decodeIfPresent(TokenIDList.self, forKey: .forcedEosTokenId)
    }
}

extension HFModelConfig {
    /// Reads `directory/config.json`; a missing file or an unreadable value is a one-line error.
    public static func load(directory: String) throws -> HFModelConfig {
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory else {
            throw CheckpointError(path: directory, problem: "no such model folder")
        }
        let path = directory.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError(path: directory, problem: "no config.json (expected a Hugging Face model folder)")
        }
        do {
            return try JSONDecoder().decode(HFModelConfig.self, from: data)
        } catch {
            throw CheckpointError(path: path, problem: "cannot read config: \(describe(error))")
        }
    }
}

extension HFGenerationConfig {
    /// Reads `directory/generation_config.json`, or an empty configuration when there is none.
    public static func load(directory: String) throws -> HFGenerationConfig {
        let path = directory.appendingPathComponent("generation_config.json")
        guard let data = FileManager.default.contents(atPath: path) else { return HFGenerationConfig() }
        do {
            return try JSONDecoder().decode(HFGenerationConfig.self, from: data)
        } catch {
            throw CheckpointError(path: path, problem: "cannot read generation config: \(describe(error))")
        }
    }
}

/// A one-line description of a `DecodingError` (its default description is multi-line and nested).
func describe(_ error: Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    func path(_ context: DecodingError.Context) -> String {
        context.codingPath.map(\.stringValue).joined(separator: ".")
    }
    switch error {
    case .keyNotFound(let key, _): return "missing key \(key.stringValue)"
    case .typeMismatch(_, let context), .valueNotFound(_, let context):
        return "wrong type for \(path(context))"
    case .dataCorrupted(let context):
        return context.codingPath.isEmpty ? "not valid JSON" : "bad value for \(path(context))"
    @unknown default: return "\(error)"
    }
}
