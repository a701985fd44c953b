import FoundationEssentials

/// A problem with an audio file: not a WAV, truncated, or a sample format Quill does not read. One line.
public struct AudioError: Error, CustomStringConvertible, Sendable, Equatable {
    public let path: String
    public let problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { "\(path): \(problem)" }
}

/// Mono audio samples in [-1, 1] at `sampleRate`.
public struct Audio: Sendable {
    public var samples: [Float]
    public var sampleRate: Int

    public init(samples: [Float], sampleRate: Int) {
        self.samples = samples
        self.sampleRate = sampleRate
    }

    public var seconds: Double { Double(samples.count) / Double(sampleRate) }
}

/// RIFF/WAVE reading: mono 16-bit PCM (`samples / 32768`) and 32-bit IEEE float, also inside
/// `WAVE_FORMAT_EXTENSIBLE`. Chunks other than `fmt ` and `data` are skipped (word-aligned, as RIFF
/// pads odd sizes). Everything else (8/24-bit PCM, stereo, compressed formats, a data chunk that
/// runs past the end of the file) is refused with an `AudioError`.
public enum WAV {
    public static func read(path: String) throws -> Audio {
        guard let data = FileManager.default.contents(atPath: path) else {
            var isDirectory = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            throw AudioError(path: path, problem: !exists ? "no such file" : isDirectory ? "is a directory" : "cannot read")
        }
        return try decode(data, path: path)
    }

    /// Decodes the bytes of a WAV file; `path` only names it in errors.
    public static func decode(_ data: Data, path: String = "<wav>") throws -> Audio {
        let bytes = [UInt8](data)
        func fail(_ problem: String) -> AudioError { AudioError(path: path, problem: problem) }
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        func tag(_ at: Int) -> String { String(decoding: bytes[at..<(at + 4)], as: UTF8.self) }
        guard !bytes.isEmpty else { throw fail("file is empty") }
        guard bytes.count >= 12, tag(0) == "RIFF", tag(8) == "WAVE" else { throw fail("not a WAV file (no RIFF/WAVE header)") }
        var position = 12
        var format: (code: Int, channels: Int, rate: Int, blockAlign: Int, bits: Int)?
        while position + 8 <= bytes.count {
            let id = tag(position), size = u32(position + 4), body = position + 8
            guard size <= bytes.count - body else {
                throw fail("'\(id)' chunk of \(size) bytes runs past the end of the file (truncated)")
            }
            if id == "fmt " {
                guard size >= 16 else { throw fail("fmt chunk too short (\(size) bytes)") }
                var code = u16(body)
                if code == 0xFFFE {
                    // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID.
                    guard size >= 40 else { throw fail("extensible fmt chunk too short (\(size) bytes)") }
                    code = u16(body + 24)
                }
                format = (code, u16(body + 2), u32(body + 4), u16(body + 12), u16(body + 14))
            } else if id == "data" {
                guard let f = format else { throw fail("data chunk before the fmt chunk") }
                return try samples(bytes[body..<(body + size)], format: f, fail: fail)
            }
            position = body + size + (size & 1)
        }
        throw fail(format == nil ? "no fmt chunk (truncated?)" : "no data chunk (truncated?)")
    }

    private static func samples(_ payload: ArraySlice<UInt8>, format f: (code: Int, channels: Int, rate: Int, blockAlign: Int, bits: Int),
                                fail: (String) -> AudioError) throws -> Audio {
        guard f.channels == 1 else {
            throw fail(f.channels == 2 ? "stereo audio; Quill reads mono WAV (mix down first, e.g. sox in.wav -c 1 out.wav)"
                       : "\(f.channels) channels; Quill reads mono WAV")
        }
        guard f.rate > 0 && f.rate <= 768_000 else { throw fail("sample rate \(f.rate) Hz is not usable") }
        let isPCM16 = f.code == 1 && f.bits == 16, isFloat32 = f.code == 3 && f.bits == 32
        guard isPCM16 || isFloat32 else {
            let kind = f.code == 1 ? "\(f.bits)-bit PCM" : f.code == 3 ? "\(f.bits)-bit float" : "format code \(f.code)"
            throw fail("\(kind) is not supported; Quill reads 16-bit PCM and 32-bit float WAV")
        }
        let size = f.bits / 8
        guard f.blockAlign == size else { throw fail("block align \(f.blockAlign) does not match \(f.bits)-bit mono") }
        let count = payload.count / size
        guard count > 0 else { throw fail("no samples (empty data chunk)") }
        var out = [Float](repeating: 0, count: count)
        payload.withUnsafeBytes { raw in
            if isPCM16 {
                for i in 0..<count { out[i] = Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) / 32768 }
            } else {
                for i in 0..<count {
                    let v = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    out[i] = v.isFinite ? v : 0   // a NaN would poison every feature of the window
                }
            }
        }
        return Audio(samples: out, sampleRate: f.rate)
    }
}
