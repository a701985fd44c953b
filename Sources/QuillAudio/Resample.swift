#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Band-limited resampling by a windowed-sinc low-pass filter evaluated at each output instant
/// (arbitrary rational or irrational ratios, no intermediate upsampling).
///
/// Output sample n sits at input time t = n · inRate / outRate; its value is Σₖ x[k] · h(t − k) with
/// h(d) = fc · sinc(fc · d) · kaiser(d / halfWidth), fc = cutoff · min(1, outRate / inRate) (in
/// cycles per input sample × 2, i.e. as a fraction of the input Nyquist). When downsampling, the
/// cut-off sits below the new Nyquist, so content above it is removed instead of folding back.
public enum Resampler {
    /// Zero crossings of the sinc on each side (at the lower of the two rates).
    public static let zeroCrossings = 32
    /// Pass band edge as a fraction of the lower Nyquist frequency (the transition band is above it).
    public static let cutoff = 0.94
    /// Kaiser window shape: about 90 dB stop-band attenuation.
    public static let kaiserBeta = 9.0

    /// `audio` at `rate` Hz; unchanged when the rate already matches.
    public static func resample(_ audio: Audio, to rate: Int) -> Audio {
        guard audio.sampleRate != rate, !audio.samples.isEmpty else { return audio }
        let ratio = Double(rate) / Double(audio.sampleRate)
        let fc = cutoff * min(1, ratio)
        let halfWidth = Double(zeroCrossings) / min(1, ratio)     // in input samples
        let x = audio.samples, n = x.count
        let outCount = Int((Double(n) * ratio).rounded(.down))
        // The kernel tabulated at `steps` points per input sample (linear interpolation between them
        // is far below 16-bit resolution), so each tap costs a lookup instead of sin and a Bessel series.
        let steps = 512
        let tableCount = Int(halfWidth * Double(steps)) + 2
        let normaliser = besselI0(kaiserBeta)
        let table = (0..<tableCount).map { i -> Double in
            let d = Double(i) / Double(steps), r = min(1, d / halfWidth)
            let window = besselI0(kaiserBeta * (1 - r * r).squareRoot()) / normaliser
            let argument = Double.pi * fc * d
            return fc * (argument < 1e-12 ? 1 : sin(argument) / argument) * window
        }
        var out = [Float](repeating: 0, count: outCount)
        for o in 0..<outCount {
            let t = Double(o) / ratio
            let first = max(0, Int((t - halfWidth).rounded(.up))), last = min(n - 1, Int((t + halfWidth).rounded(.down)))
            guard first <= last else { continue }
            var sum = 0.0
            for k in first...last {
                let position = abs(t - Double(k)) * Double(steps)
                let i = min(Int(position), tableCount - 2), fraction = position - Double(i)
                sum += Double(x[k]) * (table[i] + (table[i + 1] - table[i]) * fraction)
            }
            out[o] = Float(sum)
        }
        return Audio(samples: out, sampleRate: rate)
    }

    /// The modified Bessel function I₀ (power series; converges quickly for the β used here).
    static func besselI0(_ x: Double) -> Double {
        var sum = 1.0, term = 1.0
        let half = x / 2
        for k in 1..<64 {
            term *= (half / Double(k)) * (half / Double(k))
            sum += term
            if term < sum * 1e-17 { break }
        }
        return sum
    }
}
