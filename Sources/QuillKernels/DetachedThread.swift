#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Long-lived threads without Foundation's `Thread` (the modules link FoundationEssentials only,
/// which has no `Thread`): a detached POSIX thread with an explicit stack size and a name.
package enum DetachedThread {
    private final class Start {
        let name: String?
        let body: @Sendable () -> Void
        init(name: String?, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Runs `body` on a new detached thread with `stackSize` bytes of stack. `name` (at most 15
    /// bytes on Linux) shows in `top -H`, `gdb` and crash reports, as `Thread.name` did.
    package static func start(name: String? = nil, stackSize: Int, _ body: @escaping @Sendable () -> Void) {
        let attributes = UnsafeMutablePointer<pthread_attr_t>.allocate(capacity: 1)
        pthread_attr_init(attributes)
        pthread_attr_setstacksize(attributes, stackSize)
        pthread_attr_setdetachstate(attributes, Int32(PTHREAD_CREATE_DETACHED))
        // Retained here, released by the new thread once it has taken the closure.
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, attributes, runStart, context)
        pthread_attr_destroy(attributes)
        attributes.deallocate()
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    private static let runStart: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? = { raw in
        let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
        if let name = start.name { setCurrentThreadName(name) }
        start.body()
        return nil
    }

    /// What `pthread_setname_np` does for the calling thread; Glibc's module map hides that
    /// function (it needs `_GNU_SOURCE`), so write the kernel's `comm` file directly.
    private static func setCurrentThreadName(_ name: String) {
        #if canImport(Glibc)
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        guard fd >= 0 else { return }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #else
        _ = pthread_setname_np(name)
        #endif
    }
}
