#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Anonymous memory on transparent huge pages (2 MiB) holding copies of weight matrices.
///
/// Decoding streams every weight once per token. From a file mapping that is one 4 KiB page per
/// 4 KiB read: a TLB miss and a page walk every 4 KiB, and the hardware prefetchers stop at each
/// page boundary. Copied onto huge pages the same bytes need 512× fewer translations. The copy's
/// source pages are released as each matrix is copied (`MADV_DONTNEED`; they stay in the page
/// cache), so resident memory never holds both copies of more than one matrix.
/// On systems without transparent huge pages the copy still works, it just gains nothing.
public final class WeightArena: @unchecked Sendable {
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0
    private static let hugePage = 2 << 20

    /// Room for `bytes` of matrices (each copy is rounded up to 64 bytes).
    public init(bytes: Int) {
        capacity = (bytes + WeightArena.hugePage - 1) / WeightArena.hugePage * WeightArena.hugePage
        // Over-allocate one huge page so the start can be aligned to one.
        let raw = mmap(nil, capacity + WeightArena.hugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        precondition(raw != MAP_FAILED && raw != nil, "mmap of \(capacity) bytes failed")
        let address = UInt(bitPattern: raw)
        let aligned = (address + UInt(WeightArena.hugePage) - 1) / UInt(WeightArena.hugePage) * UInt(WeightArena.hugePage)
        base = UnsafeMutableRawPointer(bitPattern: aligned)!
        mapping = (raw!, capacity + WeightArena.hugePage)
        #if os(Linux)
        _ = madvise(base, capacity, 14)  // MADV_HUGEPAGE (not exported by Glibc's Swift overlay)
        #endif
    }

    private let mapping: (UnsafeMutableRawPointer, Int)

    deinit { munmap(mapping.0, mapping.1) }

    /// Copies `m` into the arena and returns the copy.
    /// - Parameter releasingSource: also drop the source's whole pages from this process
    ///   (`MADV_DONTNEED`). Only for read-only file mappings, which then re-read from the page
    ///   cache if touched again; on anonymous memory it would zero the source.
    public func copy(_ m: WeightMatrix, releasingSource: Bool = false) -> WeightMatrix {
        let bytes = m.rowBytes * m.rows
        precondition(used + bytes <= capacity, "weight arena is full")
        let destination = base + used
        // In 4 MiB steps, releasing each step's source pages, so a large matrix (the 30 MB output
        // matrix) is never resident twice: the peak RSS stays that of one copy.
        let page = Int(getpagesize()), step = 4 << 20
        var done = 0
        while done < bytes {
            let n = min(step, bytes - done)
            (destination + done).copyMemory(from: m.data + done, byteCount: n)
            let start = (Int(bitPattern: m.data + done) + page - 1) / page * page
            let end = (Int(bitPattern: m.data + done + n)) / page * page
            if releasingSource && end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED) }
            done += n
        }
        used += (bytes + 63) / 64 * 64
        var copy = WeightMatrix(type: m.type, rows: m.rows, columns: m.columns, data: UnsafeRawPointer(destination))
        copy.streaming = m.streaming
        return copy
    }

    /// Bytes `m` takes in the arena: its panels when `WeightPanels.supports` its type and
    /// `panels` is set, otherwise a copy.
    public static func bytes(_ m: WeightMatrix, panels: Bool) -> Int {
        let n = panels && WeightPanels.supports(m.type) ? WeightPanels.byteCount(m) : m.rowBytes * m.rows
        return (n + 63) / 64 * 64
    }

    /// Regroups `m` into `WeightPanels` in the arena (`WeightPanels.supports(m.type)`) and returns
    /// `m` with them attached: its mat-vecs read the panels, while `data` still points at the
    /// source for whatever reads rows in the file's layout (`WeightMatrix.withRow` rebuilds them
    /// from the panels instead). With `releasingSource` (read-only file mappings only, as for
    /// `copy`) the source's pages are dropped once the panels hold them, matrix by matrix.
    public func panels(_ m: WeightMatrix, releasingSource: Bool = false) -> WeightMatrix {
        let bytes = WeightPanels.byteCount(m)
        precondition(used + bytes <= capacity, "weight arena is full")
        var result = m
        // Released every 4 MiB of source, so a large matrix is never resident twice (as in `copy`).
        let page = Int(getpagesize())
        var released = (Int(bitPattern: m.data) + page - 1) / page * page
        result.panels = WeightPanels(m, storage: base + used, owner: self) { done in
            guard releasingSource else { return }
            let end = Int(bitPattern: m.data + done) / page * page
            if end > released { _ = madvise(UnsafeMutableRawPointer(bitPattern: released), end - released, MADV_DONTNEED) }
            released = max(released, end)
        }
        used += (bytes + 63) / 64 * 64
        return result
    }
}
