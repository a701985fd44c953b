import QuillKernels

/// A decoder-only transformer described by its parts: every architecture Quill runs is one of
/// these, built from a GGUF file's metadata by a function in the `DecoderArchitectures` registry.
///
/// A block is: norm → attention (Q/K/V projections with optional biases, optional per-head Q/K
/// norms, RoPE, causal GQA attention with an optional sliding window) → output projection →
/// optional post-norm → residual; then norm → gated feed-forward → optional post-norm → residual.
public struct DecoderArchitecture: Sendable, Equatable {
    /// `general.architecture` of the file.
    public var name: String
    public var layers: Int
    public var width: Int
    public var feedForwardWidth: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDimension: Int
    public var vocabularySize: Int
    public var trainedContextLength: Int
    /// Epsilon of every RMSNorm.
    public var normEpsilon: Float
    /// Q/K/V projections have biases (Qwen2).
    public var attentionBiases = false
    /// Per-head RMSNorm of queries and keys before RoPE (Gemma 3).
    public var queryKeyNorms = false
    /// RMSNorm of the attention and feed-forward outputs before the residual adds (Gemma 2/3).
    public var postNorms = false
    /// Activation of the gated feed-forward: `act(gate) · up`.
    public var activation: Activation = .silu
    /// Embeddings are multiplied by this (Gemma: √width); nil = not scaled.
    public var embeddingScale: Float?
    /// Factor on the query–key products.
    public var attentionScale: Float
    /// RoPE of the global layers.
    public var rope: RotaryEmbedding
    /// Sliding-window layers: their window and RoPE; nil = every layer is global.
    public var slidingWindow: SlidingWindow?

    /// Layers that attend to the last `size` positions only, with a RoPE of their own.
    public struct SlidingWindow: Sendable, Equatable {
        /// Positions a token attends to, itself included.
        public var size: Int
        public var rope: RotaryEmbedding
        /// Which layers slide (the others are global).
        public var layers: Set<Int>
    }

    public init(name: String, layers: Int, width: Int, feedForwardWidth: Int, heads: Int, kvHeads: Int,
                headDimension: Int, vocabularySize: Int, trainedContextLength: Int, normEpsilon: Float,
                rope: RotaryEmbedding) {
        self.name = name
        self.layers = layers
        self.width = width
        self.feedForwardWidth = feedForwardWidth
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDimension = headDimension
        self.vocabularySize = vocabularySize
        self.trainedContextLength = trainedContextLength
        self.normEpsilon = normEpsilon
        self.rope = rope
        attentionScale = 1 / Float(headDimension).squareRoot()
    }

    /// The window of `layer` (nil for a global layer).
    public func window(ofLayer layer: Int) -> Int? {
        guard let slidingWindow, slidingWindow.layers.contains(layer) else { return nil }
        return slidingWindow.size
    }

    /// The RoPE of `layer`.
    public func rope(ofLayer layer: Int) -> RotaryEmbedding {
        guard let slidingWindow, slidingWindow.layers.contains(layer) else { return rope }
        return slidingWindow.rope
    }

    /// Width of all query heads together.
    public var queryWidth: Int { heads * headDimension }
    /// Width of all key (or value) heads together.
    public var keyValueWidth: Int { kvHeads * headDimension }
}

/// Architectures by `general.architecture`: each entry reads the hyper-parameters of its files.
public enum DecoderArchitectures {
    public typealias Reader = @Sendable (GGUFFile) throws -> DecoderArchitecture

    public static let registry: [String: Reader] = [
        "llama": Llama.architecture,
        "qwen2": Qwen2.architecture,
        "gemma3": Gemma3.architecture,
    ]

    /// The architecture of `gguf`, or a one-line error naming what is supported.
    public static func architecture(of gguf: GGUFFile) throws -> DecoderArchitecture {
        let name = try gguf.string("general.architecture")
        guard let reader = registry[name] else {
            let known = registry.keys.sorted().map { "'\($0)'" }.joined(separator: ", ")
            throw GGUFError(path: gguf.path, problem: "unsupported architecture '\(name)' (Quill runs \(known))")
        }
        return try reader(gguf)
    }

    /// Per-pair RoPE frequency divisors of Llama 3.1+ files (`rope_type: llama3` in transformers).
    static let ropeFrequencyFactorsTensor = "rope_freqs.weight"

    /// The hyper-parameters every architecture shares, from `<name>.*` keys, checked.
    /// - Parameter honoursFrequencyFactors: the architecture applies `rope_freqs.weight` to its
    ///   (global) RoPE; a file of another architecture that carries the tensor is refused.
    static func common(_ gguf: GGUFFile, name: String, rope pairing: RotaryEmbedding.Pairing,
                       honoursFrequencyFactors: Bool = false) throws -> DecoderArchitecture {
        let p = name + "."
        let layers = try gguf.int(p + "block_count")
        let width = try gguf.int(p + "embedding_length")
        let feedForward = try gguf.int(p + "feed_forward_length")
        let heads = try gguf.int(p + "attention.head_count")
        let kvHeads = gguf.optionalInt(p + "attention.head_count_kv") ?? heads
        let context = try gguf.int(p + "context_length")
        let ropeBase = (try? gguf.float(p + "rope.freq_base")) ?? 10_000
        let epsilon = try gguf.float(p + "attention.layer_norm_rms_epsilon")
        guard let embedding = gguf.tensor("token_embd.weight"), embedding.dimensions.count == 2 else {
            throw GGUFError(path: gguf.path, problem: "missing 2-D tensor token_embd.weight")
        }
        let positive = [layers, width, feedForward, heads, kvHeads, context]
        guard positive.allSatisfy({ $0 > 0 && $0 < 1 << 24 }), heads % kvHeads == 0 else {
            throw GGUFError(path: gguf.path, problem: "inconsistent hyper-parameters (layers \(layers), width \(width), heads \(heads)/\(kvHeads))")
        }
        let headDimension = gguf.optionalInt(p + "attention.key_length") ?? width / heads
        guard headDimension > 0, headDimension % 2 == 0, headDimension < 1 << 16, ropeBase > 0, epsilon > 0,
              gguf.optionalInt(p + "attention.value_length").map({ $0 == headDimension }) ?? true else {
            throw GGUFError(path: gguf.path, problem: "invalid head dimension, RoPE base or RMS epsilon")
        }
        if let rotated = gguf.optionalInt(p + "rope.dimension_count"), rotated != headDimension {
            throw GGUFError(path: gguf.path, problem: "partial RoPE (\(rotated) of \(headDimension) dimensions rotated) is not supported")
        }
        let linearScale = try ropeLinearScale(gguf, prefix: p)
        var frequencyFactors: [Float]?
        if gguf.tensor(ropeFrequencyFactorsTensor) != nil {
            guard honoursFrequencyFactors else {
                throw GGUFError(path: gguf.path, problem: "RoPE frequency factors (\(ropeFrequencyFactorsTensor)) are not supported for '\(name)'")
            }
            let factors = try WeightBinder(gguf: gguf, residentBytes: 0)
                .vector(ropeFrequencyFactorsTensor, count: headDimension / 2)
            guard factors.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw GGUFError(path: gguf.path, problem: "\(ropeFrequencyFactorsTensor) holds a factor that is not a positive number")
            }
            frequencyFactors = factors
        }
        return DecoderArchitecture(
            name: name, layers: layers, width: width, feedForwardWidth: feedForward, heads: heads, kvHeads: kvHeads,
            headDimension: headDimension, vocabularySize: embedding.dimensions[1], trainedContextLength: context,
            normEpsilon: epsilon,
            rope: RotaryEmbedding(headDimension: headDimension, base: ropeBase, pairing: pairing,
                                  frequencyFactors: frequencyFactors, linearScale: linearScale))
    }

    /// The factor positions are divided by: `rope.scaling.factor` of linear scaling (transformers'
    /// `rope_type: linear`), 1 without scaling. As in llama.cpp, a factor without a type is linear
    /// and 0 means none. Other schemes (YaRN, LongRoPE…) change more than the frequencies and are
    /// refused rather than approximated.
    static func ropeLinearScale(_ gguf: GGUFFile, prefix p: String) throws -> Float {
        let type = gguf.optionalString(p + "rope.scaling.type") ?? "linear"
        switch type {
        case "none":
            return 1
        case "linear":
            guard let factor = gguf.optionalFloat(p + "rope.scaling.factor") ?? gguf.optionalFloat(p + "rope.scale_linear"),
                  factor != 0 else { return 1 }
            guard factor.isFinite, factor > 0 else {
                throw GGUFError(path: gguf.path, problem: "\(p)rope.scaling.factor must be a positive number (got \(factor))")
            }
            return factor
        default:
            throw GGUFError(path: gguf.path, problem: "RoPE scaling '\(type)' is not supported")
        }
    }
}
