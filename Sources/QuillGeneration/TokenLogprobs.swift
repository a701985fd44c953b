#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A token with its natural-log probability.
public struct TokenLogprob: Sendable, Equatable {
    public var token: TokenID
    public var logprob: Float

    public init(token: TokenID, logprob: Float) {
        self.token = token
        self.logprob = logprob
    }
}

/// The log-probability of a chosen token and the most likely alternatives at its position, from
/// the model's raw distribution (log-softmax of the logits before biases, penalties, filters and
/// temperature, as OpenAI and vLLM report them).
public struct TokenLogprobs: Sendable, Equatable {
    public var chosen: TokenLogprob
    /// The `alternatives` most likely tokens, most likely first (ties: smaller id first).
    public var top: [TokenLogprob]

    /// - Parameter alternatives: how many of the most likely tokens to list (0 for none).
    public init(logits: [Float], chosen token: TokenID, alternatives: Int) {
        // log-softmax: x − max − log Σ exp(x − max), the sum in Double.
        let maximum = logits.max() ?? 0
        var sum = 0.0
        for x in logits { sum += exp(Double(x - maximum)) }
        let logTotal = Float(log(sum)) + maximum
        chosen = TokenLogprob(token: token, logprob: logits[Int(token)] - logTotal)
        let k = min(max(alternatives, 0), logits.count)
        guard k > 0 else { top = []; return }
        // Partial selection: keep the k best seen so far, sorted, in a small array.
        var best: [(id: Int, value: Float)] = []
        best.reserveCapacity(k + 1)
        for (i, x) in logits.enumerated() where best.count < k || x > best[best.count - 1].value {
            let at = best.firstIndex { x > $0.value } ?? best.count
            best.insert((i, x), at: at)
            if best.count > k { best.removeLast() }
        }
        top = best.map { TokenLogprob(token: TokenID($0.id), logprob: $0.value - logTotal) }
    }
}
