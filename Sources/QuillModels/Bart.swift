import FoundationEssentials
import QuillGeneration
import QuillKernels

/// BART (bart-base/large, bart-large-cnn): post-norm layers with GELU, learned positions whose row
/// is position + 2, `layernorm_embedding` after the embeddings of both stacks, embeddings scaled
/// only when `scale_embedding`, tied lm_head plus `final_logits_bias`; forced BOS/EOS come from
/// the generation config.
enum Bart {
    static func parts(config c: HFModelConfig, weights: WeightReader, settings: Seq2SeqSettings) throws -> Seq2SeqTransformer.Parts {
        let w = c.dModel, heads = try Seq2SeqLoader.bartFamilyHeads(c), vocabulary = c.vocabSize
        let shared = try Seq2SeqLoader.embedding(["model.shared.weight", "model.encoder.embed_tokens.weight"],
                                                 weights: weights, vocabulary: vocabulary, width: w)
        let lmHead = weights.file.tensors["lm_head.weight"] != nil
            ? try weights.matrix("lm_head.weight", rows: vocabulary, columns: w) : shared
        let (encoder, decoder) = try Seq2SeqLoader.bartFamilyLayers(config: c, weights: weights, prefix: "model.")
        let offset = 2
        let rows = try Seq2SeqLoader.required(c.maxPositionEmbeddings, "max_position_embeddings", c) + offset
        func positions(_ name: String) throws -> [Float] {
            let m = try weights.file.matrix(name, rows: rows, columns: w)
            var table = [Float](repeating: 0, count: rows * w)
            table.withUnsafeMutableBufferPointer { ReferenceDequantizer.dequantize(m.type, m.data, count: rows * w, into: $0.baseAddress!) }
            return table
        }
        return Seq2SeqTransformer.Parts(
            modelType: "bart", width: w, heads: heads, headDimension: w / heads, vocabularySize: vocabulary,
            generationDefaults: settings, encoderEmbedding: shared, decoderEmbedding: shared,
            embeddingScale: (c.scaleEmbedding ?? false) ? Float(Double(w).squareRoot()) : 1,
            positions: .absolute(encoder: try positions("model.encoder.embed_positions.weight"),
                                 decoder: try positions("model.decoder.embed_positions.weight"), rows: rows, offset: offset),
            encoderEmbeddingNorm: try weights.layerNorm("model.encoder.layernorm_embedding", width: w, epsilon: 1e-5),
            decoderEmbeddingNorm: try weights.layerNorm("model.decoder.layernorm_embedding", width: w, epsilon: 1e-5),
            preNorm: false, encoderLayers: encoder, decoderLayers: decoder, encoderFinalNorm: nil, decoderFinalNorm: nil,
            attentionScale: 1 / Float(w / heads).squareRoot(), outputScale: 1, lmHead: lmHead,
            finalLogitsBias: weights.file.tensors["final_logits_bias"] != nil
                ? try weights.vector("final_logits_bias", count: vocabulary) : nil)
    }
}
