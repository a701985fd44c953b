/// GPT-2's reversible byte <-> printable-Unicode mapping ("bytes_to_unicode").
///
/// Byte-level BPE vocabularies never contain raw bytes; every byte is spelled as one printable
/// character so that vocabulary files are valid text (space -> "Ġ" U+0120, "\n" -> "Ċ" U+010A).
enum ByteLevel {
    /// `byteToScalar[b]` is the character that byte `b` is written as in the vocabulary.
    static let byteToScalar: [Unicode.Scalar] = {
        // Printable Latin-1 bytes map to themselves; the rest are shifted to U+0100 upwards in
        // byte order, exactly as in GPT-2's encoder.py.
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// Inverse of `byteToScalar`, keyed by scalar value (all values are < 0x144).
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x200)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    /// Converts a vocabulary string to the bytes it stands for. Characters outside the byte
    /// alphabet (which only occur in hand-added tokens) are kept as their own UTF-8 encoding.
    static func bytes(ofTokenString token: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        appendBytes(ofTokenString: token, to: &out)
        return out
    }

    /// Appends the bytes a vocabulary string stands for to `out` (as `bytes(ofTokenString:)`).
    static func appendBytes(ofTokenString token: String, to out: inout [UInt8]) {
        for s in token.unicodeScalars {
            if s.value < 0x200, scalarToByte[Int(s.value)] >= 0 {
                out.append(UInt8(scalarToByte[Int(s.value)]))
            } else {
                out.append(contentsOf: String(s).utf8)
            }
        }
    }

    /// The vocabulary spelling of raw bytes (used to look up the token of a single byte).
    static func tokenString(ofBytes bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }
}
