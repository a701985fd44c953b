import Foundation
import Testing
import Synchronization
import QuillKernels

@Suite struct ThreadPoolTests {
    @Test(arguments: [1, 2, 3, 5])
    func everyIndexExactlyOnce(threads: Int) {
        let pool = ThreadPool(threads: threads)
        #expect(pool.threadCount == threads)
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: 300)
        defer { hits.deallocate() }
        var g = SeededGenerator(seed: 7)
        for region in 0..<3000 {
            let count = region < 20 ? region : Int.random(in: 0...300, using: &g)
            hits.initialize(repeating: 0, count: 300)
            // Each index is written only by the thread that owns it, so plain stores are race-free.
            pool.parallelFor(count) { i in hits[i] += 1 }
            for i in 0..<300 where hits[i] != (i < count ? 1 : 0) {
                Issue.record("region \(region) count \(count): index \(i) ran \(hits[i]) times")
                return
            }
        }
    }

    @Test(arguments: [1, 2, 4])
    func rangesCoverAlignedChunks(threads: Int) {
        let pool = ThreadPool(threads: threads)
        for total in [0, 1, 15, 16, 17, 100, 577, 4096] {
            for chunk in [1, 16, 32] {
                let seen = RangeLog()
                pool.parallelRanges(total: total, minimumChunk: chunk) { range in seen.append(range) }
                let ranges = seen.ranges.sorted { $0.lowerBound < $1.lowerBound }
                #expect(ranges.count <= threads)
                var next = 0
                for r in ranges {
                    #expect(r.lowerBound == next && !r.isEmpty)
                    #expect(r.lowerBound % chunk == 0)
                    next = r.upperBound
                }
                #expect(next == total)
            }
        }
    }

    /// Several threads driving one pool at once, and regions nested inside shares: every index of
    /// every region still runs exactly once (a caller that finds the pool busy runs its own region).
    @Test func sharedByConcurrentCallersAndNestedRegions() {
        let pool = ThreadPool(threads: 2)
        let callers = 4, regions = 500
        let sums = CallerSums(callers: callers)
        DispatchQueue.concurrentPerform(iterations: callers) { caller in
            for region in 0..<regions {
                let count = 1 + (caller * 31 + region * 7) % 40
                pool.parallelFor(count) { i in
                    sums.add(i + 1, to: caller)
                    // A nested region (as a kernel called from inside another one's share would make).
                    if i == 0 { pool.parallelFor(3) { j in sums.add(j, to: caller) } }
                }
            }
        }
        for caller in 0..<callers {
            let expected = (0..<regions).reduce(0) { total, region in
                let count = 1 + (caller * 31 + region * 7) % 40
                return total + count * (count + 1) / 2 + 3
            }
            #expect(sums.total(of: caller) == expected, "caller \(caller)")
        }
    }

    @Test func workersSleepAndWakeAndPoolsTearDown() {
        // Deinit must join every worker: the census outlives its pool, and other suites' pools
        // (running beside this one) do not count towards it.
        for threads in [1, 2, 4] {
            var census: WorkerCensus?
            do {
                let pool = ThreadPool(threads: threads)
                census = pool.census
                pool.parallelFor(8) { _ in }
            }
            #expect(census?.startedWorkers == threads - 1)
            #expect(census?.finishedWorkers == threads - 1)
        }
        for _ in 0..<20 {
            let pool = ThreadPool(threads: 3)
            let total = Atomic<Int>(0)
            pool.parallelFor(10) { i in total.add(i, ordering: .relaxed) }
            #expect(total.load(ordering: .relaxed) == 45)
        }
        // After a pause longer than the spin window the workers are asleep and must be woken.
        let pool = ThreadPool(threads: 2)
        let total = Atomic<Int>(0)
        for round in 0..<5 {
            usleep(round == 0 ? 0 : 2_000)
            pool.parallelFor(4) { i in total.add(i, ordering: .relaxed) }
        }
        #expect(total.load(ordering: .relaxed) == 30)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The ranges a parallel call was given, behind an NSLock (a pthread mutex, which ThreadSanitizer
/// understands). Synchronization's `Mutex` hands a contended lock over inside a futex system call that
/// ThreadSanitizer cannot see, so it reported the appends under that lock as a race.
private final class RangeLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Range<Int>] = []

    func append(_ range: Range<Int>) { lock.withLock { stored.append(range) } }
    var ranges: [Range<Int>] { lock.withLock { stored } }
}

/// Each caller's running sum, behind an NSLock for the same reason as `RangeLog` (with `Mutex`, a
/// ThreadSanitizer run of this suite reported 23 false races on the sums).
private final class CallerSums: @unchecked Sendable {
    private let lock = NSLock()
    private var sums: [Int]

    init(callers: Int) { sums = [Int](repeating: 0, count: callers) }
    func add(_ value: Int, to caller: Int) { lock.withLock { sums[caller] += value } }
    func total(of caller: Int) -> Int { lock.withLock { sums[caller] } }
}
