// Single- and multi-core streaming read bandwidth: the ceiling of a memory-bound tg (every weight
// byte read once per token). Each thread sums its own buffer with 512-bit loads, 5 passes.
//   cc -O2 -mavx512f -pthread Benchmarks/llama.cpp/read-bandwidth.c -o /tmp/read-bandwidth
//   /tmp/read-bandwidth MiB-per-thread threads      e.g. 400 1, 400 2
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t bytes_per_thread;
static char *buffer;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *sum(void *argument) {
    char *start = buffer + (size_t)argument * bytes_per_thread;
    __m512i a = _mm512_setzero_si512(), b = a;  // two chains, so the adds never limit the loads
    for (int pass = 0; pass < 5; pass++)
        for (size_t i = 0; i < bytes_per_thread; i += 128) {
            a = _mm512_add_epi32(a, _mm512_load_si512(start + i));
            b = _mm512_add_epi32(b, _mm512_load_si512(start + i + 64));
        }
    return (void *)(size_t)_mm512_reduce_add_epi32(_mm512_add_epi32(a, b));
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s MiB-per-thread threads\n", argv[0]); return 1; }
    size_t mib = strtoul(argv[1], 0, 10);
    int threads = atoi(argv[2]);
    if (mib == 0 || threads < 1 || threads > 64) { fprintf(stderr, "bad arguments\n"); return 1; }
    bytes_per_thread = mib << 20;
    buffer = aligned_alloc(64, bytes_per_thread * threads);
    if (!buffer) { fprintf(stderr, "out of memory\n"); return 1; }
    memset(buffer, 1, bytes_per_thread * threads);
    pthread_t ids[64];
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], 0, sum, (void *)(size_t)i);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], 0);
    printf("%zu MiB x %d threads: %.1f GB/s\n", mib, threads, 5.0 * bytes_per_thread * threads / (now() - t0) / 1e9);
    return 0;
}
