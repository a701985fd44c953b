import COpenBLAS.Hints

/// Process-wide allocator policy for programs that decode many sequences.
public enum Allocator {
    /// Every decoding step allocates the logits of each sequence (49,152 floats = 192 KiB for
    /// SmolLM2) and frees the previous ones. Above glibc's mmap threshold each such block is a
    /// fresh mapping whose pages the kernel faults in and zeroes again — about 10% of a step with
    /// 8 sequences. This raises the threshold to 64 MiB (and the trim threshold to 128 MiB) so freed
    /// blocks are reused. A global setting, so it is the program's choice (the `quill` tool makes
    /// it at start-up); returns whether it took effect (glibc only).
    @discardableResult
    public static func reuseLargeBlocks() -> Bool { quill_reuse_large_blocks() != 0 }
}
