/// Byte strings by index in one buffer: string `i` is `bytes[offsets[i] ..< offsets[i + 1]]`.
///
/// A vocabulary's per-token bytes (spellings, decoded bytes) live as long as its model. One buffer
/// trimmed to the bytes it holds, with 4-byte offsets, costs SmolLM2's 49,152 tokens ~0.5 MB per
/// table; growing by doubling and `Int` offsets left up to twice that resident.
struct ByteStrings: Sendable {
    private var bytes: [UInt8] = []
    private var offsets: [Int32] = [0]

    /// An empty table with room for `count` strings (bytes grow as appended).
    init(reservingCount count: Int) {
        offsets.reserveCapacity(count + 1)
    }

    /// Number of strings.
    var count: Int { offsets.count - 1 }

    /// Adds one string at index `count`.
    /// - Throws: `TokenizerError` when the strings together would exceed 2 GiB (Int32 offsets).
    mutating func append<C: Collection>(_ string: C) throws where C.Element == UInt8 {
        bytes.append(contentsOf: string)
        try endString()
    }

    /// Adds one string at index `count` whose bytes `write` appends to the buffer.
    /// - Throws: `TokenizerError` past 2 GiB, as `append(_:)`.
    mutating func append(writing write: (inout [UInt8]) -> Void) throws {
        write(&bytes)
        try endString()
    }

    private mutating func endString() throws {
        guard let end = Int32(exactly: bytes.count) else { throw TokenizerError("vocabulary strings exceed 2 GiB") }
        offsets.append(end)
    }

    /// Drops the spare capacity that appending left (call once the table is complete).
    mutating func trim() {
        bytes = Self.exactCopy(bytes)
        offsets = Self.exactCopy(offsets)
    }

    /// A copy allocated for `array.count` elements (`Array(array[...])` would share the grown buffer).
    private static func exactCopy<T: BitwiseCopyable>(_ array: [T]) -> [T] {
        [T](unsafeUninitializedCapacity: array.count) { buffer, initialized in
            _ = buffer.initialize(fromContentsOf: array)
            initialized = array.count
        }
    }

    /// The bytes of string `i` (which must be in range).
    subscript(i: Int) -> ArraySlice<UInt8> {
        bytes[Int(offsets[i]) ..< Int(offsets[i + 1])]
    }

    /// Calls `body` with every string's bytes and a function from index to that string's range in them,
    /// for loops that compare many strings without slicing arrays.
    func withUnsafeStrings<R>(_ body: (UnsafeBufferPointer<UInt8>, (Int) -> Range<Int>) throws -> R) rethrows -> R {
        try bytes.withUnsafeBufferPointer { all in
            try offsets.withUnsafeBufferPointer { offsets in
                try body(all) { Int(offsets[$0]) ..< Int(offsets[$0 + 1]) }
            }
        }
    }
}
