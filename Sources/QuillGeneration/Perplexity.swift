#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Perplexity of a model on a token sequence, scored in independent windows.
public enum Perplexity {
    public struct Result: Sendable {
        /// exp(mean NLL) over every scored position (Hugging Face's usual procedure).
        public var perplexity: Double
        /// exp(mean NLL) over the second half of each window only, as `llama-perplexity` scores.
        public var secondHalfPerplexity: Double
        public var scoredTokens: Int
        public var secondHalfScoredTokens: Int
    }

    /// Splits `tokens` into non-overlapping windows of `window` tokens (a shorter tail is dropped);
    /// each window runs from an empty cache, in forward passes of at most `passTokens` tokens (the
    /// whole window when nil), so only one pass's logits are held at a time. The logits at window
    /// position i score token i + 1 with a log-softmax in Double; the second-half figure uses
    /// positions `window/2 ..< window − 1` only.
    public static func measure(model: any CausalLanguageModel, tokens: [TokenID], window: Int,
                               passTokens: Int? = nil) throws -> Result {
        precondition(window >= 2)
        let vocabulary = model.vocabularySize
        let pass = max(1, min(passTokens ?? window, window))
        var total = 0.0, count = 0, halfTotal = 0.0, halfCount = 0
        let cache = try model.makeCache(capacity: window)
        for start in stride(from: 0, to: tokens.count - window + 1, by: window) {
            cache.reset()
            let chunk = Array(tokens[start ..< start + window])
            for passStart in stride(from: 0, to: window - 1, by: pass) {
                let passEnd = min(passStart + pass, window)
                let logits = try model.forward(Array(chunk[passStart ..< passEnd]), cache: cache, logits: .all)
                for i in passStart ..< min(passEnd, window - 1) {
                    let row = logits[(i - passStart) * vocabulary ..< (i - passStart + 1) * vocabulary]
                    let nll = negativeLogLikelihood(row, target: Int(chunk[i + 1]))
                    total += nll
                    count += 1
                    if i >= window / 2 {
                        halfTotal += nll
                        halfCount += 1
                    }
                }
            }
        }
        return Result(perplexity: exp(total / Double(max(count, 1))),
                      secondHalfPerplexity: exp(halfTotal / Double(max(halfCount, 1))),
                      scoredTokens: count, secondHalfScoredTokens: halfCount)
    }

    /// −log softmax(logits)[target], in Double.
    public static func negativeLogLikelihood(_ logits: ArraySlice<Float>, target: Int) -> Double {
        let maximum = Double(logits.max()!)
        var sum = 0.0
        for v in logits { sum += exp(Double(v) - maximum) }
        return maximum + log(sum) - Double(logits[logits.startIndex + target])
    }
}
