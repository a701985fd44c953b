import QuillKernels

/// Qwen2 / Qwen2.5: Llama's block with biases on the Q, K and V projections, RoPE over halves
/// (Qwen's GGUF rows are not permuted), and an output matrix of its own.
enum Qwen2 {
    static func architecture(_ gguf: GGUFFile) throws -> DecoderArchitecture {
        var a = try DecoderArchitectures.common(gguf, name: "qwen2", rope: .halves)
        a.attentionBiases = true
        return a
    }
}
