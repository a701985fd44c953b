import Foundation
import Testing

/// `quill serve` over real HTTP: OpenAI's response shapes, the reference continuations, errors,
/// disconnects and shutdown.
@Suite(.serialized) struct ServeCommandLineTests {
    nonisolated(unsafe) static let greedyCases: [[String: Any]] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../QuillModelsTests/Fixtures/smollm2/greedy.jsonl").standardized
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }()

    /// The f32 path against transformers' greedy continuations, through /v1/completions with the
    /// reference prompt ids, whole and streamed.
    @Test func greedyCompletionsMatchTransformersWholeAndStreamed() throws {
        try #require(Self.greedyCases.count >= 4, "greedy.jsonl fixture missing")
        let server = try ServerProcess(["--precision", "f32", "-c", "2048", "-t", "2"])
        for c in Self.greedyCases.prefix(4) {
            let ids = (c["greedy_ids"] as! [Int])
            let stoppedAtEOS = c["stopped_at_eos"] as! Bool
            // The reference text ends with the EOS token's text, which the server does not show.
            var expected = c["greedy_text"] as! String
            if stoppedAtEOS, let r = expected.range(of: "<|im_end|>", options: .backwards) { expected.removeSubrange(r) }
            let body: [String: Any] = ["prompt": c["prompt_ids"]!, "max_tokens": ids.count, "temperature": 0]
            let whole = try server.request("POST", "/v1/completions", json: body)
            #expect(whole.status == 200, "\(whole.text)")
            let choice = (whole.json["choices"] as? [[String: Any]])?.first ?? [:]
            #expect(choice["text"] as? String == expected, "\(c["name"]!)")
            #expect(choice["finish_reason"] as? String == (stoppedAtEOS ? "stop" : "length"))
            let usage = whole.json["usage"] as? [String: Any] ?? [:]
            #expect(usage["completion_tokens"] as? Int == ids.count)
            #expect(usage["prompt_tokens"] as? Int == (c["prompt_ids"] as! [Int]).count)

            var streaming = body
            streaming["stream"] = true
            streaming["stream_options"] = ["include_usage": true]
            let streamed = try server.request("POST", "/v1/completions", json: streaming)
            #expect(streamed.headers["content-type"]?.hasPrefix("text/event-stream") == true)
            let events = streamed.events
            #expect(events.last == "[DONE]")
            let chunks = events.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let texts = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }
            #expect(texts.joined() == expected)
            #expect((chunks.last?["usage"] as? [String: Any])?["completion_tokens"] as? Int == ids.count)
        }
        #expect(server.stop() == 0)
    }

    @Test func chatStreamsOpenAIsChunksAndHonoursStopStrings() throws {
        let server = try ServerProcess(["-c", "2048", "-t", "2"])
        let messages = [["role": "user", "content": "Count from 1 to 20, separated by commas."]]
        let whole = try server.request("POST", "/v1/chat/completions",
                                       json: ["messages": messages, "temperature": 0, "max_tokens": 60])
        let text = (((whole.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String) ?? ""
        try #require(text.contains("5"), "the reply to stop in: \(text)")
        let streamed = try server.request("POST", "/v1/chat/completions",
                                          json: ["messages": messages, "temperature": 0, "max_tokens": 60, "stream": true, "stop": "5"])
        let chunks = streamed.events.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let choices = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first }
        #expect((choices.first?["delta"] as? [String: Any])?["role"] as? String == "assistant", "the first chunk carries the role")
        #expect(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
        let content = choices.compactMap { ($0["delta"] as? [String: Any])?["content"] as? String }.joined()
        #expect(content == String(text[..<text.range(of: "5")!.lowerBound]), "the text up to the stop string, without it")
        #expect(choices.last?["finish_reason"] as? String == "stop")
        #expect(streamed.events.last == "[DONE]")
        #expect(server.stop() == 0)
    }

    @Test func badRequestsGetOpenAIErrorObjects() throws {
        let server = try ServerProcess(["-c", "512", "-t", "1", "--api-key", "sekret"])
        let auth = ["Authorization": "Bearer sekret"]
        let unauthorised = try server.request("POST", "/v1/chat/completions", json: ["messages": []])
        #expect(unauthorised.status == 401)
        #expect((unauthorised.json["error"] as? [String: Any])?["code"] as? String == "invalid_api_key")
        #expect(try server.request("GET", "/health").status == 200, "health needs no key")
        let wrongType = try server.request("POST", "/v1/chat/completions", json: ["messages": [["role": "user", "content": "hi"]], "temperature": "hot"], headers: auth)
        #expect(wrongType.status == 400)
        let error = wrongType.json["error"] as? [String: Any] ?? [:]
        #expect(error["param"] as? String == "temperature" && error["type"] as? String == "invalid_request_error")
        let long = String(repeating: "hello ", count: 600)
        let tooLong = try server.request("POST", "/v1/completions", json: ["prompt": long], headers: auth)
        #expect(tooLong.status == 400 && (tooLong.json["error"] as? [String: Any])?["code"] as? String == "context_length_exceeded")
        #expect(try server.request("POST", "/v1/completions", body: Data("{".utf8), headers: auth).status == 400)
        #expect(try server.request("GET", "/v1/nothing", headers: auth).status == 404)
        let huge = Data(repeating: 0x20, count: 9 << 20)
        #expect(try server.request("POST", "/v1/completions", body: huge, headers: auth).status == 413)
        let models = try server.request("GET", "/v1/models", headers: auth)
        #expect(((models.json["data"] as? [[String: Any]])?.first?["id"] as? String)?.isEmpty == false)
        let tokens = try server.request("POST", "/tokenize", json: ["content": "Hello world"], headers: auth)
        let ids = tokens.json["tokens"] as? [Int] ?? []
        let back = try server.request("POST", "/detokenize", json: ["tokens": ids], headers: auth)
        #expect(!ids.isEmpty && back.json["content"] as? String == "Hello world")
        #expect(server.stop() == 0)
    }

    /// A client that disconnects mid-stream has its sequence removed and its blocks freed, and a
    /// full queue answers 429 with Retry-After.
    @Test func disconnectsFreeTheirBlocksAndAFullQueueIs429() throws {
        let server = try ServerProcess(["-c", "2048", "-t", "1", "--parallel", "1", "--queue", "1", "--no-prefix-cache"])
        let long: [String: Any] = ["prompt": "Once upon a time", "max_tokens": 1500, "ignore_eos": true, "stream": true]
        for _ in 0 ..< 5 {
            let head = try readFirstBytesThenDisconnect(port: server.port, path: "/v1/completions", json: long, bytes: 600)
            #expect(head.contains("data: "))
        }
        var running = -1, blocks = -1
        for _ in 0 ..< 300 {
            (running, blocks) = (try server.metric("quill_running_sequences"), try server.metric("quill_kv_blocks_in_use"))
            if running == 0 && blocks == 0 { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(running == 0 && blocks == 0, "every aborted stream's sequence and blocks are gone")

        // One running, one waiting: a third concurrent request cannot be queued.
        let group = DispatchGroup()
        final class Statuses: @unchecked Sendable { var values: [Int] = []; var retryAfter: String?; let lock = NSLock() }
        let statuses = Statuses()
        for _ in 0 ..< 3 {
            group.enter()
            Thread {
                let reply = try? server.request("POST", "/v1/completions", json: ["prompt": "Once upon a time", "max_tokens": 300, "ignore_eos": true])
                statuses.lock.withLock {
                    statuses.values.append(reply?.status ?? 0)
                    if reply?.status == 429 { statuses.retryAfter = reply?.headers["retry-after"] }
                }
                group.leave()
            }.start()
        }
        group.wait()
        #expect(statuses.values.contains(429) && statuses.values.contains(200), "\(statuses.values)")
        #expect(statuses.retryAfter != nil)
        #expect(server.stop() == 0)
    }

    /// A client that disconnects while waiting for a whole (non-streaming) response has its sequence
    /// removed and its blocks freed too, though nothing was written to it: it stops well before its
    /// 2,000 tokens (counted in forward passes, not time).
    @Test func aDisconnectedWholeResponseRequestIsCancelled() throws {
        let server = try ServerProcess(["-c", "2048", "-t", "1", "--parallel", "1", "--no-prefix-cache"])
        let long: [String: Any] = ["prompt": "Once upon a time", "max_tokens": 2000, "ignore_eos": true]
        let fd = try sendRawRequest(port: server.port, path: "/v1/completions", json: long)
        var running = -1, blocks = -1
        for _ in 0 ..< 300 {
            running = try server.metric("quill_running_sequences")
            if running == 1 { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(running == 1, "the request is running")
        close(fd)
        for _ in 0 ..< 100 {
            (running, blocks) = (try server.metric("quill_running_sequences"), try server.metric("quill_kv_blocks_in_use"))
            if running == 0 && blocks == 0 { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(running == 0 && blocks == 0, "the abandoned request's sequence and blocks are gone")
        let steps = try server.metric("quill_engine_steps_total")
        #expect(steps > 0 && steps < 2000, "it stopped before its 2,000 tokens: \(steps) forward passes")
        // The server still answers whole responses afterwards, and says it closes their connections.
        let reply = try server.request("POST", "/v1/completions", json: ["prompt": "Once upon a time", "max_tokens": 4])
        #expect(reply.status == 200)
        #expect(reply.headers["connection"]?.lowercased() == "close")
        #expect(server.stop() == 0)
    }

    @Test func sigtermLetsTheRunningRequestFinishThenExitsZero() throws {
        // The grace period is only a cap: the server exits when the stream ends. A long one keeps the
        // test bound by that event, not by the clock (under ThreadSanitizer the 64 tokens it once
        // asked for took more than the default 30 s, and the stream was cut).
        let server = try ServerProcess(["-c", "1024", "-t", "1", "--shutdown-grace", "3600"])
        final class Box: @unchecked Sendable { var reply: ServerProcess.Reply? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Thread {
            box.reply = try? server.request("POST", "/v1/completions", json: ["prompt": "Once upon a time", "max_tokens": 32, "ignore_eos": true, "stream": true])
            done.signal()
        }.start()
        // Wait until the request is running, then ask the server to stop.
        for _ in 0 ..< 600 {
            if (try? server.metric("quill_running_sequences")) == 1 { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let status = server.stop(signal: SIGTERM)
        done.wait()
        #expect(status == 0)
        #expect(box.reply?.events.last == "[DONE]", "the in-flight stream was completed")
    }

    /// A request still waiting for admission when SIGTERM comes is run too, not dropped: the HTTP
    /// side drains before the engine stops.
    @Test func sigtermAlsoRunsTheQueuedRequest() throws {
        let server = try ServerProcess(["-c", "1024", "-t", "1", "--parallel", "1", "--shutdown-grace", "3600"])
        final class Replies: @unchecked Sendable { var values: [ServerProcess.Reply?] = [nil, nil]; let lock = NSLock() }
        let replies = Replies(), group = DispatchGroup()
        for i in 0 ..< 2 {
            group.enter()
            Thread {
                let reply = try? server.request("POST", "/v1/completions",
                                                json: ["prompt": "Once upon a time", "max_tokens": 24, "ignore_eos": true, "stream": i == 1])
                replies.lock.withLock { replies.values[i] = reply }
                group.leave()
            }.start()
        }
        var (running, waiting) = (-1, -1)
        for _ in 0 ..< 600 {
            (running, waiting) = ((try? server.metric("quill_running_sequences")) ?? -1, (try? server.metric("quill_queue_depth")) ?? -1)
            if running == 1 && waiting == 1 { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(waiting == 1, "one request was waiting")
        #expect(try server.metric("quill_kv_windowed_blocks_resident") == 0, "SmolLM2 has no sliding-window layers")
        let status = server.stop(signal: SIGTERM)
        group.wait()
        #expect(status == 0)
        let whole = replies.values[0].flatMap { try? JSONSerialization.jsonObject(with: $0.body) as? [String: Any] }
        #expect((whole?["usage"] as? [String: Any])?["completion_tokens"] as? Int == 24, "the non-streaming request completed")
        let stream = replies.values[1]?.events ?? []
        #expect(stream.last == "[DONE]" && stream.filter { $0.hasPrefix("{") }.count >= 24, "the streaming request completed")
    }

    /// Gemma 3's local layers keep KV blocks of their own; `/metrics` reports them apart.
    @Test func windowedBlocksAreReported() throws {
        let server = try ServerProcess(["-m", "gemma3-270m", "-c", "1024", "-t", "1"])
        let reply = try server.request("POST", "/v1/completions", json: ["prompt": "Once upon a time", "max_tokens": 4])
        #expect(reply.status == 200)
        #expect(try server.metric("quill_kv_windowed_blocks_resident") > 0)
        #expect(server.stop() == 0)
    }
}
