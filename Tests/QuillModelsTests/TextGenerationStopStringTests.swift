import QuillGeneration
import QuillModels
import Testing

/// Streams a fake vocabulary (token id → bytes) through `TextStreamer`; returns the visible pieces
/// (one per token, then the tail) and the index of the token that hit a stop string.
func stream(_ vocabulary: [[UInt8]], stops: [String], hidden: Set<TokenID> = []) -> (pieces: [String], stoppedAt: Int?) {
    var streamer = TextStreamer(tokenBytes: { vocabulary[Int($0)] }, hidden: hidden, stopStrings: stops)
    var pieces: [String] = []
    for index in vocabulary.indices {
        let (text, stopped) = streamer.append(TokenID(index))
        pieces.append(text)
        if stopped { return (pieces, index) }
    }
    pieces.append(streamer.finish())
    return (pieces, nil)
}

func bytes(_ pieces: String...) -> [[UInt8]] { pieces.map { Array($0.utf8) } }

@Suite struct TextGenerationStopStringTests {
    @Test func aStopStringSpanningTwoTokensIsNeverShown() {
        let result = stream(bytes("Hello", " wor", "ld\n", "\nmore"), stops: ["\n\n"])
        #expect(result.stoppedAt == 3)
        #expect(result.pieces == ["Hello", " wor", "ld", ""])
    }

    @Test func aStopStringSpanningThreeTokens() {
        let result = stream(bytes("The", " end", " of", " it", " all"), stops: ["end of it"])
        #expect(result.stoppedAt == 3)
        #expect(result.pieces.joined() == "The ")
        // "e" of "The" could start "end of it", so it waits for the next token.
        #expect(result.pieces == ["Th", "e ", "", ""])
    }

    @Test func aFailedPartialMatchIsReleasedAtOnce() {
        // "\n" could start "\n\n": held, then released with the next token when "y" shows it is not.
        let result = stream(bytes("x\n", "y", "z"), stops: ["\n\n"])
        #expect(result.stoppedAt == nil)
        #expect(result.pieces == ["x", "\ny", "z", ""])
    }

    @Test func aPendingPrefixAtTheEndIsReleased() {
        let result = stream(bytes("one", " END"), stops: ["ENDING"])
        #expect(result.stoppedAt == nil)
        #expect(result.pieces == ["one", " ", "END"])
    }

    @Test func aStopStringAtTheFirstToken() {
        let result = stream(bytes("STOP", "after"), stops: ["STOP"])
        #expect(result.stoppedAt == 0)
        #expect(result.pieces == [""])
        // Also when the first token contains more than the stop string.
        let inside = stream(bytes("ab###cd"), stops: ["###"])
        #expect(inside.stoppedAt == 0 && inside.pieces == ["ab"])
    }

    @Test func overlappingCandidatesStopAtTheEarliestMatch() {
        // "abcd" is pending when "bc" completes inside it: the earliest complete match wins.
        let result = stream(bytes("ab", "c", "d"), stops: ["abcd", "bc"])
        #expect(result.stoppedAt == 1 && result.pieces.joined() == "a")
        // A stop string that overlaps itself: "aab" in "aaab" starts at the second "a".
        let selfOverlap = stream(bytes("a", "a", "a", "b"), stops: ["aab"])
        #expect(selfOverlap.stoppedAt == 3)
        #expect(selfOverlap.pieces == ["", "", "a", ""])
        // Two candidates pending at once, both failing.
        let both = stream(bytes("xa", "b", "!"), stops: ["abc", "b?"])
        #expect(both.stoppedAt == nil && both.pieces == ["x", "", "ab!", ""])
    }

    @Test func stopStringsWithMultibyteCharacters() {
        // "🙂" = F0 9F 99 82, split across tokens; the stop string "🙂!" follows it.
        let vocabulary: [[UInt8]] = [Array("ok ".utf8), [0xF0, 0x9F], [0x99, 0x82], Array("!".utf8)]
        let result = stream(vocabulary, stops: ["🙂!"])
        #expect(result.stoppedAt == 3 && result.pieces.joined() == "ok ")
        let noStop = stream(vocabulary, stops: ["🙂?"])
        #expect(noStop.pieces == ["ok ", "", "", "🙂!", ""])
    }

    @Test func emojiSplitOverTokensComesOutWhole() {
        // 👍🏽 = F0 9F 91 8D + F0 9F 8F BD, cut at awkward places.
        let vocabulary: [[UInt8]] = [[0xF0], [0x9F, 0x91], [0x8D, 0xF0, 0x9F], [0x8F, 0xBD], Array(" 日本".utf8.prefix(3)), Array(" 日本".utf8.dropFirst(3))]
        let result = stream(vocabulary, stops: [])
        #expect(result.pieces == ["", "", "👍", "🏽", " ", "日本", ""])
    }

    @Test func invalidBytesBecomeOneReplacementCharacter() {
        // A stray continuation byte, an invalid lead byte, and a sequence cut short by the end.
        let vocabulary: [[UInt8]] = [[0x41, 0x80], [0xFF], [0x42], [0xE6, 0x97]]
        let result = stream(vocabulary, stops: [])
        #expect(result.pieces == ["A\u{FFFD}", "\u{FFFD}", "B", "", "\u{FFFD}"])
    }

    @Test func hiddenTokensProduceNoText() {
        let result = stream(bytes("Hi", "<|im_end|>"), stops: [], hidden: [1])
        #expect(result.pieces == ["Hi", "", ""])
    }
}
