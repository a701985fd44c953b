import Foundation

/// Counters for `/metrics`, in Prometheus' text exposition format. Thread-safe.
final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [String: Int] = [:]          // "endpoint|status" → count
    private var promptTokens = 0
    private var cachedPromptTokens = 0
    private var generatedTokens = 0
    /// Upper bounds (seconds) of the time-to-first-token histogram buckets.
    static let ttftBuckets: [Double] = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    private var ttftCounts = [Int](repeating: 0, count: ttftBuckets.count)
    private var ttftSum = 0.0
    private var ttftCount = 0

    func countRequest(endpoint: String, status: Int) {
        lock.withLock { requests["\(endpoint)|\(status)", default: 0] += 1 }
    }

    func countTokens(prompt: Int, cached: Int, generated: Int) {
        lock.withLock {
            promptTokens += prompt
            cachedPromptTokens += cached
            generatedTokens += generated
        }
    }

    func observeTimeToFirstToken(_ seconds: Double) {
        lock.withLock {
            for (i, bound) in Self.ttftBuckets.enumerated() where seconds <= bound { ttftCounts[i] += 1 }
            ttftSum += seconds
            ttftCount += 1
        }
    }

    func render(engine: EngineSnapshot?) -> String {
        lock.lock()
        defer { lock.unlock() }
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in samples { out += "\(name)\(s.labels) \(s.value)\n" }
        }
        metric("quill_requests_total", "counter", "HTTP requests answered, by endpoint and status.",
               requests.sorted { $0.key < $1.key }.map { key, count in
                   let parts = key.split(separator: "|")
                   return ("{endpoint=\"\(parts[0])\",status=\"\(parts[1])\"}", "\(count)")
               })
        metric("quill_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", [("", "\(promptTokens)")])
        metric("quill_prompt_tokens_cached_total", "counter", "Prompt tokens taken from the prefix cache.", [("", "\(cachedPromptTokens)")])
        metric("quill_generated_tokens_total", "counter", "Tokens generated.", [("", "\(generatedTokens)")])
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
        for (i, bound) in Self.ttftBuckets.enumerated() { buckets.append(("_bucket{le=\"\(bound)\"}", "\(ttftCounts[i])")) }
        buckets.append(("_bucket{le=\"+Inf\"}", "\(ttftCount)"))
        buckets.append(("_sum", String(ttftSum)))
        buckets.append(("_count", "\(ttftCount)"))
        metric("quill_time_to_first_token_seconds", "histogram", "Time from a request's arrival to its first token.", buckets)
        return out
    }
}
