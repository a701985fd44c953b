import QuillGeneration
import QuillKernels

/// How token positions enter a model.
enum PositionScheme {
    /// Added to the embeddings from a (positions, width) table: row = position + offset
    /// (Marian's sinusoids with offset 0, BART's learned rows with offset 2).
    case absolute(encoder: [Float], decoder: [Float], rows: Int, offset: Int)
    /// T5: a bias on the attention scores per head and relative distance, expanded to
    /// (heads, 2·span + 1) for the bidirectional encoder and the causal decoder.
    case relative(encoder: [Float], decoder: [Float], span: Int)
}

/// The encoder-decoder Transformer that Marian, BART and T5 are all instances of; the per-family
/// loaders (`Marian`, `Bart`, `T5`) only name the weights and pick the options below.
///
/// Encoder: embed (× scale) + positions → optional embedding norm → layers → optional final norm,
/// run once per batch of sources (padded; padding keys masked). Each decoder layer's
/// cross-attention keys/values are projected once from the encoder output into `EncoderStates`.
/// Decoder: one token per row and step, self-attention over the row's cache in `DecoderState`.
/// Pre-norm layers (T5) compute `h + f(norm(h))`; post-norm layers (BART, Marian) `norm(h + f(h))`.
public final class Seq2SeqTransformer: EncoderDecoderModel, @unchecked Sendable {
    public let modelType: String
    public let width: Int
    public let heads: Int
    public let headDimension: Int
    public let vocabularySize: Int
    public let generationDefaults: Seq2SeqSettings
    /// F16 on the 8-bit path (as llama.cpp's default cache, and CTranslate2's `int8_float16`), f32 on
    /// the exact one: each step's self-attention reads, and each reordered beam copies, half the bytes.
    public let decoderCacheType: KVCacheType

    let encoderEmbedding: WeightMatrix   // (vocab, width)
    let decoderEmbedding: WeightMatrix   // (vocab, width)
    let embeddingScale: Float
    let positions: PositionScheme
    let encoderEmbeddingNorm: Norm?
    let decoderEmbeddingNorm: Norm?
    let preNorm: Bool
    let encoderLayers: [EncoderLayer]
    let decoderLayers: [DecoderLayer]
    /// Decoder blocks (each keeps its own self-attention cache while generating).
    public var decoderLayerCount: Int { decoderLayers.count }
    let encoderFinalNorm: Norm?
    let decoderFinalNorm: Norm?
    let attentionScale: Float
    /// Applied to the decoder output before the lm_head (T5 with tied embeddings: width^-0.5).
    let outputScale: Float
    /// The lm_head (vocab, width) and final logits bias (vocab), with its int8 copy when every product
    /// is row-scaled.
    let outputProjection: Linear
    let context: LayerContext
    let weightFile: AnyObject            // keeps the mapping the matrices point into alive
    let storage: WeightStorage           // keeps quantised copies alive
    /// Source token used for padding positions (masked out, so any valid id works).
    let paddingToken: TokenID
    /// CTranslate2's `start_from_zero_embedding`: the first decoder input embeds as zeros (plus its
    /// position), whatever the start token.
    let zeroFirstDecoderEmbedding: Bool

    struct Parts {
        var modelType: String, width: Int, heads: Int, headDimension: Int, vocabularySize: Int
        var generationDefaults: Seq2SeqSettings
        var encoderEmbedding: WeightMatrix, decoderEmbedding: WeightMatrix, embeddingScale: Float
        var positions: PositionScheme
        var encoderEmbeddingNorm: Norm?, decoderEmbeddingNorm: Norm?
        var preNorm: Bool
        var encoderLayers: [EncoderLayer], decoderLayers: [DecoderLayer]
        var encoderFinalNorm: Norm?, decoderFinalNorm: Norm?
        var attentionScale: Float, outputScale: Float
        var lmHead: WeightMatrix, finalLogitsBias: [Float]?
        var zeroFirstDecoderEmbedding = false
    }

    /// How a load repacks its matrices: a quantised one puts every product on CTranslate2's int8
    /// scheme where the VNNI kernel runs (else its matrices are Q8_0 with int8 mat-vecs, and loaders
    /// make them so); an f32 one packs them for `PackedF32GEMM` where AVX-512 runs.
    static func repacking(quantize: Bool) -> Linear.Repacking {
        if quantize { return RowScaledInt8GEMM.hasFastKernel ? .rowScaledInt8 : .none }
        return PackedF32GEMM.hasFastKernel ? .packedF32 : .none
    }

    /// - Parameters:
    ///   - repacking: every matrix repacked once here (see `repacking(quantize:)`); `quantized` with
    ///     `.none` keeps Q8_0 weights with int8 mat-vecs.
    ///   - release: called with each run of a matrix's rows once its repacked copy has been made (to
    ///     drop their file pages).
    ///   - decoderCacheType: how decoding states store self-attention keys and values (default: F16
    ///     when `quantized`, else f32).
    init(_ p: Parts, file: AnyObject, storage: WeightStorage, threads: Int, quantized: Bool, repacking: Linear.Repacking = .none,
         decoderCacheType: KVCacheType? = nil, releasing release: (WeightMatrix) -> Void = { _ in }) {
        self.decoderCacheType = decoderCacheType ?? (quantized ? .f16 : .f32)
        modelType = p.modelType; width = p.width; heads = p.heads; headDimension = p.headDimension
        vocabularySize = p.vocabularySize; generationDefaults = p.generationDefaults
        encoderEmbedding = p.encoderEmbedding; decoderEmbedding = p.decoderEmbedding; embeddingScale = p.embeddingScale
        positions = p.positions
        encoderEmbeddingNorm = p.encoderEmbeddingNorm; decoderEmbeddingNorm = p.decoderEmbeddingNorm
        preNorm = p.preNorm
        let r = repacking
        encoderLayers = p.encoderLayers.map {
            EncoderLayer(attention: $0.attention.repacked(r, releasing: release), attentionNorm: $0.attentionNorm,
                         feedForward: $0.feedForward.repacked(r, releasing: release), feedForwardNorm: $0.feedForwardNorm)
        }
        decoderLayers = p.decoderLayers.map {
            DecoderLayer(selfAttention: $0.selfAttention.repacked(r, releasing: release), selfAttentionNorm: $0.selfAttentionNorm,
                         crossAttention: $0.crossAttention.repacked(r, releasing: release),
                         crossAttentionNorm: $0.crossAttentionNorm,
                         feedForward: $0.feedForward.repacked(r, releasing: release), feedForwardNorm: $0.feedForwardNorm)
        }
        encoderFinalNorm = p.encoderFinalNorm; decoderFinalNorm = p.decoderFinalNorm
        attentionScale = p.attentionScale; outputScale = p.outputScale
        // Marian and BART checkpoints carry `final_logits_bias` as a buffer of zeros: adding it was a pass
        // over every step's logits (15 MB at 64 rows of Marian's 58,101) that changes no value but −0.
        let logitsBias = p.finalLogitsBias.flatMap { bias in bias.allSatisfy { $0 == 0 } ? nil : bias }
        // A tied head is also the embedding table: the rows embedded later fault back in.
        outputProjection = r.apply(Linear(weight: p.lmHead, bias: logitsBias), releasing: release)
        zeroFirstDecoderEmbedding = p.zeroFirstDecoderEmbedding
        weightFile = file
        self.storage = storage
        context = LayerContext(pool: ThreadPool(threads: max(1, threads)), matVecPrecision: quantized ? .int8 : .f32)
        paddingToken = p.generationDefaults.padToken >= 0 && Int(p.generationDefaults.padToken) < p.vocabularySize
            ? p.generationDefaults.padToken : 0
    }

    /// Positions a decoder or encoder sequence may have (learned tables are finite).
    public var maxPositions: Int {
        if case let .absolute(_, _, rows, offset) = positions { return rows - offset }
        return Int.max
    }

    // MARK: Encoder

    public func encode(_ sources: [[TokenID]]) throws -> EncoderStates {
        guard !sources.isEmpty else { throw GenerationError.emptyPrompt }
        for source in sources {
            guard !source.isEmpty else { throw GenerationError.emptyPrompt }
            for t in source where t < 0 || Int(t) >= vocabularySize {
                throw GenerationError.invalidToken(t, vocabularySize: vocabularySize)
            }
            guard source.count <= maxPositions else {
                throw GenerationError.promptTooLong(promptTokens: source.count, contextSize: maxPositions)
            }
        }
        let b = sources.count, s = sources.map(\.count).max()!, w = width
        var x = [Float](repeating: 0, count: b * s * w)      // (sources, s, width) residual stream
        for (i, source) in sources.enumerated() {
            // Padding positions get a real token; attention never reads them as keys.
            let padded = source + Array(repeating: paddingToken, count: s - source.count)
            embed(padded, table: encoderEmbedding, firstPosition: 0, encoder: true, into: &x, offset: i * s * w)
        }
        if let norm = encoderEmbeddingNorm { norm.apply(x, into: &x, rows: b * s, width: w) }
        runEncoderLayers(&x, lengths: sources.map(\.count), tokens: s)
        return crossAttentionStates(x, lengths: sources.map(\.count), tokens: s)
    }

    /// The encoder layers and final norm over already embedded inputs (token embeddings, or
    /// Whisper's convolved audio frames plus positions).
    /// - Parameters:
    ///   - x: (sources, tokens, width), each source padded to `tokens`; replaced by the encoder output
    ///   - lengths: valid positions of each source (padding keys are masked)
    func runEncoderLayers(_ x: inout [Float], lengths: [Int], tokens s: Int) {
        let b = lengths.count, n = b * s
        let hd = headDimension, inner = heads * hd
        var normed = [Float](repeating: 0, count: n * width)     // (sources, s, width)
        var q = [Float](repeating: 0, count: n * inner)      // (sources, s, heads, hd)
        var projected = [Float](repeating: 0, count: n * inner)  // (sources, s, heads, hd)
        var k = [Float](repeating: 0, count: n * inner)      // (sources, heads, s, hd)
        var v = [Float](repeating: 0, count: n * inner)      // (sources, heads, s, hd)
        var attention = [Float](repeating: 0, count: n * inner)  // (sources, s, heads, hd)
        let bias = relativeBias(encoder: true)
        for layer in encoderLayers {
            sublayer(&x, normed: &normed, norm: layer.attentionNorm, rows: n) { input, output in
                layer.attention.query.apply(input, tokens: n, into: &q, context: context)
                layer.attention.key.apply(input, tokens: n, into: &projected, context: context)
                splitBatch(projected, sources: b, tokens: s, into: &k)
                layer.attention.value.apply(input, tokens: n, into: &projected, context: context)
                splitBatch(projected, sources: b, tokens: s, into: &v)
                k.withUnsafeBufferPointer { kb in
                    v.withUnsafeBufferPointer { vb in
                        withBias(bias) { relative in
                            BidirectionalAttention.attend(
                                queries: q, output: &attention, sequences: b, tokens: s, heads: heads, headDimension: hd,
                                keyStride: s, causal: false, scale: attentionScale, bias: relative, pool: context.pool) { i in
                                AttentionKeys(keys: kb.baseAddress! + i * s * inner, values: vb.baseAddress! + i * s * inner,
                                              keyCount: lengths[i], firstPosition: 0)
                            }
                        }
                    }
                }
                layer.attention.output.apply(attention, tokens: n, into: output, context: context)
            }
            sublayer(&x, normed: &normed, norm: layer.feedForwardNorm, rows: n) { input, output in
                layer.feedForward.apply(input, tokens: n, into: output, context: context)
            }
        }
        if let norm = encoderFinalNorm { norm.apply(x, into: &x, rows: n, width: width, pool: context.pool) }
    }

    /// Cross-attention keys/values of every decoder layer, once for the whole generation.
    /// - Parameter x: the encoder output, (sources, tokens, width)
    func crossAttentionStates(_ x: [Float], lengths: [Int], tokens s: Int) -> EncoderStates {
        let b = lengths.count, n = b * s, inner = heads * headDimension
        var projected = [Float](repeating: 0, count: n * inner)  // (sources, s, heads, hd)
        let states = EncoderStates(layers: decoderLayers.count, heads: heads, headDimension: headDimension, lengths: lengths)
        for (l, layer) in decoderLayers.enumerated() {
            for (projection, isKey) in [(layer.crossAttention.key, true), (layer.crossAttention.value, false)] {
                projection.apply(x, tokens: n, into: &projected, context: context)
                for i in 0..<b {
                    let destination = isKey ? states.keys(layer: l, source: i) : states.values(layer: l, source: i)
                    projected.withUnsafeBufferPointer {
                        splitHeads($0.baseAddress! + i * s * inner, tokens: lengths[i], heads: heads, headDimension: headDimension,
                                   into: destination, stride: states.stride, transposed: isKey && states.transposedKeys)
                    }
                }
            }
        }
        return states
    }

    // MARK: Decoder

    public func decode(_ tokens: [TokenID], state: DecoderState) throws -> [Float] {
        try decode(tokens, state: state, withLogits: true)
    }

    public func prefill(_ tokens: [TokenID], state: DecoderState) throws {
        _ = try decode(tokens, state: state, withLogits: false)
    }

    /// One decoder step; the final norm and output projection only `withLogits` (else returns []).
    private func decode(_ tokens: [TokenID], state: DecoderState, withLogits: Bool) throws -> [Float] {
        let n = tokens.count, w = width, hd = headDimension, inner = heads * hd
        precondition(n == state.rows, "one token per decoder row")
        for t in tokens where t < 0 || Int(t) >= vocabularySize {
            throw GenerationError.invalidToken(t, vocabularySize: vocabularySize)
        }
        guard state.count < min(state.capacity, maxPositions) else {
            throw GenerationError.promptTooLong(promptTokens: state.count + 1, contextSize: min(state.capacity, maxPositions))
        }
        let position = state.count
        var x = [Float](repeating: 0, count: n * w)          // (rows, width) residual stream
        var normed = [Float](repeating: 0, count: n * w)     // (rows, width)
        var q = [Float](repeating: 0, count: n * inner)      // (rows, heads, hd)
        var k = [Float](repeating: 0, count: n * inner)      // (rows, heads, hd)
        var v = [Float](repeating: 0, count: n * inner)      // (rows, heads, hd)
        var attention = [Float](repeating: 0, count: n * inner)  // (rows, heads, hd)
        embed(tokens, table: decoderEmbedding, firstPosition: position, encoder: false, into: &x, offset: 0, samePosition: true,
              zeroEmbedding: zeroFirstDecoderEmbedding && position == 0)
        if let norm = decoderEmbeddingNorm { norm.apply(x, into: &x, rows: n, width: w) }
        let bias = relativeBias(encoder: false)
        let encoder = state.encoder
        for (l, layer) in decoderLayers.enumerated() {
            sublayer(&x, normed: &normed, norm: layer.selfAttentionNorm, rows: n) { input, output in
                layer.selfAttention.query.apply(input, tokens: n, into: &q, context: context)
                layer.selfAttention.key.apply(input, tokens: n, into: &k, context: context)
                layer.selfAttention.value.apply(input, tokens: n, into: &v, context: context)
                state.store(layer: l, newKeys: k, newValues: v)
                withBias(bias) { relative in
                    BidirectionalAttention.attend(
                        queries: q, output: &attention, sequences: n, tokens: 1, heads: heads, headDimension: hd,
                        keyStride: state.capacity, causal: true, scale: attentionScale, bias: relative, pool: context.pool) { r in
                        AttentionKeys(keys: state.keyBytes(layer: l, row: r), values: state.valueBytes(layer: l, row: r),
                                      keyCount: position + 1, firstPosition: position,
                                      elementType: state.cacheType == .f16 ? .f16 : .f32)
                    }
                }
                layer.selfAttention.output.apply(attention, tokens: n, into: output, context: context)
            }
            sublayer(&x, normed: &normed, norm: layer.crossAttentionNorm, rows: n) { input, output in
                layer.crossAttention.query.apply(input, tokens: n, into: &q, context: context)
                BidirectionalAttention.attend(
                    queries: q, output: &attention, sequences: n, tokens: 1, heads: heads, headDimension: hd,
                    keyStride: encoder.stride, causal: false, scale: attentionScale, bias: nil, pool: context.pool) { r in
                    encoder.attentionKeys(layer: l, source: state.rowSources[r], firstPosition: position)
                }
                layer.crossAttention.output.apply(attention, tokens: n, into: output, context: context)
            }
            sublayer(&x, normed: &normed, norm: layer.feedForwardNorm, rows: n) { input, output in
                layer.feedForward.apply(input, tokens: n, into: output, context: context)
            }
        }
        state.advance()
        guard withLogits else { return [] }
        if let norm = decoderFinalNorm { norm.apply(x, into: &x, rows: n, width: w) }
        if outputScale != 1 { for i in 0..<(n * w) { x[i] *= outputScale } }
        // (rows, vocab), every value written by the projection: not zeroed first (a memset of
        // 15 MB a step at 64 rows of Marian's 58,101 tokens, 3 % of a beam step).
        return [Float](unsafeUninitializedCapacity: n * vocabularySize) { buffer, initialized in
            outputProjection.apply(x, tokens: n, into: buffer.baseAddress!, context: context)
            initialized = n * vocabularySize
        }
    }

    // MARK: Pieces

    /// One residual sub-layer. Pre-norm: `x += f(norm(x))`; post-norm: `x = norm(x + f(x))`.
    /// `f(input, output)` writes (rows, width) into `output`.
    private func sublayer(_ x: inout [Float], normed: inout [Float], norm: Norm, rows: Int,
                          _ f: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let count = rows * width
        var out = [Float](repeating: 0, count: count)  // (rows, width)
        if preNorm {
            norm.apply(x, into: &normed, rows: rows, width: width, pool: context.pool)
            f(normed, &out)
            addInPlace(out, into: &x, count: count)
        } else {
            f(x, &out)
            addInPlace(out, into: &x, count: count)
            norm.apply(x, into: &x, rows: rows, width: width, pool: context.pool)
        }
    }

    /// Embeddings × scale (+ absolute positions) of `tokens` into `x[offset...]`: token t at position
    /// `firstPosition + t`, or every token at `firstPosition` when `samePosition` (one step of many rows).
    private func embed(_ tokens: [TokenID], table: WeightMatrix, firstPosition: Int, encoder: Bool,
                       into x: inout [Float], offset: Int, samePosition: Bool = false, zeroEmbedding: Bool = false) {
        let w = width
        x.withUnsafeMutableBufferPointer { xb in
            for (t, token) in tokens.enumerated() {
                let row = xb.baseAddress! + offset + t * w
                if zeroEmbedding {
                    row.update(repeating: 0, count: w)
                } else {
                    ReferenceDequantizer.dequantize(table.type, table.row(Int(token)), count: w, into: row)
                }
                if embeddingScale != 1 { for i in 0..<w { row[i] *= embeddingScale } }
                if case let .absolute(encoderTable, decoderTable, _, positionOffset) = positions {
                    let p = (samePosition ? firstPosition : firstPosition + t) + positionOffset
                    (encoder ? encoderTable : decoderTable).withUnsafeBufferPointer {
                        addInPlace($0.baseAddress! + p * w, into: row, count: w)
                    }
                }
            }
        }
    }

    /// (sources, s, heads, hd) → (sources, heads, s, hd).
    private func splitBatch(_ x: [Float], sources: Int, tokens: Int, into y: inout [Float]) {
        let size = tokens * heads * headDimension
        x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { yb in
                for i in 0..<sources {
                    splitHeads(xb.baseAddress! + i * size, tokens: tokens, heads: heads, headDimension: headDimension,
                               into: yb.baseAddress! + i * size, stride: tokens)
                }
            }
        }
    }

    private func relativeBias(encoder: Bool) -> (values: [Float], span: Int)? {
        if case let .relative(encoderTable, decoderTable, span) = positions { return (encoder ? encoderTable : decoderTable, span) }
        return nil
    }

    private func withBias(_ bias: (values: [Float], span: Int)?, _ body: (RelativePositionBias?) -> Void) {
        guard let bias else { return body(nil) }
        bias.values.withUnsafeBufferPointer { body(RelativePositionBias(values: $0.baseAddress!, span: bias.span)) }
    }
}
