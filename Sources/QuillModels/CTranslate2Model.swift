import FoundationEssentials
import QuillKernels

/// A CTranslate2 `model.bin` (binary version 6, as written by CTranslate2's `specs/model_spec.py`),
/// mapped read-only. Little-endian, no padding:
///
/// ```
/// u32 binary_version | str spec_name | u32 spec_revision | u32 num_variables
/// num_variables × (str name | u8 rank | u32 dims[rank] | u8 dtype | u32 num_bytes | data[num_bytes])
/// u32 num_aliases | num_aliases × (str alias | str target)
/// str = u16 length including a trailing NUL, the UTF-8 bytes, the NUL
/// ```
/// dtype: 0 f32, 1 int8, 2 int16, 3 int32, 4 f16, 5 bf16. Quantised matrices (int8, int16) come with
/// a `<name>_scale` variable (`weight` → `weight_scale`): per row for int8, one value for int16;
/// the real value is `q / scale`.
///
/// Every length, count and offset is checked against the file when it is opened; a bad file gives a
/// `CheckpointError` with one line. Float tensors are used in place (no copy); quantised ones are
/// dequantised to f32 on request into a `WeightStorage`.
public final class CTranslate2File: @unchecked Sendable {
    /// CTranslate2's element types.
    public enum DType: UInt8, Sendable, CustomStringConvertible {
        case f32 = 0, int8 = 1, int16 = 2, int32 = 3, f16 = 4, bf16 = 5

        public var size: Int {
            switch self {
            case .f32, .int32: return 4
            case .int16, .f16, .bf16: return 2
            case .int8: return 1
            }
        }

        public var description: String {
            switch self {
            case .f32: return "f32"
            case .int8: return "int8"
            case .int16: return "int16"
            case .int32: return "int32"
            case .f16: return "f16"
            case .bf16: return "bf16"
            }
        }
    }

    /// One variable: a tensor or a scalar (rank 0).
    public struct Variable: Sendable {
        public let name: String
        public let shape: [Int]
        public let dtype: DType
        /// Byte offset of the data from the start of the file.
        public let offset: Int
        public let byteCount: Int

        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// The only layout this reader knows.
    public static let supportedBinaryVersion: UInt32 = 6
    /// Ranks above this are refused (CTranslate2 models use at most 3).
    static let maximumRank = 8

    public let path: String
    public let specName: String
    public let specRevision: Int
    public let variables: [String: Variable]
    /// alias → target (e.g. a tied `decoder/projection/weight` → `decoder/embeddings/weight`).
    public let aliases: [String: String]
    let mapping: MappedFile

    /// The pages of `m` that this file maps stop counting as resident, for a matrix copied at load
    /// time (`MappedFile.releaseResidentPages(start:byteCount:)`; a matrix elsewhere is left alone).
    public func releaseResidentPages(of m: WeightMatrix) {
        mapping.releaseResidentPages(start: m.data, byteCount: m.rows * m.rowBytes)
    }

    /// Maps `path` and validates the whole file.
    public init(path: String) throws {
        self.path = path
        do { mapping = try MappedFile(path: path) } catch let error as MappedFileError {
            throw CheckpointError(path: path, problem: error.problem)
        }
        var reader = ByteReader(base: mapping.base, size: mapping.size, path: path)
        let version = try reader.u32("binary version")
        guard version == Self.supportedBinaryVersion else {
            throw CheckpointError(path: path, problem:
                "CTranslate2 binary version \(version) is not supported (Quill reads version \(Self.supportedBinaryVersion))")
        }
        specName = try reader.string("spec name")
        specRevision = Int(try reader.u32("spec revision"))
        let count = Int(try reader.u32("variable count"))
        // Each variable needs at least 2 + 1 + 1 + 1 + 4 bytes: a count beyond that cannot be real.
        guard count <= reader.remaining / 9 else {
            throw CheckpointError(path: path, problem: "variable count \(count) does not fit in the file (\(mapping.size) bytes; truncated?)")
        }
        var variables: [String: Variable] = [:]
        for index in 0..<count {
            let name = try reader.string("name of variable \(index)")
            let rank = Int(try reader.u8("rank of \(name)"))
            guard rank <= Self.maximumRank else {
                throw CheckpointError(path: path, problem: "variable \(name): rank \(rank) exceeds \(Self.maximumRank)")
            }
            var shape: [Int] = []
            var elements = 1
            for _ in 0..<rank {
                let d = Int(try reader.u32("shape of \(name)"))
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw CheckpointError(path: path, problem: "variable \(name): shape overflows") }
                shape.append(d)
                elements = product
            }
            let code = try reader.u8("dtype of \(name)")
            guard let dtype = DType(rawValue: code) else {
                throw CheckpointError(path: path, problem: "variable \(name): unknown dtype \(code)")
            }
            let bytes = Int(try reader.u32("byte count of \(name)"))
            let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, expected == bytes else {
                throw CheckpointError(path: path, problem: "variable \(name): \(dtype) \(shape) needs \(overflow ? "too many" : String(expected)) bytes but \(bytes) are stored")
            }
            guard bytes <= reader.remaining else {
                throw CheckpointError(path: path, problem: "variable \(name): \(bytes) data bytes run past the end of the file (truncated?)")
            }
            guard variables[name] == nil else { throw CheckpointError(path: path, problem: "variable \(name) appears twice") }
            variables[name] = Variable(name: name, shape: shape, dtype: dtype, offset: reader.position, byteCount: bytes)
            reader.position += bytes
        }
        let aliasCount = Int(try reader.u32("alias count"))
        guard aliasCount <= reader.remaining / 4 else {
            throw CheckpointError(path: path, problem: "alias count \(aliasCount) does not fit in the file")
        }
        var aliases: [String: String] = [:]
        for index in 0..<aliasCount {
            let alias = try reader.string("alias \(index)")
            let target = try reader.string("target of alias \(alias)")
            guard variables[target] != nil else {
                throw CheckpointError(path: path, problem: "alias \(alias) points to missing variable \(target)")
            }
            guard variables[alias] == nil, aliases[alias] == nil else {
                throw CheckpointError(path: path, problem: "alias \(alias) is defined twice")
            }
            aliases[alias] = target
        }
        guard reader.remaining == 0 else {
            throw CheckpointError(path: path, problem: "\(reader.remaining) unexpected bytes after the aliases")
        }
        self.variables = variables
        self.aliases = aliases
    }

    /// The variable `name`, following an alias.
    public func variable(_ name: String) -> Variable? { variables[aliases[name] ?? name] }

    /// First byte of a variable's data (valid while this file is alive).
    public func data(_ variable: Variable) -> UnsafeRawPointer { mapping.base + variable.offset }

    /// A scalar (rank 0 or one element) of any dtype, as a Double.
    public func scalar(_ name: String) throws -> Double {
        guard let v = variable(name) else { throw CheckpointError(path: path, problem: "missing variable \(name)") }
        guard v.elementCount == 1 else {
            throw CheckpointError(path: path, problem: "variable \(name) has shape \(v.shape), expected a scalar")
        }
        var value: Float = 0
        convert(v, count: 1, scale: nil, into: &value)
        return Double(value)
    }

    /// The variable `name` with exactly `shape`.
    public func checked(_ name: String, shape: [Int]) throws -> Variable {
        guard let v = variable(name) else { throw CheckpointError(path: path, problem: "missing variable \(name)") }
        guard v.shape == shape else {
            throw CheckpointError(path: path, problem: "variable \(name) has shape \(v.shape), expected \(shape)")
        }
        return v
    }

    /// A (rows, columns) matrix (CTranslate2 stores Linear weights as (out, in)). f32, f16 and bf16
    /// point into the mapping; int8 and int16 are dequantised with their `_scale` into `storage`.
    public func matrix(_ name: String, rows: Int, columns: Int, storage: WeightStorage) throws -> WeightMatrix {
        try matrix(name, shape: [rows, columns], storage: storage)
    }

    /// A matrix of any rank-≥2 shape, flattened to (shape[0], product of the rest) (conv kernels).
    public func matrix(_ name: String, shape: [Int], storage: WeightStorage) throws -> WeightMatrix {
        let v = try checked(name, shape: shape)
        let rows = shape[0], columns = shape.dropFirst().reduce(1, *)
        switch v.dtype {
        case .f32: return WeightMatrix(type: .f32, rows: rows, columns: columns, data: data(v))
        case .f16: return WeightMatrix(type: .f16, rows: rows, columns: columns, data: data(v))
        case .bf16: return WeightMatrix(type: .bf16, rows: rows, columns: columns, data: data(v))
        case .int8, .int16:
            let scale = try quantisationScale(of: name, v, rows: rows)
            let floats = storage.allocateFloats(rows * columns)
            for r in 0..<rows {
                let rowVariable = Variable(name: name, shape: [columns], dtype: v.dtype,
                                           offset: v.offset + r * columns * v.dtype.size, byteCount: columns * v.dtype.size)
                convert(rowVariable, count: columns, scale: scale.count == 1 ? scale[0] : scale[r], into: floats + r * columns)
            }
            return WeightMatrix(type: .f32, rows: rows, columns: columns, data: UnsafeRawPointer(floats))
        case .int32:
            throw CheckpointError(path: path, problem: "variable \(name) is int32; Quill reads f32, f16, bf16, int8 and int16 matrices")
        }
    }

    /// A vector of `count` elements (any float dtype, or an integer one read as whole numbers), as Float.
    public func vector(_ name: String, count: Int) throws -> [Float] {
        let v = try checked(name, shape: [count])
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBufferPointer { convert(v, count: count, scale: nil, into: $0.baseAddress!) }
        return values
    }

    /// A table of any shape, flattened, as Float (position tables, small matrices used whole).
    public func floats(_ name: String, shape: [Int]) throws -> [Float] {
        let v = try checked(name, shape: shape)
        var values = [Float](repeating: 0, count: v.elementCount)
        values.withUnsafeMutableBufferPointer { convert(v, count: v.elementCount, scale: nil, into: $0.baseAddress!) }
        return values
    }

    /// The `_scale` of a quantised matrix: one per row (int8) or a single one (int16).
    private func quantisationScale(of name: String, _ v: Variable, rows: Int) throws -> [Float] {
        // An alias (encoder/embeddings_0/weight → decoder/embeddings/weight) has its scale under the
        // target's name.
        let scaleName = v.name + "_scale"
        guard let s = variable(scaleName) else {
            throw CheckpointError(path: path, problem: "\(v.dtype) variable \(name) has no \(scaleName)")
        }
        guard s.elementCount == rows || s.elementCount == 1, s.dtype == .f32 || s.dtype == .f16 || s.dtype == .bf16 else {
            throw CheckpointError(path: path, problem: "\(scaleName): \(s.dtype) \(s.shape) is not a per-row or single float scale for \(rows) rows")
        }
        var scale = [Float](repeating: 0, count: s.elementCount)
        scale.withUnsafeMutableBufferPointer { convert(s, count: s.elementCount, scale: nil, into: $0.baseAddress!) }
        guard scale.allSatisfy({ $0.isFinite && $0 != 0 }) else {
            throw CheckpointError(path: path, problem: "\(scaleName) holds a zero or non-finite scale")
        }
        return scale
    }

    /// `count` elements of `v` as Float; integers divided by `scale` when given.
    private func convert(_ v: Variable, count: Int, scale: Float?, into out: UnsafeMutablePointer<Float>) {
        let p = data(v)
        let divisor = scale ?? 1
        switch v.dtype {
        case .f32: ReferenceDequantizer.dequantize(.f32, p, count: count, into: out)
        case .f16: ReferenceDequantizer.dequantize(.f16, p, count: count, into: out)
        case .bf16: ReferenceDequantizer.dequantize(.bf16, p, count: count, into: out)
        case .int8: for i in 0..<count { out[i] = Float(p.load(fromByteOffset: i, as: Int8.self)) / divisor }
        case .int16: for i in 0..<count { out[i] = Float(Int16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) / divisor }
        case .int32: for i in 0..<count { out[i] = Float(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) / divisor }
        }
    }
}

/// Sequential little-endian reads with bounds checks; every failure names what was being read.
private struct ByteReader {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var position = 0

    var remaining: Int { size - position }

    private func truncated(_ what: String) -> CheckpointError {
        CheckpointError(path: path, problem: "file ends inside the \(what) at byte \(position) (truncated?)")
    }

    mutating func u8(_ what: String) throws -> UInt8 {
        guard remaining >= 1 else { throw truncated(what) }
        defer { position += 1 }
        return base.load(fromByteOffset: position, as: UInt8.self)
    }

    mutating func u16(_ what: String) throws -> UInt16 {
        guard remaining >= 2 else { throw truncated(what) }
        defer { position += 2 }
        return UInt16(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt16.self))
    }

    mutating func u32(_ what: String) throws -> UInt32 {
        guard remaining >= 4 else { throw truncated(what) }
        defer { position += 4 }
        return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt32.self))
    }

    /// u16 length including the trailing NUL, then UTF-8 bytes and the NUL.
    mutating func string(_ what: String) throws -> String {
        let length = Int(try u16(what))
        guard length >= 1 else { throw CheckpointError(path: path, problem: "\(what): string length 0 (no NUL terminator)") }
        guard length <= remaining else { throw truncated(what) }
        let bytes = UnsafeRawBufferPointer(start: base + position, count: length)
        guard bytes[length - 1] == 0 else {
            throw CheckpointError(path: path, problem: "\(what): string at byte \(position) is not NUL-terminated")
        }
        guard let text = String(bytes: bytes.prefix(length - 1), encoding: .utf8), !text.utf8.contains(0) else {
            throw CheckpointError(path: path, problem: "\(what): string at byte \(position) is not valid UTF-8")
        }
        position += length
        return text
    }
}
