import Foundation
import QuillGeneration
import QuillKernels

/// How the matrices are multiplied. Both read the same (quantised) weights.
public enum ComputePrecision: String, Sendable, CaseIterable {
    /// The reference path: weights dequantised exactly, f32 arithmetic everywhere. Matches the Hugging
    /// Face fp32 implementation to rounding noise.
    case f32
    /// The fast path: decoding multiplies quantised weights with activations quantised to 8 bits per
    /// 32-element block (as llama.cpp does); prompt batches use f32 GEMM on dequantised panels.
    case quantized
}

/// Llama-architecture decoder (Llama 2/3, SmolLM, Mistral without sliding window) read from GGUF.
///
/// The forward pass only composes kernels from QuillKernels: RMSNorm → Q/K/V projections → RoPE →
/// causal GQA attention over the KV cache → output projection → residual, then RMSNorm → SwiGLU
/// feed-forward → residual; a final RMSNorm and the (possibly tied) output matrix give the logits.
public final class LlamaModel: CausalLanguageModel, @unchecked Sendable {
    public let configuration: LlamaConfiguration
    public let precision: ComputePrecision
    public let endOfSequenceTokens: Set<TokenID>
    public var vocabularySize: Int { configuration.vocabularySize }
    public var trainedContextLength: Int { configuration.trainedContextLength }

    struct Layer {
        let attentionNorm: [Float]       // (width)
        let query: WeightMatrix          // (heads·hd, width)
        let key: WeightMatrix            // (kvHeads·hd, width)
        let value: WeightMatrix          // (kvHeads·hd, width)
        let attentionOutput: WeightMatrix  // (width, heads·hd)
        let feedForwardNorm: [Float]     // (width)
        let gate: WeightMatrix           // (ffn, width)
        let up: WeightMatrix             // (ffn, width)
        let down: WeightMatrix           // (width, ffn)
    }

    let file: GGUFFile  // keeps the mapping that every WeightMatrix points into alive
    let arena: WeightArena?  // or this, which holds the copies decoding reads
    let tokenEmbedding: WeightMatrix  // (vocab, width)
    let layers: [Layer]
    let outputNorm: [Float]           // (width)
    let output: WeightMatrix          // (vocab, width); token_embd when tied
    let pool: ThreadPool
    private var rope: RotaryEmbedding

    /// Binds the weights of `gguf` (no copies: matrices point into the mapped file) and checks every shape.
    public init(gguf: GGUFFile, threads: Int, precision: ComputePrecision = .quantized,
                endOfSequenceTokens: Set<TokenID>) throws {
        let c = try LlamaConfiguration(gguf: gguf)
        configuration = c
        self.precision = precision
        self.endOfSequenceTokens = endOfSequenceTokens
        file = gguf
        pool = ThreadPool(threads: max(1, threads))

        // Decoding streams every weight once per token. When they outgrow the last-level cache, the
        // first `residentBytes` of them (in reading order) are read normally and the rest marked
        // streaming, so that part stays cached between tokens instead of all of it cycling through DRAM.
        var residentBytes = LlamaModel.cacheResidentBudget()
        func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
            var m = try gguf.weightMatrix(name)
            guard m.rows == rows, m.columns == columns else {
                throw GGUFError(path: gguf.path, problem: "tensor \(name) has shape \(m.columns)×\(m.rows), expected \(columns)×\(rows)")
            }
            let bytes = m.rowBytes * m.rows
            if bytes <= residentBytes { residentBytes -= bytes } else { residentBytes = 0; m.streaming = true }
            return m
        }
        func vector(_ name: String, count: Int) throws -> [Float] {
            guard let info = gguf.tensor(name) else { throw GGUFError(path: gguf.path, problem: "missing tensor \(name)") }
            guard info.dimensions == [count] else {
                throw GGUFError(path: gguf.path, problem: "tensor \(name) has shape \(info.dimensions), expected [\(count)]")
            }
            var values = [Float](repeating: 0, count: count)
            values.withUnsafeMutableBufferPointer {
                ReferenceDequantizer.dequantize(info.type, gguf.data(for: info), count: count, into: $0.baseAddress!)
            }
            return values
        }
        let w = c.modelWidth, qWidth = c.heads * c.headDimension, kvWidth = c.kvHeads * c.headDimension
        var tokenEmbedding = try matrix("token_embd.weight", rows: c.vocabularySize, columns: w)
        var layers = try (0..<c.layers).map { i in
            let p = "blk.\(i)."
            return Layer(
                attentionNorm: try vector(p + "attn_norm.weight", count: w),
                query: try matrix(p + "attn_q.weight", rows: qWidth, columns: w),
                key: try matrix(p + "attn_k.weight", rows: kvWidth, columns: w),
                value: try matrix(p + "attn_v.weight", rows: kvWidth, columns: w),
                attentionOutput: try matrix(p + "attn_output.weight", rows: w, columns: qWidth),
                feedForwardNorm: try vector(p + "ffn_norm.weight", count: w),
                gate: try matrix(p + "ffn_gate.weight", rows: c.feedForwardWidth, columns: w),
                up: try matrix(p + "ffn_up.weight", rows: c.feedForwardWidth, columns: w),
                down: try matrix(p + "ffn_down.weight", rows: w, columns: c.feedForwardWidth))
        }
        outputNorm = try vector("output_norm.weight", count: w)
        var output = gguf.tensor("output.weight") != nil
            ? try matrix("output.weight", rows: c.vocabularySize, columns: w) : tokenEmbedding
        // Decoding reads the weights from huge pages (see WeightArena); `QUILL_HUGE_PAGES=0` keeps
        // them in the file mapping. The token embedding stays mapped unless it is the output matrix.
        if ProcessInfo.processInfo.environment["QUILL_HUGE_PAGES"] != "0" {
            let matrices = layers.flatMap { [$0.query, $0.key, $0.value, $0.attentionOutput, $0.gate, $0.up, $0.down] } + [output]
            let arena = WeightArena(bytes: matrices.reduce(0) { $0 + ($1.rowBytes * $1.rows + 63) / 64 * 64 })
            // The GGUF mapping is read-only, so its pages can be released as they are copied.
            func copy(_ m: WeightMatrix) -> WeightMatrix { arena.copy(m, releasingSource: true) }
            layers = layers.map { l in
                Layer(attentionNorm: l.attentionNorm, query: copy(l.query), key: copy(l.key), value: copy(l.value),
                      attentionOutput: copy(l.attentionOutput), feedForwardNorm: l.feedForwardNorm,
                      gate: copy(l.gate), up: copy(l.up), down: copy(l.down))
            }
            let tied = output.data == tokenEmbedding.data
            output = copy(output)
            if tied { tokenEmbedding = output }
            self.arena = arena
        } else {
            arena = nil
        }
        self.layers = layers
        self.output = output
        self.tokenEmbedding = tokenEmbedding
        rope = RotaryEmbedding(headDimension: c.headDimension, base: c.ropeBase, maxPositions: 0)
    }

    /// Bytes of weights to keep in the last-level cache while decoding: about 60 % of it (measured best here: ~20 of 32 MiB) (the rest
    /// holds the KV cache, activations and other processes' data). `QUILL_RESIDENT_MB` overrides.
    static func cacheResidentBudget() -> Int {
        if let text = ProcessInfo.processInfo.environment["QUILL_RESIDENT_MB"], let mb = Int(text) { return mb << 20 }
        guard let text = try? String(contentsOfFile: "/sys/devices/system/cpu/cpu0/cache/index3/size", encoding: .utf8),
              let kb = Int(text.trimmingCharacters(in: .whitespacesAndNewlines).dropLast()) else { return 0 }
        return kb * 1024 * 6 / 10
    }

    public func makeCache(capacity: Int) -> KVCache {
        if rope.maxPositions < capacity {
            rope = RotaryEmbedding(headDimension: configuration.headDimension, base: configuration.ropeBase,
                                   maxPositions: capacity)
        }
        return KVCache(layers: configuration.layers, kvHeads: configuration.kvHeads,
                       headDimension: configuration.headDimension, capacity: capacity, elementType: kvCacheType)
    }

    /// Element type of the caches `makeCache` creates: `.f16` halves their memory.
    public var kvCacheType: KVCacheType = .f32

    /// Prompts longer than this run in several passes, which bounds the activation memory.
    public var maxBatch = 512

    public func forward(_ tokens: [TokenID], cache: KVCache, logits selection: LogitsSelection) throws -> [Float] {
        guard !tokens.isEmpty else { throw GenerationError.emptyPrompt }
        guard cache.count + tokens.count <= min(cache.capacity, rope.maxPositions) else {
            throw GenerationError.promptTooLong(promptTokens: cache.count + tokens.count, contextSize: cache.capacity)
        }
        for t in tokens where t < 0 || Int(t) >= vocabularySize {
            throw GenerationError.invalidToken(t, vocabularySize: vocabularySize)
        }
        var result: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(start + maxBatch, tokens.count)
            let batch = Array(tokens[start..<end])
            let wantAll = selection == .all
            let part = forwardBatch(batch, cache: cache, logitsForAll: wantAll)
            if wantAll { result += part } else if end == tokens.count { result = part }
            start = end
        }
        return result
    }

    /// Int8 copy of the current activation vector when decoding; reused every step (no allocation).
    private var quantized: QuantizedActivations?

    /// One pass over at most `maxBatch` tokens.
    private func forwardBatch(_ tokens: [TokenID], cache: KVCache, logitsForAll: Bool) -> [Float] {
        let c = configuration, n = tokens.count, w = c.modelWidth, ffn = c.feedForwardWidth
        let qWidth = c.heads * c.headDimension, kvWidth = c.kvHeads * c.headDimension
        let firstPosition = cache.count
        // One allocation for every activation of the pass. Each buffer is fully written before it is read.
        let arena = UnsafeMutablePointer<Float>.allocate(capacity: n * (3 * w + 2 * qWidth + 2 * kvWidth + 2 * ffn))
        defer { arena.deallocate() }
        let x = arena                                  // (n, width) residual stream
        let normed = x + n * w                         // (n, width)
        let projected = normed + n * w                 // (n, width)
        let q = projected + n * w                      // (n, heads, hd)
        let attention = q + n * qWidth                 // (n, heads, hd)
        let k = attention + n * qWidth                 // (n, kvHeads, hd)
        let v = k + n * kvWidth                        // (n, kvHeads, hd)
        let gate = v + n * kvWidth                     // (n, ffn)
        let up = gate + n * ffn                        // (n, ffn)
        let shape = AttentionShape(heads: c.heads, kvHeads: c.kvHeads, headDimension: c.headDimension,
                                   capacity: cache.capacity, scale: 1 / Float(c.headDimension).squareRoot())
        // Decoding one token on the quantised path: quantise each activation once and run the
        // matrices that share it (Q, K, V; gate, up) in one parallel region.
        let fused = n == 1 && precision == .quantized
        if fused && quantized == nil { quantized = QuantizedActivations(capacity: max(w, qWidth, ffn)) }

        for (t, token) in tokens.enumerated() {
            ReferenceDequantizer.dequantize(tokenEmbedding.type, tokenEmbedding.row(Int(token)), count: w, into: x + t * w)
        }
        for (index, layer) in layers.enumerated() {
            RMSNorm.apply(x, weight: layer.attentionNorm, into: normed, rows: n, width: w, epsilon: c.rmsEpsilon)
            if fused {
                quantized!.quantize(normed, count: w)
                MatVec.multiply([(layer.query, q), (layer.key, k), (layer.value, v)], quantized!, pool: pool)
            } else {
                project(layer.query, normed, tokens: n, into: q)
                project(layer.key, normed, tokens: n, into: k)
                project(layer.value, normed, tokens: n, into: v)
            }
            for t in 0..<n {
                rope.apply(q + t * qWidth, heads: c.heads, position: firstPosition + t)
                rope.apply(k + t * kvWidth, heads: c.kvHeads, position: firstPosition + t)
            }
            cache.store(layer: index, newKeys: k, newValues: v, tokens: n)
            if cache.elementType == .f16 {
                Attention.causal(queries: q, keyBits: cache.keyBits(layer: index), valueBits: cache.valueBits(layer: index),
                                 output: attention, shape: shape, tokens: n, firstPosition: firstPosition, pool: pool)
            } else {
                Attention.causal(queries: q, keys: cache.keys(layer: index), values: cache.values(layer: index),
                                 output: attention, shape: shape, tokens: n, firstPosition: firstPosition, pool: pool)
            }
            project(layer.attentionOutput, attention, tokens: n, into: projected)
            addInPlace(projected, into: x, count: n * w)

            RMSNorm.apply(x, weight: layer.feedForwardNorm, into: normed, rows: n, width: w, epsilon: c.rmsEpsilon)
            if fused {
                quantized!.quantize(normed, count: w)
                MatVec.multiply([(layer.gate, gate), (layer.up, up)], quantized!, pool: pool)
            } else {
                project(layer.gate, normed, tokens: n, into: gate)
                project(layer.up, normed, tokens: n, into: up)
            }
            SwiGLU.apply(gate: gate, up: up, count: n * ffn)
            project(layer.down, gate, tokens: n, into: projected)
            addInPlace(projected, into: x, count: n * w)
        }
        cache.advance(by: n)

        // Only the rows whose logits are wanted go through the final norm and the output matrix.
        let rows = logitsForAll ? n : 1
        let firstRow = n - rows
        RMSNorm.apply(x + firstRow * w, weight: outputNorm, into: normed, rows: rows, width: w, epsilon: c.rmsEpsilon)
        return [Float](unsafeUninitializedCapacity: rows * c.vocabularySize) { buffer, initialised in
            project(output, normed, tokens: rows, into: buffer.baseAddress!)  // (rows, vocab)
            initialised = rows * c.vocabularySize
        }
    }

    /// `y = x · Wᵀ` for `tokens` rows of `x`: mat-vec for one token, GEMM for a batch.
    private func project(_ weight: WeightMatrix, _ x: UnsafePointer<Float>, tokens: Int,
                         into y: UnsafeMutablePointer<Float>) {
        if tokens == 1 && precision == .quantized && weight.type.blockSize == 32 && weight.columns <= (quantized?.capacity ?? 0) {
            quantized!.quantize(x, count: weight.columns)
            MatVec.multiply(weight, quantized!, into: y, pool: pool)
        } else if tokens == 1 {
            MatVec.multiply(weight, x, into: y, precision: precision == .f32 ? .f32 : .int8, pool: pool)
        } else {
            MatMul.multiply(weight, x, tokens: tokens, into: y, pool: pool)
        }
    }
}
