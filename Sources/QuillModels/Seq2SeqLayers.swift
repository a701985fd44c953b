import QuillGeneration
import QuillKernels

/// A linear layer `y = x·Wᵀ + b` (PyTorch `nn.Linear`; W is (out, in)).
struct Linear {
    let weight: WeightMatrix     // (out, in)
    let bias: [Float]?           // (out)
    /// The same weights in CTranslate2's int8 format (per-row scales), for products over many tokens
    /// (Whisper's encoder on the q8_0 path) or every product (the q8_0 path of the safetensors and
    /// CTranslate2 seq2seq models); nil keeps every product on the paths below.
    var rowScaled: RowScaledInt8Matrix? = nil
    /// From this many tokens on, `rowScaled` weights take the int8 GEMM.
    var rowScaledMinimumTokens = Linear.rowScaledTokens
    /// The same weights packed for `PackedF32GEMM` (f32, or f16 kept), which then takes every product
    /// (the float paths of the seq2seq models and Whisper where AVX-512 runs): each row's result is one
    /// FMA chain, the same at 1, 16 or 64 rows, and no panel is copied or packed per call.
    var packed: PackedF32Matrix? = nil

    var outputs: Int { weight.rows }

    /// Whisper's threshold: its decoder keeps Q8_0 mat-vecs for its few rows.
    static let rowScaledTokens = 64

    /// Up to this many rows, quantised weights with `.int8` precision take the batched int8 mat-vec
    /// (each weight block read once for all rows; every row bitwise what it gets alone).
    static let int8Tokens = 16

    /// - Parameters:
    ///   - x: (tokens, in)
    ///   - y: (tokens, out)
    func apply(_ x: UnsafePointer<Float>, tokens: Int, into y: UnsafeMutablePointer<Float>, context: LayerContext) {
        guard tokens > 0 else { return }
        if let packed, PackedF32GEMM.hasFastKernel {
            PackedF32GEMM.multiply(packed, x, tokens: tokens, into: y, ldy: weight.rows, pool: context.pool)
        } else if let rowScaled, tokens >= rowScaledMinimumTokens, RowScaledInt8GEMM.hasFastKernel {
            // The GEMM adds the bias itself, while its outputs are in cache.
            guard let bias else {
                return RowScaledInt8GEMM.multiply(rowScaled, x, tokens: tokens, into: y, ldy: weight.rows, pool: context.pool)
            }
            return bias.withUnsafeBufferPointer {
                RowScaledInt8GEMM.multiply(rowScaled, x, tokens: tokens, into: y, ldy: weight.rows, bias: $0.baseAddress!,
                                           pool: context.pool)
            }
        } else if tokens == 1 {
            // Float weights always take MatVec's f32 path; Q8_0 ones use int8 activations when asked.
            MatVec.multiply(weight, x, into: y, precision: context.matVecPrecision, pool: context.pool)
        } else if context.matVecPrecision == .int8, MatVec.hasBatchedInt8Kernel(weight.type), tokens <= Linear.int8Tokens {
            // A few decoder rows against quantised weights: one batched int8 product, each row
            // bitwise the int8 mat-vec it would get alone.
            var xq = QuantizedActivationBatch(rows: tokens, columns: weight.columns)
            xq.quantize(x, rows: tokens, columns: weight.columns)
            MatVec.multiply(weight, xq, into: y, pool: context.pool)
        } else if context.matVecPrecision == .int8, BlockInt8GEMM.hasFastKernel, BlockInt8GEMM.supports(weight) {
            // Many rows (an encoder's tokens, beams × sources) against quantised weights: the int8
            // GEMM, every row still independent of the others.
            BlockInt8GEMM.multiply([(weight, y)], InterleavedActivations(x, tokens: tokens, columns: weight.columns, pool: context.pool),
                                   pool: context.pool)
        } else {
            MatMul.multiply(weight, x, tokens: tokens, into: y, pool: context.pool)
        }
        if let bias {
            bias.withUnsafeBufferPointer { b in
                for t in 0..<tokens { addInPlace(b.baseAddress!, into: y + t * weight.rows, count: weight.rows) }
            }
        }
    }
}

/// Every product on CTranslate2's int8 scheme (`RowScaledInt8GEMM`: per-row scales for weights and
/// inputs, exact int32 sums): the q8_0 path of the safetensors and CTranslate2 seq2seq models. A
/// decoder step of many rows (beams, a batch of sources) is then one int8 GEMM, and a row's result
/// is the same alone or among others because the sums are exact.
extension Linear {
    /// - Parameter release: called with each run of source rows once its int8 copy is made.
    func rowScaledEverywhere(releasing release: (WeightMatrix) -> Void = { _ in }) -> Linear {
        let source = weight
        guard let matrix = rowScaled ?? RowScaledInt8Matrix(source, afterRows: { rows in
            release(WeightMatrix(type: source.type, rows: rows.count, columns: source.columns, data: source.row(rows.lowerBound)))
        }) else { return self }
        var layer = self
        layer.rowScaled = matrix
        layer.rowScaledMinimumTokens = 1
        return layer
    }
}

/// Every product through `PackedF32GEMM`: the f32 path of the seq2seq models where AVX-512 runs.
extension Linear {
    /// - Parameters:
    ///   - keepingHalfPrecision: an f16 matrix stays f16 in the packed layout (for decoders)
    ///   - release: called with each run of source rows once its packed copy is made.
    func packedEverywhere(keepingHalfPrecision: Bool = false, releasing release: (WeightMatrix) -> Void = { _ in }) -> Linear {
        let source = weight
        guard packed == nil, let matrix = PackedF32Matrix(source, keepingHalfPrecision: keepingHalfPrecision, afterRows: { rows in
            release(WeightMatrix(type: source.type, rows: rows.count, columns: source.columns, data: source.row(rows.lowerBound)))
        }) else { return self }
        var layer = self
        layer.packed = matrix
        return layer
    }

    /// How a loader's matrices are repacked once at load time: CTranslate2's int8 scheme, the packed
    /// layout (f32, or f16 sources kept f16), or as stored.
    enum Repacking {
        case rowScaledInt8, packedF32, packedKeepingHalfPrecision, none

        func apply(_ layer: Linear, releasing release: (WeightMatrix) -> Void) -> Linear {
            switch self {
            case .rowScaledInt8: return layer.rowScaledEverywhere(releasing: release)
            case .packedF32: return layer.packedEverywhere(releasing: release)
            case .packedKeepingHalfPrecision: return layer.packedEverywhere(keepingHalfPrecision: true, releasing: release)
            case .none: return layer
            }
        }
    }
}

extension AttentionWeights {
    func repacked(_ r: Linear.Repacking, releasing release: (WeightMatrix) -> Void) -> AttentionWeights {
        AttentionWeights(query: r.apply(query, releasing: release), key: r.apply(key, releasing: release),
                         value: r.apply(value, releasing: release), output: r.apply(output, releasing: release))
    }
}

extension FeedForward {
    func repacked(_ r: Linear.Repacking, releasing release: (WeightMatrix) -> Void) -> FeedForward {
        FeedForward(input: r.apply(input, releasing: release), up: up.map { r.apply($0, releasing: release) },
                    output: r.apply(output, releasing: release), activation: activation)
    }
}

/// What every layer needs besides its weights.
struct LayerContext {
    let pool: ThreadPool
    let matVecPrecision: MatVecPrecision
}

/// The normalisation of a block: LayerNorm with bias (BART, Marian) or T5's RMS norm (no mean, no bias).
enum Norm {
    case layer(weight: [Float], bias: [Float], epsilon: Float)   // (width), (width)
    case rms(weight: [Float], epsilon: Float)                     // (width)

    /// - Parameters:
    ///   - x: (rows, width)
    ///   - y: (rows, width); may be `x`.
    ///   - pool: spreads many rows (an encoder's) over the threads; rows are independent, so the result
    ///     does not depend on the split.
    func apply(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int, pool: ThreadPool? = nil) {
        guard let pool, rows >= 64, pool.threadCount > 1 else { return applyRows(x, into: y, rows: rows, width: width) }
        pool.parallelRanges(total: rows, minimumChunk: 32) { range in
            applyRows(x + range.lowerBound * width, into: y + range.lowerBound * width, rows: range.count, width: width)
        }
    }

    private func applyRows(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        switch self {
        case let .layer(weight, bias, epsilon):
            LayerNorm.apply(x, weight: weight, bias: bias, into: y, rows: rows, width: width, epsilon: epsilon)
        case let .rms(weight, epsilon):
            RMSNorm.apply(x, weight: weight, into: y, rows: rows, width: width, epsilon: epsilon)
        }
    }
}

/// The feed-forward block: `out(act(in x))`, or gated `out(act(in x) ⊙ up x)` (T5 v1.1's wi_0, wi_1).
struct FeedForward {
    let input: Linear            // (ffn, width): fc1 / wi / wi_0
    let up: Linear?              // (ffn, width): wi_1 when gated
    let output: Linear           // (width, ffn): fc2 / wo
    let activation: Activation

    /// - Parameters:
    ///   - x: (tokens, width)
    ///   - y: (tokens, width)
    func apply(_ x: UnsafePointer<Float>, tokens: Int, into y: UnsafeMutablePointer<Float>, context: LayerContext) {
        let ffn = input.outputs
        var hidden = [Float](repeating: 0, count: tokens * ffn)   // (tokens, ffn)
        input.apply(x, tokens: tokens, into: &hidden, context: context)
        if let up {
            var linear = [Float](repeating: 0, count: tokens * ffn)  // (tokens, ffn)
            up.apply(x, tokens: tokens, into: &linear, context: context)
            activation.applyGated(gate: &hidden, up: linear, count: tokens * ffn)
        } else {
            hidden.withUnsafeMutableBufferPointer { activation.apply($0.baseAddress!, count: $0.count, pool: context.pool) }
        }
        output.apply(hidden, tokens: tokens, into: y, context: context)
    }
}

/// The four projections of an attention block.
struct AttentionWeights {
    let query: Linear   // (heads·hd, width)
    let key: Linear     // (heads·hd, width)
    let value: Linear   // (heads·hd, width)
    let output: Linear  // (width, heads·hd)
}

/// An encoder layer: self-attention then feed-forward, each with its norm.
struct EncoderLayer {
    let attention: AttentionWeights
    let attentionNorm: Norm
    let feedForward: FeedForward
    let feedForwardNorm: Norm
}

/// A decoder layer: causal self-attention, cross-attention over the encoder output, feed-forward.
struct DecoderLayer {
    let selfAttention: AttentionWeights
    let selfAttentionNorm: Norm
    let crossAttention: AttentionWeights
    let crossAttentionNorm: Norm
    let feedForward: FeedForward
    let feedForwardNorm: Norm
}

/// `(tokens, heads, hd)` rows of `source` into `(heads, stride, hd)` at `destination` (the layout
/// the attention kernel and the caches read: one head's positions contiguous), or into
/// per head `BidirectionalAttention.transposedKeyOffset`'s layout when `transposed` (`AttentionKeys.transposed`).
func splitHeads(_ source: UnsafePointer<Float>, tokens: Int, heads: Int, headDimension hd: Int,
                into destination: UnsafeMutablePointer<Float>, stride: Int, transposed: Bool = false) {
    for t in 0..<tokens {
        for h in 0..<heads {
            let row = source + (t * heads + h) * hd
            if transposed {
                let head = destination + h * stride * hd
                for d in 0..<hd { head[BidirectionalAttention.transposedKeyOffset(key: t, dimension: d, headDimension: hd)] = row[d] }
            } else {
                (destination + (h * stride + t) * hd).update(from: row, count: hd)
            }
        }
    }
}

/// Reads the weights of one checkpoint, checking every shape, and optionally quantises matrices.
struct WeightReader {
    let file: SafetensorsFile
    let quantize: Bool
    let owner: WeightStorage

    func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
        let m = try file.matrix(name, rows: rows, columns: columns)
        return quantize ? owner.quantizedQ80(m) : m
    }

    func vector(_ name: String, count: Int) throws -> [Float] { try file.vector(name, count: count) }

    func linear(_ name: String, rows: Int, columns: Int, bias: Bool) throws -> Linear {
        Linear(weight: try matrix(name + ".weight", rows: rows, columns: columns),
               bias: bias ? try vector(name + ".bias", count: rows) : nil)
    }

    func layerNorm(_ name: String, width: Int, epsilon: Float) throws -> Norm {
        .layer(weight: try vector(name + ".weight", count: width), bias: try vector(name + ".bias", count: width),
               epsilon: epsilon)
    }

    /// BART/Marian naming: `q_proj`, `k_proj`, `v_proj`, `out_proj`, all with biases.
    func bartAttention(_ prefix: String, width: Int) throws -> AttentionWeights {
        AttentionWeights(query: try linear(prefix + ".q_proj", rows: width, columns: width, bias: true),
                         key: try linear(prefix + ".k_proj", rows: width, columns: width, bias: true),
                         value: try linear(prefix + ".v_proj", rows: width, columns: width, bias: true),
                         output: try linear(prefix + ".out_proj", rows: width, columns: width, bias: true))
    }
}

/// Owns buffers made at load time (quantised or dequantised matrices) for the model's lifetime.
public final class WeightStorage: @unchecked Sendable {
    private var buffers: [UnsafeMutableRawPointer] = []

    public init() {}

    deinit { for b in buffers { b.deallocate() } }

    /// Room for `count` floats (uninitialised), freed with this storage.
    public func allocateFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(4, count * 4), alignment: 64)
        buffers.append(buffer)
        return buffer.bindMemory(to: Float.self, capacity: max(1, count))
    }

    /// A Q8_0 copy of `m` (ggml's layout and rounding: per 32 values d = amax/127, q = round(x/d)).
    /// Matrices whose rows are not whole blocks stay as they are.
    func quantizedQ80(_ m: WeightMatrix) -> WeightMatrix {
        guard m.columns % 32 == 0, m.type != .q8_0 else { return m }
        let blocks = m.columns / 32
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(1, m.rows * blocks * 34), alignment: 64)
        buffers.append(buffer)
        let row = UnsafeMutablePointer<Float>.allocate(capacity: m.columns)
        defer { row.deallocate() }
        for r in 0..<m.rows {
            ReferenceDequantizer.dequantize(m.type, m.row(r), count: m.columns, into: row)
            for b in 0..<blocks {
                let x = row + 32 * b
                var amax: Float = 0
                for j in 0..<32 { amax = max(amax, abs(x[j])) }
                let d = amax / 127
                let inverse: Float = d != 0 ? 1 / d : 0
                let block = buffer + (r * blocks + b) * 34
                block.storeBytes(of: floatToHalf(d), as: UInt16.self)
                for j in 0..<32 { block.storeBytes(of: Int8((x[j] * inverse).rounded()), toByteOffset: 2 + j, as: Int8.self) }
            }
        }
        return WeightMatrix(type: .q8_0, rows: m.rows, columns: m.columns, data: UnsafeRawPointer(buffer))
    }
}

/// A 1-D convolution over time (PyTorch `Conv1d` with zero padding), computed as im2col followed by
/// a `Linear` whose weight is the kernel flattened to (out, in·kernel) (index `c·kernel + j`).
/// Whisper's audio front end: kernel 3, padding 1, stride 1 then 2.
struct Conv1D {
    let linear: Linear          // (out, in·kernel)
    let inputChannels: Int
    let kernel: Int
    let stride: Int
    let padding: Int

    func outputLength(_ length: Int) -> Int { (length + 2 * padding - kernel) / stride + 1 }

    /// - Parameters:
    ///   - x: (length, inputChannels), time-major
    ///   - y: (outputLength(length), outputs)
    func apply(_ x: UnsafePointer<Float>, length: Int, into y: UnsafeMutablePointer<Float>, context: LayerContext) {
        let outLength = outputLength(length), width = inputChannels * kernel
        var columns = [Float](repeating: 0, count: outLength * width)   // (outLength, in·kernel)
        columns.withUnsafeMutableBufferPointer { cb in
            let c0 = cb.baseAddress!
            context.pool.parallelRanges(total: outLength, minimumChunk: 16) { range in
                for t in range {
                    let row = c0 + t * width
                    for j in 0..<kernel {
                        let source = t * stride + j - padding
                        guard source >= 0 && source < length else { continue }   // zero padding
                        let input = x + source * inputChannels
                        for c in 0..<inputChannels { row[c * kernel + j] = input[c] }
                    }
                }
            }
        }
        linear.apply(columns, tokens: outLength, into: y, context: context)
    }
}

extension Activation {
    /// The activation over many values, spread over the pool's threads in chunks (element-wise, so
    /// the result does not depend on the split).
    func apply(_ x: UnsafeMutablePointer<Float>, count: Int, pool: ThreadPool) {
        guard count >= 1 << 16, pool.threadCount > 1 else { return apply(x, count: count) }
        pool.parallelRanges(total: count, minimumChunk: 1 << 14) { range in apply(x + range.lowerBound, count: range.count) }
    }
}
