import QuillKernels

/// The key–value pairs of a GGUF file.
///
/// Scalars are decoded when the file is opened. Arrays — a vocabulary's 50k–250k tokens, merges
/// and token types — are checked then (every count and length, as `GGUFParser` reads them) but stay
/// in the mapping and are decoded each time they are asked for. An open file therefore holds no copy
/// of them: the tokenizer builds its own tables once, and `GGUFFile.releaseMetadataPages()` can drop
/// the mapped bytes from the resident set. Decoding them eagerly kept ~4 MB of `[GGUFValue]` alive
/// for as long as a model was loaded (SmolLM2's 49,152 tokens and 48,900 merges).
public struct GGUFMetadata: Sendable {
    enum Entry: Sendable {
        case scalar(GGUFValue)
        /// An array whose element-type field starts at this file offset.
        case array(offset: Int)
    }

    private let entries: [String: Entry]
    private let file: MappedFile
    private let path: String

    init(entries: [String: Entry], file: MappedFile, path: String) {
        self.entries = entries
        self.file = file
        self.path = path
    }

    /// Number of keys.
    public var count: Int { entries.count }
    /// Whether the file has no metadata at all.
    public var isEmpty: Bool { entries.isEmpty }
    /// Every key, in no particular order.
    public var keys: [String] { Array(entries.keys) }

    /// The value for `key` (an array is decoded from the mapping), or nil when the key is absent.
    public subscript(key: String) -> GGUFValue? {
        switch entries[key] {
        case nil: return nil
        case .scalar(let v): return v
        case .array(let offset):
            var p = parser(at: offset, key: key)
            // Checked when the file was opened; only a file rewritten in place could fail here.
            return try? p.readValue(.array)
        }
    }

    /// The elements of the array at `key`, each converted by `convert` as it is decoded from the
    /// mapping (no `[GGUFValue]` is built); nil when the key is absent or not an array, or when
    /// `convert` rejects an element.
    func elements<T>(_ key: String, _ convert: (GGUFValue) -> T?) throws -> [T]? {
        guard case .array(let offset) = entries[key] else { return nil }
        var p = parser(at: offset, key: key)
        let (elementType, count) = try p.readArrayHeader(depth: 1)
        var out: [T] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            guard let element = convert(try p.readValue(elementType, depth: 1)) else { return nil }
            out.append(element)
        }
        return out
    }

    private func parser(at offset: Int, key: String) -> GGUFParser {
        var p = GGUFParser(path: path, base: file.base, size: file.size, offset: offset)
        p.context = "value of key \(key)"
        return p
    }
}
