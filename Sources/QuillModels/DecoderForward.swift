import QuillGeneration
import QuillKernels

/// The forward pass of every decoder architecture: it only composes kernels, as the architecture's
/// parts say.
extension DecoderContext {
    /// One pass over `tokens` (laid out as `plan` says; their KV blocks reserved); returns the logits
    /// each chunk asked for, in the caller's order.
    func run(_ tokens: [TokenID], plan: RowPlan, wanted: [LogitsSelection]) -> [[Float]] {
        let a = model.architecture, n = plan.rows, w = a.width, ffn = a.feedForwardWidth
        let qWidth = a.queryWidth, kvWidth = a.keyValueWidth, hd = a.headDimension
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

        for (row, token) in tokens.enumerated() {
            model.tokenEmbedding.withRow(Int(token)) {
                ReferenceDequantizer.dequantize(model.tokenEmbedding.type, $0, count: w, into: x + row * w)
            }
        }
        if let factor = a.embeddingScale { scale(x, by: factor, count: n * w) }

        // cos/sin of every row's position, once per RoPE the layers use: (n, hd / 2)
        var positions: [Int] = []
        for chunk in plan.chunks { positions += (0 ..< chunk.tokens).map { chunk.firstPosition + $0 } }
        let globalAngles = a.rope.table(positions: positions)
        let localAngles = a.slidingWindow.map { $0.rope.table(positions: positions) }

        // Block tables of the sequences, alive for the whole pass: the full-history layers' and, for
        // sliding-window layers, their own (entries behind the window are −1 and never read).
        let windowedLayers = (0 ..< a.layers).contains { kv.isWindowed(layer: $0) }
        let tables = plan.chunks.map { kv.blocks(of: $0.sequence) }
            + (windowedLayers ? plan.chunks.map { kv.windowedBlocks(of: $0.sequence) } : [])
        let tableStorage = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, tables.reduce(0) { $0 + $1.count }))
        defer { tableStorage.deallocate() }
        var sequences: [AttentionSequence] = [], windowedSequences: [AttentionSequence] = []
        var offset = 0
        for (i, table) in tables.enumerated() {
            let chunk = plan.chunks[i % plan.chunks.count]
            (tableStorage + offset).initialize(from: table, count: table.count)
            let sequence = AttentionSequence(firstRow: chunk.firstRow, tokens: chunk.tokens,
                                             firstPosition: chunk.firstPosition, blocks: tableStorage + offset)
            if i < plan.chunks.count { sequences.append(sequence) } else { windowedSequences.append(sequence) }
            offset += table.count
        }
        let shape = AttentionShape(heads: a.heads, kvHeads: a.kvHeads, headDimension: hd, capacity: 0,
                                   scale: a.attentionScale)

        for (index, layer) in model.layers.enumerated() {
            RMSNorm.apply(x, weight: layer.attentionNorm, into: normed, rows: n, width: w, epsilon: a.normEpsilon)
            project([(layer.query, q), (layer.key, k), (layer.value, v)], normed, plan: plan)
            if let b = layer.queryBias { addBias(b, to: q, rows: n) }
            if let b = layer.keyBias { addBias(b, to: k, rows: n) }
            if let b = layer.valueBias { addBias(b, to: v, rows: n) }
            if let norm = layer.queryNorm {
                RMSNorm.apply(q, weight: norm, into: q, rows: n * a.heads, width: hd, epsilon: a.normEpsilon)
            }
            if let norm = layer.keyNorm {
                RMSNorm.apply(k, weight: norm, into: k, rows: n * a.kvHeads, width: hd, epsilon: a.normEpsilon)
            }
            let window = a.window(ofLayer: index)
            let rope = a.rope(ofLayer: index), angles = window == nil ? globalAngles : localAngles!
            angles.cos.withUnsafeBufferPointer { cosines in
                angles.sin.withUnsafeBufferPointer { sines in
                    for row in 0 ..< n {
                        let c = cosines.baseAddress! + row * hd / 2, s = sines.baseAddress! + row * hd / 2
                        rope.apply(q + row * qWidth, heads: a.heads, cos: c, sin: s)
                        rope.apply(k + row * kvWidth, heads: a.kvHeads, cos: c, sin: s)
                    }
                }
            }
            for chunk in plan.chunks {
                kv.store(chunk.sequence, layer: index, keys: k + chunk.firstRow * kvWidth,
                         values: v + chunk.firstRow * kvWidth, tokens: chunk.tokens)
            }
            Attention.paged(queries: q, kv: kv.view(layer: index),
                            sequences: kv.isWindowed(layer: index) ? windowedSequences : sequences, output: attention,
                            shape: shape, window: window, pool: pool)
            project([(layer.attentionOutput, projected)], attention, plan: plan)
            if let norm = layer.postAttentionNorm {
                RMSNorm.apply(projected, weight: norm, into: projected, rows: n, width: w, epsilon: a.normEpsilon)
            }
            addInPlace(projected, into: x, count: n * w)

            RMSNorm.apply(x, weight: layer.feedForwardNorm, into: normed, rows: n, width: w, epsilon: a.normEpsilon)
            project([(layer.gate, gate), (layer.up, up)], normed, plan: plan)
            if a.activation == .silu {
                SwiGLU.apply(gate: gate, up: up, count: n * ffn)
            } else {
                a.activation.applyGated(gate: gate, up: up, count: n * ffn)
            }
            project([(layer.down, projected)], gate, plan: plan)
            if let norm = layer.postFeedForwardNorm {
                RMSNorm.apply(projected, weight: norm, into: projected, rows: n, width: w, epsilon: a.normEpsilon)
            }
            addInPlace(projected, into: x, count: n * w)
        }
        return logits(x, plan: plan, wanted: wanted, scratch: normed)
    }

    /// Final norm and output matrix for the rows whose logits are wanted. Single rows (the last of a
    /// chunk) go through the row-by-row path together; chunks that want every row through a GEMM.
    private func logits(_ x: UnsafeMutablePointer<Float>, plan: RowPlan, wanted: [LogitsSelection],
                        scratch normed: UnsafeMutablePointer<Float>) -> [[Float]] {
        let a = model.architecture, w = a.width, vocabulary = a.vocabularySize
        var result = [[Float]](repeating: [], count: wanted.count)
        let single = plan.chunks.filter { wanted[$0.index] == .last || $0.tokens == 1 }
        if !single.isEmpty {
            for (i, chunk) in single.enumerated() {
                RMSNorm.apply(x + (chunk.firstRow + chunk.tokens - 1) * w, weight: model.outputNorm,
                              into: normed + i * w, width: w, epsilon: a.normEpsilon)
            }
            let rows = [Float](unsafeUninitializedCapacity: single.count * vocabulary) { buffer, initialised in
                projectRows(model.output, normed, rows: single.count, into: buffer.baseAddress!)
                initialised = single.count * vocabulary
            }
            for (i, chunk) in single.enumerated() {
                result[chunk.index] = Array(rows[i * vocabulary ..< (i + 1) * vocabulary])
            }
        }
        for chunk in plan.chunks where wanted[chunk.index] == .all && chunk.tokens > 1 {
            let n = chunk.tokens
            RMSNorm.apply(x + chunk.firstRow * w, weight: model.outputNorm, into: normed, rows: n, width: w,
                          epsilon: a.normEpsilon)
            result[chunk.index] = [Float](unsafeUninitializedCapacity: n * vocabulary) { buffer, initialised in
                multiplyPrompt([(model.output, buffer.baseAddress!)], normed, tokens: n)
                initialised = n * vocabulary
            }
        }
        return result
    }

    /// `y_i = x · W_iᵀ` for matrices sharing one input (Q, K, V; gate, up): the decoding rows as
    /// one batched product (each weight block read once for all of them; every row bitwise what it
    /// would be alone), the prompt chunks as one int8 GEMM, or one sgemm product each on the f32 path.
    private func project(_ products: [(matrix: WeightMatrix, output: UnsafeMutablePointer<Float>)],
                         _ input: UnsafeMutablePointer<Float>, plan: RowPlan) {
        let columns = products[0].matrix.columns, rows = plan.decodeRows
        if rows > 0 && model.precision == .quantized && products.allSatisfy({ !$0.matrix.type.isFloat }) {
            // Quantise the rows once for all the matrices that read them.
            var batch = QuantizedActivationBatch(rows: rows, columns: columns)
            batch.quantize(input, rows: rows, columns: columns, rowMajorOnly: products.allSatisfy { $0.matrix.panels != nil })
            MatVec.multiply(products, batch, pool: pool)
        } else if rows > 0 {
            for (matrix, output) in products { projectRows(matrix, input, rows: rows, into: output) }
        }
        let promptRows = plan.rows - plan.decodeRows
        if promptRows > 0 && usesInt8GEMM(products) {
            // The int8 GEMM computes each token alone (tokens are vector lanes), so the step's prompt
            // chunks, which follow the decoding rows back to back, go through it as one product:
            // the same bits, but each weight row is unpacked once per step rather than once per
            // chunk, and no lanes are spent on padding every chunk to a multiple of 32 tokens.
            multiplyPrompt(products.map { ($0.matrix, $0.output + plan.decodeRows * $0.matrix.rows) },
                           input + plan.decodeRows * columns, tokens: promptRows)
            return
        }
        for chunk in plan.promptChunks {
            multiplyPrompt(products.map { ($0.matrix, $0.output + chunk.firstRow * $0.matrix.rows) },
                           input + chunk.firstRow * columns, tokens: chunk.tokens)
        }
    }

    /// Whether prompt tokens of `products` take the int8 GEMM.
    private func usesInt8GEMM(_ products: [(matrix: WeightMatrix, output: UnsafeMutablePointer<Float>)]) -> Bool {
        model.precision == .quantized && BlockInt8GEMM.hasFastKernel && products.allSatisfy({ BlockInt8GEMM.supports($0.matrix) })
    }

    /// `y_i = x · W_iᵀ` for the tokens of one prompt chunk. On the quantised path the int8 GEMM
    /// (int8 activations against the weights' own integers, as the decoding rows use int8
    /// activations), quantising the chunk once for all the matrices; otherwise exactly dequantised
    /// f32 weights and sgemm. Each token's result depends on that token alone either way.
    private func multiplyPrompt(_ products: [(matrix: WeightMatrix, output: UnsafeMutablePointer<Float>)],
                                _ input: UnsafeMutablePointer<Float>, tokens: Int) {
        if usesInt8GEMM(products) {
            let activations = InterleavedActivations(input, tokens: tokens, columns: products[0].matrix.columns, pool: pool)
            BlockInt8GEMM.multiply(products, activations, pool: pool)
            return
        }
        for (matrix, output) in products {
            MatMul.multiply(matrix, input, tokens: tokens, into: output, pool: pool)
        }
    }

    /// `y = x · Wᵀ` for `rows` rows, each bitwise what a mat-vec of that row alone gives: int8
    /// activations against quantised weights on the fast path, f32 otherwise.
    private func projectRows(_ weight: WeightMatrix, _ x: UnsafeMutablePointer<Float>, rows: Int,
                             into y: UnsafeMutablePointer<Float>) {
        let precision: MatVecPrecision = model.precision == .quantized && !weight.type.isFloat ? .int8 : .f32
        MatVec.multiply(weight, x, rows: rows, into: y, precision: precision, pool: pool)
    }

    private func addBias(_ bias: [Float], to y: UnsafeMutablePointer<Float>, rows: Int) {
        bias.withUnsafeBufferPointer { b in
            for row in 0 ..< rows { addInPlace(b.baseAddress!, into: y + row * b.count, count: b.count) }
        }
    }
}
