import Synchronization

/// Counters for `/metrics`, in Prometheus' text exposition format. Thread-safe.
final class ServerMetrics: Sendable {
    /// Upper bounds (seconds) of the time-to-first-token histogram buckets.
    static let ttftBuckets: [Double] = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    private struct Counters {
        var requests: [String: Int] = [:]          // "endpoint|status" → count
        var promptTokens = 0
        var cachedPromptTokens = 0
        var generatedTokens = 0
        var ttftCounts = [Int](repeating: 0, count: ServerMetrics.ttftBuckets.count)
        var ttftSum = 0.0
        var ttftCount = 0
    }
    private let counters = Mutex(Counters())

    func countRequest(endpoint: String, status: Int) {
        counters.withLock { $0.requests["\(endpoint)|\(status)", default: 0] += 1 }
    }

    func countTokens(prompt: Int, cached: Int, generated: Int) {
        counters.withLock {
            $0.promptTokens += prompt
            $0.cachedPromptTokens += cached
            $0.generatedTokens += generated
        }
    }

    func observeTimeToFirstToken(_ seconds: Double) {
        counters.withLock {
            for (i, bound) in Self.ttftBuckets.enumerated() where seconds <= bound { $0.ttftCounts[i] += 1 }
            $0.ttftSum += seconds
            $0.ttftCount += 1
        }
    }

    func render(engine: EngineSnapshot?) -> String {
        // One consistent copy, formatted outside the lock.
        let c = counters.withLock { $0 }
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in samples { out += "\(name)\(s.labels) \(s.value)\n" }
        }
        metric("quill_requests_total", "counter", "HTTP requests answered, by endpoint and status.",
               c.requests.sorted { $0.key < $1.key }.map { key, count in
                   let parts = key.split(separator: "|")
                   return ("{endpoint=\"\(parts[0])\",status=\"\(parts[1])\"}", "\(count)")
               })
        metric("quill_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", [("", "\(c.promptTokens)")])
        metric("quill_prompt_tokens_cached_total", "counter", "Prompt tokens taken from the prefix cache.", [("", "\(c.cachedPromptTokens)")])
        metric("quill_generated_tokens_total", "counter", "Tokens generated.", [("", "\(c.generatedTokens)")])
        if let engine {
            metric("quill_queue_depth", "gauge", "Requests waiting for admission.", [("", "\(engine.waitingJobs)")])
            metric("quill_running_sequences", "gauge", "Sequences being generated.", [("", "\(engine.runningSequences)")])
            metric("quill_kv_blocks_in_use", "gauge", "KV blocks held by sequences.", [("", "\(engine.kvBlocksInUse)")])
            metric("quill_kv_blocks_cached", "gauge", "KV blocks findable in the prefix cache.", [("", "\(engine.kvBlocksCached)")])
            metric("quill_kv_blocks_total", "gauge", "KV blocks in the budget.", [("", "\(engine.kvBlocksTotal)")])
            metric("quill_kv_blocks_resident", "gauge", "KV blocks written at least once (their memory is resident).",
                   [("", "\(engine.kvBlocksResident)")])
            metric("quill_kv_windowed_blocks_resident", "gauge",
                   "Sliding-window layers' KV blocks written at least once (0 without such layers).",
                   [("", "\(engine.kvWindowedBlocksResident)")])
            metric("quill_engine_steps_total", "counter", "Forward passes run.", [("", "\(engine.steps)")])
            metric("quill_preemptions_total", "counter", "Running sequences preempted for KV memory (recomputed later).",
                   [("", "\(engine.preemptions)")])
        }
        var buckets: [(String, String)] = []
        for (i, bound) in Self.ttftBuckets.enumerated() { buckets.append(("_bucket{le=\"\(bound)\"}", "\(c.ttftCounts[i])")) }
        buckets.append(("_bucket{le=\"+Inf\"}", "\(c.ttftCount)"))
        buckets.append(("_sum", String(c.ttftSum)))
        buckets.append(("_count", "\(c.ttftCount)"))
        metric("quill_time_to_first_token_seconds", "histogram", "Time from a request's arrival to its first token.", buckets)
        return out
    }
}
