import FoundationEssentials
import QuillGeneration

// Every size in config.json and generation_config.json decides an allocation or a loop count before
// any tensor is read, so each is checked here first: a hostile or corrupt value (0, negative, 10¹²) is a
// one-line error naming the key, the value and what is allowed, never an abort, a trap or a wild pointer.


extension HFModelConfig {
    /// Checks every size and token id against `Seq2SeqLimits` and the weights file (`tensorCount`
    /// tensors): a layer count above the tensor count cannot be backed by weights.
    func validate(path: String, tensorCount: Int) throws {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        func dimension(_ value: Int?, _ key: String) throws {
            guard let value else { return }
            guard (1...Seq2SeqLimits.maximumDimension).contains(value) else {
                throw fail("\(key) is \(value); it must be between 1 and \(Seq2SeqLimits.maximumDimension)")
            }
        }
        func layers(_ value: Int?, _ key: String) throws {
            guard let value else { return }
            // Zero layers is a valid (if useless) stack; more layers than tensors cannot have weights.
            guard value >= 0 && value <= tensorCount else {
                throw fail("\(key) is \(value) but model.safetensors holds \(tensorCount) tensors")
            }
        }
        try dimension(vocabSize, "vocab_size")
        try dimension(dModel, "d_model")
        for (value, key) in [(encoderAttentionHeads, "encoder_attention_heads"), (decoderAttentionHeads, "decoder_attention_heads"),
                             (encoderFfnDim, "encoder_ffn_dim"), (decoderFfnDim, "decoder_ffn_dim"),
                             (decoderVocabSize, "decoder_vocab_size"), (numHeads, "num_heads"), (dKv, "d_kv"), (dFf, "d_ff")] {
            try dimension(value, key)
        }
        if let heads = numHeads, let dKv, heads * dKv > Seq2SeqLimits.maximumDimension {
            throw fail("num_heads × d_kv is \(heads * dKv); at most \(Seq2SeqLimits.maximumDimension)")
        }
        for (value, key) in [(encoderLayers, "encoder_layers"), (decoderLayers, "decoder_layers"),
                             (numLayers, "num_layers"), (numDecoderLayers, "num_decoder_layers")] {
            try layers(value, key)
        }
        if let rows = maxPositionEmbeddings {
            let limit = Seq2SeqLimits.maximumPositionTableElements / max(1, dModel)
            guard rows >= 1 && rows <= limit else {
                throw fail("max_position_embeddings is \(rows); it must be between 1 and \(limit) for d_model \(dModel)")
            }
        }
        if let buckets = relativeAttentionNumBuckets {
            // The bucketing halves the count (bidirectional) and then halves it again for the exact range.
            guard (4...Seq2SeqLimits.maximumDimension).contains(buckets) else {
                throw fail("relative_attention_num_buckets is \(buckets); it must be between 4 and \(Seq2SeqLimits.maximumDimension)")
            }
        }
        if let distance = relativeAttentionMaxDistance {
            let buckets = relativeAttentionNumBuckets ?? 32
            guard distance > buckets / 2 && distance <= Seq2SeqLimits.maximumRelativeDistance else {
                throw fail("relative_attention_max_distance is \(distance); it must be above \(buckets / 2) (half the buckets) and at most \(Seq2SeqLimits.maximumRelativeDistance)")
            }
        }
        if let epsilon = layerNormEpsilon, !(epsilon >= 0 && epsilon < 1) {
            throw fail("layer_norm_epsilon is \(epsilon); it must be between 0 and 1")
        }
        let vocabulary = vocabSize
        func token(_ value: Int?, _ key: String) throws {
            guard let value else { return }
            guard value >= 0 && value < vocabulary else {
                throw fail("\(key) is \(value), outside the vocabulary (vocab_size \(vocabulary))")
            }
        }
        for (value, key) in [(padTokenId, "pad_token_id"), (bosTokenId, "bos_token_id"),
                             (decoderStartTokenId, "decoder_start_token_id"), (forcedBosTokenId, "forced_bos_token_id"),
                             (forcedEosTokenId, "forced_eos_token_id")] {
            try token(value, key)
        }
        for id in eosTokenId?.ids ?? [] { try token(id, "eos_token_id") }
    }
}

extension HFGenerationConfig {
    /// Checks lengths, beams and token ids against `Seq2SeqLimits` and the vocabulary.
    func validate(path: String, vocabulary: Int) throws {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        if let maxNewTokens, !(1...Seq2SeqLimits.maximumNewTokens).contains(maxNewTokens) {
            throw fail("max_new_tokens is \(maxNewTokens); it must be between 1 and \(Seq2SeqLimits.maximumNewTokens)")
        }
        if let maxLength, !(1...Seq2SeqLimits.maximumNewTokens + 1).contains(maxLength) {
            throw fail("max_length is \(maxLength); it must be between 1 and \(Seq2SeqLimits.maximumNewTokens + 1)")
        }
        if let minLength, !(0...Seq2SeqLimits.maximumNewTokens + 1).contains(minLength) {
            throw fail("min_length is \(minLength); it must be between 0 and \(Seq2SeqLimits.maximumNewTokens + 1)")
        }
        if let numBeams, !(1...Seq2SeqLimits.maximumBeams).contains(numBeams) {
            throw fail("num_beams is \(numBeams); it must be between 1 and \(Seq2SeqLimits.maximumBeams)")
        }
        if let noRepeatNgramSize, !(0...Seq2SeqLimits.maximumNewTokens).contains(noRepeatNgramSize) {
            throw fail("no_repeat_ngram_size is \(noRepeatNgramSize); it must be between 0 and \(Seq2SeqLimits.maximumNewTokens)")
        }
        if let lengthPenalty, !lengthPenalty.isFinite || abs(lengthPenalty) > 1e6 {
            throw fail("length_penalty is \(lengthPenalty); it must be a finite number of at most 10⁶ in size")
        }
        func token(_ value: Int?, _ key: String) throws {
            guard let value else { return }
            guard value >= 0 && value < vocabulary else {
                throw fail("\(key) is \(value), outside the vocabulary (vocab_size \(vocabulary))")
            }
        }
        for (value, key) in [(padTokenId, "pad_token_id"), (bosTokenId, "bos_token_id"),
                             (decoderStartTokenId, "decoder_start_token_id"), (forcedBosTokenId, "forced_bos_token_id")] {
            try token(value, key)
        }
        for id in eosTokenId?.ids ?? [] { try token(id, "eos_token_id") }
        for id in forcedEosTokenId?.ids ?? [] { try token(id, "forced_eos_token_id") }
        for word in badWordsIds ?? [] {
            guard !word.isEmpty else { throw fail("bad_words_ids holds an empty sequence") }
            for id in word { try token(id, "bad_words_ids") }
        }
    }
}
