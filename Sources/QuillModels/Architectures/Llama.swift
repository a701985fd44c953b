import QuillKernels

/// Llama (Llama 2, Llama 3.x, SmolLM, Mistral without a sliding window): pre-RMSNorm blocks, no
/// biases, SwiGLU feed-forward, RoPE over adjacent pairs (GGUF converters permute Llama's Q and K
/// rows for ggml's normal RoPE), an output matrix of its own or tied to the embedding. Llama 3.1+
/// files carry their `llama3` RoPE scaling as per-pair frequency factors (`rope_freqs.weight`);
/// linear scaling comes as `llama.rope.scaling.*` (both read by `DecoderArchitectures.common`).
enum Llama {
    static func architecture(_ gguf: GGUFFile) throws -> DecoderArchitecture {
        try DecoderArchitectures.common(gguf, name: "llama", rope: .adjacent, honoursFrequencyFactors: true)
    }
}
