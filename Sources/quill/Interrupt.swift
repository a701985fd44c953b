import ArgumentParser
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Ctrl-C (SIGINT) for the generating commands, as llama.cpp handles it: generation stops at once,
/// the timings so far are printed and the exit status is 130 (128 + SIGINT).
///
/// While a command generates (`whileGenerating`), the handler only raises a flag that the command's
/// per-token callback polls (`requested`); the command then stops, prints its usual timing line and
/// throws `interruptedExitCode`. Outside generation (loading, waiting for input) nothing is polled, so
/// the handler itself writes the line the command last published (`publish`) and exits. A second
/// Ctrl-C always exits at once.
enum Interrupt {
    /// Exit status after an interrupt.
    static let interruptedExitCode = ExitCode(130)

    private static let idle = 0, generating = 1, stopping = 2
    private static let state = Atomic<Int>(0)
    /// The report the handler writes when it exits by itself: two buffers, so that the one the handler
    /// may be reading is never the one being written; `published` = buffer index << 32 | length.
    private static let capacity = 1024
    nonisolated(unsafe) private static let buffers = UnsafeMutablePointer<UInt8>.allocate(capacity: 2 * capacity)
    private static let published = Atomic<Int>(0)

    /// Installs the handler; commands that generate call it first.
    static func install() {
        // Touch the lazily initialised statics now: the handler must not run their initialisers.
        _ = state.load(ordering: .relaxed)
        _ = published.load(ordering: .relaxed)
        _ = buffers
        signal(SIGINT) { _ in
            // Generating: ask the running command to stop after the current step.
            if Interrupt.state.compareExchange(expected: Interrupt.generating, desired: Interrupt.stopping,
                                               ordering: .sequentiallyConsistent).exchanged { return }
            // Idle, or asked twice: report and leave now (write and _exit are async-signal-safe).
            let word = Interrupt.published.load(ordering: .acquiring)
            let length = word & 0xFFFF_FFFF
            if length > 0 { _ = write(2, Interrupt.buffers + (word >> 32) * Interrupt.capacity, length) }
            _exit(130)
        }
        // A parent may have started us with SIGINT blocked (Foundation's Process passes its thread's
        // mask on); threads started from now on, the kernels' workers among them, inherit this one's.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// True once Ctrl-C asked the current generation to stop.
    static var requested: Bool { state.load(ordering: .sequentiallyConsistent) == stopping }

    /// Runs `body` with Ctrl-C asking it to stop (poll `requested`) instead of exiting the process.
    /// A request that arrived just after the previous generation ended stays in force.
    static func whileGenerating<T>(_ body: () throws -> T) rethrows -> T {
        _ = state.compareExchange(expected: idle, desired: generating, ordering: .sequentiallyConsistent)
        defer {
            // A request that came in stays visible to the caller until the next generation starts.
            _ = state.compareExchange(expected: generating, desired: idle, ordering: .sequentiallyConsistent)
        }
        return try body()
    }

    /// Sets the line (timings so far) that the handler prints if Ctrl-C comes while nothing generates.
    static func publish(_ text: String) {
        let bytes = Array(text.utf8.prefix(capacity))
        let next = 1 - (published.load(ordering: .relaxed) >> 32)
        let target = buffers + next * capacity
        for (i, byte) in bytes.enumerated() { target[i] = byte }
        published.store(next << 32 | bytes.count, ordering: .releasing)
    }
}
