/// How text (between special tokens) is cut into pieces before byte-level BPE runs on each piece.
public enum PreTokenizer: Sendable {
    /// GPT-2's regex `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    case gpt2
    /// SmolLM / SmolLM2 (GGUF pre-tokenizer "smollm"): Hugging Face `Digits(individual_digits=true)`
    /// first (every `\p{N}` character becomes its own piece), then the GPT-2 regex on each remaining piece.
    case smollm
    /// Llama 3's regex `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` (case folding for the contractions as Oniguruma does: ASCII letters and U+017F ſ).
    case llama3
    /// Qwen2 / Qwen2.5 (GGUF pre-tokenizer "qwen2"): Llama 3's regex with `\p{N}` in place of
    /// `\p{N}{1,3}`, so every digit is a piece of its own.
    case qwen2
}

/// Hand-written equivalent of the pre-tokenizer regexes, scanning UTF-8 bytes directly.
///
/// Each `nextEnd` call returns the end of the leftmost match starting at `pos`, reproducing the
/// regex engine's alternation order and backtracking (notably `\s+(?!\S)`, which gives back the last
/// whitespace character of a run followed by a non-space so that it can prefix the next word).
/// The input is valid UTF-8 because it comes from a Swift `String`.
struct PreTokenScanner {
    let base: UnsafePointer<UInt8>
    let count: Int
    let mode: PreTokenizer

    @inline(__always)
    func decode(_ i: Int) -> (scalar: UInt32, length: Int) {
        let b0 = UInt32(base[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(base[i + 1] & 0x3F), 2) }
        if b0 < 0xF0 {
            return ((b0 & 0x0F) << 12 | UInt32(base[i + 1] & 0x3F) << 6 | UInt32(base[i + 2] & 0x3F), 3)
        }
        return ((b0 & 0x07) << 18 | UInt32(base[i + 1] & 0x3F) << 12
                | UInt32(base[i + 2] & 0x3F) << 6 | UInt32(base[i + 3] & 0x3F), 4)
    }

    @inline(__always)
    func classAt(_ i: Int) -> (cls: CharClass, length: Int) {
        let (s, l) = decode(i)
        return (CharClassifier.classify(s), l)
    }

    /// End of the maximal run of `cls` characters starting at `i`.
    @inline(__always)
    func runEnd(_ i: Int, _ cls: CharClass) -> Int {
        var j = i
        while j < count {
            let (c, l) = classAt(j)
            if c != cls { break }
            j += l
        }
        return j
    }

    /// End of the piece that starts at `i` (`i < count`).
    @inline(__always)
    func nextEnd(_ i: Int) -> Int {
        switch mode {
        case .gpt2: return gpt2End(i, digitsSplit: false)
        case .smollm: return gpt2End(i, digitsSplit: true)
        case .llama3: return llama3End(i, digitsPerPiece: 3)
        case .qwen2: return llama3End(i, digitsPerPiece: 1)
        }
    }

    /// `'re` style contraction at `i`; returns its end or -1. `foldCase` accepts upper-case letters.
    @inline(__always)
    func contractionEnd(_ i: Int, foldCase: Bool) -> Int {
        guard base[i] == 0x27, i + 1 < count else { return -1 }
        let fold: UInt8 = foldCase ? 0x20 : 0
        let b1 = base[i + 1] | fold
        // Oniguruma's (?i) also folds U+017F LATIN SMALL LETTER LONG S (C5 BF) to "s".
        if foldCase, i + 2 < count, base[i + 1] == 0xC5, base[i + 2] == 0xBF { return i + 3 }
        switch b1 {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"):
            return i + 2
        case UInt8(ascii: "r"), UInt8(ascii: "v"):
            return i + 2 < count && base[i + 2] | fold == UInt8(ascii: "e") ? i + 3 : -1
        case UInt8(ascii: "l"):
            return i + 2 < count && base[i + 2] | fold == UInt8(ascii: "l") ? i + 3 : -1
        default:
            return -1
        }
    }

    /// GPT-2 regex. With `digitsSplit`, every number character is a piece of its own and acts as the
    /// end of the text for the regex (HF applies the regex to each piece of the Digits split separately).
    func gpt2End(_ i: Int, digitsSplit: Bool) -> Int {
        // Upper-case contraction letters are deliberately not matched (GPT-2's regex is case-sensitive).
        let ce = contractionEnd(i, foldCase: false)
        if ce >= 0 { return ce }
        let (cls, len) = classAt(i)
        switch cls {
        case .letter: return runEnd(i + len, .letter)
        case .number: return digitsSplit ? i + len : runEnd(i + len, .number)
        case .other: return runEnd(i + len, .other)
        case .space:
            if base[i] == 0x20, i + 1 < count {
                let (c2, l2) = classAt(i + 1)
                if c2 == .letter || c2 == .other || (c2 == .number && !digitsSplit) {
                    return runEnd(i + 1 + l2, c2)
                }
            }
            return whitespaceEnd(i, len, numberEndsText: digitsSplit)
        }
    }

    /// `\s+(?!\S)|\s+` at a whitespace character `i` of length `len`.
    @inline(__always)
    func whitespaceEnd(_ i: Int, _ len: Int, numberEndsText: Bool) -> Int {
        var j = i + len
        var lastStart = i
        while j < count {
            let (c, l) = classAt(j)
            if c != .space {
                if numberEndsText && c == .number { return j }
                // Followed by a non-space: give back the last whitespace character if that
                // leaves at least one (the lookahead then sees whitespace); else `\s+` takes it.
                return lastStart > i ? lastStart : j
            }
            lastStart = j
            j += l
        }
        return j
    }

    /// Llama 3's regex; `digitsPerPiece` is the `n` of its `\p{N}{1,n}` (Qwen2: 1).
    func llama3End(_ i: Int, digitsPerPiece: Int) -> Int {
        let ce = contractionEnd(i, foldCase: true)
        if ce >= 0 { return ce }
        let (cls, len) = classAt(i)
        if cls == .letter { return runEnd(i + len, .letter) }
        let b = base[i]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if cls != .number, b != 0x0D, b != 0x0A, i + len < count {
            let (c2, l2) = classAt(i + len)
            if c2 == .letter { return runEnd(i + len + l2, .letter) }
        }
        if cls == .number {  // \p{N}{1,digitsPerPiece}
            var j = i + len
            for _ in 0..<(digitsPerPiece - 1) where j < count {
                let (c, l) = classAt(j)
                if c != .number { break }
                j += l
            }
            return j
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        var otherStart = -1
        if cls == .other {
            otherStart = i + len
        } else if b == 0x20, i + 1 < count {
            let (c2, l2) = classAt(i + 1)
            if c2 == .other { otherStart = i + 1 + l2 }
        }
        if otherStart >= 0 {
            var j = runEnd(otherStart, .other)
            while j < count, base[j] == 0x0D || base[j] == 0x0A { j += 1 }
            return j
        }
        // \s*[\r\n]+ : the longest match ends just after the last CR/LF of the whitespace run.
        var j = i
        var lastNewline = -1
        while j < count {
            let (c, l) = classAt(j)
            if c != .space { break }
            if base[j] == 0x0D || base[j] == 0x0A { lastNewline = j }
            j += l
        }
        if lastNewline >= 0 { return lastNewline + 1 }
        return whitespaceEnd(i, len, numberEndsText: false)
    }
}
