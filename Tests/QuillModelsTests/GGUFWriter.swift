import Foundation
import QuillModels

/// Little-endian byte builder for crafting GGUF files, valid or deliberately broken.
struct GGUFBytes {
    var bytes: [UInt8] = []
    /// Named byte offsets recorded while writing, so tests can cut a file inside a given region.
    var marks: [String: Int] = [:]

    var count: Int { bytes.count }
    mutating func mark(_ name: String) { marks[name] = bytes.count }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func raw(_ b: [UInt8]) { bytes += b }
    mutating func string(_ s: String) { rawString(Array(s.utf8)) }
    mutating func rawString(_ b: [UInt8]) {
        u64(UInt64(b.count))
        bytes += b
    }
    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    /// GGUF header: magic, version, tensor count, metadata count.
    mutating func header(version: UInt32 = 3, tensors: UInt64, metadata: UInt64, magic: [UInt8] = Array("GGUF".utf8)) {
        raw(magic)
        u32(version)
        u64(tensors)
        u64(metadata)
    }

    /// Type code of a value; empty arrays have no element to infer a type from, hence `emptyArrayType`.
    static func typeCode(_ v: GGUFValue) -> UInt32 {
        switch v {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }

    /// Writes the value's payload (no type code), as inside a KV pair or an array.
    mutating func payload(_ v: GGUFValue, emptyArrayType: UInt32 = 0) {
        switch v {
        case .uint8(let x): u8(x)
        case .int8(let x): u8(UInt8(bitPattern: x))
        case .uint16(let x): u16(x)
        case .int16(let x): u16(UInt16(bitPattern: x))
        case .uint32(let x): u32(x)
        case .int32(let x): u32(UInt32(bitPattern: x))
        case .uint64(let x): u64(x)
        case .int64(let x): u64(UInt64(bitPattern: x))
        case .float32(let x): u32(x.bitPattern)
        case .float64(let x): u64(x.bitPattern)
        case .bool(let x): u8(x ? 1 : 0)
        case .string(let s): string(s)
        case .array(let a):
            precondition(Set(a.map(Self.typeCode)).count <= 1, "GGUF arrays are homogeneous")
            u32(a.first.map(Self.typeCode) ?? emptyArrayType)
            u64(UInt64(a.count))
            for e in a { payload(e) }
        }
    }

    /// A KV pair: key, type code, payload.
    mutating func kv(_ key: String, _ v: GGUFValue) {
        string(key)
        u32(Self.typeCode(v))
        payload(v)
    }

    /// A tensor info: name, n_dims, dims, ggml type, relative offset.
    mutating func tensorInfo(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
        string(name)
        u32(UInt32(dims.count))
        for d in dims { u64(d) }
        u32(type)
        u64(offset)
    }
}

/// Writes well-formed GGUF files: metadata in order, tensors laid out at aligned offsets.
struct GGUFWriter {
    struct Tensor {
        var name: String
        var dims: [UInt64]
        var type: UInt32
        var data: [UInt8]
    }

    var version: UInt32 = 3
    var metadata: [(String, GGUFValue)] = []
    var tensors: [Tensor] = []
    /// Alignment used for the layout; set `general.alignment` in `metadata` to match when not 32.
    var alignment = 32

    /// The file's bytes. No padding follows the last tensor, so every proper prefix of a file with
    /// tensors is truncated somewhere that matters.
    func build() -> GGUFBytes {
        var b = GGUFBytes()
        b.mark("header")
        b.header(version: version, tensors: UInt64(tensors.count), metadata: UInt64(metadata.count))
        for (i, (key, value)) in metadata.enumerated() {
            b.mark("key\(i)")
            b.string(key)
            b.mark("value\(i)")
            b.u32(GGUFBytes.typeCode(value))
            b.payload(value)
        }
        var offset = 0
        for (i, t) in tensors.enumerated() {
            b.mark("tensorInfo\(i)")
            b.tensorInfo(t.name, dims: t.dims, type: t.type, offset: UInt64(offset))
            offset += t.data.count
            offset = (offset + alignment - 1) / alignment * alignment
        }
        b.mark("infosEnd")
        if !tensors.isEmpty {
            b.pad(to: alignment)
            b.mark("data")
            for (i, t) in tensors.enumerated() {
                if i > 0 { b.pad(to: alignment) }
                b.mark("tensorData\(i)")
                b.raw(t.data)
            }
        }
        b.mark("end")
        return b
    }
}

/// A scratch directory removed when the test ends.
final class TempDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("quill-gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// Writes `bytes` to a new file in the directory and returns its path.
    func write(_ bytes: [UInt8], name: String = "model.gguf") throws -> String {
        let path = url.appendingPathComponent(name).path
        // Plain stdio: Foundation's Data.write takes milliseconds per file on Linux, which adds up
        // over the hundreds of truncated files the validation tests write.
        guard let f = fopen(path, "wb") else { throw CocoaError(.fileWriteUnknown) }
        defer { fclose(f) }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        guard written == bytes.count else { throw CocoaError(.fileWriteUnknown) }
        return path
    }
}

/// Opens `bytes` as a GGUF file in a temp directory.
func openGGUF(_ bytes: [UInt8]) throws -> GGUFFile {
    let dir = try TempDirectory()
    return try GGUFFile(path: dir.write(bytes))
}

/// The GGUFError `bytes` produce, or nil if they parse (or fail some other way).
func ggufError(_ bytes: [UInt8]) -> GGUFError? {
    do {
        _ = try openGGUF(bytes)
        return nil
    } catch {
        return error as? GGUFError
    }
}
