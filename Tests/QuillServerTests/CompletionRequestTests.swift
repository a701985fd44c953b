import Foundation
@testable import QuillServer
import Testing

/// Request bodies as OpenAI's clients send them: accepted fields, defaults, and a 400 naming the
/// field for every wrong type or value.
@Suite struct CompletionRequestTests {
    func chat(_ json: String) throws(APIError) -> CompletionRequest {
        try CompletionRequest(body: Data(json.utf8), kind: .chat)
    }

    func completion(_ json: String) throws(APIError) -> CompletionRequest {
        try CompletionRequest(body: Data(json.utf8), kind: .completion)
    }

    /// The error a body gets, or nil if it is accepted.
    func error(_ json: String, kind: CompletionRequest.Kind = .chat) -> APIError? {
        do { _ = try CompletionRequest(body: Data(json.utf8), kind: kind); return nil } catch { return error }
    }

    @Test func aChatRequestWithEveryFieldIsRead() throws {
        let r = try chat("""
            {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
             "max_completion_tokens": 20, "temperature": 0.5, "top_p": 0.9, "top_k": 30, "min_p": 0.1, "seed": 42,
             "stop": ["\\n\\n", "END"], "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"42": -100},
             "n": 2, "logprobs": true, "top_logprobs": 3, "stream": true, "stream_options": {"include_usage": true},
             "user": "u1", "repeat_penalty": 1.1, "ignore_eos": true, "some_future_field": {"x": 1}}
            """)
        #expect(r.input == .messages([.system("Be brief."), .user("Hi there")]))
        #expect(r.maxTokens == 20 && r.choices == 2 && r.logprobs == 3 && r.stream && r.includeUsage && r.ignoreEOS)
        #expect(r.sampling.temperature == 0.5 && r.sampling.topP == 0.9 && r.sampling.topK == 30 && r.sampling.minP == 0.1)
        #expect(r.sampling.seed == 42 && r.seedGiven && r.stop == ["\n\n", "END"] && r.sampling.logitBias == [42: -100])
        #expect(r.sampling.presencePenalty == 0.5 && r.sampling.frequencyPenalty == -0.5 && r.sampling.repeatPenalty == 1.1)
        #expect(r.choiceSampling.map(\.seed) == [42, 43], "choices draw from different seeds")
    }

    @Test func defaultsAreOpenAIs() throws {
        let r = try chat(#"{"messages": [{"role": "user", "content": "Hi"}]}"#)
        #expect(r.sampling.temperature == 1 && r.sampling.topP == 1 && r.sampling.topK == 0 && r.sampling.minP == 0)
        #expect(r.maxTokens == nil && r.choices == 1 && r.logprobs == nil && !r.stream && r.stop.isEmpty)
        #expect(try completion(#"{"prompt": "Hi"}"#).maxTokens == 16, "legacy completions default to 16 tokens")
    }

    @Test func promptsAreTextOrTokenIds() throws {
        #expect(try completion(#"{"prompt": "Hello"}"#).input == .text("Hello"))
        #expect(try completion(#"{"prompt": ["Hello"]}"#).input == .text("Hello"))
        #expect(try completion(#"{"prompt": [1, 2, 3]}"#).input == .tokens([1, 2, 3]))
        #expect(try completion(#"{"prompt": [[1, 2]]}"#).input == .tokens([1, 2]))
        #expect(error(#"{"prompt": ["a", "b"]}"#, kind: .completion)?.param == "prompt")
        #expect(error(#"{"prompt": [1, -2]}"#, kind: .completion)?.param == "prompt")
    }

    @Test(arguments: [
        (#"{"messages": "hi"}"#, "messages"),
        (#"{"messages": []}"#, "messages"),
        (#"{}"#, "messages"),
        (#"{"messages": [{"role": "tool", "content": "x"}]}"#, "messages[0].role"),
        (#"{"messages": [{"role": "user", "content": 5}]}"#, "messages[0].content"),
        (#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, "messages[0].content[0]"),
        (#"{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#, "temperature"),
        (#"{"messages": [{"role": "user", "content": "x"}], "temperature": 3}"#, "temperature"),
        (#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#, "max_tokens"),
        (#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}"#, "max_tokens"),
        (#"{"messages": [{"role": "user", "content": "x"}], "n": 100}"#, "n"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}"#, "stream"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stream": 1}"#, "stream"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stop": [1]}"#, "stop"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}"#, "stop"),
        (#"{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"x": 1}}"#, "logit_bias"),
        (#"{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": 200}}"#, "logit_bias.5"),
        (#"{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}"#, "top_logprobs"),
        (#"{"messages": [{"role": "user", "content": "x"}], "seed": "1"}"#, "seed"),
        (#"{"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": "y"}}"#, "stream_options.include_usage"),
    ])
    func aWrongFieldIsA400NamingIt(json: String, param: String) throws {
        let e = try #require(error(json))
        #expect(e.status == 400 && e.type == "invalid_request_error" && e.param == param, "\(e.message)")
        #expect(!e.message.contains("\n"))
    }

    @Test(arguments: ["", "not json", "[1, 2]", "\"text\"", "{\"messages\": [", "\u{FF}"])
    func aBodyThatIsNotAJSONObjectIsA400(body: String) {
        #expect(error(body)?.status == 400)
    }

    @Test func errorsHaveOpenAIsShape() throws {
        let e = APIError.invalid("bad", param: "n")
        let object = try #require(try JSONSerialization.jsonObject(with: e.json) as? [String: Any])
        let inner = try #require(object["error"] as? [String: Any])
        #expect(inner["message"] as? String == "bad" && inner["type"] as? String == "invalid_request_error")
        #expect(inner["param"] as? String == "n" && inner["code"] is NSNull)
        #expect(APIError.overloaded(retryAfterSeconds: 1).retryAfterSeconds == 1)
    }
}
