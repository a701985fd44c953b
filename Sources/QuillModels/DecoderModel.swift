import FoundationEssentials
import Synchronization
import QuillGeneration
import QuillKernels
import QuillTokenizers

/// How the matrices are multiplied. Both read the same (quantised) weights.
public enum ComputePrecision: String, Sendable, CaseIterable {
    /// The reference path: weights dequantised exactly, f32 arithmetic everywhere, f32 KV cache.
    /// Matches the Hugging Face fp32 implementation to rounding noise.
    case f32
    /// The fast path: quantised weights multiply activations quantised to 8 bits per 32-element
    /// block (as llama.cpp does) — mat-vec kernels when decoding, the int8 GEMM for prompt chunks
    /// (f32 sgemm on dequantised panels where no int8 kernel runs); the KV cache holds half floats.
    case quantized

    /// The KV element type this precision uses unless told otherwise.
    public var defaultKVCacheType: KVCacheType { self == .f32 ? .f32 : .f16 }
}

/// The loaded, immutable weights of a decoder-only model (any architecture in
/// `DecoderArchitectures`), shared by every inference context and task that uses them.
///
/// Everything mutable — scratch memory, threads, the KV pool — lives in a `DecoderContext`, so
/// several tasks can generate from one `DecoderModel` at the same time, each with its own context.
public final class DecoderModel: CausalLanguageModel, Sendable {
    public let architecture: DecoderArchitecture
    public let precision: ComputePrecision
    public let endOfSequenceTokens: Set<TokenID>
    /// Threads of the contexts `makeCache` creates.
    public let threads: Int
    /// KV element type of the contexts `makeCache` creates.
    public let kvCacheType: KVCacheType
    /// Prompts longer than this run in several passes, which bounds the activation memory.
    public let maxBatch: Int
    public var vocabularySize: Int { architecture.vocabularySize }
    public var trainedContextLength: Int { architecture.trainedContextLength }

    /// One block's weights; optional parts are nil when the architecture has none.
    struct Layer: @unchecked Sendable {
        let attentionNorm: [Float]          // (width)
        let query: WeightMatrix             // (heads·hd, width)
        let key: WeightMatrix               // (kvHeads·hd, width)
        let value: WeightMatrix             // (kvHeads·hd, width)
        let queryBias, keyBias, valueBias: [Float]?  // (heads·hd), (kvHeads·hd), (kvHeads·hd)
        let queryNorm, keyNorm: [Float]?    // (hd)
        let attentionOutput: WeightMatrix   // (width, heads·hd)
        let postAttentionNorm: [Float]?     // (width)
        let feedForwardNorm: [Float]        // (width)
        let gate: WeightMatrix              // (ffn, width)
        let up: WeightMatrix                // (ffn, width)
        let down: WeightMatrix              // (width, ffn)
        let postFeedForwardNorm: [Float]?   // (width)

        var matrices: [WeightMatrix] { [query, key, value, attentionOutput, gate, up, down] }
    }

    /// Forward passes run by every context of this model so far. Lets a caller check, without timing
    /// anything, that a generation on another thread has really stopped (e.g. after cancelling a stream).
    public var forwardPassesRun: Int { passCounter.value }
    let passCounter = PassCounter()

    let file: GGUFFile          // keeps the mapping that every WeightMatrix points into alive
    let arena: WeightArena?     // or this, which holds the copies decoding reads
    /// Whether decoding reads the layer weights from the file mapping (no arena copy).
    var readsWeightsFromFile: Bool { arena == nil }
    let tokenEmbedding: WeightMatrix  // (vocab, width)
    let layers: [Layer]
    let outputNorm: [Float]           // (width)
    let output: WeightMatrix          // (vocab, width); token_embd when tied

    /// Binds the weights of `gguf` (matrices point into the mapped file or a huge-page copy) and
    /// checks every shape.
    public init(gguf: GGUFFile, threads: Int, precision: ComputePrecision = .quantized,
                endOfSequenceTokens: Set<TokenID>, kvCacheType: KVCacheType? = nil, maxBatch: Int = 512) throws {
        let a = try DecoderArchitectures.architecture(of: gguf)
        architecture = a
        self.precision = precision
        self.endOfSequenceTokens = endOfSequenceTokens
        self.threads = max(1, threads)
        self.kvCacheType = kvCacheType ?? precision.defaultKVCacheType
        self.maxBatch = max(1, maxBatch)
        file = gguf

        var binder = WeightBinder(gguf: gguf, residentBytes: DecoderModel.cacheResidentBudget())
        let w = a.width, ffn = a.feedForwardWidth
        var tokenEmbedding = try binder.matrix("token_embd.weight", rows: a.vocabularySize, columns: w)
        var layers = try (0 ..< a.layers).map { i in
            let p = "blk.\(i)."
            func optional(_ name: String, _ count: Int, _ present: Bool) throws -> [Float]? {
                present ? try binder.vector(p + name, count: count) : nil
            }
            return Layer(
                attentionNorm: try binder.vector(p + "attn_norm.weight", count: w),
                query: try binder.matrix(p + "attn_q.weight", rows: a.queryWidth, columns: w),
                key: try binder.matrix(p + "attn_k.weight", rows: a.keyValueWidth, columns: w),
                value: try binder.matrix(p + "attn_v.weight", rows: a.keyValueWidth, columns: w),
                queryBias: try optional("attn_q.bias", a.queryWidth, a.attentionBiases),
                keyBias: try optional("attn_k.bias", a.keyValueWidth, a.attentionBiases),
                valueBias: try optional("attn_v.bias", a.keyValueWidth, a.attentionBiases),
                queryNorm: try optional("attn_q_norm.weight", a.headDimension, a.queryKeyNorms),
                keyNorm: try optional("attn_k_norm.weight", a.headDimension, a.queryKeyNorms),
                attentionOutput: try binder.matrix(p + "attn_output.weight", rows: w, columns: a.queryWidth),
                postAttentionNorm: try optional("post_attention_norm.weight", w, a.postNorms),
                feedForwardNorm: try binder.vector(p + "ffn_norm.weight", count: w),
                gate: try binder.matrix(p + "ffn_gate.weight", rows: ffn, columns: w),
                up: try binder.matrix(p + "ffn_up.weight", rows: ffn, columns: w),
                down: try binder.matrix(p + "ffn_down.weight", rows: w, columns: ffn),
                postFeedForwardNorm: try optional("post_ffw_norm.weight", w, a.postNorms))
        }
        outputNorm = try binder.vector("output_norm.weight", count: w)
        var output = gguf.tensor("output.weight") != nil
            ? try binder.matrix("output.weight", rows: a.vocabularySize, columns: w) : tokenEmbedding
        // Decoding reads the weights from huge pages (see WeightArena); `QUILL_HUGE_PAGES=0` keeps
        // them in the file mapping. The token embedding stays mapped unless it is the output matrix.
        if ProcessInfo.processInfo.environment["QUILL_HUGE_PAGES"] != "0" {
            // On the quantised path with the AVX-512 kernels, the 32-block types are regrouped into
            // `WeightPanels` (the layout of the decoding kernels, about the file's size) rather than copied.
            let usePanels = precision == .quantized && MatVec.hasAVX512Kernels
            let matrices = layers.flatMap(\.matrices) + [output]
            let arena = WeightArena(bytes: matrices.reduce(0) { $0 + WeightArena.bytes($1, panels: usePanels) })
            // The GGUF mapping is read-only, so its pages can be released as they are copied.
            func copy(_ m: WeightMatrix) -> WeightMatrix {
                usePanels && WeightPanels.supports(m.type) ? arena.panels(m, releasingSource: true)
                    : arena.copy(m, releasingSource: true)
            }
            layers = layers.map { l in
                Layer(attentionNorm: l.attentionNorm, query: copy(l.query), key: copy(l.key), value: copy(l.value),
                      queryBias: l.queryBias, keyBias: l.keyBias, valueBias: l.valueBias,
                      queryNorm: l.queryNorm, keyNorm: l.keyNorm, attentionOutput: copy(l.attentionOutput),
                      postAttentionNorm: l.postAttentionNorm, feedForwardNorm: l.feedForwardNorm,
                      gate: copy(l.gate), up: copy(l.up), down: copy(l.down), postFeedForwardNorm: l.postFeedForwardNorm)
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
    }

    /// Bytes of weights to keep in the last-level cache while decoding: about 60 % of it (measured best
    /// here: ~20 of 32 MiB; the rest holds the KV cache, activations and other processes' data).
    /// `QUILL_RESIDENT_MB` overrides.
    static func cacheResidentBudget() -> Int {
        if let text = ProcessInfo.processInfo.environment["QUILL_RESIDENT_MB"], let mb = Int(text) { return mb << 20 }
        guard let text = try? String(contentsOfFile: "/sys/devices/system/cpu/cpu0/cache/index3/size", encoding: .utf8),
              let kb = Int(text.trimmingWhitespaceAndNewlines().dropLast()) else { return 0 }
        return kb * 1024 * 6 / 10
    }

    /// The KV layout of this model with elements of `type`.
    public func kvLayout(_ type: KVCacheType) -> KVLayout {
        KVLayout(layers: architecture.layers, kvHeads: architecture.kvHeads, headDimension: architecture.headDimension,
                 elementType: type, windowedLayers: architecture.slidingWindow?.layers ?? [],
                 windowSize: architecture.slidingWindow?.size ?? 0)
    }

    /// A new inference context with a KV pool of `kvTokens` positions shared by its sequences.
    public func makeContext(kvTokens: Int, threads: Int? = nil) throws -> DecoderContext {
        try DecoderContext(model: self, kvTokens: kvTokens, threads: threads ?? self.threads)
    }

    /// One sequence of up to `capacity` positions in a context of its own.
    public func makeCache(capacity: Int) throws -> KVCache {
        let context = try makeContext(kvTokens: capacity)
        return KVCache(pool: context.kv, sequence: context.kv.createSequence(), capacity: capacity, owner: context)
    }

    public func forward(_ tokens: [TokenID], cache: KVCache, logits selection: LogitsSelection) throws -> [Float] {
        guard let context = cache.owner as? DecoderContext, context.model === self else {
            preconditionFailure("a KVCache made by another model was passed to DecoderModel.forward")
        }
        return try context.forward(tokens, cache: cache, logits: selection)
    }
}

/// Reads named tensors of a GGUF file with their shapes checked, marking the matrices that do not
/// fit in the cache budget as streaming.
struct WeightBinder {
    let gguf: GGUFFile
    /// Decoding streams every weight once per token. When they outgrow the last-level cache, the
    /// first `residentBytes` of them (in reading order) are read normally and the rest marked
    /// streaming, so that part stays cached between tokens instead of all of it cycling through DRAM.
    var residentBytes: Int

    mutating func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
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
}

/// A counter shared by the contexts of one model (the only mutable thing a `DecoderModel` holds).
final class PassCounter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}
