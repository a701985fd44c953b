/// Cache from a pre-tokenized piece (its bytes) to its BPE token ids.
///
/// Keys and values live in two flat arenas and the table stores only entry indices, so a lookup
/// allocates nothing (a `Dictionary<[UInt8], [Int32]>` would allocate an array per lookup).
struct PieceCache {
    private struct Entry {
        var hash: UInt64
        var keyStart: Int32
        var keyLength: Int32
        var valueStart: Int32
        var valueLength: Int32
    }

    /// Bound on the key arena; past it the cache is cleared so memory stays bounded on huge inputs.
    static let maxKeyBytes = 8 << 20

    private var slots = [Int32](repeating: -1, count: 1 << 12)
    private var entries: [Entry] = []
    private var keyBytes: [UInt8] = []
    private(set) var values: [Int32] = []

    @inline(__always)
    static func hash(_ p: UnsafeBufferPointer<UInt8>) -> UInt64 {
        // 8 bytes at a time with a multiply-xorshift mix; quality is ample for a hash table.
        let base = UnsafeRawPointer(p.baseAddress!)
        var h: UInt64 = 0x243F_6A88_85A3_08D3 ^ UInt64(p.count)
        var i = 0
        while i + 8 <= p.count {
            h = (h ^ base.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < p.count { tail |= UInt64(p[i]) << shift; shift += 8; i += 1 }
        h = (h ^ tail) &* 0xBF58_476D_1CE4_E5B9
        return h ^ (h >> 31)
    }

    /// Range in `values` of the cached ids, or nil.
    @inline(__always)
    func lookup(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64) -> Range<Int>? {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while true {
            let e = Int(slots[i])
            if e < 0 { return nil }
            let entry = entries[e]
            if entry.hash == hash && Int(entry.keyLength) == key.count && keyBytes.matches(key, at: Int(entry.keyStart)) {
                return Int(entry.valueStart)..<Int(entry.valueStart + entry.valueLength)
            }
            i = (i + 1) & mask
        }
    }



    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64, ids: ArraySlice<Int32>) {
        if keyBytes.count + key.count > Self.maxKeyBytes { clear() }
        if (entries.count + 1) * 2 > slots.count { grow() }
        let entry = Entry(hash: hash, keyStart: Int32(keyBytes.count), keyLength: Int32(key.count),
                          valueStart: Int32(values.count), valueLength: Int32(ids.count))
        keyBytes.append(contentsOf: key)
        values.append(contentsOf: ids)
        place(Int32(entries.count), hash: hash)
        entries.append(entry)
    }

    private mutating func place(_ index: Int32, hash: UInt64) {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = index
    }

    private mutating func grow() {
        slots = [Int32](repeating: -1, count: slots.count * 2)
        for (k, e) in entries.enumerated() { place(Int32(k), hash: e.hash) }
    }

    private mutating func clear() {
        slots = [Int32](repeating: -1, count: 1 << 12)
        entries.removeAll(keepingCapacity: true)
        keyBytes.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
    }
}

extension Array where Element == UInt8 {
    /// Whether the bytes from `start` on begin with `key` (the caller checks they are long enough):
    /// the key compare of the arena-backed tables (`PieceCache`, `PieceTable`).
    @inline(__always)
    func matches(_ key: UnsafeBufferPointer<UInt8>, at start: Int) -> Bool {
        withUnsafeBufferPointer { arena in
            for k in 0..<key.count where arena[start + k] != key[k] { return false }
            return true
        }
    }
}
