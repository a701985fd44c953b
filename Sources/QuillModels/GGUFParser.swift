import QuillKernels

/// Bounds-checked little-endian reader over a mapped GGUF file.
///
/// Every read checks the bytes left first, and every count read from the file is checked against
/// the bytes left before it sizes an allocation, so a corrupt or hostile file produces a
/// `GGUFError` rather than a crash or a huge allocation.
struct GGUFParser {
    /// Arrays nested deeper than this are rejected; real files nest at most one level, and the
    /// limit keeps the recursive reader's stack depth bounded.
    static let maxArrayNesting = 8

    let path: String
    let base: UnsafeRawPointer
    let size: Int
    private(set) var offset = 0
    /// What is being read, for error messages ("header", "value of key 'x'", ...).
    var context = "header"

    init(path: String, base: UnsafeRawPointer, size: Int, offset: Int = 0) {
        self.path = path
        self.base = base
        self.size = size
        self.offset = offset
    }

    var remaining: Int { size - offset }

    func error(_ problem: String) -> GGUFError { GGUFError(path: path, problem: problem) }

    private func truncated(_ needed: Int) -> GGUFError {
        error("file truncated in \(context): needs \(needed) bytes at offset \(offset), only \(remaining) left")
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let n = MemoryLayout<T>.size
        guard n <= remaining else { throw truncated(n) }
        let value = T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += n
        return value
    }

    /// Reads a uint64 count or size; values beyond Int.max cannot describe bytes in this file.
    mutating func readSize(_ what: String) throws -> Int {
        let v = try read(UInt64.self)
        guard let n = Int(exactly: v) else { throw error("\(what) \(v) in \(context) is too large") }
        return n
    }

    /// Throws unless `count` items of at least `minimumSize` bytes each fit in the bytes left.
    func checkCount(_ count: Int, minimumSize: Int, _ what: String) throws {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: minimumSize)
        guard !overflow, bytes <= remaining else {
            throw error("\(what) \(count) in \(context) needs at least \(overflow ? "more than \(Int.max)" : "\(bytes)") bytes, only \(remaining) left")
        }
    }

    /// The longest key or tensor name accepted. The GGUF specification allows keys of up to 2¹⁶ − 1
    /// bytes (and tensor names of 64); a longer one is a corrupt length, which would otherwise turn
    /// hundreds of megabytes of the file into a "name".
    static let maximumNameLength = (1 << 16) - 1

    /// A gguf_string: uint64 length + bytes, no terminator. Invalid UTF-8 is decoded lossily
    /// (U+FFFD), as some tokenizer vocabularies contain raw byte tokens. `name`: the string is a key
    /// or tensor name, at most `maximumNameLength` bytes.
    mutating func readString(name: Bool = false) throws -> String {
        let length = try read(UInt64.self)
        guard length <= UInt64(remaining) else {
            throw error("file truncated in \(context): string length \(length) at offset \(offset - 8) exceeds the \(remaining) bytes left")
        }
        guard !name || length <= UInt64(Self.maximumNameLength) else {
            throw error("\(context) is \(length) bytes long (at offset \(offset - 8)); names are at most \(Self.maximumNameLength)")
        }
        let n = Int(length)
        let s = String(decoding: UnsafeRawBufferPointer(start: base + offset, count: n), as: UTF8.self)
        offset += n
        return s
    }

    mutating func readValueType() throws -> GGUFValueType {
        let raw = try read(UInt32.self)
        guard let type = GGUFValueType(rawValue: raw) else { throw error("unknown value type \(raw) in \(context)") }
        return type
    }

    /// Reads one value of `type`; `depth` is the number of arrays enclosing it.
    mutating func readValue(_ type: GGUFValueType, depth: Int = 0) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try read(UInt8.self))
        case .int8: return .int8(try read(Int8.self))
        case .uint16: return .uint16(try read(UInt16.self))
        case .int16: return .int16(try read(Int16.self))
        case .uint32: return .uint32(try read(UInt32.self))
        case .int32: return .int32(try read(Int32.self))
        case .uint64: return .uint64(try read(UInt64.self))
        case .int64: return .int64(try read(Int64.self))
        case .float32: return .float32(Float(bitPattern: try read(UInt32.self)))
        case .float64: return .float64(Double(bitPattern: try read(UInt64.self)))
        // Any non-zero byte is true, as in C.
        case .bool: return .bool(try read(UInt8.self) != 0)
        case .string: return .string(try readString())
        case .array: return .array(try readArray(depth: depth + 1))
        }
    }

    /// Reads an array's element type and count, checking the nesting depth and that `count`
    /// elements can fit in the bytes left (before anything is sized by the count).
    mutating func readArrayHeader(depth: Int) throws -> (elementType: GGUFValueType, count: Int) {
        guard depth <= Self.maxArrayNesting else {
            throw error("arrays nested deeper than \(Self.maxArrayNesting) levels in \(context)")
        }
        let elementType = try readValueType()
        let count = try readSize("array count")
        try checkCount(count, minimumSize: elementType.minimumSize, "array count")
        return (elementType, count)
    }

    /// Checks one value of `type` as `readValue` would and moves past it without decoding
    /// anything: what opening a file does with arrays (see `GGUFMetadata`).
    mutating func skipValue(_ type: GGUFValueType, depth: Int = 0) throws {
        switch type {
        case .string:
            let length = try read(UInt64.self)
            guard length <= UInt64(remaining) else {
                throw error("file truncated in \(context): string length \(length) at offset \(offset - 8) exceeds the \(remaining) bytes left")
            }
            offset += Int(length)
        case .array:
            let (elementType, count) = try readArrayHeader(depth: depth + 1)
            switch elementType {
            case .string, .array:
                for _ in 0..<count { try skipValue(elementType, depth: depth + 1) }
            default:
                offset += count * elementType.minimumSize  // readArrayHeader proved they fit
            }
        default:
            guard type.minimumSize <= remaining else { throw truncated(type.minimumSize) }
            offset += type.minimumSize
        }
    }

    private mutating func readArray(depth: Int) throws -> [GGUFValue] {
        // The count is bounded by the bytes left *before* reserving, so a corrupt count cannot
        // trigger a huge allocation.
        let (elementType, count) = try readArrayHeader(depth: depth)
        var elements: [GGUFValue] = []
        elements.reserveCapacity(count)
        switch elementType {
        case .string, .array:
            for _ in 0..<count { elements.append(try readValue(elementType, depth: depth)) }
        default:
            // Fixed-size elements: checkCount proved they all fit, so no per-element checks needed.
            for _ in 0..<count { elements.append(readScalarUnchecked(elementType)) }
        }
        return elements
    }

    /// Reads a fixed-size scalar whose bytes are known to be in bounds.
    private mutating func readScalarUnchecked(_ type: GGUFValueType) -> GGUFValue {
        let p = base + offset
        offset += type.minimumSize
        switch type {
        case .uint8: return .uint8(p.load(as: UInt8.self))
        case .int8: return .int8(p.load(as: Int8.self))
        case .uint16: return .uint16(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
        case .int16: return .int16(Int16(littleEndian: p.loadUnaligned(as: Int16.self)))
        case .uint32: return .uint32(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
        case .int32: return .int32(Int32(littleEndian: p.loadUnaligned(as: Int32.self)))
        case .uint64: return .uint64(UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
        case .int64: return .int64(Int64(littleEndian: p.loadUnaligned(as: Int64.self)))
        case .float32: return .float32(Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))))
        case .float64: return .float64(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))))
        case .bool: return .bool(p.load(as: UInt8.self) != 0)
        case .string, .array: preconditionFailure("not a fixed-size type")
        }
    }

    /// The offset the data section starts at: the next multiple of `alignment` after `offset`
    /// (may lie beyond the end of a file without tensor data).
    func alignedOffset(_ alignment: Int) -> Int { (offset + alignment - 1) & ~(alignment - 1) }
}

/// ggml type names by number, including types Quill cannot compute with, so "unsupported type"
/// errors can say what the file actually contains.
func ggmlTypeName(_ raw: UInt32) -> String {
    let names: [UInt32: String] = [
        0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_2", 5: "Q4_3", 6: "Q5_0", 7: "Q5_1",
        8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
        16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
        22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
        29: "IQ1_M", 30: "BF16", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8", 34: "TQ1_0",
        35: "TQ2_0", 36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8", 39: "MXFP4",
    ]
    return names[raw] ?? "unknown"
}
