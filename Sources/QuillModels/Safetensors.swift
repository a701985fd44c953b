import FoundationEssentials
import QuillKernels
import QuillTokenizers

/// A problem with a Hugging Face checkpoint folder: missing files, a malformed safetensors header,
/// a config Quill cannot use, or a tensor with the wrong shape. One line, path first.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let problem: String

    /// Problems longer than this many characters keep their start and end around a marker: tensor
    /// names and config values come from the files, and a mutated header can hold a name of megabytes.
    static let longestProblem = 600

    public init(path: String, problem: String) {
        self.path = path
        // Tensor names and config values come from the files; keep the message on one line.
        let oneLine = problem.replacingScalars("\n", with: "\\n").replacingScalars("\r", with: "\\r")
        if oneLine.count > Self.longestProblem {
            let omitted = oneLine.count - 500
            self.problem = "\(oneLine.prefix(400))… (\(omitted) characters omitted) …\(oneLine.suffix(100))"
        } else {
            self.problem = oneLine
        }
    }

    public var description: String { "\(path): \(problem)" }
}

/// A `.safetensors` file mapped read-only (no copies): an 8-byte little-endian header length, a JSON
/// header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the data.
///
/// The header is validated when the file is opened: its length is bounded, every entry has a known
/// dtype, a shape of non-negative dimensions whose element count times the dtype size equals
/// `end - begin`, and offsets inside the data section. Tensors of dtypes Quill cannot compute with
/// (integers, F64) are indexed and validated but refused by `matrix` / `vector`.
public final class SafetensorsFile: @unchecked Sendable {
    /// One tensor's header entry.
    public struct TensorInfo: Sendable {
        public let name: String
        /// The dtype string as written (`F32`, `F16`, `BF16`, `I64`, ...).
        public let dtype: String
        public let shape: [Int]
        /// Byte offset from the start of the data section.
        public let offset: Int
        public let byteCount: Int

        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// Header JSON larger than this is refused (real headers of multi-GB checkpoints are < 1 MB).
    public static let maximumHeaderBytes = 100 << 20

    public let path: String
    public let tensors: [String: TensorInfo]
    let mapping: MappedFile
    let dataStart: Int

    /// Maps `path` and validates its header.
    public init(path: String) throws {
        self.path = path
        do { mapping = try MappedFile(path: path) } catch let error as MappedFileError {
            throw CheckpointError(path: path, problem: error.problem)
        }
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        guard mapping.size >= 8 else { throw fail("too short for a safetensors header (\(mapping.size) bytes)") }
        let headerLength = mapping.base.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(Self.maximumHeaderBytes), Int(headerLength) <= mapping.size - 8 else {
            throw fail("safetensors header length \(headerLength) exceeds the file (\(mapping.size) bytes) or the \(Self.maximumHeaderBytes >> 20) MB limit")
        }
        dataStart = 8 + Int(headerLength)
        let headerData = Data(bytes: mapping.base + 8, count: Int(headerLength))
        guard let header = (try? JSONValue(parsing: headerData))?.objectValue else {
            throw fail("safetensors header is not a JSON object")
        }
        let dataSize = mapping.size - dataStart
        var tensors: [String: TensorInfo] = [:]
        for (name, value) in header where name != "__metadata__" {
            // Numbers as JSONSerialization's NSNumber.intValue read them (truncated), so headers load
            // or fail as before.
            guard let entry = value.objectValue, let dtype = entry["dtype"]?.stringValue,
                  let shape = entry["shape"]?.bridgedIntArray, let offsets = entry["data_offsets"]?.bridgedIntArray,
                  offsets.count == 2 else {
                throw fail("tensor \(name): header entry needs dtype, shape and two data_offsets")
            }
            guard let size = Self.elementSize(dtype) else { throw fail("tensor \(name): unknown dtype \(dtype)") }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor \(name): negative dimension in \(shape)") }
            var elements = 1
            for d in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw fail("tensor \(name): shape \(shape) overflows") }
                elements = product
            }
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: size)
            let begin = offsets[0], end = offsets[1]
            guard !overflow, begin >= 0, begin <= end, end <= dataSize else {
                throw fail("tensor \(name): data_offsets [\(begin), \(end)] outside the data section (\(dataSize) bytes)")
            }
            guard end - begin == bytes else {
                throw fail("tensor \(name): \(dtype) \(shape) needs \(bytes) bytes but data_offsets span \(end - begin)")
            }
            tensors[name] = TensorInfo(name: name, dtype: dtype, shape: shape, offset: begin, byteCount: bytes)
        }
        self.tensors = tensors
    }

    /// Bytes per element of a safetensors dtype, nil for unknown ones.
    static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "F64", "I64", "U64": return 8
        case "F32", "I32", "U32": return 4
        case "F16", "BF16", "I16", "U16": return 2
        case "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2": return 1
        default: return nil
        }
    }

    /// The kernel type of a float dtype.
    static func tensorType(_ dtype: String) -> TensorType? {
        switch dtype {
        case "F32": return .f32
        case "F16": return .f16
        case "BF16": return .bf16
        default: return nil
        }
    }

    /// First byte of a tensor's data (valid while this file is alive).
    public func data(_ info: TensorInfo) -> UnsafeRawPointer { mapping.base + dataStart + info.offset }

    /// The pages of `m` that this file maps stop counting as resident (`MappedFile.releaseResidentPages(start:byteCount:)`):
    /// for a matrix copied at load time, so that loading never holds the whole file at once.
    public func releaseResidentPages(of m: WeightMatrix) {
        mapping.releaseResidentPages(start: m.data, byteCount: m.rows * m.rowBytes)
    }

    /// The tensor `name`, which must exist, be F32/F16/BF16 and have exactly `shape`.
    public func checked(_ name: String, shape: [Int]) throws -> (info: TensorInfo, type: TensorType) {
        guard let info = tensors[name] else { throw CheckpointError(path: path, problem: "missing tensor \(name)") }
        guard let type = Self.tensorType(info.dtype) else {
            throw CheckpointError(path: path, problem: "tensor \(name) has dtype \(info.dtype); Quill reads F32, F16 and BF16")
        }
        // HF stores some vectors as (1, n) (final_logits_bias): compare without leading 1s.
        func squeezed(_ s: [Int]) -> [Int] { Array(s.drop(while: { $0 == 1 })) }
        guard info.shape == shape || (squeezed(info.shape) == squeezed(shape) && info.elementCount == shape.reduce(1, *)) else {
            throw CheckpointError(path: path, problem: "tensor \(name) has shape \(info.shape), expected \(shape)")
        }
        return (info, type)
    }

    /// A (rows, columns) matrix pointing into the mapping (PyTorch `Linear.weight` is (out, in)).
    public func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
        let (info, type) = try checked(name, shape: [rows, columns])
        return WeightMatrix(type: type, rows: rows, columns: columns, data: data(info))
    }

    /// A vector of `count` elements, converted to Float.
    public func vector(_ name: String, count: Int) throws -> [Float] {
        let (info, type) = try checked(name, shape: [count])
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBufferPointer {
            ReferenceDequantizer.dequantize(type, data(info), count: count, into: $0.baseAddress!)
        }
        return values
    }

    /// The first of `names` present in the file (checkpoints spell tied weights differently).
    public func firstPresent(_ names: [String]) -> String? { names.first { tensors[$0] != nil } }
}
