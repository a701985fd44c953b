#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// OpenBLAS, loaded with `dlopen` on first use rather than linked, so Quill builds and runs
/// without it (falling back to its own GEMM) and so `OPENBLAS_CORETYPE` can be set before the
/// library initialises: Debian's OpenBLAS 0.3.21 misdetects recent AVX-512 CPUs as Prescott and
/// runs sgemm ~6× slower unless told the core type.
enum BLAS {
    typealias SGEMM = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float,
                                      UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32, Float,
                                      UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias SetThreads = @convention(c) (Int32) -> Void

    // CBLAS enum values (cblas.h).
    static let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112

    struct Library: @unchecked Sendable {
        let sgemm: SGEMM
        let setThreads: SetThreads?
    }

    /// Loaded once, thread-safely (Swift lazily initialises globals with `swift_once`).
    static let library: Library? = load()

    private static func load() -> Library? {
        if getenv("OPENBLAS_CORETYPE") == nil, let core = coreType() {
            setenv("OPENBLAS_CORETYPE", core, 0)
        }
        #if os(macOS)
        let names = ["libopenblas.dylib", "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
                     "/usr/local/opt/openblas/lib/libopenblas.dylib"]
        #else
        let names = ["libopenblas.so.0", "libopenblas.so"]
        #endif
        for name in names {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            guard let sgemm = dlsym(handle, "cblas_sgemm") else { dlclose(handle); continue }
            let setThreads = dlsym(handle, "openblas_set_num_threads").map { unsafeBitCast($0, to: SetThreads.self) }
            // Our ThreadPool splits the work and calls sgemm from each thread on its own panel,
            // so OpenBLAS must not start threads of its own (they would fight the pool for cores).
            setThreads?(1)
            return Library(sgemm: unsafeBitCast(sgemm, to: SGEMM.self), setThreads: setThreads)
        }
        return nil
    }

    /// OpenBLAS core name for this CPU, from the kernel's view of the CPU flags (which also
    /// accounts for OS support of the AVX-512 state). Nil leaves OpenBLAS to detect it.
    private static func coreType() -> String? {
        #if arch(x86_64) && os(Linux)
        guard let file = fopen("/proc/cpuinfo", "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            guard text.hasPrefix("flags") else { continue }
            let flags = Set(text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }))
            if flags.contains("avx512f") { return "SkylakeX" }
            if flags.contains("avx2") { return "Haswell" }
            return nil
        }
        return nil
        #else
        return nil
        #endif
    }
}
