/// Several activation rows quantised to int8 in blocks of 32, for multiplying one weight matrix
/// with many rows at once (`MatVec.multiply(_:_:into:pool:)` with a batch): decoding several
/// sequences, beams or sources together.
///
/// Every row is quantised exactly as `QuantizedActivations.quantize` quantises it alone (the same
/// per-block function), so row `i` of a batched product can be, and is, bitwise the one-row product.
///
/// Layout (valid until the next `quantize`):
/// - `qs`: `rows × columns` int8, row-major, row `i` at `qs + i·columns` (64-byte aligned base);
/// - `scales`: per row and block the pair `(d, d·Σq)`, row `i` block `b` at `scales + 2·(i·blocks + b)`
///   (`blocks = columns / 32`) — each row is laid out like a `QuantizedActivations`;
/// - `transposedScales`: the same numbers per block across rows, for kernels that handle several
///   rows per block: `d` of row `i`, block `b` at `[(2b)·rowStride + i]`, `d·Σq` at
///   `[(2b + 1)·rowStride + i]`, `rowStride = rows` rounded up to 16. Padding lanes hold 0.
/// - `paired`: the int8 values again, two rows per 64 bytes for the AVX-512 kernels that run two
///   activation rows in one 16-lane vector: rows `2p` and `2p + 1`, block `b` at
///   `paired + 64·(b·rowStride/2 + p)`, their 4-byte groups alternating (dword `2j` is group `j`
///   of row `2p`, dword `2j + 1` group `j` of row `2p + 1`). A missing odd row reads as zeros.
///
/// The value keeps its buffers between `quantize` calls (copy-on-write), so a decoder allocates one
/// per input width and reuses it every step.
public struct QuantizedActivationBatch: @unchecked Sendable {
    final class Storage {
        let rowCapacity: Int, columnCapacity: Int
        let qs: UnsafeMutablePointer<Int8>
        let scales: UnsafeMutablePointer<Float>
        let transposed: UnsafeMutablePointer<Float>
        let transposedCount: Int
        let paired: UnsafeMutablePointer<Int32>
        let pairedCount: Int

        init(rows: Int, columns: Int) {
            rowCapacity = rows
            columnCapacity = columns
            let bytes = max(rows * columns, 64)
            qs = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64).bindMemory(to: Int8.self, capacity: bytes)
            let blocks = columns / 32
            scales = .allocate(capacity: max(2 * rows * blocks, 2))
            // Kernels load 8 or 16 lanes from any row of a group: 16 floats of slack past the end.
            transposedCount = 2 * blocks * QuantizedActivationBatch.paddedRows(rows) + 16
            transposed = .allocate(capacity: transposedCount)
            transposed.initialize(repeating: 0, count: transposedCount)
            pairedCount = max(16, 8 * blocks * QuantizedActivationBatch.paddedRows(rows))
            paired = UnsafeMutableRawPointer.allocate(byteCount: 4 * pairedCount, alignment: 64)
                .bindMemory(to: Int32.self, capacity: pairedCount)
            paired.initialize(repeating: 0, count: pairedCount)
        }

        deinit {
            qs.deallocate()
            scales.deallocate()
            transposed.deallocate()
            paired.deallocate()
        }
    }

    var storage: Storage
    /// Number of rows quantised by the last `quantize`.
    public private(set) var rows: Int = 0
    /// Elements per row (a multiple of 32).
    public private(set) var columns: Int = 0

    /// Creates buffers for up to `rows` rows of up to `columns` elements (`columns` a multiple of 32).
    public init(rows: Int, columns: Int) {
        precondition(rows >= 0 && columns >= 0 && columns % 32 == 0, "capacity: rows ≥ 0, columns a multiple of 32")
        storage = Storage(rows: rows, columns: columns)
    }

    /// Maximum number of rows.
    public var rowCapacity: Int { storage.rowCapacity }
    /// Maximum row length.
    public var columnCapacity: Int { storage.columnCapacity }

    /// Row stride of `transposedScales`: `rows` rounded up to 16.
    var rowStride: Int { QuantizedActivationBatch.paddedRows(rows) }
    static func paddedRows(_ rows: Int) -> Int { (rows + 15) / 16 * 16 }

    /// Whether the last `quantize` wrote `paired` and `transposedScales` (the layouts of the batched
    /// kernels of matrices without `WeightPanels`).
    public private(set) var hasInterleavedLayouts = true

    /// Quantises `x` (`rows × columns`, row-major; `columns` a multiple of 32; both within capacity).
    /// - Parameter rowMajorOnly: skip `paired` and `transposedScales`, which only the batched kernels
    ///   of matrices without `WeightPanels` read (the panel kernels and the one-row kernels read the
    ///   row-major values); such a batch may then be multiplied only with matrices that have panels.
    ///   A single row never needs them.
    public mutating func quantize(_ x: UnsafePointer<Float>, rows: Int, columns: Int, rowMajorOnly: Bool = false) {
        precondition(rows >= 0 && rows <= storage.rowCapacity, "rows must be within capacity")
        precondition(columns % 32 == 0 && columns <= storage.columnCapacity,
                     "columns must be a multiple of 32 within capacity")
        if !isKnownUniquelyReferenced(&storage) {
            storage = Storage(rows: storage.rowCapacity, columns: storage.columnCapacity)
        }
        self.rows = rows
        self.columns = columns
        let blocks = columns / 32, stride = rowStride
        let qs = storage.qs, scales = storage.scales, transposed = storage.transposed, paired = storage.paired
        let interleaved = !rowMajorOnly && rows > 1
        hasInterleavedLayouts = interleaved
        if interleaved { transposed.update(repeating: 0, count: storage.transposedCount) }
        let groups = UnsafeRawPointer(qs)
        for i in 0..<rows {
            for b in 0..<blocks {
                let pair = scales + 2 * (i * blocks + b)
                QuantizedActivations.quantizeBlock(x + i * columns + 32 * b, qs + i * columns + 32 * b, pair)
                guard interleaved else { continue }
                transposed[2 * b * stride + i] = pair[0]
                transposed[(2 * b + 1) * stride + i] = pair[1]
                let out = paired + 16 * (b * stride / 2 + i / 2) + (i & 1)
                for j in 0..<8 { out[2 * j] = groups.loadUnaligned(fromByteOffset: i * columns + 32 * b + 4 * j, as: Int32.self) }
            }
        }
        if interleaved && rows & 1 == 1 {  // the missing partner of the last row
            for b in 0..<blocks {
                let out = paired + 16 * (b * stride / 2 + rows / 2) + 1
                for j in 0..<8 { out[2 * j] = 0 }
            }
        }
    }

    /// Int8 values and `(d, d·Σq)` pairs, laid out as described above.
    var qs: UnsafePointer<Int8> { UnsafePointer(storage.qs) }
    var scales: UnsafePointer<Float> { UnsafePointer(storage.scales) }
    var transposedScales: UnsafePointer<Float> { UnsafePointer(storage.transposed) }
    var paired: UnsafeRawPointer { UnsafeRawPointer(storage.paired) }

    /// Row `i`'s int8 values and scale pairs, the layout of a `QuantizedActivations`.
    func row(_ i: Int) -> QuantizedRow {
        QuantizedRow(qs: qs + i * columns, scales: scales + 2 * i * (columns / 32))
    }

    /// Calls `body` with the int8 values (`rows × columns`, row-major) and the `(d, d·Σq)` pairs
    /// (`rows × columns/32` pairs, row-major): the operands of `ReferencePanelMatVec`.
    public func withQuantizedRows<R>(_ body: (UnsafePointer<Int8>, UnsafePointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) { try body(qs, scales) }
    }

    /// The value the kernels effectively see for element `column` of row `row`: `d·q`.
    public func dequantized(row: Int, column: Int) -> Float {
        precondition(row >= 0 && row < rows && column >= 0 && column < columns)
        return storage.scales[2 * (row * (columns / 32) + column / 32)] * Float(storage.qs[row * columns + column])
    }
}
