/// Element types of GGUF / GGML tensors that Quill can read.
///
/// Raw values are the `ggml_type` numbers stored in GGUF tensor infos. Quantised types store
/// blocks of `blockSize` consecutive elements of one row in `bytesPerBlock` bytes
/// (layouts as in ggml's `ggml-common.h`):
/// - `q8_0`: `{ f16 d; int8 qs[32] }`, x = d·q
/// - `q4_0`: `{ f16 d; uint8 qs[16] }`, element j < 16 is the low nibble of qs[j], element j + 16 the high
///   nibble; x = d·(q − 8)
/// - `q4_1`: `{ f16 d; f16 m; uint8 qs[16] }`, same nibble order; x = d·q + m
/// - `q5_0`: `{ f16 d; uint8 qh[4]; uint8 qs[16] }`: 5-bit q, the low 4 bits in nibbles as for `q4_0`,
///   the fifth bit of element j in bit j of the little-endian 32-bit `qh`; x = d·(q − 16)
/// - `q5_1`: `{ f16 d; f16 m; uint8 qh[4]; uint8 qs[16] }`, bits as `q5_0`; x = d·q + m
/// - `q4_K`: super-blocks of 256, `{ f16 d; f16 dmin; uint8 scales[12]; uint8 qs[128] }`: 8 sub-blocks of
///   32 with a 6-bit scale and 6-bit min each (packed in `scales`); x = d·sc·q − dmin·m
/// - `q5_K`: super-blocks of 256, `{ f16 d; f16 dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128] }`:
///   as `q4_K` plus a fifth bit per value: sub-block j's values have theirs in bit j of `qh[0..<32]`
/// - `q6_K`: super-blocks of 256, `{ uint8 ql[128]; uint8 qh[64]; int8 scales[16]; f16 d }`: 6-bit q
///   (4 low bits in `ql`, 2 high in `qh`), an int8 scale per 16 values; x = d·sc·(q − 32)
public enum TensorType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30

    /// F32, F16 or BF16: values stored one by one, multiplied in f32 on every path.
    public var isFloat: Bool { self == .f32 || self == .f16 || self == .bf16 }

    /// Elements per block (1 for the float types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return 32
        case .q4_K, .q5_K, .q6_K: return 256
        }
    }

    /// Bytes per block.
    public var bytesPerBlock: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 18
        case .q4_1: return 20
        case .q5_0: return 22
        case .q5_1: return 24
        case .q8_0: return 34
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        }
    }

    /// Bytes needed for `count` elements, or nil when `count` is not a whole number of blocks
    /// or the size overflows.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        return overflow ? nil : bytes
    }

    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        }
    }
}

/// A read-only 2-D weight matrix in any `TensorType`, stored row-major: `rows` rows of `columns`
/// elements each (GGUF's `ne0` is `columns`). The bytes usually live in a memory-mapped model file.
///
/// `y = W·x` takes `x` of length `columns` and produces `y` of length `rows`.
public struct WeightMatrix: @unchecked Sendable {
    public let type: TensorType
    public let rows: Int
    public let columns: Int
    /// Start of row 0. Must stay valid for the lifetime of the matrix (the mapping is owned elsewhere).
    public let data: UnsafeRawPointer
    /// A hint for decoding: the matrix is read once per step and should not displace other data
    /// from the last-level cache (its mat-vec prefetches with `prefetchnta`). A decoder whose
    /// weights exceed the cache marks all but a cache-sized part as streaming, so that part stays
    /// cached from one step to the next instead of everything cycling through DRAM.
    public var streaming = false
    /// The rows regrouped for the decoding kernels (`WeightPanels`), when the model made them: the
    /// int8 mat-vecs of this matrix (one row or a batch) then read these instead of `data`.
    public var panels: WeightPanels?

    public init(type: TensorType, rows: Int, columns: Int, data: UnsafeRawPointer) {
        precondition(columns % type.blockSize == 0, "row length must be a whole number of blocks")
        self.type = type
        self.rows = rows
        self.columns = columns
        self.data = data
    }

    /// Bytes per row.
    @inlinable public var rowBytes: Int { columns / type.blockSize * type.bytesPerBlock }

    /// Pointer to the first byte of row `r`.
    @inlinable public func row(_ r: Int) -> UnsafeRawPointer { data + r * rowBytes }
}
