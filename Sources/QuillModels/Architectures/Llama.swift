import QuillKernels

/// Llama (Llama 2, Llama 3.0, SmolLM, Mistral without a sliding window): pre-RMSNorm blocks, no
/// biases, SwiGLU feed-forward, RoPE over adjacent pairs (GGUF converters permute Llama's Q and K
/// rows for ggml's normal RoPE), an output matrix of its own or tied to the embedding.
enum Llama {
    static func architecture(_ gguf: GGUFFile) throws -> DecoderArchitecture {
        // Position schemes this forward pass does not implement would run without error and give
        // wrong logits, so they are refused: Llama 3.1's frequency factors.
        if gguf.tensor("rope_freqs.weight") != nil {
            throw GGUFError(path: gguf.path, problem: "RoPE frequency factors (rope_freqs.weight, Llama 3.1 style) are not supported")
        }
        return try DecoderArchitectures.common(gguf, name: "llama", rope: .adjacent)
    }
}
