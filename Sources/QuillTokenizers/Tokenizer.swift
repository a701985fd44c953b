/// Ids of the special tokens a model uses (nil when the vocabulary has none).
public struct SpecialTokenIds: Sendable, Equatable {
    public var bos: Int32?
    public var eos: Int32?
    public var pad: Int32?
    public var unk: Int32?
    /// Creates a set of special ids.
    public init(bos: Int32? = nil, eos: Int32? = nil, pad: Int32? = nil, unk: Int32? = nil) {
        self.bos = bos; self.eos = eos; self.pad = pad; self.unk = unk
    }
}

/// What every Quill tokenizer offers, whatever its algorithm (byte-level BPE, SentencePiece unigram
/// or BPE, and the Hugging Face wrappers around them). Implementations are immutable and thread-safe.
public protocol Tokenizer: AnyObject, Sendable {
    /// Number of token ids (the embedding table size).
    var vocabularySize: Int { get }
    /// BOS / EOS / PAD / UNK ids as the model defines them.
    var specialTokenIds: SpecialTokenIds { get }
    /// Encodes text to ids. Special-token text in the input (e.g. `</s>`) becomes that token, as
    /// Hugging Face does by default. `addSpecialTokens` adds what the model adds by default
    /// (Marian/T5: `</s>` at the end, BART: `<s>` … `</s>`, SmolLM2: nothing).
    func encode(_ text: String, addSpecialTokens: Bool) -> [Int32]
    /// Decodes ids to text; with `skipSpecialTokens` special tokens (and SentencePiece `<unk>`) are left out.
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String
    /// The bytes a token contributes to decoded text in mid-sentence (for streaming output).
    /// Empty for invalid ids.
    func tokenBytes(_ id: Int32) -> [UInt8]
    /// The vocabulary spelling of a token (`Ġthe`, `▁the`, `<0x0A>`, `</s>`), or nil if out of range.
    func tokenString(_ id: Int32) -> String?
    /// The id of a vocabulary spelling, or nil.
    func id(of token: String) -> Int32?
    /// Whether the id is a special (control / added special) token.
    func isSpecial(_ id: Int32) -> Bool
}

/// Leftmost-longest exact matcher for added/special token text, applied before normalisation
/// (how `tokenizers` and transformers split on added tokens).
struct AddedTokenMatcher: Sendable {
    struct Entry: Sendable {
        let bytes: [UInt8]
        let id: Int32
    }
    private let byFirstByte: [[Entry]]
    let isEmpty: Bool

    init(_ tokens: [(String, Int32)]) {
        var table = [[Entry]](repeating: [], count: 256)
        for (text, id) in tokens where !text.isEmpty {
            let b = Array(text.utf8)
            table[Int(b[0])].append(Entry(bytes: b, id: id))
        }
        for k in 0..<256 { table[k].sort { $0.bytes.count > $1.bytes.count } }
        byFirstByte = table
        isEmpty = tokens.isEmpty
    }

    /// Splits `text` into plain segments and matched tokens, in order.
    func split(_ s: UnsafeBufferPointer<UInt8>, _ body: (_ segment: UnsafeBufferPointer<UInt8>, _ token: Int32?) -> Void) {
        var start = 0
        var i = 0
        if !isEmpty {
            outer: while i < s.count {
                for e in byFirstByte[Int(s[i])] where e.bytes.count <= s.count - i {
                    var k = 1
                    while k < e.bytes.count && s[i + k] == e.bytes[k] { k += 1 }
                    if k == e.bytes.count {
                        body(UnsafeBufferPointer(rebasing: s[start..<i]), nil)
                        body(UnsafeBufferPointer(rebasing: s[i..<i]), e.id)
                        i += e.bytes.count
                        start = i
                        continue outer
                    }
                }
                i += 1
            }
        }
        body(UnsafeBufferPointer(rebasing: s[start..<s.count]), nil)
    }
}
