import Foundation
import QuillAudio
import Testing

/// Fixtures from the reference pack `shared/reference/whisper-base/`: the en and de clips and the
/// features `whisper_feats.py` computed from them (float64 procedure, float32 output).
enum AudioFixtures {
    static func url(_ name: String) -> URL { Bundle.module.resourceURL!.appendingPathComponent("Fixtures/" + name) }

    /// A little-endian float32 `.npy` (format 1.0, C order).
    static func npy(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: url(name))
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
        #expect(header.contains("'descr': '<f4'") && header.contains("'shape': (80, 3000)"), "\(name): \(header)")
        return data.withUnsafeBytes { raw in
            (0..<((data.count - 10 - headerLength) / 4)).map {
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 10 + headerLength + 4 * $0, as: UInt32.self)))
            }
        }
    }

    static func wav(sampleRate: Int, channels: Int = 1, bits: Int = 16, format: Int = 1, payload: [UInt8]) -> Data {
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        func le16(_ v: Int) -> [UInt8] { (0..<2).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        let block = channels * bits / 8
        let fmt = le16(format) + le16(channels) + le32(sampleRate) + le32(sampleRate * block) + le16(block) + le16(bits)
        let body = Array("WAVE".utf8) + Array("fmt ".utf8) + le32(fmt.count) + fmt + Array("data".utf8) + le32(payload.count) + payload
        return Data(Array("RIFF".utf8) + le32(body.count) + body)
    }

    static func pcm16(_ samples: [Float]) -> [UInt8] {
        samples.flatMap { s -> [UInt8] in
            let v = UInt16(bitPattern: Int16(max(-32768, min(32767, (s * 32768).rounded()))))
            return [UInt8(v & 0xFF), UInt8(v >> 8)]
        }
    }
}

@Suite struct AudioTests {
    /// Pack tolerance: max |diff| ≤ 1e-4 (an all-float32 front end is 8.5e-6 away, transformers 1.2e-7).
    @Test(arguments: ["en", "de"]) func featuresMatchTheReference(clip: String) throws {
        let audio = try WAV.read(path: AudioFixtures.url(clip + ".wav").path)
        #expect(audio.sampleRate == 16000)
        let features = LogMel().features(audio.samples)
        let reference = try AudioFixtures.npy(clip + ".feat.npy")
        #expect(features.count == reference.count)
        var worst: Float = 0
        for i in 0..<min(features.count, reference.count) { worst = max(worst, abs(features[i] - reference[i])) }
        print("features \(clip): max |diff| \(worst)")
        #expect(worst <= 1e-4)
    }

    @Test func readsFloatWAV() throws {
        let samples: [Float] = [0, 0.5, -0.25, 1]
        let payload = samples.flatMap { v in (0..<4).map { UInt8((v.bitPattern >> (8 * UInt32($0))) & 0xFF) } }
        let audio = try WAV.decode(AudioFixtures.wav(sampleRate: 16000, bits: 32, format: 3, payload: payload))
        #expect(audio.samples == samples && audio.sampleRate == 16000)
    }

    /// Bad audio gives one clear line, never a crash.
    @Test func badAudioIsRefusedWithOneLine() throws {
        let good = AudioFixtures.wav(sampleRate: 16000, payload: AudioFixtures.pcm16([0.1, 0.2, 0.3, 0.4]))
        let cases: [(Data, String)] = [
            (Data(), "empty"),
            (Data("hello, this is text and not audio".utf8), "not a WAV"),
            (good.prefix(30), "truncated"),
            (good.prefix(good.count - 3), "truncated"),
            (AudioFixtures.wav(sampleRate: 16000, bits: 8, payload: [128, 130, 140]), "8-bit PCM"),
            (AudioFixtures.wav(sampleRate: 16000, channels: 2, payload: AudioFixtures.pcm16([0.1, 0.2])), "stereo"),
            (AudioFixtures.wav(sampleRate: 16000, bits: 24, payload: [0, 0, 0]), "24-bit PCM"),
            (AudioFixtures.wav(sampleRate: 16000, format: 2, payload: [0, 0]), "format code 2"),
            (AudioFixtures.wav(sampleRate: 16000, payload: []), "no samples"),
            (AudioFixtures.wav(sampleRate: 0, payload: [0, 0]), "sample rate 0"),
        ]
        for (data, message) in cases {
            #expect {
                _ = try WAV.decode(data, path: "x.wav")
            } throws: { error in
                let text = "\(error)"
                return text.contains(message) && !text.contains("\n") && text.hasPrefix("x.wav: ")
            }
        }
        #expect(throws: AudioError.self) { try WAV.read(path: "/nonexistent/quill.wav") }
    }

    /// Silence gives a constant, finite window (log of the 1e-10 floor), not NaNs.
    @Test func silenceGivesFiniteFeatures() {
        let features = LogMel().features([Float](repeating: 0, count: 16000))
        #expect(features.count == 80 * 3000)
        #expect(features.allSatisfy { $0 == -1.5 })   // (log10(1e-10) + 4) / 4
        #expect(LogMel().features([]).allSatisfy { $0 == -1.5 })
    }

    /// 22.05 kHz → 16 kHz: a 1 kHz tone comes through with its amplitude and phase; a 10 kHz tone
    /// (above the new 8 kHz Nyquist) is removed instead of folding back to 6 kHz.
    @Test func resamplingKeepsThePassBandAndRemovesAliases() {
        func tone(_ frequency: Double, rate: Int, count: Int) -> [Float] {
            (0..<count).map { Float(0.5 * sin(2 * Double.pi * frequency * Double($0) / Double(rate))) }
        }
        let input = Audio(samples: tone(1000, rate: 22050, count: 22050), sampleRate: 22050)
        let output = Resampler.resample(input, to: 16000)
        #expect(output.sampleRate == 16000 && output.samples.count == 16000)
        let expected = tone(1000, rate: 16000, count: 16000)
        var worst: Float = 0
        for i in 1000..<15000 { worst = max(worst, abs(output.samples[i] - expected[i])) }   // away from the edges
        #expect(worst < 1e-3, "pass band error \(worst)")
        let alias = Resampler.resample(Audio(samples: tone(10000, rate: 22050, count: 22050), sampleRate: 22050), to: 16000)
        let leaked = alias.samples[1000..<15000].map { abs($0) }.max()!
        #expect(leaked < 0.5 * 1e-3, "10 kHz tone leaked with amplitude \(leaked)")
        // Upsampling keeps the tone too.
        let up = Resampler.resample(Audio(samples: tone(1000, rate: 8000, count: 8000), sampleRate: 8000), to: 16000)
        var upWorst: Float = 0
        for i in 1000..<15000 { upWorst = max(upWorst, abs(up.samples[i] - expected[i])) }
        #expect(upWorst < 1e-3, "upsampling error \(upWorst)")
    }

    /// 16 kHz → 22.05 kHz → 16 kHz keeps the features of the en clip in the mel bins below the
    /// resampler's pass-band edge (0.94 × 8 kHz); only the top bins, whose band is filtered, move.
    @Test func resamplingRoundTripKeepsTheFeaturesInTheBand() throws {
        let audio = try WAV.read(path: AudioFixtures.url("en.wav").path)
        let back = Resampler.resample(Resampler.resample(audio, to: 22050), to: 16000)
        #expect(back.sampleRate == 16000 && abs(back.samples.count - audio.samples.count) <= 1)
        let original = LogMel().features(audio.samples), roundTrip = LogMel().features(back.samples)
        var worstInBand: Float = 0, worstTop: Float = 0
        for m in 0..<80 {
            for t in 0..<3000 {
                let d = abs(original[m * 3000 + t] - roundTrip[m * 3000 + t])
                if m < 72 { worstInBand = max(worstInBand, d) } else { worstTop = max(worstTop, d) }
            }
        }
        print("resampling round trip: in-band max |diff| \(worstInBand), top bins \(worstTop)")
        #expect(worstInBand < 0.01)
    }
}
