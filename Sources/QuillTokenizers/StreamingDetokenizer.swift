/// Turns a stream of token bytes into text without ever splitting a UTF-8 character.
///
/// Byte-level BPE tokens often end in the middle of a multi-byte character (an emoji can span three
/// tokens). `append` returns only complete characters and holds back a trailing *valid prefix* of a
/// character until the rest arrives. Invalid bytes become U+FFFD, one per maximal invalid subpart
/// (the Unicode-recommended practice, which `String(decoding:as:)` follows), so the concatenated output
/// equals decoding all bytes at once, whatever the chunking.
public struct StreamingDetokenizer: Sendable {
    private var pending: [UInt8] = []

    /// Creates an empty detokenizer.
    public init() {}

    /// Adds bytes and returns the text that is now complete (possibly empty).
    public mutating func append(_ bytes: [UInt8]) -> String {
        pending.append(contentsOf: bytes)
        let keep = Self.incompleteTailLength(pending)
        let ready = pending.count - keep
        if ready == 0 { return "" }
        let text = String(decoding: pending[..<ready], as: UTF8.self)
        pending.removeFirst(ready)
        return text
    }

    /// Returns whatever is held back; an unfinished character becomes U+FFFD. Resets the state.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Length of the trailing bytes that form a valid but unfinished UTF-8 sequence (0...3).
    static func incompleteTailLength(_ b: [UInt8]) -> Int {
        // Only the last 3 bytes can belong to an unfinished character (sequences are at most 4 long).
        let n = b.count
        var back = 1
        while back <= min(3, n) {
            let lead = b[n - back]
            if lead & 0xC0 != 0x80 {  // found the start of the last sequence
                let need: Int
                switch lead {
                case 0xC2...0xDF: need = 2
                case 0xE0...0xEF: need = 3
                case 0xF0...0xF4: need = 4
                default: return 0  // ASCII or a byte that can never start a sequence
                }
                if back >= need { return 0 }  // complete (or over-long: decoded as invalid now)
                // The second byte has a narrower range for some leads (no overlongs/surrogates/> U+10FFFF).
                if back >= 2 {
                    let second = b[n - back + 1]
                    let ok: Bool
                    switch lead {
                    case 0xE0: ok = (0xA0...0xBF).contains(second)
                    case 0xED: ok = (0x80...0x9F).contains(second)
                    case 0xF0: ok = (0x90...0xBF).contains(second)
                    case 0xF4: ok = (0x80...0x8F).contains(second)
                    default: ok = true
                    }
                    if !ok { return 0 }
                }
                return back
            }
            back += 1
        }
        return 0  // only continuation bytes: invalid, emit now
    }
}
