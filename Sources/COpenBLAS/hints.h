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
