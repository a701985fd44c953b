/// Hyper-parameters of a Llama-family decoder, read from GGUF metadata (`<arch>.*` keys).
public struct LlamaConfiguration: Sendable, Equatable {
    public var layers: Int
    public var modelWidth: Int
    public var feedForwardWidth: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDimension: Int
    public var vocabularySize: Int
    public var trainedContextLength: Int
    public var ropeBase: Float
    public var rmsEpsilon: Float

    public init(layers: Int, modelWidth: Int, feedForwardWidth: Int, heads: Int, kvHeads: Int,
                headDimension: Int, vocabularySize: Int, trainedContextLength: Int, ropeBase: Float,
                rmsEpsilon: Float) {
        self.layers = layers
        self.modelWidth = modelWidth
        self.feedForwardWidth = feedForwardWidth
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDimension = headDimension
        self.vocabularySize = vocabularySize
        self.trainedContextLength = trainedContextLength
        self.ropeBase = ropeBase
        self.rmsEpsilon = rmsEpsilon
    }

    /// Reads the configuration of a `llama`-architecture GGUF file.
    public init(gguf: GGUFFile) throws {
        let architecture = try gguf.string("general.architecture")
        guard architecture == "llama" else {
            throw GGUFError(path: gguf.path, problem: "unsupported architecture '\(architecture)' (Quill runs 'llama')")
        }
        let p = architecture + "."
        layers = try gguf.int(p + "block_count")
        modelWidth = try gguf.int(p + "embedding_length")
        feedForwardWidth = try gguf.int(p + "feed_forward_length")
        heads = try gguf.int(p + "attention.head_count")
        kvHeads = gguf.optionalInt(p + "attention.head_count_kv") ?? heads
        trainedContextLength = try gguf.int(p + "context_length")
        ropeBase = (try? gguf.float(p + "rope.freq_base")) ?? 10_000
        rmsEpsilon = try gguf.float(p + "attention.layer_norm_rms_epsilon")
        guard let embedding = gguf.tensor("token_embd.weight"), embedding.dimensions.count == 2 else {
            throw GGUFError(path: gguf.path, problem: "missing 2-D tensor token_embd.weight")
        }
        vocabularySize = embedding.dimensions[1]
        let positive = [layers, modelWidth, feedForwardWidth, heads, kvHeads, trainedContextLength]
        guard positive.allSatisfy({ $0 > 0 && $0 < 1 << 24 }), heads % kvHeads == 0, modelWidth % heads == 0 else {
            throw GGUFError(path: gguf.path, problem: "inconsistent hyper-parameters (layers \(layers), width \(modelWidth), heads \(heads)/\(kvHeads))")
        }
        // Position schemes this forward pass does not implement would run without error and give
        // wrong logits, so they are refused: Llama 3.1's frequency factors, YaRN/linear scaling.
        if gguf.tensor("rope_freqs.weight") != nil {
            throw GGUFError(path: gguf.path, problem: "RoPE frequency factors (rope_freqs.weight, Llama 3.1 style) are not supported")
        }
        if let scaling = gguf.optionalString(p + "rope.scaling.type"), scaling != "none" {
            throw GGUFError(path: gguf.path, problem: "RoPE scaling '\(scaling)' is not supported")
        }
        headDimension = gguf.optionalInt(p + "attention.key_length") ?? modelWidth / heads
        guard headDimension % 2 == 0, ropeBase > 0, rmsEpsilon > 0 else {
            throw GGUFError(path: gguf.path, problem: "invalid head dimension, RoPE base or RMS epsilon")
        }
    }
}
