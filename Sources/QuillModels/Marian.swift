import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import QuillGeneration
import QuillKernels

/// Marian (opus-mt): BART-family post-norm layers, embeddings × sqrt(d_model) when
/// `scale_embedding`, sinusoidal positions that the checkpoint does not store (sin half first,
/// then cos, from position 0 in encoder and decoder), no embedding norm, no final norms, one
/// shared embedding for encoder, decoder and lm_head, and `final_logits_bias`.
enum Marian {
    static func parts(config c: HFModelConfig, weights: WeightReader, settings: Seq2SeqSettings) throws -> Seq2SeqTransformer.Parts {
        let w = c.dModel, heads = try Seq2SeqLoader.bartFamilyHeads(c), vocabulary = c.vocabSize
        guard (c.decoderVocabSize ?? vocabulary) == vocabulary else {
            throw CheckpointError(path: "config.json", problem: "decoder_vocab_size differs from vocab_size (unsupported)")
        }
        let shared = try Seq2SeqLoader.embedding(["model.shared.weight", "model.encoder.embed_tokens.weight"],
                                                 weights: weights, vocabulary: vocabulary, width: w)
        let decoderEmbedding = (c.shareEncoderDecoderEmbeddings ?? true) ? shared
            : try Seq2SeqLoader.embedding(["model.decoder.embed_tokens.weight"], weights: weights, vocabulary: vocabulary, width: w)
        let lmHead = weights.file.tensors["lm_head.weight"] != nil
            ? try weights.matrix("lm_head.weight", rows: vocabulary, columns: w) : decoderEmbedding
        let (encoder, decoder) = try Seq2SeqLoader.bartFamilyLayers(config: c, weights: weights, prefix: "model.")
        let rows = c.maxPositionEmbeddings ?? 512
        let table = sinusoids(positions: rows, width: w)
        return Seq2SeqTransformer.Parts(
            modelType: "marian", width: w, heads: heads, headDimension: w / heads, vocabularySize: vocabulary,
            generationDefaults: settings, encoderEmbedding: shared, decoderEmbedding: decoderEmbedding,
            embeddingScale: (c.scaleEmbedding ?? false) ? Float(Double(w).squareRoot()) : 1,
            positions: .absolute(encoder: table, decoder: table, rows: rows, offset: 0),
            encoderEmbeddingNorm: nil, decoderEmbeddingNorm: nil, preNorm: false,
            encoderLayers: encoder, decoderLayers: decoder, encoderFinalNorm: nil, decoderFinalNorm: nil,
            attentionScale: 1 / Float(w / heads).squareRoot(), outputScale: 1, lmHead: lmHead,
            finalLogitsBias: weights.file.tensors["final_logits_bias"] != nil
                ? try weights.vector("final_logits_bias", count: vocabulary) : nil)
    }

    /// transformers' `MarianSinusoidalPositionalEmbedding`: for j < width/2,
    /// `pe[p, j] = sin(p / 10000^(2j/width))`, `pe[p, width/2 + j] = cos(...)`, computed in Double
    /// (numpy) and rounded to Float: (positions, width).
    static func sinusoids(positions: Int, width: Int) -> [Float] {
        var table = [Float](repeating: 0, count: positions * width)
        let half = (width + 1) / 2
        for p in 0..<positions {
            for j in 0..<width {
                let angle = Double(p) / pow(10000, Double(2 * (j / 2)) / Double(width))
                // Even columns hold the sines (first half), odd columns the cosines (second half).
                if j % 2 == 0 { table[p * width + j / 2] = Float(sin(angle)) } else { table[p * width + half + j / 2] = Float(cos(angle)) }
            }
        }
        return table
    }
}
