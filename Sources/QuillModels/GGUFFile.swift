import QuillKernels

/// Where one tensor's data lies in a GGUF file, and its shape and element type.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// Sizes per dimension, innermost first: `dimensions[0]` is GGUF's `ne0`, the row length.
    public let dimensions: [Int]
    public let type: TensorType
    /// Absolute offset of the first byte in the file (data section start + the stored offset).
    public let offset: Int
    /// Bytes of tensor data.
    public let byteCount: Int

    public init(name: String, dimensions: [Int], type: TensorType, offset: Int, byteCount: Int) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
        self.offset = offset
        self.byteCount = byteCount
    }

    /// Total number of elements.
    public var elementCount: Int { dimensions.reduce(1, *) }
    /// Row length (`ne0`).
    public var columns: Int { dimensions.first ?? 1 }
    /// Number of rows: the product of every dimension after `ne0`.
    public var rows: Int { dimensions.dropFirst().reduce(1, *) }
}

/// A memory-mapped, validated GGUF (version 2 or 3) model file.
///
/// Opening parses the header, metadata and tensor infos and checks every tensor lies inside the
/// file, so the pointers `data(for:)` and `weightMatrix(_:)` hand out are safe to read. Tensor data
/// is never copied; it stays valid as long as this object is alive.
public final class GGUFFile: @unchecked Sendable {
    /// Alignment of the data section and tensor offsets when `general.alignment` is absent.
    public static let defaultAlignment = 32

    public let path: String
    /// GGUF format version (2 or 3).
    public let version: Int
    /// Key–value pairs; arrays are decoded on access (see `GGUFMetadata`).
    public let metadata: GGUFMetadata
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// Alignment of the data section and of every tensor offset (`general.alignment`, default 32).
    public let alignment: Int
    /// Absolute file offset at which the data section starts.
    public let dataOffset: Int
    /// The mapping the tensor data pointers point into.
    public let file: MappedFile

    private let tensorIndex: [String: Int]

    /// Whether opening reads the tensor infos.
    public enum TensorInfoReading: Sendable {
        /// Read and check every tensor info (a model that will run).
        case read
        /// Stop after the metadata: no tensors, so files with tensor types Quill cannot compute still
        /// open (tokenizing, inspecting). `tensors` is empty and `dataOffset` is where the infos start.
        case skip
    }

    /// Maps and parses the file at `path`. Throws `GGUFError` naming the path and the problem.
    public init(path: String, tensorInfos: TensorInfoReading = .read) throws {
        self.path = path
        do {
            file = try MappedFile(path: path)
        } catch let e as MappedFileError {
            throw GGUFError(path: path, problem: e.problem)
        }
        var p = GGUFParser(path: path, base: file.base, size: file.size)

        // Header.
        let magic = try p.read(UInt32.self)
        guard magic == 0x4655_4747 else {  // "GGUF" read as a little-endian uint32
            let bytes = withUnsafeBytes(of: magic.littleEndian) { $0.map { String($0, radix: 16) } }
            throw p.error("not a GGUF file (magic bytes \(bytes.joined(separator: " ")), expected 47 47 55 46)")
        }
        let rawVersion = try p.read(UInt32.self)
        guard rawVersion == 2 || rawVersion == 3 else {
            let hint = rawVersion == 1 ? " (version 1 files use 32-bit counts; re-convert the model)"
                : rawVersion & 0xFFFF == 0 ? " (big-endian file?)" : ""
            throw p.error("unsupported GGUF version \(rawVersion), only 2 and 3 are supported\(hint)")
        }
        version = Int(rawVersion)
        let tensorCount = try p.readSize("tensor count")
        let metadataCount = try p.readSize("metadata count")
        // Each pair needs at least a key length, a value type and one value byte; each tensor info
        // a name length, n_dims, type and offset. Bounding the counts keeps the capacity
        // reservations below honest.
        try p.checkCount(metadataCount, minimumSize: 8 + 4 + 1, "metadata count")
        try p.checkCount(tensorCount, minimumSize: 8 + 4 + 4 + 8, "tensor count")
        // Each product is at most the file size now, so the sum cannot overflow.
        let minimumBytes = metadataCount * (8 + 4 + 1) + tensorCount * (8 + 4 + 4 + 8)
        guard minimumBytes <= p.remaining else {
            throw p.error("metadata count \(metadataCount) and tensor count \(tensorCount) need at least \(minimumBytes) bytes, only \(p.remaining) left")
        }

        // Metadata.
        var entries: [String: GGUFMetadata.Entry] = [:]
        entries.reserveCapacity(metadataCount)
        for i in 0..<metadataCount {
            p.context = "key of metadata pair \(i)"
            let key = try p.readString(name: true)
            p.context = "value of key \(key)"
            let type = try p.readValueType()
            let entry: GGUFMetadata.Entry
            if type == .array {
                let start = p.offset
                try p.skipValue(type)
                entry = .array(offset: start)
            } else {
                entry = .scalar(try p.readValue(type))
            }
            guard entries.updateValue(entry, forKey: key) == nil else { throw p.error("duplicate key \(key)") }
        }
        metadata = GGUFMetadata(entries: entries, file: file, path: path)

        var alignment = Self.defaultAlignment
        if let value = metadata["general.alignment"] {
            guard let a = value.intValue, a > 0, a & (a - 1) == 0, a <= 1 << 30 else {
                throw p.error("general.alignment \(Self.describe(value)) is not a power of two")
            }
            alignment = a
        }
        self.alignment = alignment
        if tensorInfos == .skip {
            dataOffset = p.offset
            tensors = []
            tensorIndex = [:]
            return
        }

        // Tensor infos: read the raw fields first; offsets become absolute once the end of the
        // infos (and so the data section start) is known.
        typealias RawInfo = (name: String, dimensions: [Int], type: TensorType, offset: Int, byteCount: Int)
        var raw: [RawInfo] = []
        raw.reserveCapacity(tensorCount)
        var index: [String: Int] = [:]
        index.reserveCapacity(tensorCount)
        for i in 0..<tensorCount {
            p.context = "name of tensor info \(i)"
            let name = try p.readString(name: true)
            p.context = "tensor info \(i) (\(name))"
            let info = try Self.readTensorInfo(&p, name: name, alignment: alignment)
            guard index.updateValue(i, forKey: name) == nil else { throw p.error("duplicate tensor name \(name)") }
            raw.append(info)
        }

        dataOffset = p.alignedOffset(alignment)
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(raw.count)
        for r in raw {
            let (start, o1) = dataOffset.addingReportingOverflow(r.offset)
            let (end, o2) = start.addingReportingOverflow(r.byteCount)
            guard !o1, !o2, end <= file.size else {
                throw p.error("tensor \(r.name) data (\(r.byteCount) bytes at data offset \(r.offset)) extends past the end of the file (\(file.size) bytes)")
            }
            tensors.append(GGUFTensorInfo(name: r.name, dimensions: r.dimensions, type: r.type,
                                          offset: start, byteCount: r.byteCount))
        }
        self.tensors = tensors
        tensorIndex = index
    }

    private static func readTensorInfo(_ p: inout GGUFParser, name: String, alignment: Int) throws
        -> (name: String, dimensions: [Int], type: TensorType, offset: Int, byteCount: Int)
    {
        let nDims = try p.read(UInt32.self)
        guard (1...4).contains(nDims) else {
            throw p.error("tensor \(name) has \(nDims) dimensions, expected 1 to 4")
        }
        var dimensions: [Int] = []
        var elements = 1
        for _ in 0..<nDims {
            let d = try p.read(UInt64.self)
            guard d > 0 else { throw p.error("tensor \(name) has a dimension of size 0") }
            guard let n = Int(exactly: d) else { throw p.error("tensor \(name) dimension \(d) is too large") }
            let (product, overflow) = elements.multipliedReportingOverflow(by: n)
            guard !overflow else { throw p.error("tensor \(name) element count overflows") }
            elements = product
            dimensions.append(n)
        }
        let rawType = try p.read(UInt32.self)
        guard let type = TensorType(rawValue: rawType) else {
            throw p.error("tensor \(name) has unsupported type \(rawType) (\(ggmlTypeName(rawType)))")
        }
        guard dimensions[0] % type.blockSize == 0 else {
            throw p.error("tensor \(name) rows of \(dimensions[0]) elements are not whole \(type) blocks of \(type.blockSize)")
        }
        guard let byteCount = type.byteCount(elements: elements) else {
            throw p.error("tensor \(name) byte size overflows")
        }
        let offset = try p.readSize("tensor offset")
        guard offset % alignment == 0 else {
            throw p.error("tensor \(name) offset \(offset) is not a multiple of the alignment \(alignment)")
        }
        return (name, dimensions, type, offset, byteCount)
    }

    private static func describe(_ v: GGUFValue) -> String {
        if let i = v.intValue { return "\(i)" }
        return "of type \(v.typeName)"
    }

    private func error(_ problem: String) -> GGUFError { GGUFError(path: path, problem: problem) }

    // MARK: Tensors

    /// The tensor named `name`, or nil.
    public func tensor(_ name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// Pointer to the tensor's first byte inside the mapping (validated to lie within the file).
    public func data(for tensor: GGUFTensorInfo) -> UnsafeRawPointer {
        precondition(tensor.offset >= 0 && tensor.offset + tensor.byteCount <= file.size,
                     "tensor info does not belong to this file")
        return file.base + tensor.offset
    }

    /// The tensor as a row-major matrix of `rows` = product of dimensions after `ne0`, and
    /// `columns` = `ne0`. A 1-D tensor is one row. The bytes stay in the mapping.
    public func weightMatrix(_ name: String) throws -> WeightMatrix {
        guard let t = tensor(name) else { throw error("missing tensor \(name)") }
        return WeightMatrix(type: t.type, rows: t.rows, columns: t.columns, data: data(for: t))
    }

    /// Drops the mapped header — metadata and tensor infos — from the resident set. Call it once
    /// the tokenizer and the model are built: nothing reads those bytes again except a later
    /// request for an array, which faults them back in from the page cache.
    public func releaseMetadataPages() {
        file.releaseResidentPages(start: file.base, byteCount: min(dataOffset, file.size))
    }

    /// Drops the whole mapping from the resident set (bytes read later fault back in from the page
    /// cache): for a model that copied its weights out of the file.
    public func releaseResidentPages() {
        file.releaseResidentPages(start: file.base, byteCount: file.size)
    }

    // MARK: Metadata

    private func value(_ key: String) throws -> GGUFValue {
        guard let v = metadata[key] else { throw error("missing key \(key)") }
        return v
    }

    private func mismatch(_ key: String, _ v: GGUFValue, _ expected: String) -> GGUFError {
        error("key \(key) has type \(v.typeName), expected \(expected)")
    }

    /// An integer of any GGUF integer type (a uint64 beyond Int.max is a type error).
    public func int(_ key: String) throws -> Int {
        let v = try value(key)
        guard let i = v.intValue else { throw mismatch(key, v, "an integer") }
        return i
    }

    /// A float32 or float64 value, or an integer converted to Float.
    public func float(_ key: String) throws -> Float {
        let v = try value(key)
        guard let f = v.floatValue else { throw mismatch(key, v, "a number") }
        return f
    }

    public func string(_ key: String) throws -> String {
        let v = try value(key)
        guard let s = v.stringValue else { throw mismatch(key, v, "string") }
        return s
    }

    public func bool(_ key: String) throws -> Bool {
        let v = try value(key)
        guard let b = v.boolValue else { throw mismatch(key, v, "bool") }
        return b
    }

    /// An array of strings (an empty array is fine).
    public func stringArray(_ key: String) throws -> [String] {
        if let strings = try metadata.elements(key, \.stringValue) { return strings }
        throw mismatch(key, try value(key), "array of string")
    }

    /// An array of integers of any type, each of which must fit in Int32.
    public func intArray(_ key: String) throws -> [Int32] {
        if let ints = try metadata.elements(key, { $0.intValue.flatMap { Int32(exactly: $0) } }) { return ints }
        let v = try value(key)
        throw mismatch(key, v, v.arrayValue == nil ? "array of integers" : "array of integers that fit in int32")
    }

    /// An array of float32 / float64 / integer values, as Float.
    public func floatArray(_ key: String) throws -> [Float] {
        if let floats = try metadata.elements(key, \.floatValue) { return floats }
        throw mismatch(key, try value(key), "array of numbers")
    }

    /// `int(key)`, or nil when the key is missing or not an integer.
    public func optionalInt(_ key: String) -> Int? { metadata[key]?.intValue }
    /// `float(key)`, or nil when the key is missing or not a number.
    public func optionalFloat(_ key: String) -> Float? { metadata[key]?.floatValue }
    /// `string(key)`, or nil when the key is missing or not a string.
    public func optionalString(_ key: String) -> String? { metadata[key]?.stringValue }
    /// `bool(key)`, or nil when the key is missing or not a bool.
    public func optionalBool(_ key: String) -> Bool? { metadata[key]?.boolValue }
}
