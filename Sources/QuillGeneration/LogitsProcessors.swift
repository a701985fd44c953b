#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Changes the logits of the next token (and may drop candidates) before a sampler picks one.
///
/// `history` is every token the model has seen in this sequence: the prompt and the tokens generated
/// so far (llama.cpp feeds prompt tokens to its penalty window too).
public protocol LogitsProcessor: Sendable {
    func process(_ candidates: inout TokenCandidates, history: [TokenID])
}

/// Adds a bias to chosen tokens; a bias of −∞ forbids the token (it is removed from the candidates).
public struct LogitBias: LogitsProcessor {
    public var bias: [TokenID: Float]

    public init(_ bias: [TokenID: Float]) { self.bias = bias }

    public func process(_ candidates: inout TokenCandidates, history: [TokenID]) {
        guard !bias.isEmpty else { return }
        for i in candidates.ids.indices {
            if let b = bias[candidates.ids[i]] { candidates.logits[i] += b }
        }
        let allowed = candidates.logits.indices.filter { candidates.logits[$0] != -.infinity }
        // Forbidding every token would leave nothing to sample: keep the list rather than crash.
        if allowed.count < candidates.count && !allowed.isEmpty {
            candidates.keep(allowed, sorted: candidates.isSorted)
        }
    }
}

/// llama.cpp's penalties sampler over the last `lastN` tokens of the history:
/// the repetition penalty (CTRL paper; llama.cpp and Hugging Face agree) divides a positive logit of a
/// token seen in the window by `repeat` and multiplies a negative one, then OpenAI's frequency and
/// presence penalties subtract `count × frequency + (count > 0 ? presence : 0)`.
public struct RepetitionPenalty: LogitsProcessor {
    /// Window length; 0 disables the penalties, −1 means the whole history.
    public var lastN: Int
    public var repeatPenalty: Float
    public var frequencyPenalty: Float
    public var presencePenalty: Float

    public init(lastN: Int = 64, repeatPenalty: Float = 1, frequencyPenalty: Float = 0, presencePenalty: Float = 0) {
        self.lastN = lastN
        self.repeatPenalty = repeatPenalty
        self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty
    }

    public var isIdentity: Bool {
        lastN == 0 || (repeatPenalty == 1 && frequencyPenalty == 0 && presencePenalty == 0)
    }

    public func process(_ candidates: inout TokenCandidates, history: [TokenID]) {
        guard !isIdentity, !history.isEmpty else { return }
        let window = lastN < 0 ? history[...] : history.suffix(lastN)
        var counts: [TokenID: Int] = [:]
        for token in window { counts[token, default: 0] += 1 }
        func penalise(_ i: Int, _ count: Int) {
            var logit = candidates.logits[i]
            logit = logit <= 0 ? logit * repeatPenalty : logit / repeatPenalty
            logit -= Float(count) * frequencyPenalty + presencePenalty
            candidates.logits[i] = logit
        }
        if candidates.isWholeVocabulary {
            for (token, count) in counts where Int(token) < candidates.count { penalise(Int(token), count) }
        } else {
            for i in candidates.ids.indices {
                if let count = counts[candidates.ids[i]] { penalise(i, count) }
            }
        }
    }
}

/// Keeps the `k` largest logits (all when `k` ≤ 0), sorted.
public struct TopK: LogitsProcessor {
    public var k: Int
    public init(_ k: Int) { self.k = k }

    public func process(_ candidates: inout TokenCandidates, history: [TokenID]) {
        guard k > 0 else { return }
        guard k < candidates.count else { candidates.sort(); return }
        // A sorted buffer of the best k seen so far: one comparison for most of a 50k vocabulary,
        // instead of sorting all of it.
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        let logits = candidates.logits, ids = candidates.ids
        func before(_ a: Int, _ b: Int) -> Bool {
            logits[a] != logits[b] ? logits[a] > logits[b] : ids[a] < ids[b]
        }
        for i in logits.indices {
            if best.count == k, !before(i, best[k - 1]) { continue }
            var low = 0, high = best.count
            while low < high {
                let mid = (low + high) / 2
                if before(best[mid], i) { low = mid + 1 } else { high = mid }
            }
            best.insert(i, at: low)
            if best.count > k { best.removeLast() }
        }
        candidates.keep(best, sorted: true)
    }
}

/// Nucleus sampling: keeps the most likely tokens whose probabilities first reach `p` together
/// (at least one token). `p` ≥ 1 keeps everything.
public struct TopP: LogitsProcessor {
    public var p: Float
    public init(_ p: Float) { self.p = p }

    public func process(_ candidates: inout TokenCandidates, history: [TokenID]) {
        guard p < 1 else { return }
        candidates.sort()
        let probabilities = candidates.probabilities()
        var cumulative = 0.0
        for (i, probability) in probabilities.enumerated() {
            cumulative += probability
            if cumulative >= Double(p) {
                candidates.keep(Array(0 ... i), sorted: true)
                return
            }
        }
    }
}

/// Keeps the tokens whose probability is at least `p` times the most likely one's
/// (`logit ≥ max + ln p`, as llama.cpp computes it). `p` ≤ 0 keeps everything.
public struct MinP: LogitsProcessor {
    public var p: Float
    public init(_ p: Float) { self.p = p }

    public func process(_ candidates: inout TokenCandidates, history: [TokenID]) {
        guard p > 0, let top = candidates.logits.max() else { return }
        let threshold = top + log(p)
        let kept = candidates.logits.indices.filter { candidates.logits[$0] >= threshold }
        if kept.count < candidates.count { candidates.keep(kept, sorted: candidates.isSorted) }
    }
}

/// Locally typical sampling (Meister et al. 2022, llama.cpp's `typical`): orders tokens by how far
/// their surprisal −ln p is from the entropy and keeps the closest ones until their probabilities
/// exceed `p` together. `p` ≥ 1 keeps everything.
public struct TypicalP: LogitsProcessor {
    public var p: Float
    public init(_ p: Float) { self.p = p }

    public func process(_ candidates: inout TokenCandidates, history: [TokenID]) {
        guard p < 1 else { return }
        let probabilities = candidates.probabilities()
        var entropy = 0.0
        for q in probabilities where q > 0 { entropy -= q * log(q) }
        let distance = probabilities.map { abs(-log($0) - entropy) }
        let order = candidates.ids.indices.sorted {
            distance[$0] != distance[$1] ? distance[$0] < distance[$1] : $0 < $1
        }
        var cumulative = 0.0
        for (rank, i) in order.enumerated() {
            cumulative += probabilities[i]
            if cumulative > Double(p) {
                candidates.keep(Array(order[...rank]), sorted: false)
                return
            }
        }
    }
}

/// Divides the logits by the temperature. A temperature ≤ 0 keeps only the most likely token
/// (greedy decoding), as llama.cpp does.
public struct Temperature: LogitsProcessor {
    public var temperature: Float
    public init(_ temperature: Float) { self.temperature = temperature }

    public func process(_ candidates: inout TokenCandidates, history: [TokenID]) {
        guard temperature > 0 else {
            if candidates.count > 1 { candidates.keep([candidates.indexOfMaximum], sorted: true) }
            return
        }
        guard temperature != 1 else { return }
        for i in candidates.logits.indices { candidates.logits[i] /= temperature }
    }
}
