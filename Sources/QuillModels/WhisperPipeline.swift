import FoundationEssentials
import QuillAudio
#if canImport(Glibc)
import Glibc
#endif
import QuillGeneration
import QuillTokenizers

/// Speech to text with a Whisper model: audio → 16 kHz → 30-s windows of log-mel features → encoder →
/// (language detection) → CTranslate2-style greedy or beam search → text.
///
/// Long audio is split cleanly into consecutive 30-s windows, each decoded on its own (no text of one
/// window conditions the next, no timestamps), and the texts are joined; a word spoken across a
/// window boundary may be cut or repeated.
public final class WhisperPipeline: @unchecked Sendable {
    public enum Task: String, Sendable, CaseIterable {
        case transcribe, translate
    }

    /// The result of one audio input.
    public struct Result: Sendable {
        public var text: String
        /// Generated ids of every window, concatenated (no prompt, no end-of-text).
        public var ids: [TokenID]
        /// Length-normalised score of each window's best hypothesis.
        public var scores: [Float]
        /// The language code used (`en`, ...) and, when it was detected, its probability.
        public var language: String
        public var languageProbability: Float?
        /// Seconds spent on features, on the encoder (with the cross-attention projections and language
        /// detection) and on decoding.
        public var featureSeconds = 0.0, encoderSeconds = 0.0, decoderSeconds = 0.0
        /// Processor time (all threads) of the encoder and decoding, which load from other processes
        /// inflates far less than the wall-clock seconds.
        public var cpuSeconds = 0.0
    }

    public let model: WhisperModel
    public let tokenizer: any Tokenizer

    public init(directory: String, threads: Int, weights: WhisperModel.WeightFormat = .stored) throws {
        model = try WhisperModel(directory: directory, threads: threads, weights: weights)
        let tokenizerPath = directory.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tokenizerPath) else {
            throw CheckpointError(path: directory, problem: "no tokenizer.json")
        }
        tokenizer = try BPETokenizer(tokenizerJSON: URL(fileURLWithPath: tokenizerPath))
    }

    /// The token `<|code|>` of a language, or nil when the model has no such language.
    public func languageToken(_ code: String) -> TokenID? {
        guard let id = tokenizer.id(of: "<|\(code)|>"), model.config.languageIds.contains(id) else { return nil }
        return id
    }

    /// The code of a language token (`<|de|>` → `de`).
    public func languageCode(_ token: TokenID) -> String {
        let spelling = tokenizer.tokenString(token) ?? "<|?|>"
        return String(spelling.dropFirst(2).dropLast(2))
    }

    /// Search settings from the model's config.json for `beamSize` beams.
    public func settings(beamSize: Int) -> WhisperSearchSettings {
        WhisperSearchSettings(beamSize: beamSize, maxLength: model.decoderPositions, suppressIds: model.config.suppressIds,
                              suppressIdsBegin: model.config.suppressIdsBegin, endOfText: model.config.endOfText)
    }

    /// `[<|startoftranscript|>, <|language|>, <|task|>, <|notimestamps|>]`.
    public func prompt(language: TokenID, task: Task) -> [TokenID] {
        let c = model.config
        return [c.startOfTranscript, language, task == .translate ? c.translate : c.transcribe, c.noTimestamps]
    }

    /// Languages ranked by probability for one window's encoder states.
    public func detectLanguage(_ encoder: EncoderStates) throws -> [(code: String, token: TokenID, probability: Float)] {
        try WhisperSearch.detectLanguage(model: model.transformer, encoder: encoder, startOfTranscript: model.config.startOfTranscript,
                                         languageIds: model.config.languageIds)
            .map { (languageCode($0.token), $0.token, $0.probability) }
    }

    /// Transcribes or translates `audio` (any sample rate; resampled to 16 kHz). `language` nil:
    /// detected on the first window.
    public func run(_ audio: Audio, task: Task, language: String?, beamSize: Int) throws -> Result {
        let audio = Resampler.resample(audio, to: LogMel.sampleRate)
        let windowSamples = model.frames * LogMel.hop
        let windows = max(1, (audio.samples.count + windowSamples - 1) / windowSamples)
        var result = Result(text: "", ids: [], scores: [], language: language ?? "", languageProbability: nil)
        var languageId: TokenID?
        if let language {
            guard let id = languageToken(language) else { throw WhisperError.unknownLanguage(language) }
            languageId = id
        }
        for w in 0..<windows {
            let start = w * windowSamples
            let samples = Array(audio.samples[min(start, audio.samples.count)..<min(start + windowSamples, audio.samples.count)])
            let clock = ContinuousClock()
            let t0 = clock.now
            let features = model.features(samples: samples)
            let t1 = clock.now
            let cpu0 = Self.processorSeconds()
            let encoder = try model.encode(features: features)
            if languageId == nil {
                let best = try detectLanguage(encoder)[0]
                languageId = best.token
                result.language = best.code
                result.languageProbability = best.probability
            }
            let t2 = clock.now
            let hypotheses = try WhisperSearch.decode(model: model.transformer, encoder: encoder,
                                                      prompt: prompt(language: languageId!, task: task),
                                                      settings: settings(beamSize: beamSize))
            let t3 = clock.now
            result.cpuSeconds += Self.processorSeconds() - cpu0
            result.featureSeconds += Self.seconds(t1 - t0)
            result.encoderSeconds += Self.seconds(t2 - t1)
            result.decoderSeconds += Self.seconds(t3 - t2)
            guard let best = hypotheses.first else { continue }
            result.ids += best.ids
            result.scores.append(best.score)
            result.text += text(best.ids)
        }
        return result
    }

    static func processorSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

    /// Text of generated ids (special and timestamp tokens skipped), leading space kept.
    public func text(_ ids: [TokenID]) -> String {
        tokenizer.decode(ids.filter { Int($0) < Int(model.config.endOfText) }, skipSpecialTokens: true)
    }
}
