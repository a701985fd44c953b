// Single-thread tokenizer benchmark: encode / decode throughput of Quill's byte-level BPE on English
// prose (the corpus fixtures repeated to ~4 MB) and the cost of loading a 262,144-piece SentencePiece
// vocabulary (synthetic: Gemma-3's real vocabulary is not available offline).
//
// and of the real Gemma 3 / Qwen2.5 GGUF vocabularies when they are fetched (`Weights/fetch NAME`).
//
// Usage: tokenizer-bench [--tokenizer PATH] [--corpus DIR] [--mb N] [--rounds N] [--no-synthetic] [--no-gguf] [--gguf-only]
// Prints human-readable lines and `RESULT key value` lines that run.sh turns into a table.
import Foundation
import QuillModels
import QuillTokenizers

func arg(_ name: String, _ fallback: String) -> String {
    let a = CommandLine.arguments
    if let i = a.firstIndex(of: name), i + 1 < a.count { return a[i + 1] }
    return fallback
}

let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let root = here.appendingPathComponent("../../../..").standardized
let fixtures = root.appendingPathComponent("Tests/QuillTokenizersTests/Fixtures")
let tokenizerPath = arg("--tokenizer", fixtures.appendingPathComponent("tokenizer.json").path)
let corpusDir = arg("--corpus", fixtures.appendingPathComponent("corpus").path)
let targetMB = Double(arg("--mb", "4"))!
let rounds = Int(arg("--rounds", "5"))!

/// Resident memory of this process in bytes (Linux /proc; 0 elsewhere).
func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let parts = s.split(separator: " ")
    return parts.count > 1 ? (Int(parts[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func result(_ key: String, _ value: Double) { print("RESULT \(key) \(value)") }

/// Builds the benchmark text exactly as hf_tokenizers.py does: the corpus files in name order,
/// joined, repeated until at least `targetMB` MB.
func corpusText() throws -> String {
    let files = try FileManager.default.contentsOfDirectory(atPath: corpusDir)
        .filter { $0.hasSuffix(".md") || $0.hasSuffix(".txt") }.sorted()
    var one = ""
    for f in files { one += try String(contentsOfFile: corpusDir + "/" + f, encoding: .utf8) }
    var text = one
    while Double(text.utf8.count) < targetMB * 1e6 { text += one }
    return text
}

// MARK: SmolLM2 byte-level BPE

let rss0 = residentBytes()
var t = now()
let tok = try BPETokenizer(tokenizerJSON: URL(fileURLWithPath: tokenizerPath))
let loadSeconds = now() - t
let loadBytes = residentBytes() - rss0
print(String(format: "load %@: %.0f ms, +%.1f MB resident, %d tokens", (tokenizerPath as NSString).lastPathComponent,
             loadSeconds * 1e3, Double(loadBytes) / 1e6, tok.vocabularySize))
result("quill_load_ms", loadSeconds * 1e3)
result("quill_load_mb", Double(loadBytes) / 1e6)

let text = try corpusText()
let megabytes = Double(text.utf8.count) / 1e6
print(String(format: "text: %.2f MB (%d bytes)", megabytes, text.utf8.count))
// Paragraph by paragraph (one encode call per "\n\n"-terminated chunk), as a server would see
// requests: per-call overhead and a cold piece cache each time. Same chunks as hf_tokenizers.py.
let chunks = text.components(separatedBy: "\n\n").map { $0 + "\n\n" }
// --gguf-only: just the GGUF vocabularies (for profiling them).
if !CommandLine.arguments.contains("--gguf-only") {

var ids: [Int32] = []
var bestEncode = Double.infinity
for _ in 0..<rounds {
    t = now()
    ids = tok.encode(text, parseSpecialTokens: true)
    bestEncode = min(bestEncode, now() - t)
}
// Same checksum as hf_tokenizers.py (FNV-1a over the ids) so both sides can be compared.
var hash: UInt64 = 0xcbf2_9ce4_8422_2325
for id in ids { hash = (hash ^ UInt64(UInt32(bitPattern: id))) &* 0x100_0000_01b3 }
print(String(format: "encode: %.1f MB/s, %.2f M tokens/s (%d tokens, best of %d, fnv %016llx)",
             megabytes / bestEncode, Double(ids.count) / bestEncode / 1e6, ids.count, rounds, hash))
result("quill_encode_mbs", megabytes / bestEncode)
result("quill_encode_mtoks", Double(ids.count) / bestEncode / 1e6)
result("quill_tokens", Double(ids.count))
print("RESULT quill_fnv \(String(hash, radix: 16))")

var bestChunked = Double.infinity
var chunkedTokens = 0
for _ in 0..<rounds {
    t = now()
    chunkedTokens = 0
    for c in chunks { chunkedTokens += tok.encode(c, parseSpecialTokens: true).count }
    bestChunked = min(bestChunked, now() - t)
}
print(String(format: "encode per paragraph (%d calls): %.1f MB/s, %.2f M tokens/s", chunks.count,
             megabytes / bestChunked, Double(chunkedTokens) / bestChunked / 1e6))
result("quill_chunked_mbs", megabytes / bestChunked)
result("quill_chunks", Double(chunks.count))

var bestDecode = Double.infinity
var decoded = ""
for _ in 0..<rounds {
    t = now()
    decoded = tok.decode(ids, skipSpecialTokens: false)
    bestDecode = min(bestDecode, now() - t)
}
precondition(decoded == text, "decode(encode(text)) != text")
print(String(format: "decode: %.1f MB/s, %.2f M tokens/s (to String)", megabytes / bestDecode, Double(ids.count) / bestDecode / 1e6))
result("quill_decode_mbs", megabytes / bestDecode)
result("quill_decode_mtoks", Double(ids.count) / bestDecode / 1e6)

// MARK: SentencePiece unigram (tiny-t5: nmt_nfkc charsmap, 1,000 pieces + 100 sentinels)

do {
    let t5 = try TokenizerLoader.load(directory: fixtures.appendingPathComponent("seq2seq/tiny-t5"))
    var best = Double.infinity
    var t5ids: [Int32] = []
    for _ in 0..<rounds {
        t = now()
        t5ids = t5.encode(text, addSpecialTokens: false)
        best = min(best, now() - t)
    }
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for id in t5ids { h = (h ^ UInt64(UInt32(bitPattern: id))) &* 0x100_0000_01b3 }
    print(String(format: "T5 unigram encode: %.1f MB/s, %.2f M tokens/s (%d tokens, fnv %016llx)",
                 megabytes / best, Double(t5ids.count) / best / 1e6, t5ids.count, h))
    result("quill_t5_encode_mbs", megabytes / best)
    result("quill_t5_tokens", Double(t5ids.count))
    print("RESULT quill_t5_fnv \(String(h, radix: 16))")
    var bestDecode = Double.infinity
    for _ in 0..<rounds {
        t = now()
        _ = t5.decode(t5ids, skipSpecialTokens: true)
        bestDecode = min(bestDecode, now() - t)
    }
    result("quill_t5_decode_mbs", megabytes / bestDecode)
}
}  // --gguf-only

// MARK: Real GGUF vocabularies (Gemma 3: 262,144-piece SentencePiece; Qwen2.5: 151,936-token byte-level BPE)

if !CommandLine.arguments.contains("--no-gguf") {
    for name in ["gemma3-270m", "qwen2.5-coder-0.5b"] {
        try ggufVocabulary(name: name, text: text, chunks: chunks)
    }
}

/// Load time (metadata parse, tokenizer build) and encode / decode throughput of the tokenizer Quill
/// builds from a fetched GGUF (`Weights/fetch NAME`), on the same text as the SmolLM2 figures above.
func ggufVocabulary(name: String, text: String, chunks: [String]) throws {
    let path = ModelLocator.path(of: ModelLocator.knownModel(named: name)!)
    guard FileManager.default.fileExists(atPath: path) else {
        print("\(name): not fetched (Weights/fetch \(name)); skipped")
        return
    }
    let key = name.hasPrefix("gemma") ? "gemma" : "qwen"
    var bestParse = Double.infinity, bestBuild = Double.infinity
    var loaded: (any SpecialTokenParsingTokenizer)? = nil
    for _ in 0..<rounds {
        let t0 = now()
        let file = try GGUFFile(path: path, tensorInfos: .skip)
        let t1 = now()
        loaded = try GGUFTokenizer.load(from: file)
        let t2 = now()
        bestParse = min(bestParse, t1 - t0)
        bestBuild = min(bestBuild, t2 - t1)
    }
    let tokenizer = loaded!
    print(String(format: "%@: load %.0f ms (GGUF metadata %.0f ms + tokenizer %.0f ms, best of %d), %d tokens",
                 name, (bestParse + bestBuild) * 1e3, bestParse * 1e3, bestBuild * 1e3, rounds, tokenizer.vocabularySize))
    result("\(key)_load_ms", (bestParse + bestBuild) * 1e3)
    result("\(key)_parse_ms", bestParse * 1e3)
    result("\(key)_build_ms", bestBuild * 1e3)
    let megabytes = Double(text.utf8.count) / 1e6
    var ids: [Int32] = []
    var best = Double.infinity
    for _ in 0..<rounds {
        let t0 = now()
        ids = tokenizer.encode(text, specialTokens: .everywhere)
        best = min(best, now() - t0)
    }
    var bestChunked = Double.infinity
    for _ in 0..<rounds {
        let t0 = now()
        for c in chunks { _ = tokenizer.encode(c, specialTokens: .everywhere) }
        bestChunked = min(bestChunked, now() - t0)
    }
    var bestDecode = Double.infinity
    var decoded = ""
    for _ in 0..<rounds {
        let t0 = now()
        decoded = tokenizer.decode(ids, skipSpecialTokens: false)
        bestDecode = min(bestDecode, now() - t0)
    }
    precondition(decoded == text, "\(name): decode(encode(text)) != text")
    print(String(format: "%@: encode %.1f MB/s (%d tokens), per paragraph %.1f MB/s, decode %.1f MB/s",
                 name, megabytes / best, ids.count, megabytes / bestChunked, megabytes / bestDecode))
    result("\(key)_encode_mbs", megabytes / best)
    result("\(key)_chunked_mbs", megabytes / bestChunked)
    result("\(key)_decode_mbs", megabytes / bestDecode)
    result("\(key)_tokens", Double(ids.count))
}

// MARK: 262k-piece SentencePiece vocabulary (synthetic, Gemma-3 sized)

if !CommandLine.arguments.contains("--no-synthetic") {
    try syntheticVocabulary(text: text)
}

/// Builds a 262,144-piece SentencePiece BPE model with byte fallback (Gemma-3's size and layout:
/// specials, 256 byte pieces, then pieces by descending score) from words of the corpus and
/// random multi-byte strings, serialises it to `.model` bytes and measures parsing + building.
func syntheticVocabulary(text: String) throws {
    let size = 262_144
    var rng = SystemRandomNumberGenerator()
    var seen = Set<String>()
    var pieces: [SentencePieceModelProto.Piece] = [.init("<pad>", score: 0, type: .control), .init("<eos>", score: 0, type: .control),
                                                   .init("<bos>", score: 0, type: .control), .init("<unk>", score: 0, type: .unknown)]
    pieces += (0..<256).map { .init(String(format: "<0x%02X>", $0), score: 0, type: .byte) }
    for p in pieces { seen.insert(p.piece) }
    func add(_ s: String) {
        guard pieces.count < size, !s.isEmpty, seen.insert(s).inserted else { return }
        pieces.append(.init(s, score: -Float(pieces.count), type: .normal))
    }
    // Every prefix of every word (with and without ▁) so that BPE merges can reach whole words.
    for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" }).prefix(400_000) {
        let w = String(word)
        var prefix = ""
        for c in w { prefix.append(c); add(prefix); add("\u{2581}" + prefix) }
        if pieces.count >= size / 2 { break }
    }
    let alphabet = Array("abcdefghijklmnopqrstuvwxyzäöüßéèàçñ日本語中文한국어кириллица")
    while pieces.count < size {
        add(String((0..<Int.random(in: 2...8, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }))
    }
    var proto = SentencePieceModelProto()
    proto.pieces = pieces
    proto.algorithm = .bpe
    proto.byteFallback = true
    proto.normalizer.name = "identity"
    proto.normalizer.addDummyPrefix = false
    proto.normalizer.removeExtraWhitespaces = false
    proto.unkId = 3; proto.bosId = 2; proto.eosId = 1; proto.padId = 0
    let bytes = proto.serialized()
    print(String(format: "synthetic SentencePiece model: %d pieces, %.1f MB serialised", pieces.count, Double(bytes.count) / 1e6))

    let before = residentBytes()
    let t0 = now()
    let parsed = try SentencePieceModelProto(bytes: bytes)
    let sp = try SentencePieceTokenizer(proto: parsed)
    let seconds = now() - t0
    let grown = residentBytes() - before
    print(String(format: "load 262k SentencePiece: %.0f ms, +%.1f MB resident", seconds * 1e3, Double(grown) / 1e6))
    result("sp262k_load_ms", seconds * 1e3)
    result("sp262k_load_mb", Double(grown) / 1e6)

    let sample = String(decoding: Array(text.utf8.prefix(1_000_000)), as: UTF8.self)
    let t1 = now()
    let spIds = sp.encode(sample, addSpecialTokens: false)
    let encodeSeconds = now() - t1
    print(String(format: "262k SentencePiece BPE encode: %.1f MB/s (%d tokens)", Double(sample.utf8.count) / 1e6 / encodeSeconds, spIds.count))
    result("sp262k_encode_mbs", Double(sample.utf8.count) / 1e6 / encodeSeconds)
    precondition(sp.decode(spIds, skipSpecialTokens: false) == sample, "262k round trip")
}
