import FoundationEssentials

/// The parts of SentencePiece's `ModelProto` (sentencepiece_model.proto) that tokenization needs.
///
/// Parsed with `ProtobufReader`; field numbers are those of sentencepiece 0.2. Defaults are the
/// proto defaults, so a field missing from the file behaves as in the C++ library.
public struct SentencePieceModelProto: Sendable, Equatable {
    /// `ModelProto.SentencePiece.Type`; the same numbering as GGUF's `tokenizer.ggml.token_type`.
    public enum PieceType: Int32, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// The segmentation algorithm (`TrainerSpec.ModelType`). Word and char models are not supported.
    public enum Algorithm: Int, Sendable {
        case unigram = 1, bpe = 2
    }

    /// One vocabulary entry; the index in `pieces` is the id.
    public struct Piece: Sendable, Equatable {
        public var piece: String
        public var score: Float
        public var type: PieceType
        /// Creates a piece.
        public init(_ piece: String, score: Float, type: PieceType = .normal) {
            self.piece = piece; self.score = score; self.type = type
        }
    }

    /// `NormalizerSpec`: how text is normalised before segmentation.
    public struct Normalizer: Sendable, Equatable {
        /// Rule name, e.g. `nmt_nfkc` or `identity` (informational; the rules are in the charsmap).
        public var name: String = ""
        /// sentencepiece's compiled rules: a Darts double-array trie plus the replacement strings.
        /// Empty means no character mapping (identity).
        public var precompiledCharsmap: [UInt8] = []
        /// Prepend a space (▁) to the text, so the first word looks like every other word.
        public var addDummyPrefix = true
        /// Drop leading and trailing spaces and fold runs of spaces into one.
        public var removeExtraWhitespaces = true
        /// Replace spaces by ▁ (U+2581) before segmentation.
        public var escapeWhitespaces = true
        /// Creates a normalizer spec with sentencepiece's defaults.
        public init() {}
    }

    public var pieces: [Piece] = []
    public var algorithm: Algorithm = .unigram
    /// Unknown bytes become `<0xXX>` pieces instead of `<unk>`.
    public var byteFallback = false
    public var unkId: Int32 = 0
    public var bosId: Int32 = 1
    public var eosId: Int32 = 2
    public var padId: Int32 = -1
    /// Text that an unknown piece decodes to in the sentencepiece library (" ⁇ ").
    public var unkSurface = " \u{2047} "
    public var normalizer = Normalizer()

    /// Creates an empty model description (fill in the fields).
    public init() {}

    /// Parses the bytes of a `.model` file.
    /// - Throws: `TokenizerError` for malformed protobuf or unsupported model types.
    public init(bytes: [UInt8]) throws {
        var reader = ProtobufReader(bytes[...])
        while let field = try reader.next() {
            switch (field.number, field.wireType) {
            case (1, .lengthDelimited): pieces.append(try Self.parsePiece(field.bytes, index: pieces.count))
            case (2, .lengthDelimited): try parseTrainerSpec(field.bytes)
            case (3, .lengthDelimited): normalizer = try Self.parseNormalizer(field.bytes)
            default: continue  // self_test_data (4), denormalizer_spec (5): not needed
            }
        }
        guard !pieces.isEmpty else { throw TokenizerError("sentencepiece model has no pieces") }
    }

    /// Reads and parses a `.model` file (`spiece.model`, Marian's `source.spm`, ...).
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError("cannot read \(url.path): \(fileErrorDescription(error))")
        }
        do { try self.init(bytes: [UInt8](data)) } catch let e as TokenizerError {
            throw TokenizerError("\(url.lastPathComponent): \(e.message)")
        }
    }

    private static func parsePiece(_ bytes: ArraySlice<UInt8>, index: Int) throws -> Piece {
        var reader = ProtobufReader(bytes)
        var piece = Piece("", score: 0)
        while let f = try reader.next() {
            switch (f.number, f.wireType) {
            case (1, .lengthDelimited): piece.piece = f.string
            case (2, .fixed32): piece.score = f.float ?? 0
            case (3, .varint):
                guard let t = PieceType(rawValue: Int32(f.int)) else {
                    throw TokenizerError("piece \(index) has unknown type \(f.int)")
                }
                piece.type = t
            default: continue
            }
        }
        return piece
    }

    private mutating func parseTrainerSpec(_ bytes: ArraySlice<UInt8>) throws {
        var reader = ProtobufReader(bytes)
        while let f = try reader.next() {
            switch (f.number, f.wireType) {
            case (3, .varint):
                guard let a = Algorithm(rawValue: f.int) else {
                    throw TokenizerError("sentencepiece model_type \(f.int) is not supported (only unigram=1 and bpe=2)")
                }
                algorithm = a
            case (35, .varint): byteFallback = f.bool
            case (40, .varint): unkId = Int32(f.int)
            case (41, .varint): bosId = Int32(f.int)
            case (42, .varint): eosId = Int32(f.int)
            case (43, .varint): padId = Int32(f.int)
            case (44, .lengthDelimited): unkSurface = f.string
            default: continue
            }
        }
    }

    private static func parseNormalizer(_ bytes: ArraySlice<UInt8>) throws -> Normalizer {
        var reader = ProtobufReader(bytes)
        var n = Normalizer()
        while let f = try reader.next() {
            switch (f.number, f.wireType) {
            case (1, .lengthDelimited): n.name = f.string
            case (2, .lengthDelimited): n.precompiledCharsmap = Array(f.bytes)
            case (3, .varint): n.addDummyPrefix = f.bool
            case (4, .varint): n.removeExtraWhitespaces = f.bool
            case (5, .varint): n.escapeWhitespaces = f.bool
            default: continue
            }
        }
        return n
    }

    /// Serialises the fields this type knows (used to build test and benchmark models).
    public func serialized() -> [UInt8] {
        var w = ProtobufWriter()
        for p in pieces {
            var pw = ProtobufWriter()
            pw.string(1, p.piece)
            pw.float(2, p.score)
            if p.type != .normal { pw.int(3, Int(p.type.rawValue)) }
            w.data(1, pw.bytes)
        }
        var t = ProtobufWriter()
        t.int(3, algorithm.rawValue)
        if byteFallback { t.int(35, 1) }
        t.int(40, Int(unkId)); t.int(41, Int(bosId)); t.int(42, Int(eosId)); t.int(43, Int(padId))
        w.data(2, t.bytes)
        var n = ProtobufWriter()
        n.string(1, normalizer.name)
        if !normalizer.precompiledCharsmap.isEmpty { n.data(2, normalizer.precompiledCharsmap) }
        n.int(3, normalizer.addDummyPrefix ? 1 : 0)
        n.int(4, normalizer.removeExtraWhitespaces ? 1 : 0)
        n.int(5, normalizer.escapeWhitespaces ? 1 : 0)
        w.data(3, n.bytes)
        return w.bytes
    }
}
