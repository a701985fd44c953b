// Inline helpers for QuillKernels (compiled into Swift callers; nothing to link).
#pragma once

/// Prefetch the cache line at `p` into all cache levels, for reading. Never faults.
static inline __attribute__((always_inline)) void quill_prefetch(const void *p) {
    __builtin_prefetch(p, 0, 3);
}

/// Prefetch for data read once per pass (prefetchnta): keeps it from evicting what should stay in
/// the last-level cache.
static inline __attribute__((always_inline)) void quill_prefetch_nta(const void *p) {
    __builtin_prefetch(p, 0, 0);
}

/// Spin-wait hint: lets the sibling hyper-thread run and avoids the memory-order mis-speculation
/// penalty when the awaited value changes.
static inline __attribute__((always_inline)) void quill_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#if defined(__linux__)
#include <features.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
/// glibc: serve blocks up to 64 MiB from the heap instead of fresh mappings, and return freed heap
/// memory to the system only past 128 MiB (see `Allocator.reuseLargeBlocks`). Returns nonzero on success.
static inline int quill_reuse_large_blocks(void) {
    return mallopt(M_MMAP_THRESHOLD, 64 << 20) && mallopt(M_TRIM_THRESHOLD, 128 << 20);
}
#else
static inline int quill_reuse_large_blocks(void) { return 0; }
#endif
