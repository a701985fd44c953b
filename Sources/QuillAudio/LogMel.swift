#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whisper's log-mel spectrogram (OpenAI `whisper.audio.log_mel_spectrogram`, as transformers'
/// `WhisperFeatureExtractor` and the reference pack's `whisper_feats.py` compute it), in Double,
/// rounded to Float at the end:
///
/// 1. zero-pad or trim to `frames · hop` samples (30 s at 16 kHz for 3000 frames);
/// 2. reflect-pad n_fft/2 samples on each side, frames of 400 samples every 160, periodic Hann window;
/// 3. power spectrum |DFT|² (201 bins) of the first `frames` frames (the last frame is dropped);
/// 4. Slaney mel filterbank (librosa's default: `htk=False`, `norm="slaney"`, 0 – 8000 Hz);
/// 5. `log10(max(mel, 1e-10))`, then `max(x, max(x) − 8)` over the whole window, then `(x + 4) / 4`.
public struct LogMel: Sendable {
    public static let sampleRate = 16_000
    public static let fftSize = 400
    public static let hop = 160
    public let melBins: Int
    /// (melBins, fftSize/2 + 1)
    public let filters: [Double]

    public init(melBins: Int = 80) {
        self.melBins = melBins
        filters = Self.melFilters(melBins: melBins)
    }

    /// Features of `samples` (16 kHz mono): (melBins, frames), mel-bin-major.
    public func features(_ samples: [Float], frames: Int = 3000) -> [Float] {
        let n = Self.fftSize, hop = Self.hop, bins = n / 2 + 1, total = frames * hop
        var audio = [Double](repeating: 0, count: total)
        for i in 0..<min(samples.count, total) { audio[i] = Double(samples[i]) }
        // Reflect padding (numpy "reflect": the edge sample is not repeated).
        let pad = n / 2
        var padded = [Double](repeating: 0, count: total + 2 * pad)
        for i in 0..<padded.count {
            var j = i - pad
            if j < 0 { j = -j }
            if j >= total { j = 2 * (total - 1) - j }
            padded[i] = audio[max(0, min(total - 1, j))]
        }
        let window = (0..<n).map { 0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(n)) }
        let cosine = (0..<n).map { cos(2 * Double.pi * Double($0) / Double(n)) }
        let sine = (0..<n).map { sin(2 * Double.pi * Double($0) / Double(n)) }
        var mel = [Double](repeating: 0, count: melBins * frames)   // (melBins, frames)
        var frame = [Double](repeating: 0, count: n)
        var power = [Double](repeating: 0, count: bins)
        for f in 0..<frames {
            var silent = true
            for i in 0..<n {
                frame[i] = padded[f * hop + i] * window[i]
                if frame[i] != 0 { silent = false }
            }
            // Frames of the zero padding have no energy: skip their DFT (most of a short clip's window).
            guard !silent else { continue }
            for k in 0..<bins {
                var re = 0.0, im = 0.0, index = 0
                for i in 0..<n {
                    re += frame[i] * cosine[index]
                    im -= frame[i] * sine[index]
                    index += k
                    if index >= n { index -= n }
                }
                power[k] = re * re + im * im
            }
            for m in 0..<melBins {
                var sum = 0.0
                let row = m * bins
                for k in 0..<bins where filters[row + k] != 0 { sum += filters[row + k] * power[k] }
                mel[m * frames + f] = sum
            }
        }
        var maximum = -Double.infinity
        for i in 0..<mel.count {
            mel[i] = log10(max(mel[i], 1e-10))
            maximum = max(maximum, mel[i])
        }
        return mel.map { Float((max($0, maximum - 8) + 4) / 4) }
    }

    /// librosa.filters.mel(sr=16000, n_fft=400, n_mels=melBins): triangles on the Slaney mel scale
    /// (linear below 1 kHz, logarithmic above), each scaled to unit area (`norm="slaney"`).
    static func melFilters(melBins: Int) -> [Double] {
        let bins = fftSize / 2 + 1, nyquist = Double(sampleRate) / 2
        func hzToMel(_ f: Double) -> Double {
            f >= 1000 ? 15 + log(f / 1000) / (log(6.4) / 27) : f / (200.0 / 3)
        }
        func melToHz(_ m: Double) -> Double {
            m >= 15 ? 1000 * exp((log(6.4) / 27) * (m - 15)) : m * (200.0 / 3)
        }
        let frequencies = (0..<bins).map { nyquist * Double($0) / Double(bins - 1) }
        let top = hzToMel(nyquist)
        let points = (0..<(melBins + 2)).map { melToHz(top * Double($0) / Double(melBins + 1)) }
        var filters = [Double](repeating: 0, count: melBins * bins)
        for m in 0..<melBins {
            let lowerWidth = points[m + 1] - points[m], upperWidth = points[m + 2] - points[m + 1]
            let area = 2 / (points[m + 2] - points[m])
            for k in 0..<bins {
                let lower = (frequencies[k] - points[m]) / lowerWidth
                let upper = (points[m + 2] - frequencies[k]) / upperWidth
                filters[m * bins + k] = max(0, min(lower, upper)) * area
            }
        }
        return filters
    }
}
