import QuillGeneration
import QuillTokenizers

/// Finds stop strings in streamed text, holding back only what could still become one.
///
/// Matching is on UTF-8 bytes of the decoded text (exact, no Unicode normalisation), so a stop string
/// may span any number of tokens. Text that ends in a prefix of a stop string is held; as soon as the
/// next piece shows the prefix is not a match, the held text is released. The stop string itself and
/// anything after it are never returned. Because UTF-8 is self-synchronising and the input arrives in
/// whole characters, every split point falls on a character boundary.
public struct StopStringMatcher: Sendable {
    private let stops: [[UInt8]]
    private var held: [UInt8] = []
    public private(set) var stopped = false

    /// - Parameter stopStrings: empty strings are ignored.
    public init(_ stopStrings: [String]) {
        stops = stopStrings.map { Array($0.utf8) }.filter { !$0.isEmpty }
    }

    /// Adds decoded text; returns the text that is now safe to show and whether a stop string was found
    /// (after which further input is ignored).
    public mutating func append(_ text: String) -> (text: String, stopped: Bool) {
        guard !stopped else { return ("", true) }
        guard !stops.isEmpty else { return (text, false) }
        held += text.utf8
        if let start = firstMatch() {
            stopped = true
            defer { held.removeAll() }
            return (String(decoding: held[..<start], as: UTF8.self), true)
        }
        let keep = longestPendingSuffix()
        let ready = held.count - keep
        defer { held.removeFirst(ready) }
        return (String(decoding: held[..<ready], as: UTF8.self), false)
    }

    /// Releases held text at the end of generation (an unfinished prefix is not a stop string).
    public mutating func finish() -> String {
        defer { held.removeAll() }
        return stopped ? "" : String(decoding: held, as: UTF8.self)
    }

    /// The earliest position where a stop string starts (the earliest wins when candidates overlap).
    private func firstMatch() -> Int? {
        var best: Int?
        for stop in stops where stop.count <= held.count {
            for start in 0 ... held.count - stop.count where best == nil || start < best! {
                if held[start ..< start + stop.count].elementsEqual(stop) {
                    best = start
                    break
                }
            }
        }
        return best
    }

    /// Length of the longest suffix of `held` that is a proper prefix of some stop string.
    private func longestPendingSuffix() -> Int {
        var longest = 0
        for stop in stops {
            var length = min(stop.count - 1, held.count)
            while length > longest {
                if held.suffix(length).elementsEqual(stop.prefix(length)) {
                    longest = length
                    break
                }
                length -= 1
            }
        }
        return longest
    }
}

/// Token ids in, displayable text out: the UTF-8-safe streaming detokenizer followed by stop strings.
public struct TextStreamer: Sendable {
    private let tokenBytes: @Sendable (TokenID) -> [UInt8]
    private let hidden: Set<TokenID>
    private var detokenizer = StreamingDetokenizer()
    private var matcher: StopStringMatcher

    /// - Parameters:
    ///   - tokenBytes: the bytes a token stands for.
    ///   - hidden: tokens that produce no text (the end-of-sequence token).
    public init(tokenBytes: @escaping @Sendable (TokenID) -> [UInt8], hidden: Set<TokenID> = [], stopStrings: [String] = []) {
        self.tokenBytes = tokenBytes
        self.hidden = hidden
        matcher = StopStringMatcher(stopStrings)
    }

    /// Adds one token; returns the text ready to show and whether a stop string has been reached.
    public mutating func append(_ token: TokenID) -> (text: String, stopped: Bool) {
        guard !hidden.contains(token) else { return ("", matcher.stopped) }
        return matcher.append(detokenizer.append(tokenBytes(token)))
    }

    /// Text still held at the end: an unfinished character (as U+FFFD) and an unfinished stop-string prefix.
    public mutating func finish() -> String {
        guard !matcher.stopped else { return "" }
        let tail = matcher.append(detokenizer.finish())
        return tail.stopped ? tail.text : tail.text + matcher.finish()
    }
}
