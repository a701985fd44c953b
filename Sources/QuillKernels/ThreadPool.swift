#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization
import COpenBLAS.Hints

/// A fixed set of persistent worker threads for fork-join data parallelism in the kernels.
///
/// `parallelFor` splits the indices into `threadCount` contiguous shares and publishes the job
/// by bumping an atomic generation counter. Every participant — the caller included — claims
/// shares from one atomic word until none are left, so a worker that is asleep or descheduled
/// (another process on the core) delays nothing: the caller simply runs its share too. Idle
/// workers spin on the generation for ~50 µs (a decode step issues hundreds of small regions
/// back to back, and waking a sleeping thread costs several µs) and then block on a condition
/// variable. `threads: 1` creates no workers and runs everything inline.
///
/// Which indices form a share does not depend on which thread runs it.
///
/// A pool may be shared: a region started while another is running (from another thread, or
/// nested inside a share) runs all of its shares on its own calling thread. Since the shares are
/// fixed by the caller, not by the thread that runs them, its results are the same bits either way.
public final class ThreadPool: @unchecked Sendable {
    /// Threads that take part in a region, including the calling thread.
    public let threadCount: Int
    /// How many of this pool's workers have started and finished; outlives the pool, so a caller can
    /// check that deinit joined every worker.
    public let census = WorkerCensus()

    /// Incremented once per region; workers compare it with the last value they served.
    private let generation = Atomic<Int>(0)
    /// Share dispenser: generation (bits 32…62) | share count (bits 16…31) | next share (bits 0…15).
    /// Packing the generation in makes a late worker's claim for a finished region fail.
    private let claims = Atomic<Int>(0)
    /// Shares of the current region that have finished.
    private let done = Atomic<Int>(0)
    /// Workers that are (about to be) blocked on `wake`; lets `parallelFor` skip the mutex
    /// when everyone is spinning.
    private let sleepers = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Held by the thread whose region the workers are serving; another caller runs its region inline.
    private let inUse = Atomic<Bool>(false)

    // The current job. Written by the caller before the generation bump (release) and read by
    // workers after observing it (acquire), so plain storage is race-free.
    private var job: UnsafeRawPointer? = nil   // -> (Int) -> Void, alive for the region
    private var jobCount = 0

    /// Where idle workers sleep once they have spun `spinNanoseconds`.
    private let wake = ConditionLock()
    private var workers: [pthread_t] = []

    /// How long an idle worker spins before it sleeps. Long enough to bridge the gaps between
    /// the regions of one decode step, short enough not to burn a core between requests.
    private static let spinNanoseconds: UInt64 = 50_000

    /// Creates a pool of `threads` threads in total (the caller plus `threads - 1` workers).
    public init(threads: Int) {
        precondition(threads >= 1, "a pool needs at least the calling thread")
        threadCount = threads
        for _ in 1..<threads {
            // Workers hold the pool unretained, or the pool could never be deinitialised; deinit
            // joins them before the storage goes away.
            let context = Unmanaged.passUnretained(self).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                Unmanaged<ThreadPool>.fromOpaque(raw!)._withUnsafeGuaranteedRef { $0.workerLoop() }
                return nil
            }, context)
            precondition(rc == 0, "pthread_create failed: \(rc)")
            census.started.add(1, ordering: .relaxed)
            workers.append(thread)
        }
    }

    deinit {
        stopping.store(true, ordering: .sequentiallyConsistent)
        wake.lock()
        generation.add(1, ordering: .sequentiallyConsistent)
        wake.broadcast()
        wake.unlock()
        for thread in workers { pthread_join(thread, nil) }
    }

    /// Runs `body(i)` for every `i` in `0..<count` exactly once. Index range is split into
    /// `threadCount` contiguous chunks; chunk 0 runs on the calling thread. Returns when all are done.
    /// While the pool serves another region (another task sharing one model, or a nested region),
    /// every index runs on the calling thread instead.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if threadCount == 1 || count <= 1
            || !inUse.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            for i in 0..<count { body(i) }
            return
        }
        defer { inUse.store(false, ordering: .releasing) }
        let shares = min(count, threadCount, 0xFFFF)
        withoutActuallyEscaping(body) { escapable in
            withUnsafePointer(to: escapable) { bodyPointer in
                let next = (generation.load(ordering: .relaxed) + 1) & 0x7FFF_FFFF
                jobCount = count
                job = UnsafeRawPointer(bodyPointer)
                done.store(0, ordering: .relaxed)
                claims.store(next << 32 | shares << 16, ordering: .releasing)
                // Sequentially consistent so that either a worker about to sleep sees the new
                // generation or we see its `sleepers` increment (Dekker-style handshake).
                generation.store(next, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    wake.lock()
                    wake.broadcast()
                    wake.unlock()
                }
                runClaimedShares(generation: next)
                var spins = 0
                while done.load(ordering: .acquiring) != shares {
                    quill_spin_pause()
                    spins += 1
                    // A worker was preempted mid-share (oversubscribed machine): let it run.
                    if spins > 2_000 { sched_yield() }
                }
                job = nil
            }
        }
    }

    /// Regions that have been handed to the workers so far (`parallelFor` calls with more than one
    /// share; wraps at 2³¹). Lets a caller see whether the pool is still being driven.
    public var regionsStarted: Int { generation.load(ordering: .relaxed) }

    /// Claims and runs shares of region `generation` until none are left. Returns immediately
    /// if that region is already over.
    private func runClaimedShares(generation g: Int) {
        var word = claims.load(ordering: .acquiring)
        while true {
            let shares = (word >> 16) & 0xFFFF, share = word & 0xFFFF
            guard word >> 32 == g, share < shares else { return }
            let (exchanged, original) = claims.compareExchange(expected: word, desired: word + 1,
                                                               ordering: .acquiringAndReleasing)
            if !exchanged { word = original; continue }
            // The claimed share is not done, so the region (job, jobCount) cannot end under us.
            ThreadPool.runShare(job!.assumingMemoryBound(to: ((Int) -> Void).self),
                                share: share, shares: shares, count: jobCount)
            done.add(1, ordering: .releasing)
            word = claims.load(ordering: .acquiring)
        }
    }

    /// Splits `0..<total` into at most `threadCount` contiguous ranges whose boundaries are
    /// multiples of `minimumChunk` (only the last range may be shorter) and runs `body` on each
    /// non-empty one in parallel. Aligned boundaries keep per-row kernel grouping — and therefore
    /// the floating-point results — independent of the thread count.
    public func parallelRanges(total: Int, minimumChunk: Int, _ body: (Range<Int>) -> Void) {
        guard total > 0 else { return }
        let chunk = max(1, minimumChunk)
        let units = (total + chunk - 1) / chunk
        let parts = min(threadCount, units)
        if parts == 1 { body(0..<total); return }
        parallelFor(parts) { part in
            let lo = min(total, part * units / parts * chunk)
            let hi = min(total, (part + 1) * units / parts * chunk)
            if lo < hi { body(lo..<hi) }
        }
    }

    // MARK: - Workers

    /// Runs the indices of one share. Not inlined so that the retain/release of the closure
    /// context completes before the caller signals completion (withoutActuallyEscaping checks it).
    @inline(never)
    private static func runShare(_ bodyPointer: UnsafePointer<(Int) -> Void>, share: Int, shares: Int,
                                 count: Int) {
        let lo = share * count / shares
        let hi = (share + 1) * count / shares
        var i = lo
        while i < hi { bodyPointer.pointee(i); i += 1 }
    }

    private static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    private func workerLoop() {
        var seen = 0
        while true {
            // Spin briefly: the next region usually follows within microseconds.
            var current = generation.load(ordering: .acquiring)
            if current == seen {
                let deadline = ThreadPool.nanoseconds() &+ ThreadPool.spinNanoseconds
                var spins = 0
                while current == seen {
                    quill_spin_pause()
                    spins &+= 1
                    // Read the clock only every 256 polls (~20 ns each via the vDSO).
                    if spins & 255 == 0 && ThreadPool.nanoseconds() > deadline { break }
                    current = generation.load(ordering: .acquiring)
                }
            }
            if current == seen {
                wake.lock()
                sleepers.add(1, ordering: .sequentiallyConsistent)
                current = generation.load(ordering: .sequentiallyConsistent)
                while current == seen {
                    wake.wait()
                    current = generation.load(ordering: .sequentiallyConsistent)
                }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                wake.unlock()
            }
            seen = current
            if stopping.load(ordering: .acquiring) {
                census.finished.add(1, ordering: .releasing)
                return
            }
            runClaimedShares(generation: current)
        }
    }
}

/// Worker-thread counts of one `ThreadPool` (see `ThreadPool.census`).
public final class WorkerCensus: Sendable {
    let started = Atomic<Int>(0)
    let finished = Atomic<Int>(0)
    /// Worker threads created.
    public var startedWorkers: Int { started.load(ordering: .relaxed) }
    /// Worker threads that have left their loop (deinit joins them all).
    public var finishedWorkers: Int { finished.load(ordering: .acquiring) }
}
