import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import QuillGeneration
import QuillKernels

/// T5 v1.0 (ReLU, tied embeddings with the decoder output × d_model^-0.5) and v1.1 / FLAN
/// (gated GELU `wo(gelu_new(wi_0 x) ⊙ wi_1 x)`, untied lm_head, no rescale): pre-norm layers with
/// RMS norm (no mean, no bias), no attention scaling, no absolute positions but a relative position
/// bias per head — bucketed bidirectionally in the encoder and causally in the decoder, stored in
/// layer 0 of each stack and shared by the later layers — and a final norm after each stack.
enum T5 {
    static func parts(config c: HFModelConfig, weights: WeightReader, settings: Seq2SeqSettings) throws -> Seq2SeqTransformer.Parts {
        let w = c.dModel, vocabulary = c.vocabSize
        let heads = try Seq2SeqLoader.required(c.numHeads, "num_heads", c)
        let hd = try Seq2SeqLoader.required(c.dKv, "d_kv", c), inner = heads * hd
        let ffn = try Seq2SeqLoader.required(c.dFf, "d_ff", c)
        let epsilon = Float(c.layerNormEpsilon ?? 1e-6)
        let buckets = c.relativeAttentionNumBuckets ?? 32, maxDistance = c.relativeAttentionMaxDistance ?? 128
        // "gated-gelu" means gelu_new (the tanh form) in transformers; dense_act_fn says so explicitly.
        let projection = c.feedForwardProj ?? "relu"
        let gated = c.isGatedAct ?? projection.hasPrefix("gated-")
        let activationName = c.denseActFn ?? (projection.hasPrefix("gated-") ? String(projection.dropFirst(6)) : projection)
        guard let parsed = Activation(huggingFaceName: activationName) else {
            throw CheckpointError(path: "config.json", problem: "unsupported T5 activation '\(activationName)'")
        }
        let activation = (activationName == "gelu" && gated) ? .geluTanh : parsed

        func attention(_ p: String) throws -> AttentionWeights {
            AttentionWeights(query: try weights.linear(p + ".q", rows: inner, columns: w, bias: false),
                             key: try weights.linear(p + ".k", rows: inner, columns: w, bias: false),
                             value: try weights.linear(p + ".v", rows: inner, columns: w, bias: false),
                             output: try weights.linear(p + ".o", rows: w, columns: inner, bias: false))
        }
        func norm(_ name: String) throws -> Norm { .rms(weight: try weights.vector(name + ".weight", count: w), epsilon: epsilon) }
        func feedForward(_ p: String) throws -> FeedForward {
            let d = p + ".DenseReluDense"
            return FeedForward(input: try weights.linear(d + (gated ? ".wi_0" : ".wi"), rows: ffn, columns: w, bias: false),
                               up: gated ? try weights.linear(d + ".wi_1", rows: ffn, columns: w, bias: false) : nil,
                               output: try weights.linear(d + ".wo", rows: w, columns: ffn, bias: false), activation: activation)
        }
        let encoder = try (0..<(try Seq2SeqLoader.required(c.numLayers, "num_layers", c))).map { i in
            let p = "encoder.block.\(i).layer"
            return EncoderLayer(attention: try attention(p + ".0.SelfAttention"), attentionNorm: try norm(p + ".0.layer_norm"),
                                feedForward: try feedForward(p + ".1"), feedForwardNorm: try norm(p + ".1.layer_norm"))
        }
        let decoder = try (0..<(c.numDecoderLayers ?? c.numLayers!)).map { i in
            let p = "decoder.block.\(i).layer"
            return DecoderLayer(selfAttention: try attention(p + ".0.SelfAttention"), selfAttentionNorm: try norm(p + ".0.layer_norm"),
                                crossAttention: try attention(p + ".1.EncDecAttention"), crossAttentionNorm: try norm(p + ".1.layer_norm"),
                                feedForward: try feedForward(p + ".2"), feedForwardNorm: try norm(p + ".2.layer_norm"))
        }
        let shared = try Seq2SeqLoader.embedding(["shared.weight", "encoder.embed_tokens.weight"], weights: weights,
                                                 vocabulary: vocabulary, width: w)
        let tied = c.tieWordEmbeddings ?? true
        let lmHead = tied ? shared : try weights.matrix("lm_head.weight", rows: vocabulary, columns: w)
        func bias(_ stack: String, bidirectional: Bool) throws -> [Float] {
            let table = try weights.file.matrix("\(stack).block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                                rows: buckets, columns: heads)
            var values = [Float](repeating: 0, count: buckets * heads)   // (buckets, heads)
            values.withUnsafeMutableBufferPointer { ReferenceDequantizer.dequantize(table.type, table.data, count: buckets * heads, into: $0.baseAddress!) }
            return expandedBias(values, heads: heads, buckets: buckets, maxDistance: maxDistance, bidirectional: bidirectional)
        }
        return Seq2SeqTransformer.Parts(
            modelType: "t5", width: w, heads: heads, headDimension: hd, vocabularySize: vocabulary,
            generationDefaults: settings, encoderEmbedding: shared, decoderEmbedding: shared, embeddingScale: 1,
            positions: .relative(encoder: try bias("encoder", bidirectional: true),
                                 decoder: try bias("decoder", bidirectional: false), span: maxDistance),
            encoderEmbeddingNorm: nil, decoderEmbeddingNorm: nil, preNorm: true,
            encoderLayers: encoder, decoderLayers: decoder,
            encoderFinalNorm: try norm("encoder.final_layer_norm"), decoderFinalNorm: try norm("decoder.final_layer_norm"),
            attentionScale: 1, outputScale: tied ? 1 / Float(Double(w).squareRoot()) : 1, lmHead: lmHead, finalLogitsBias: nil)
    }

    /// The learned (buckets, heads) table expanded to (heads, 2·maxDistance + 1) by relative position
    /// `key − query` (clamped to ±maxDistance, where the buckets have saturated).
    static func expandedBias(_ table: [Float], heads: Int, buckets: Int, maxDistance: Int, bidirectional: Bool) -> [Float] {
        let span = maxDistance, entries = 2 * span + 1
        var expanded = [Float](repeating: 0, count: heads * entries)
        for r in -span...span {
            let b = bucket(relativePosition: r, bidirectional: bidirectional, buckets: buckets, maxDistance: maxDistance)
            for h in 0..<heads { expanded[h * entries + r + span] = table[b * heads + h] }
        }
        return expanded
    }

    /// transformers' `T5Attention._relative_position_bucket`, in Float as torch computes it (the
    /// truncation of the logarithmic part must land in the same bucket).
    static func bucket(relativePosition: Int, bidirectional: Bool, buckets total: Int, maxDistance: Int) -> Int {
        var buckets = total, result = 0, r = relativePosition
        if bidirectional {
            buckets /= 2
            if r > 0 { result += buckets }
            r = abs(r)
        } else {
            r = -min(r, 0)
        }
        let maxExact = buckets / 2
        if r < maxExact { return result + r }
        let scaled = logf(Float(r) / Float(maxExact)) / Float(log(Double(maxDistance) / Double(maxExact))) * Float(buckets - maxExact)
        return result + min(maxExact + Int(scaled), buckets - 1)
    }
}
