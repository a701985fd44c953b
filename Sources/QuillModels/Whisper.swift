import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import QuillAudio
import QuillGeneration
import QuillKernels
import QuillTokenizers

/// OpenAI Whisper from a CTranslate2 conversion (`model.bin` + `config.json`, as in faster-whisper),
/// built from the shared encoder-decoder blocks of `Seq2SeqTransformer`:
///
/// - audio front end: log-mel features (`QuillAudio.LogMel`) → conv1 (kernel 3, pad 1) + GELU →
///   conv2 (kernel 3, pad 1, stride 2) + GELU → + sinusoidal encoder positions (stored in the file);
/// - pre-LayerNorm encoder layers (fused Q|K|V split into three views of the mapped matrix),
///   final encoder LayerNorm, cross-attention keys/values projected once per utterance;
/// - decoder: token embedding + learned positions, pre-LayerNorm layers, final LayerNorm,
///   output tied to the embeddings (no bias, no scaling).
public final class WhisperModel: @unchecked Sendable {
    /// How the weights are held in memory.
    public enum WeightFormat: String, Sendable, CaseIterable {
        /// As stored in model.bin (f16 for faster-whisper conversions), used in place from the mapping.
        case stored
        /// Widened to f32 at load time (CTranslate2's `compute_type="float32"` does the same).
        case f32
        /// The decoder's per-step matrices (self-attention, cross-attention query/output, feed-forward,
        /// the tied output projection) quantised to Q8_0 at load time and used with int8 dot products;
        /// the products over all 1500 frames (encoder projections and feed-forward, the second
        /// convolution, cross-attention keys/values) quantised as CTranslate2's int8 does (per-row
        /// scales for weights and inputs) for a VNNI int8 GEMM. Attention itself stays f32.
        case q8_0
    }

    /// `${QUILL_HOME:-~/.cache/quill}/models/whisper-base`, where `Weights/fetch whisper-base` puts it.
    public static var defaultDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        let home = environment["QUILL_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? FileManager.default.homeDirectoryForCurrentUser.path.appendingPathComponent(".cache/quill")
        return home.appendingPathComponent("models/whisper-base")
    }

    /// The decoder (and the encoder layers) as a generic encoder-decoder model.
    public let transformer: Seq2SeqTransformer
    public let config: WhisperConfig
    /// Mel bins the first convolution expects (80 for whisper-base).
    public let melBins: Int
    /// Encoder positions (1500): the frames after the stride-2 convolution.
    public let encoderPositions: Int
    /// Decoder positions (448).
    public let decoderPositions: Int
    let conv1: Conv1D
    let conv2: Conv1D
    let encoderPositionTable: [Float]   // (encoderPositions, width)
    let file: CTranslate2File
    /// Huge-page copies of the matrices every decoding step reads (stored weights only).
    let weightArena: WeightArena?

    public var width: Int { transformer.width }
    public var vocabularySize: Int { transformer.vocabularySize }
    /// Feature frames of one window (3000 = 30 s).
    public var frames: Int { 2 * encoderPositions }

    /// Loads `directory/model.bin` and `directory/config.json`, checking every variable's shape.
    public init(directory: String, threads: Int, weights format: WeightFormat = .stored) throws {
        let binPath = directory.appendingPathComponent("model.bin")
        guard FileManager.default.fileExists(atPath: binPath) else {
            throw CheckpointError(path: directory, problem: "no model.bin (a CTranslate2 Whisper model folder is expected)")
        }
        let file = try CTranslate2File(path: binPath)
        guard file.specName == "WhisperSpec" else {
            throw CheckpointError(path: binPath, problem: "spec is \(file.specName), not WhisperSpec")
        }
        config = try WhisperConfig(path: directory.appendingPathComponent("config.json"))
        self.file = file
        let storage = WeightStorage()
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: binPath, problem: problem) }
        guard let conv1Shape = file.variable("encoder/conv1/weight")?.shape, conv1Shape.count == 3,
              let embeddingShape = file.variable("decoder/embeddings/weight")?.shape, embeddingShape.count == 2,
              let encoderPositionShape = file.variable("encoder/position_encodings/encodings")?.shape, encoderPositionShape.count == 2,
              let decoderPositionShape = file.variable("decoder/position_encodings/encodings")?.shape, decoderPositionShape.count == 2
        else { throw fail("missing or malformed encoder/conv1, decoder/embeddings or position tables") }
        let w = conv1Shape[0], vocabulary = embeddingShape[0]
        melBins = conv1Shape[1]
        encoderPositions = encoderPositionShape[0]
        decoderPositions = decoderPositionShape[0]
        let heads = Int(try file.scalar("encoder/num_heads"))
        guard heads > 0, w % heads == 0, Int(try file.scalar("decoder/num_heads")) == heads else {
            throw fail("unsupported head counts for width \(w)")
        }
        guard try file.scalar("decoder/pre_norm") == 1, try file.scalar("decoder/activation") == 3,
              try file.scalar("decoder/scale_embeddings") == 0 else {
            throw fail("expected pre-norm layers, GELU and unscaled embeddings (Whisper)")
        }
        if file.variable("decoder/alibi") != nil, try file.scalar("decoder/alibi") != 0 { throw fail("ALiBi is not supported") }
        let layerCount = { (prefix: String) in
            (0...).prefix { file.variable("\(prefix)/layer_\($0)/ffn/linear_0/weight") != nil }.count
        }
        let encoderLayerCount = layerCount("encoder"), decoderLayerCount = layerCount("decoder")
        guard encoderLayerCount > 0, decoderLayerCount > 0 else { throw fail("no encoder or decoder layers") }

        /// The matrices every decoding step reads (not the cross-attention keys/values, computed once).
        func perStep(_ name: String) -> Bool {
            name.hasPrefix("decoder/") && name.hasSuffix("/weight") && !name.hasSuffix("/attention/linear_1/weight")
        }
        // Stored weights without the AVX-512 kernel: decoding reads its matrices from huge pages, as
        // the GGUF decoder does (see WeightArena; Whisper-base's decoder ran 1.06× faster at beam 1
        // and 5); `QUILL_HUGE_PAGES=0` keeps them mapped. The arena is sized by every candidate variable
        // (aliases counted twice: address space only).
        let floatTypes: Set<CTranslate2File.DType> = [.f32, .f16, .bf16]
        let arenaBytes = file.variables.values.filter { perStep($0.name) && $0.shape.count == 2 && floatTypes.contains($0.dtype) }
            .reduce(0) { $0 + ($1.byteCount + 63) / 64 * 64 }
        // With it, the per-step matrices are packed instead (f16 kept, on huge pages as well; see
        // `repacking(for:)`): beam-5 decoding 0.46 -> 0.33 s on the German clip, beam 1 the same.
        let packsDecoder = format == .stored && PackedF32GEMM.hasFastKernel
        let arena = format == .stored && !packsDecoder && arenaBytes > 0 && ProcessInfo.processInfo.environment["QUILL_HUGE_PAGES"] != "0"
            ? WeightArena(bytes: arenaBytes) : nil
        weightArena = arena
        var copies: [UnsafeRawPointer: WeightMatrix] = [:]  // by source, so a tied alias is copied once
        /// How the float paths pack a layer's matrix for `PackedF32GEMM` (nil: not packed). The products
        /// over all 1500 frames (encoder, convolutions, cross-attention keys/values) in f32: 1.1–1.2×
        /// sgemm. The stored path's per-step decoder matrices keep f16 (half the bytes a step reads;
        /// f32-packed ones made beam-5 decoding 1.3× slower than the f16 mat-vec).
        func repacking(for name: String) -> Linear.Repacking? {
            guard format != .q8_0, PackedF32GEMM.hasFastKernel else { return nil }
            if name.hasPrefix("encoder/") || name.hasSuffix("/attention/linear_1") { return .packedF32 }
            return packsDecoder && perStep(name + "/weight") ? .packedKeepingHalfPrecision : nil
        }
        func packs(_ name: String) -> Bool { repacking(for: name) == .packedF32 }
        func matrix(_ name: String, _ shape: [Int]) throws -> WeightMatrix {
            let m = try file.matrix(name, shape: shape, storage: storage)
            switch format {
            case .stored:
                guard let arena, perStep(name), floatTypes.contains(file.variable(name)?.dtype ?? .int8) else { return m }
                if let copy = copies[m.data] { return copy }
                let copy = arena.copy(m, releasingSource: true)  // the mapping is read-only
                copies[m.data] = copy
                return copy
            case .q8_0:
                // Only the matrices every decoding step reads; the encoder's and the cross-attention
                // key/value projections run as GEMMs over 1500 frames, where Q8_0 would only add
                // dequantisation and error.
                return perStep(name) ? storage.quantizedQ80(m) : m
            case .f32:
                // Matrices to be packed are widened by the packing.
                guard m.type != .f32, !packs(String(name.dropLast("/weight".count))) else { return m }
                let floats = storage.allocateFloats(m.rows * m.columns)
                ReferenceDequantizer.dequantize(m.type, m.data, count: m.rows * m.columns, into: floats)
                return WeightMatrix(type: .f32, rows: m.rows, columns: m.columns, data: UnsafeRawPointer(floats))
            }
        }
        /// On the q8_0 path the products over all 1500 frames (encoder, cross-attention keys/values,
        /// the second convolution) also get CTranslate2-style int8 weights for the VNNI GEMM.
        func overFrames(_ name: String) -> Bool {
            format == .q8_0 && name != "encoder/conv1" && (name.hasPrefix("encoder/") || name.hasSuffix("/attention/linear_1"))
        }
        /// - Parameter packing: false for a fused projection that `slice` packs part by part.
        func linear(_ name: String, rows: Int, columns: Int, shape: [Int]? = nil, packing: Bool = true) throws -> Linear {
            let weight = try matrix(name + "/weight", shape ?? [rows, columns])
            let layer = Linear(weight: weight, bias: try file.vector(name + "/bias", count: rows),
                               rowScaled: overFrames(name) ? RowScaledInt8Matrix(weight) : nil)
            guard packing, let scheme = repacking(for: name) else { return layer }
            return scheme.apply(layer, releasing: file.releaseResidentPages)
        }
        /// Rows `part·rows ..< (part+1)·rows` of the fused projection `name`, as its own Linear (no
        /// copy, unless packed).
        func slice(_ fused: Linear, _ name: String, part: Int, rows: Int) -> Linear {
            let m = fused.weight
            let weight = WeightMatrix(type: m.type, rows: rows, columns: m.columns, data: m.row(part * rows))
            let layer = Linear(weight: weight, bias: Array(fused.bias![(part * rows)..<((part + 1) * rows)]),
                               rowScaled: fused.rowScaled != nil ? RowScaledInt8Matrix(weight) : nil)
            guard let scheme = repacking(for: name) else { return layer }
            return scheme.apply(layer, releasing: file.releaseResidentPages)
        }
        func norm(_ name: String) throws -> Norm {
            .layer(weight: try file.vector(name + "/gamma", count: w), bias: try file.vector(name + "/beta", count: w), epsilon: 1e-5)
        }
        func feedForward(_ p: String) throws -> FeedForward {
            let ffn = file.variable(p + "/linear_0/weight")?.shape.first ?? 0
            return FeedForward(input: try linear(p + "/linear_0", rows: ffn, columns: w), up: nil,
                               output: try linear(p + "/linear_1", rows: w, columns: ffn), activation: .gelu)
        }
        func selfAttention(_ p: String) throws -> AttentionWeights {
            let name = p + "/linear_0", fused = try linear(name, rows: 3 * w, columns: w, packing: false)
            return AttentionWeights(query: slice(fused, name, part: 0, rows: w), key: slice(fused, name, part: 1, rows: w),
                                    value: slice(fused, name, part: 2, rows: w), output: try linear(p + "/linear_1", rows: w, columns: w))
        }
        let encoderLayers = try (0..<encoderLayerCount).map { i in
            let p = "encoder/layer_\(i)"
            return EncoderLayer(attention: try selfAttention(p + "/self_attention"),
                                attentionNorm: try norm(p + "/self_attention/layer_norm"),
                                feedForward: try feedForward(p + "/ffn"), feedForwardNorm: try norm(p + "/ffn/layer_norm"))
        }
        let decoderLayers = try (0..<decoderLayerCount).map { i in
            let p = "decoder/layer_\(i)"
            let keyValueName = p + "/attention/linear_1"
            let keyValue = try linear(keyValueName, rows: 2 * w, columns: w, packing: false)
            let cross = AttentionWeights(query: try linear(p + "/attention/linear_0", rows: w, columns: w),
                                         key: slice(keyValue, keyValueName, part: 0, rows: w),
                                         value: slice(keyValue, keyValueName, part: 1, rows: w),
                                         output: try linear(p + "/attention/linear_2", rows: w, columns: w))
            return DecoderLayer(selfAttention: try selfAttention(p + "/self_attention"),
                                selfAttentionNorm: try norm(p + "/self_attention/layer_norm"),
                                crossAttention: cross, crossAttentionNorm: try norm(p + "/attention/layer_norm"),
                                feedForward: try feedForward(p + "/ffn"), feedForwardNorm: try norm(p + "/ffn/layer_norm"))
        }
        let embedding = try matrix("decoder/embeddings/weight", [vocabulary, w])
        // Tied (an alias, or absent): the same matrix, quantised or widened once.
        let projection = file.variables["decoder/projection/weight"] != nil
            ? try matrix("decoder/projection/weight", [vocabulary, w]) : embedding
        encoderPositionTable = try file.floats("encoder/position_encodings/encodings", shape: [encoderPositions, w])
        let decoderTable = try file.floats("decoder/position_encodings/encodings", shape: [decoderPositions, w])
        conv1 = Conv1D(linear: try linear("encoder/conv1", rows: w, columns: melBins * 3, shape: [w, melBins, 3]),
                       inputChannels: melBins, kernel: 3, stride: 1, padding: 1)
        conv2 = Conv1D(linear: try linear("encoder/conv2", rows: w, columns: w * 3, shape: [w, w, 3]),
                       inputChannels: w, kernel: 3, stride: 2, padding: 1)
        let settings = Seq2SeqSettings(decoderStartToken: config.startOfTranscript, endOfSequenceTokens: [config.endOfText],
                                       padToken: config.endOfText, maxNewTokens: decoderPositions - 1)
        transformer = Seq2SeqTransformer(Seq2SeqTransformer.Parts(
            modelType: "whisper", width: w, heads: heads, headDimension: w / heads, vocabularySize: vocabulary,
            generationDefaults: settings, encoderEmbedding: embedding, decoderEmbedding: embedding, embeddingScale: 1,
            // The encoder's positions are added to the convolved frames here, not by the transformer.
            positions: .absolute(encoder: [], decoder: decoderTable, rows: decoderPositions, offset: 0),
            encoderEmbeddingNorm: nil, decoderEmbeddingNorm: nil, preNorm: true,
            encoderLayers: encoderLayers, decoderLayers: decoderLayers,
            encoderFinalNorm: try norm("encoder/layer_norm"), decoderFinalNorm: try norm("decoder/layer_norm"),
            attentionScale: 1 / Float(w / heads).squareRoot(), outputScale: 1, lmHead: projection, finalLogitsBias: nil),
            file: file, storage: storage, threads: threads, quantized: format == .q8_0,
            repacking: packsDecoder ? .packedKeepingHalfPrecision : .none,
            // f32 on every path: the 8-bit decoder is checked against CTranslate2's float32 ids.
            decoderCacheType: .f32) { file.releaseResidentPages(of: $0) }
    }

    /// The encoder output for one window of features: conv front end, positions, encoder layers.
    /// - Parameter features: (melBins, frames) log-mel features, `frames` = 2·encoderPositions
    /// - Returns: (encoderPositions, width)
    public func encoderOutput(features: [Float]) throws -> [Float] {
        guard features.count == melBins * frames else {
            throw WhisperError.badFeatures("features must be \(melBins) × \(frames) values, got \(features.count)")
        }
        let context = transformer.context, w = width
        var timeMajor = [Float](repeating: 0, count: frames * melBins)   // (frames, melBins)
        for m in 0..<melBins { for t in 0..<frames { timeMajor[t * melBins + m] = features[m * frames + t] } }
        var hidden = [Float](repeating: 0, count: frames * w)              // (frames, width)
        conv1.apply(timeMajor, length: frames, into: &hidden, context: context)
        hidden.withUnsafeMutableBufferPointer { Activation.gelu.apply($0.baseAddress!, count: $0.count, pool: context.pool) }
        var x = [Float](repeating: 0, count: encoderPositions * w)         // (positions, width)
        conv2.apply(hidden, length: frames, into: &x, context: context)
        x.withUnsafeMutableBufferPointer { Activation.gelu.apply($0.baseAddress!, count: $0.count, pool: context.pool) }
        addInPlace(encoderPositionTable, into: &x, count: x.count)
        transformer.runEncoderLayers(&x, lengths: [encoderPositions], tokens: encoderPositions)
        return x
    }

    /// Encodes one window and projects every decoder layer's cross-attention keys and values.
    public func encode(features: [Float]) throws -> EncoderStates {
        let x = try encoderOutput(features: features)
        return transformer.crossAttentionStates(x, lengths: [encoderPositions], tokens: encoderPositions)
    }

    /// Log-mel features of 16 kHz mono samples, padded or trimmed to one window.
    public func features(samples: [Float]) -> [Float] {
        LogMel(melBins: melBins).features(samples, frames: frames)
    }
}

/// The decoding constants of a Whisper `config.json` (CTranslate2 conversion) plus Whisper's fixed
/// special tokens of the multilingual vocabulary.
public struct WhisperConfig: Sendable {
    /// Banned at every step.
    public let suppressIds: [TokenID]
    /// Also banned at the first generated step (the blank " " and `<|endoftext|>`).
    public let suppressIdsBegin: [TokenID]
    /// The language tokens, `<|en|>` … , in the order of the model's training.
    public let languageIds: [TokenID]
    public let endOfText: TokenID = 50257
    public let startOfTranscript: TokenID = 50258
    public let translate: TokenID = 50358
    public let transcribe: TokenID = 50359
    public let noTimestamps: TokenID = 50363

    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError(path: path, problem: "cannot read the Whisper config.json")
        }
        guard let json = (try? JSONValue(parsing: data))?.objectValue else {
            throw CheckpointError(path: path, problem: "not a JSON object")
        }
        func ids(_ key: String) throws -> [TokenID] {
            // As `[NSNumber]` and `TokenID(truncating:)` read them: any numbers, truncated to 32 bits.
            guard let values = json[key]?.bridgedIntArray else { throw CheckpointError(path: path, problem: "missing \(key)") }
            return values.map { TokenID(truncatingIfNeeded: $0) }
        }
        suppressIds = try ids("suppress_ids")
        suppressIdsBegin = try ids("suppress_ids_begin")
        languageIds = try ids("lang_ids")
    }
}

/// Problems with Whisper inputs, one line each.
public enum WhisperError: Error, CustomStringConvertible, Equatable {
    case badFeatures(String)
    case unknownLanguage(String)

    public var description: String {
        switch self {
        case .badFeatures(let message): return message
        case .unknownLanguage(let code): return "unknown language '\(code)' (Whisper codes such as en, de, fr, es)"
        }
    }
}
