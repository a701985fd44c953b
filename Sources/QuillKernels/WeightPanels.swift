/// Weight rows of a 32-block type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) regrouped 16 rows at a time into
/// the layout in which one `vpdpbusd` multiplies 16 weight rows by one activation dword: per panel
/// of 16 rows and per block of 32 columns, vector `g` holds columns `4g ..< 4g + 4` of the 16 rows
/// (lane `r`, a dword, is row `r`'s four unsigned values). The 32 products of a (row, block) then
/// add up in int32 — exactly, in any order — and only one conversion and two FMAs per block remain
/// per output, in lane `r` of a vector that holds 16 outputs side by side.
///
/// Row-major blocks force one f32 lane per 4-byte group (8 per row and block) and a horizontal
/// sum at the end; that float work, not the `vpdpbusd`, bounded the decoding kernels (see
/// `BatchedPairedInt8AVX512.swift`). Here it is an eighth as much.
///
/// Layout of one (panel, block), `blockBytes(type)` bytes, every part as the file had it (no
/// rounding): the integers, then the f16 scales and mins of the 16 rows.
/// - Q4_0 / Q4_1 / Q5_0 / Q5_1: 4 × 64 bytes of nibbles; chunk `c`, dword `r` is row `r`'s nibble
///   bytes `4c ..< 4c + 4` (the file's bytes: low nibbles columns `4c + i`, high nibbles columns
///   `16 + 4c + i`), so the low nibbles are group `c`, the high ones group `c + 4`.
/// - Q5_0 / Q5_1: then 8 × 64-bit masks, mask `g` bit `4r + i` the fifth bit of row `r`, column `4g + i`.
/// - Q8_0: 8 × 64 bytes, group `g`, dword `r` row `r`'s bytes `4g ..< 4g + 4`, plus 128 (unsigned).
/// - Then `d` of the 16 rows (16 × f16), then for Q4_1 / Q5_1 `m` (16 × f16).
/// Rows past the matrix (its last panel) are zeros with scale 0.
///
/// The weight is `d·q + offset` with `offset` = −8d (Q4_0), −16d (Q5_0), −128d (Q8_0) or `m`, as in
/// `UnsignedWeightRows`; `y[r] = Σ_b (Float(Σ q·q_x)·(d·d_x) + offset·(d_x·Σq_x))`, FMA by FMA in
/// block order (`ReferencePanelMatVec`).
public final class WeightPanels: @unchecked Sendable {
    public let type: TensorType
    public let rows: Int
    public let columns: Int
    /// Number of 16-row panels (the last one padded with zero rows).
    public let panels: Int
    /// Bytes of one block of one panel.
    let blockBytes: Int
    /// Start of panel 0, block 0 (64-byte aligned); panel `p`, block `b` at `(p·blocks + b)·blockBytes`.
    let data: UnsafeMutableRawPointer

    /// Whether `type` has a panel layout.
    public static func supports(_ type: TensorType) -> Bool {
        switch type {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return true
        default: return false
        }
    }

    /// Bytes of one (panel, block). (Always inlined, as the layout functions below: the kernels call
    /// them with their type fixed at specialisation, and they must fold to constants there — as
    /// calls they made the one-row pass 1.8× slower.)
    @inline(__always)
    static func blockBytes(_ type: TensorType) -> Int {
        switch type {
        case .q4_0: return 256 + 32
        case .q4_1: return 256 + 64
        case .q5_0: return 256 + 64 + 32
        case .q5_1: return 256 + 64 + 64
        case .q8_0: return 512 + 32
        default: preconditionFailure("no panel layout for \(type)")
        }
    }

    /// Offset of the 16 f16 scales within a block; the mins (Q4_1 / Q5_1) follow them.
    @inline(__always)
    static func scalesOffset(_ type: TensorType) -> Int {
        switch type {
        case .q8_0: return 512
        case .q5_0, .q5_1: return 256 + 64
        default: return 256
        }
    }

    /// Whether the block holds each row's min (`offset = m`) after its scale.
    @inline(__always)
    static func hasMin(_ type: TensorType) -> Bool { type == .q4_1 || type == .q5_1 }
    /// Whether the block holds the 8 fifth-bit masks after the nibbles.
    @inline(__always)
    static func hasFifthBit(_ type: TensorType) -> Bool { type == .q5_0 || type == .q5_1 }

    /// Bytes the panels take (about the matrix's own size: the same integers and f16 scales).
    public var byteCount: Int { panels * (columns / 32) * blockBytes }

    /// Bytes the panels of `w` take (`supports(w.type)`).
    public static func byteCount(_ w: WeightMatrix) -> Int { (w.rows + 15) / 16 * (w.columns / 32) * blockBytes(w.type) }

    /// Regroups the rows of `w` (`supports(w.type)`) into memory of its own, or into `storage`
    /// (`byteCount(w)` bytes, 64-byte aligned, kept alive by `owner`). `consumed`, if given, is told
    /// every few MiB how many bytes from `w.data` on are packed and will not be read again.
    public init(_ w: WeightMatrix, storage: UnsafeMutableRawPointer? = nil, owner: AnyObject? = nil,
                consumed: ((Int) -> Void)? = nil) {
        precondition(WeightPanels.supports(w.type), "no panel layout for \(w.type)")
        type = w.type
        rows = w.rows
        columns = w.columns
        panels = (w.rows + 15) / 16
        blockBytes = WeightPanels.blockBytes(w.type)
        let blocks = w.columns / 32
        let total = WeightPanels.byteCount(w)
        if let storage {
            data = storage
            ownsData = false
        } else {
            data = UnsafeMutableRawPointer.allocate(byteCount: max(64, total), alignment: 64)
            ownsData = true
        }
        self.owner = owner
        data.initializeMemory(as: UInt8.self, repeating: 0, count: total)
        var reported = 0
        for p in 0..<panels {
            for r in 0..<min(16, w.rows - 16 * p) {
                let row = w.row(16 * p + r)
                for b in 0..<blocks {
                    pack(row + b * w.type.bytesPerBlock, into: data + (p * blocks + b) * blockBytes, lane: r)
                }
            }
            let done = min(w.rows, 16 * (p + 1)) * w.rowBytes
            if let consumed, done - reported >= 4 << 20 || p == panels - 1 {
                consumed(done)
                reported = done
            }
        }
    }

    private let ownsData: Bool
    private let owner: AnyObject?

    deinit { if ownsData { data.deallocate() } }

    /// Writes one row's block (the file's bytes at `block`) into lane `r` of a panel block.
    private func pack(_ block: UnsafeRawPointer, into out: UnsafeMutableRawPointer, lane r: Int) {
        let scales = out + WeightPanels.scalesOffset(type)
        scales.storeBytes(of: block.loadUnaligned(as: UInt16.self), toByteOffset: 2 * r, as: UInt16.self)
        switch type {
        case .q8_0:
            for g in 0..<8 {
                let v = block.loadUnaligned(fromByteOffset: 2 + 4 * g, as: UInt32.self) ^ 0x8080_8080
                out.storeBytes(of: v, toByteOffset: 64 * g + 4 * r, as: UInt32.self)
            }
        case .q4_0, .q4_1, .q5_0, .q5_1:
            let hasMin = WeightPanels.hasMin(type)
            if hasMin {
                scales.storeBytes(of: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self), toByteOffset: 32 + 2 * r,
                                  as: UInt16.self)
            }
            let fiveBit = WeightPanels.hasFifthBit(type)
            let nibbles = (hasMin ? 4 : 2) + (fiveBit ? 4 : 0)
            for c in 0..<4 {
                out.storeBytes(of: block.loadUnaligned(fromByteOffset: nibbles + 4 * c, as: UInt32.self),
                               toByteOffset: 64 * c + 4 * r, as: UInt32.self)
            }
            if fiveBit {
                let qh = block.loadUnaligned(fromByteOffset: hasMin ? 4 : 2, as: UInt32.self).littleEndian
                for g in 0..<8 {
                    let masks = out + 256 + 8 * g
                    let bits = UInt64((qh >> (4 * g)) & 0xF) << (4 * r)
                    masks.storeBytes(of: masks.loadUnaligned(as: UInt64.self) | bits, as: UInt64.self)
                }
            }
        default:
            preconditionFailure("no panel layout for \(type)")
        }
    }

    /// Writes row `r` as the file had it (`w.rowBytes` bytes: the same blocks, byte for byte), for
    /// the readers of rows that are not mat-vecs (the prompt GEMM's unpacking, an embedding lookup)
    /// once the file's pages are released.
    public func reconstructRow(_ r: Int, into out: UnsafeMutableRawPointer) {
        precondition(r >= 0 && r < rows)
        let p = r / 16, lane = r % 16, blocks = columns / 32, bytes = type.bytesPerBlock
        let hasMin = WeightPanels.hasMin(type), fiveBit = WeightPanels.hasFifthBit(type)
        for b in 0..<blocks {
            let block = UnsafeRawPointer(data + (p * blocks + b) * blockBytes)
            let o = out + b * bytes
            let scales = block + WeightPanels.scalesOffset(type)
            o.storeBytes(of: scales.loadUnaligned(fromByteOffset: 2 * lane, as: UInt16.self), as: UInt16.self)
            if type == .q8_0 {
                for g in 0..<8 {
                    o.storeBytes(of: block.loadUnaligned(fromByteOffset: 64 * g + 4 * lane, as: UInt32.self) ^ 0x8080_8080,
                                 toByteOffset: 2 + 4 * g, as: UInt32.self)
                }
                continue
            }
            if hasMin {
                o.storeBytes(of: scales.loadUnaligned(fromByteOffset: 32 + 2 * lane, as: UInt16.self), toByteOffset: 2, as: UInt16.self)
            }
            var nibbles = hasMin ? 4 : 2
            if fiveBit {
                var qh: UInt32 = 0
                for g in 0..<8 {
                    let mask = block.loadUnaligned(fromByteOffset: 256 + 8 * g, as: UInt64.self)
                    qh |= UInt32(truncatingIfNeeded: (mask >> (4 * lane)) & 0xF) << (4 * g)
                }
                o.storeBytes(of: qh.littleEndian, toByteOffset: nibbles, as: UInt32.self)
                nibbles += 4
            }
            for c in 0..<4 {
                o.storeBytes(of: block.loadUnaligned(fromByteOffset: 64 * c + 4 * lane, as: UInt32.self),
                             toByteOffset: nibbles + 4 * c, as: UInt32.self)
            }
        }
    }
}

extension WeightMatrix {
    /// Calls `body` with row `r`'s bytes in the file's block layout: `row(r)` itself, or, for a
    /// matrix whose decoding kernels read `panels`, the row rebuilt from them (so the file's pages,
    /// which were released, are not read back in).
    @inlinable
    public func withRow<R>(_ r: Int, _ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
        guard let panels else { return try body(row(r)) }
        return try withUnsafeTemporaryAllocation(byteCount: rowBytes, alignment: 16) { buffer in
            panels.reconstructRow(r, into: buffer.baseAddress!)
            return try body(UnsafeRawPointer(buffer.baseAddress!))
        }
    }
}

/// The plain twin of the panel kernels, computed from the file's blocks (so a test of the fast
/// kernel checks the regrouping too): per row and block the exact integer sum, then the same two
/// FMAs in the same order, so the fast kernel must match it bitwise.
public enum ReferencePanelMatVec {
    /// `y[i·ldy + r]` for the `count` activation rows at `qs + i·columns` (scale pairs at
    /// `scales + 2i·(columns/32)`) and weight rows `rows` of `w`.
    public static func multiply(_ w: WeightMatrix, qs: UnsafePointer<Int8>, scales xs: UnsafePointer<Float>, count: Int,
                                into y: UnsafeMutablePointer<Float>, ldy: Int, rows: Range<Int>) {
        let blocks = w.columns / 32
        let q = UnsafeMutablePointer<UInt8>.allocate(capacity: w.columns)
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: blocks), offsets = UnsafeMutablePointer<Float>.allocate(capacity: blocks)
        defer { q.deallocate(); scales.deallocate(); offsets.deallocate() }
        for r in rows {
            UnsignedWeightRows.unpack(w.type, w.row(r), columns: w.columns, q: q, scales: scales, offsets: offsets, portable: true)
            for i in 0..<count {
                let x = qs + i * w.columns, pairs = xs + 2 * i * blocks
                var acc: Float = 0
                for b in 0..<blocks {
                    var sum: Int32 = 0
                    for k in 32 * b ..< 32 * b + 32 { sum += Int32(q[k]) * Int32(x[k]) }
                    acc = acc.addingProduct(Float(sum), scales[b] * pairs[2 * b])
                    acc = acc.addingProduct(offsets[b], pairs[2 * b + 1])
                }
                y[i * ldy + r] = acc
            }
        }
    }
}
