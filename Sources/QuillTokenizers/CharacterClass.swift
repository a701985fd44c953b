/// The four character classes the GPT-2 family of pre-tokenizer regexes distinguishes.
///
/// `\p{L}` = general categories Lu Ll Lt Lm Lo; `\p{N}` = Nd Nl No (this is also Rust's
/// `char::is_numeric`, which Hugging Face's `Digits` pre-tokenizer uses); `\s` = the Unicode
/// White_Space property (what Oniguruma, used by HF `tokenizers`, matches for `\s`). Everything
/// else (punctuation, symbols, marks, controls, format characters, private use, ...) is "other".
enum CharClass: UInt8 {
    case letter = 0
    case number = 1
    case space = 2
    case other = 3
}

enum CharClassifier {
    /// Classes of all BMP scalars, computed once per process. A flat table keeps the scanner's
    /// hot loop free of calls into the Unicode property machinery (surrogates are "other").
    static let bmp: [CharClass] = {
        var table = [CharClass](repeating: .other, count: 0x10000)
        for v in 0..<0x10000 {
            guard let s = Unicode.Scalar(UInt32(v)) else { continue }
            table[v] = compute(s)
        }
        return table
    }()

    static func compute(_ s: Unicode.Scalar) -> CharClass {
        let p = s.properties
        if p.isWhitespace { return .space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    @inline(__always)
    static func classify(_ v: UInt32) -> CharClass {
        if v < 0x10000 {
            return bmp.withUnsafeBufferPointer { $0[Int(v)] }
        }
        // Astral characters are rare in text; ask the property tables directly.
        return compute(Unicode.Scalar(v) ?? "\u{FFFD}")
    }
}
