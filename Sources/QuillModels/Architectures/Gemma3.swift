import QuillKernels

/// Gemma 3: per-head RMSNorm of queries and keys, norms after attention and feed-forward as well as
/// before, a GELU-tanh gate, embeddings scaled by √width, RoPE over halves, and five sliding-window
/// layers (512 positions, RoPE base 10,000) for every global one. The GGUF's norm weights already
/// hold Gemma's `1 + w`; there is no soft-capping; the output matrix is the embedding.
enum Gemma3 {
    /// Base of the sliding layers' RoPE. The GGUF stores only the global layers' base; 10,000 is
    /// what transformers (`rope_parameters.sliding_attention`) and llama.cpp use.
    static let localRopeBase: Float = 10_000
    /// Every sixth layer (5, 11, 17, …) is global.
    static let globalLayerPeriod = 6

    static func architecture(_ gguf: GGUFFile) throws -> DecoderArchitecture {
        var a = try DecoderArchitectures.common(gguf, name: "gemma3", rope: .halves)
        a.queryKeyNorms = true
        a.postNorms = true
        a.activation = .geluTanh
        // transformers casts `hidden_size ** 0.5` to the weight dtype: a Float.
        a.embeddingScale = Float(Double(a.width).squareRoot())
        let scalar = gguf.optionalInt("gemma3.attention.query_pre_attn_scalar") ?? a.headDimension
        a.attentionScale = 1 / Float(scalar).squareRoot()
        if let window = gguf.optionalInt("gemma3.attention.sliding_window") {
            guard window > 0 else { throw GGUFError(path: gguf.path, problem: "gemma3.attention.sliding_window must be positive") }
            a.slidingWindow = .init(
                size: window,
                rope: RotaryEmbedding(headDimension: a.headDimension, base: localRopeBase, pairing: .halves),
                layers: Set((0 ..< a.layers).filter { ($0 + 1) % globalLayerPeriod != 0 }))
        }
        return a
    }
}
