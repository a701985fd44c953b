import QuillKernels

/// Settings of one encoder-decoder generation, with Hugging Face's meanings. Lengths count decoder
/// tokens after the decoder start token (HF `max_new_tokens`; `max_length` = 1 + maxNewTokens).
public struct Seq2SeqSettings: Sendable, Equatable {
    /// The first decoder input (`decoder_start_token_id`).
    public var decoderStartToken: TokenID
    /// Tokens that finish a hypothesis.
    public var endOfSequenceTokens: [TokenID]
    /// Fed to rows that have finished while others continue (`pad_token_id`).
    public var padToken: TokenID
    /// The only allowed first generated token (`forced_bos_token_id`, BART).
    public var forcedBOS: TokenID?
    /// The only allowed token when one more token would reach the length limit (`forced_eos_token_id`).
    public var forcedEOS: TokenID?
    /// Token sequences that must never be generated (`bad_words_ids`).
    public var badWords: [[TokenID]]
    /// No n-gram of this size occurs twice in a hypothesis (`no_repeat_ngram_size`; 0 = off).
    public var noRepeatNgramSize: Int
    /// End-of-sequence is banned until the decoder sequence has this many tokens, start token included
    /// (HF `min_length`).
    public var minLength: Int
    /// The most generated tokens (`max_new_tokens`).
    public var maxNewTokens: Int
    public var numBeams: Int
    public var lengthPenalty: Float
    /// `early_stopping=True`: a source is done once `numBeams` hypotheses have finished.
    public var earlyStopping: Bool
    /// Hypotheses returned per source (at most `numBeams`).
    public var numReturnSequences: Int

    public init(decoderStartToken: TokenID, endOfSequenceTokens: [TokenID], padToken: TokenID,
                forcedBOS: TokenID? = nil, forcedEOS: TokenID? = nil, badWords: [[TokenID]] = [],
                noRepeatNgramSize: Int = 0, minLength: Int = 0, maxNewTokens: Int = 256, numBeams: Int = 1,
                lengthPenalty: Float = 1, earlyStopping: Bool = false, numReturnSequences: Int = 1) {
        self.decoderStartToken = decoderStartToken
        self.endOfSequenceTokens = endOfSequenceTokens
        self.padToken = padToken
        self.forcedBOS = forcedBOS
        self.forcedEOS = forcedEOS
        self.badWords = badWords
        self.noRepeatNgramSize = noRepeatNgramSize
        self.minLength = minLength
        self.maxNewTokens = maxNewTokens
        self.numBeams = numBeams
        self.lengthPenalty = lengthPenalty
        self.earlyStopping = earlyStopping
        self.numReturnSequences = numReturnSequences
    }

    /// HF's `max_length`: the decoder sequence including the start token.
    public var maxLength: Int { 1 + maxNewTokens }
}

/// The logits processors that encoder-decoder generation needs, applied in Hugging Face's order
/// (no-repeat n-gram, bad words, min length, forced BOS, forced EOS) to one row's scores.
/// Banned tokens get −∞; a forced token gets 0 and every other token −∞ (no renormalisation),
/// as transformers does, so beam scores match.
public struct Seq2SeqProcessors: Sendable {
    public let settings: Seq2SeqSettings
    /// Single-token bad words, banned at every step.
    private let bannedAlways: [TokenID]
    /// Longer bad words: the last token is banned when the sequence ends with the rest.
    private let bannedAfterPrefix: [[TokenID]]

    public init(_ settings: Seq2SeqSettings) {
        self.settings = settings
        bannedAlways = settings.badWords.filter { $0.count == 1 }.map { $0[0] }
        bannedAfterPrefix = settings.badWords.filter { $0.count > 1 }
    }

    /// Processes `scores` (vocabulary entries) for the next token after `sequence` (the decoder
    /// sequence so far, start token included; HF's `cur_len` is its length).
    public func apply(_ scores: UnsafeMutablePointer<Float>, vocabulary: Int, sequence: [TokenID]) {
        let length = sequence.count
        func ban(_ token: TokenID) { if token >= 0 && Int(token) < vocabulary { scores[Int(token)] = -.infinity } }
        let n = settings.noRepeatNgramSize
        if n > 0 && length + 1 >= n {
            // Every earlier n-gram whose first n−1 tokens equal the last n−1 bans its last token.
            let prefix = sequence[(length - n + 1)...]
            if n == 1 {
                for token in sequence { ban(token) }
            } else {
                for start in 0..<(length - n + 1) where sequence[start..<(start + n - 1)].elementsEqual(prefix) {
                    ban(sequence[start + n - 1])
                }
            }
        }
        for token in bannedAlways { ban(token) }
        for words in bannedAfterPrefix where sequence.count >= words.count - 1
            && sequence.suffix(words.count - 1).elementsEqual(words.dropLast()) {
            ban(words[words.count - 1])
        }
        if length < settings.minLength { for eos in settings.endOfSequenceTokens { ban(eos) } }
        if let bos = settings.forcedBOS, length == 1 { force(bos, scores, vocabulary) }
        if let eos = settings.forcedEOS, length == settings.maxLength - 1 { force(eos, scores, vocabulary) }
    }

    private func force(_ token: TokenID, _ scores: UnsafeMutablePointer<Float>, _ vocabulary: Int) {
        guard token >= 0 && Int(token) < vocabulary else { return }
        scores.update(repeating: -.infinity, count: vocabulary)
        scores[Int(token)] = 0
    }
}

/// `x − log Σ exp(x)` in place, in Float as torch's `log_softmax` on fp32 logits.
public func logSoftmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    var maximum = -Float.infinity
    for i in 0..<count { maximum = max(maximum, x[i]) }
    var sum: Float = 0
    for i in 0..<count { sum += expf(x[i] - maximum) }
    let shift = maximum + logf(sum)
    for i in 0..<count { x[i] -= shift }
}

/// `x − log Σ exp(x)` in place with 16-lane exponentials (`exp16`): what the searches run over every
/// row of every step (Whisper's 51,865 or Marian's 58,101 logits × beams × sources), where the scalar
/// `expf` loop of `logSoftmaxInPlace` cost as much as a large part of the forward pass.
func logSoftmaxVectorised(_ x: UnsafeMutablePointer<Float>, count: Int) {
    let raw = UnsafeRawPointer(x)
    let maximum = largestValue(x, count: count)
    let m = SIMD16<Float>(repeating: maximum)
    var sums = SIMD16<Float>(repeating: 0)
    var i = 0
    while i + 16 <= count {
        sums += exp16(raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self) - m)
        i += 16
    }
    var sum = horizontalSum(sums)
    while i < count { sum += expf(x[i] - maximum); i += 1 }
    let shift = maximum + logf(sum)
    for j in 0..<count { x[j] -= shift }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
