/// A minimal reader for the protobuf wire format, enough to parse SentencePiece's `ModelProto`.
///
/// Hand-written so the package needs no protobuf dependency: a message is a sequence of
/// (field number, wire type, value) records; unknown fields are skipped by wire type, which is what
/// makes newer `.model` files (extra trainer options) readable.
struct ProtobufReader {
    enum WireType: UInt8 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
    }

    /// One field record. `bytes` is set for length-delimited fields, `varint`/`fixed` for the others.
    struct Field {
        let number: Int
        let wireType: WireType
        var varint: UInt64 = 0
        var bytes: ArraySlice<UInt8> = []

        /// The value of a `float` field (fixed32), or nil if the wire type does not fit.
        var float: Float? { wireType == .fixed32 ? Float(bitPattern: UInt32(truncatingIfNeeded: varint)) : nil }
        /// The value of a `bool` / enum / `int32` field.
        var int: Int { Int(Int32(truncatingIfNeeded: varint)) }
        var bool: Bool { varint != 0 }
        var string: String { String(decoding: bytes, as: UTF8.self) }
    }

    private let data: ArraySlice<UInt8>
    private var position: Int

    init(_ data: ArraySlice<UInt8>) {
        self.data = data
        position = data.startIndex
    }

    var isAtEnd: Bool { position >= data.endIndex }

    private mutating func readVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < data.endIndex else { throw TokenizerError("protobuf: truncated varint") }
            let b = data[position]
            position += 1
            // The 10th byte may only hold the top bit of a 64-bit value.
            guard shift < 64 else { throw TokenizerError("protobuf: varint longer than 10 bytes") }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= data.endIndex - position else {
            throw TokenizerError("protobuf: field of \(n) bytes runs past the end of the message")
        }
        defer { position += n }
        return data[position..<(position + n)]
    }

    /// Reads the next field, or returns nil at the end of the message.
    mutating func next() throws -> Field? {
        if isAtEnd { return nil }
        let key = try readVarint()
        let number = Int(key >> 3)
        guard number > 0, number < 1 << 29, let type = WireType(rawValue: UInt8(key & 7)) else {
            throw TokenizerError("protobuf: invalid field key \(key)")
        }
        var field = Field(number: number, wireType: type)
        switch type {
        case .varint:
            field.varint = try readVarint()
        case .fixed64:
            field.varint = try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
        case .fixed32:
            field.varint = try take(4).reversed().reduce(0) { $0 << 8 | UInt64($1) }
        case .lengthDelimited:
            let length = try readVarint()
            guard length <= UInt64(Int.max) else { throw TokenizerError("protobuf: absurd length \(length)") }
            field.bytes = try take(Int(length))
        case .startGroup, .endGroup:
            // Groups are deprecated and never used by sentencepiece.
            throw TokenizerError("protobuf: group fields are not supported")
        }
        return field
    }
}

/// Writer for the same subset, used by tests and benchmarks to build `.model` files by hand.
public struct ProtobufWriter: Sendable {
    /// The encoded message so far.
    public private(set) var bytes: [UInt8] = []

    /// Creates an empty message.
    public init() {}

    private mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    /// Appends a varint field (int32, enum, bool). Negative values use ten bytes, as protobuf does.
    public mutating func int(_ field: Int, _ value: Int) {
        varint(UInt64(field << 3))
        varint(UInt64(bitPattern: Int64(value)))
    }

    /// Appends a `float` field.
    public mutating func float(_ field: Int, _ value: Float) {
        varint(UInt64(field << 3 | 5))
        let bits = value.bitPattern
        for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: bits >> UInt32(s))) }
    }

    /// Appends a length-delimited field (bytes, string or embedded message).
    public mutating func data(_ field: Int, _ value: [UInt8]) {
        varint(UInt64(field << 3 | 2))
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// Appends a string field.
    public mutating func string(_ field: Int, _ value: String) { data(field, Array(value.utf8)) }
}
