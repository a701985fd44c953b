/// How much memory a size asked for by a user or a file may take, checked before it is allocated, so
/// that a size that cannot fit is a one-line error instead of an allocation abort.
public enum MemoryBudget {
    /// Bytes available for new allocations: what the kernel reports as available, less a margin (the
    /// figure `KVBlockPool` checks a cache against).
    public static var availableBytes: Int { KVBlockPool.availableMemory() }

    /// The product of `factors` in bytes, or nil when it overflows `Int`.
    public static func bytes(_ factors: [Int]) -> Int? {
        var product = 1
        for factor in factors {
            let (next, overflow) = product.multipliedReportingOverflow(by: max(0, factor))
            if overflow { return nil }
            product = next
        }
        return product
    }

    /// `bytes` as people read it (e.g. "2.1 GiB"); "more than Int.max bytes" for nil (an overflow).
    public static func describe(_ bytes: Int?) -> String {
        bytes.map(formatBytes) ?? "more than \(Int.max) bytes"
    }
}
