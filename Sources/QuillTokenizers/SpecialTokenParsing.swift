/// Which special-token text in an input becomes the special token.
///
/// Tokens that a vocabulary marks user-defined (GGUF type 4: Gemma's newline and space runs and HTML tags,
/// Qwen's `<tool_call>`) are matched everywhere whatever this says, as llama.cpp and Hugging Face do; this
/// governs control tokens such as `<|im_start|>`, `<start_of_turn>` and `<bos>`.
public enum SpecialTokenParsing: Sendable, Equatable {
    /// Everywhere: a prompt written with the markers spelled out (Hugging Face's and llama.cpp's default).
    case everywhere
    /// Nowhere: `<|im_start|>` in the text is the characters `<`, `|`, … (llama.cpp's `parse_special=false`,
    /// transformers' `split_special_tokens=True`).
    case nowhere
    /// Only a token lying wholly inside one of these UTF-8 byte ranges of the text: the markup a chat
    /// template writes, so that what a user typed can never open a new turn.
    case within([Range<Int>])

    /// Whether a special token at UTF-8 offsets `start ..< end` may be read as the token.
    @inline(__always)
    func allows(_ start: Int, _ end: Int) -> Bool {
        switch self {
        case .everywhere: return true
        case .nowhere: return false
        case .within(let ranges):
            for r in ranges where r.lowerBound <= start && end <= r.upperBound { return true }
            return false
        }
    }
}

/// A tokenizer that can read special-token text either as the special token or as plain text.
public protocol SpecialTokenParsingTokenizer: Tokenizer {
    /// Encodes `text` without adding BOS / EOS; `specialTokens` says where control-token text is the token.
    func encode(_ text: String, specialTokens: SpecialTokenParsing) -> [Int32]
}

/// Finds special and user-defined tokens in raw text, leftmost first and longest at each position
/// (how Hugging Face `tokenizers` splits added tokens). llama.cpp instead takes the longest token first
/// over the whole text; the two differ only when a token's end overlaps another token's start, which
/// Gemma's and Qwen's markers do not do (runs of one repeated character, Gemma's space/newline/tab
/// tokens, split the same either way: 64 spaces are 31 + 31 + 2 in both).
///
/// A byte trie keeps it fast with thousands of tokens (Gemma: 6,414, most starting with `<`): a
/// position costs one table probe unless its byte starts some token.
struct SpecialTokenMatcher: Sendable {
    struct Match {
        let start: Int
        let end: Int
        let id: Int32
    }

    private let trie: BytesTrie
    /// Per trie value (index into the token list): the token id and whether it is always matched.
    private let ids: [Int32]
    private let alwaysMatched: [Bool]
    private let startsSomeToken: [Bool]
    let isEmpty: Bool

    /// - Parameter tokens: (text, id, alwaysMatched); empty texts are ignored, a duplicate text keeps its first id.
    init(_ tokens: [(text: String, id: Int32, alwaysMatched: Bool)]) {
        let kept = tokens.filter { !$0.text.isEmpty }
        trie = BytesTrie(kept.enumerated().map { (Array($1.text.utf8), Int32($0)) })
        ids = kept.map(\.id)
        alwaysMatched = kept.map(\.alwaysMatched)
        var starts = [Bool](repeating: false, count: 256)
        for t in kept { starts[Int(t.text.utf8.first!)] = true }
        startsSomeToken = starts
        isEmpty = kept.isEmpty
    }

    /// The longest allowed token starting at `i`, if any.
    @inline(__always)
    func match(_ s: UnsafeBufferPointer<UInt8>, at i: Int, _ parsing: SpecialTokenParsing) -> Match? {
        guard startsSomeToken[Int(s[i])] else { return nil }
        var node: Int32 = 0
        var best: Match? = nil
        var k = i
        while k < s.count, let c = trie.child(node, s[k]) {
            node = c
            k += 1
            let v = trie.values[Int(c)]
            if v >= 0 && (alwaysMatched[Int(v)] || parsing.allows(i, k)) { best = Match(start: i, end: k, id: ids[Int(v)]) }
        }
        return best
    }

    /// Calls `body` with each plain span (possibly empty) and each matched token, in order.
    func split(_ s: UnsafeBufferPointer<UInt8>, _ parsing: SpecialTokenParsing,
               _ body: (_ plain: UnsafeBufferPointer<UInt8>, _ token: Int32?) -> Void) {
        var start = 0
        var i = 0
        if !isEmpty {
            while i < s.count {
                if let m = match(s, at: i, parsing) {
                    body(UnsafeBufferPointer(rebasing: s[start..<i]), nil)
                    body(UnsafeBufferPointer(rebasing: s[i..<i]), m.id)
                    i = m.end
                    start = i
                } else {
                    i += 1
                }
            }
        }
        body(UnsafeBufferPointer(rebasing: s[start..<s.count]), nil)
    }
}
