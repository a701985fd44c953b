import FoundationEssentials
import QuillGeneration
import QuillKernels
import QuillModels

/// What the engine reports to the request that submitted a job.
enum EngineEvent: Sendable {
    /// The job got its KV memory and its prompt is running; `cachedTokens` came from the prefix cache.
    case admitted(cachedTokens: Int)
    /// The prompt has run: `tokens` of it came from the prefix cache in the end (those found at
    /// admission plus chunks that requests running beside it computed meanwhile).
    case promptCached(tokens: Int)
    /// A new token of choice `choice`.
    case token(choice: Int, token: TokenID, logprobs: TokenLogprobs?, finished: GenerationStatistics.StopReason?)
    /// The job failed; no more events follow.
    case failed(APIError)
}

/// One request's generation work: a prompt and its choices.
struct EngineJob: Sendable {
    var prompt: [TokenID]
    var options: GenerationOptions
    /// One entry per choice.
    var sampling: [SamplingOptions]
    var logprobs: Int?
}

/// Figures for `/metrics`, updated after every step.
struct EngineSnapshot: Sendable {
    var waitingJobs = 0
    var runningSequences = 0
    var kvBlocksInUse = 0
    var kvBlocksTotal = 0
    var kvBlocksCached = 0
    var kvBlocksResident = 0
    var kvWindowedBlocksResident = 0
    var steps = 0
    var preemptions = 0
}

/// Runs every request of the server through one `BatchGenerator` on a thread of its own.
///
/// HTTP handlers never touch the model: they hand jobs in and read events out, under a lock held
/// only to move them. The engine thread loops: take new jobs and cancellations, admit waiting jobs
/// whose KV memory is free (first come, first served), run one step (every running sequence's next
/// token plus prompt chunks of admitted jobs within the token budget), deliver the tokens. It
/// sleeps when there is nothing to do. Compute happens on this thread and the context's worker
/// threads only, so the server's event loop and the Swift tasks answering requests never compete
/// with a spinning compute thread for long.
///
/// Jobs are admitted first come, first served while fewer than `maxRunning` sequences run; the
/// generator then starts a prompt only when the KV pool can hold it, and preempts (and later
/// recomputes) the newest running sequences if the pool cannot hold every running sequence's next
/// position, so memory never runs out mid-stream.
final class InferenceEngine: @unchecked Sendable {
    typealias JobID = Int

    let model: TextModel
    /// The most positions one sequence may hold.
    let sequenceLimit: Int
    let maxQueue: Int
    let maxRunning: Int

    // Engine thread only.
    private let context: DecoderContext
    private let generator: BatchGenerator
    private var running: [JobID: RunningJob] = [:]
    private var owner: [BatchGenerator.RequestID: (job: JobID, choice: Int)] = [:]

    // Shared, under `condition`.
    private let condition = ConditionLock()
    private var waiting: [(id: JobID, job: EngineJob, continuation: AsyncStream<EngineEvent>.Continuation)] = []
    private var cancellations: [(job: JobID, choice: Int?)] = []
    private var nextJob = 0
    private var stopping = false
    private var stopped = false
    private var latest = EngineSnapshot()

    private struct RunningJob {
        var requests: [BatchGenerator.RequestID]
        var open: Int
        let continuation: AsyncStream<EngineEvent>.Continuation
    }

    /// - Parameters:
    ///   - contextTokens: KV positions shared by all sequences.
    ///   - maxRunning: the most sequences decoding at once.
    ///   - maxQueue: the most jobs waiting for admission; more are refused (429).
    init(model: TextModel, contextTokens: Int, threads: Int, maxRunning: Int, maxQueue: Int, promptChunk: Int,
         prefixCaching: Bool) throws {
        self.model = model
        context = try model.model.makeContext(kvTokens: contextTokens, threads: threads)
        context.kv.prefixCaching = prefixCaching
        generator = BatchGenerator(context: context, promptChunk: promptChunk, tokenBudget: promptChunk)
        sequenceLimit = min(contextTokens, model.model.trainedContextLength)
        self.maxQueue = maxQueue
        self.maxRunning = maxRunning
        latest.kvBlocksTotal = context.kv.capacityBlocks
    }

    var blockTokens: Int { context.kv.blockTokens }

    func start() {
        DetachedThread.start(name: "quill-engine", stackSize: 8 << 20) { [self] in loop() }
    }

    /// Stops taking steps once the running jobs are done or cancelled; returns when the thread has ended.
    func stop() {
        condition.lock()
        stopping = true
        for entry in waiting { entry.continuation.yield(.failed(.server("The server is shutting down."))); entry.continuation.finish() }
        waiting.removeAll()
        condition.broadcast()
        while !stopped { condition.wait() }
        condition.unlock()
    }

    var snapshot: EngineSnapshot {
        condition.lock()
        defer { condition.unlock() }
        return latest
    }

    /// Queues a job. Throws 429 when the queue is full.
    func submit(_ job: EngineJob) throws(APIError) -> (id: JobID, events: AsyncStream<EngineEvent>) {
        guard job.sampling.count <= maxRunning else {
            throw .invalid("'n' is \(job.sampling.count) but this server runs at most \(maxRunning) sequences at once (--parallel).", param: "n")
        }
        let (events, continuation) = AsyncStream.makeStream(of: EngineEvent.self)
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { throw .server("The server is shutting down.") }
        guard waiting.count < maxQueue else { throw .overloaded(retryAfterSeconds: 1) }
        let id = nextJob
        nextJob += 1
        waiting.append((id, job, continuation))
        latest.waitingJobs = waiting.count
        condition.signal()
        return (id, events)
    }

    /// Stops a job (all its choices, or one), freeing its KV blocks at the next step.
    func cancel(_ job: JobID, choice: Int? = nil) {
        condition.lock()
        cancellations.append((job, choice))
        condition.signal()
        condition.unlock()
    }

    // MARK: The engine thread

    private func loop() {
        while true {
            condition.lock()
            while !stopping && cancellations.isEmpty && running.isEmpty && waiting.isEmpty { condition.wait() }
            if stopping && running.isEmpty {
                stopped = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let cancelled = cancellations
            cancellations.removeAll()
            condition.unlock()

            for (job, choice) in cancelled { cancel(job: job, choice: choice) }
            admit()
            if generator.activeRequests > 0 {
                do {
                    deliver(try generator.step())
                } catch {
                    // Admission keeps the KV pool from overflowing; anything else fails the running jobs.
                    for job in Array(running.keys) { finish(job, error: .server("Generation failed: \(error)")) }
                }
            }
            publish()
        }
    }

    /// Moves waiting jobs into the generator, first come first served, while their KV memory and
    /// the running-sequence limit allow.
    private func admit() {
        condition.lock()
        defer { condition.unlock() }
        while let entry = waiting.first {
            let sequences = running.values.reduce(0) { $0 + $1.open }
            guard sequences + entry.job.sampling.count <= maxRunning else { return }
            waiting.removeFirst()
            do {
                let submission = try generator.submit(prompt: entry.job.prompt, options: entry.job.options,
                                                      sampling: entry.job.sampling, contextSize: sequenceLimit,
                                                      logprobs: entry.job.logprobs)
                running[entry.id] = RunningJob(requests: submission.requests, open: submission.requests.count,
                                               continuation: entry.continuation)
                for (choice, request) in submission.requests.enumerated() { owner[request] = (entry.id, choice) }
                entry.continuation.yield(.admitted(cachedTokens: submission.cachedTokens))
            } catch {
                entry.continuation.yield(.failed(.invalid("\(error)", param: "prompt")))
                entry.continuation.finish()
            }
        }
    }

    private func deliver(_ events: [BatchGenerator.Event]) {
        for event in events {
            guard let (job, choice) = owner[event.request], let state = running[job] else { continue }
            if choice == 0, let cached = event.cachedPromptTokens { state.continuation.yield(.promptCached(tokens: cached)) }
            state.continuation.yield(.token(choice: choice, token: event.token, logprobs: event.logprobs, finished: event.finished))
            if event.finished != nil { close(job, request: event.request) }
        }
    }

    private func cancel(job: JobID, choice: Int?) {
        guard let state = running[job] else {
            // Not admitted yet: drop it from the queue.
            condition.lock()
            if choice == nil, let i = waiting.firstIndex(where: { $0.id == job }) {
                waiting[i].continuation.finish()
                waiting.remove(at: i)
            }
            condition.unlock()
            return
        }
        let requests = choice.map { [state.requests[$0]] } ?? state.requests
        for request in requests where owner[request] != nil {
            generator.cancel(request)
            close(job, request: request)
        }
    }

    /// One choice of `job` ended; the job ends with its last choice.
    private func close(_ job: JobID, request: BatchGenerator.RequestID) {
        guard owner.removeValue(forKey: request) != nil else { return }
        running[job]!.open -= 1
        if running[job]!.open == 0 { finish(job, error: nil) }
    }

    private func finish(_ job: JobID, error: APIError?) {
        guard let state = running.removeValue(forKey: job) else { return }
        for request in state.requests where owner.removeValue(forKey: request) != nil { generator.cancel(request) }
        if let error { state.continuation.yield(.failed(error)) }
        state.continuation.finish()
    }

    private func publish() {
        condition.lock()
        latest.waitingJobs = waiting.count
        latest.runningSequences = owner.count
        latest.kvBlocksInUse = context.kv.capacityBlocks - context.kv.freeBlocks
        latest.kvBlocksCached = context.kv.cachedPrefixBlocks
        latest.kvBlocksResident = context.kv.residentBlocks
        latest.kvWindowedBlocksResident = context.kv.residentWindowedBlocks
        latest.steps += 1
        latest.preemptions = generator.preemptions
        condition.unlock()
    }
}
