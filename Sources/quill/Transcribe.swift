import ArgumentParser
import FoundationEssentials
import QuillAudio
import QuillCommandLine
import QuillKernels
import QuillModels
import QuillTokenizers

struct Transcribe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Speech to text with Whisper (a CTranslate2 model folder such as faster-whisper's).",
        discussion: """
            Writes one line per WAV file, in order: the text (or with --ids the generated token ids). WAV files \
            must be mono 16-bit PCM or 32-bit float; other sample rates are resampled to 16 kHz. Audio longer \
            than 30 s is cut into 30-s windows decoded one after another. Without --language the language is \
            detected from the first window and reported on stderr. A file that cannot be read gives its error \
            on stderr and an empty line, and the exit code is 1.
            """)

    @Option(name: [.short, .customLong("model")], help: "'whisper-base' (fetched by `Weights/fetch whisper-base`) or a model folder (model.bin, config.json, tokenizer.json).")
    var model: String

    @Option(help: "transcribe (text in the spoken language) or translate (English text).")
    var task: String = "transcribe"

    @Option(help: "Language code of the speech (en, de, fr, es, ...) or 'auto' to detect it.")
    var language: String = "auto"

    @Option(help: "Beams (1: greedy search).")
    var beam: Int = 5

    @Option(name: [.short, .customLong("threads")], help: "Threads; the default is the number of cores.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Weights in memory: stored (as in model.bin, used in place; f16 for faster-whisper models), f32 (widened at load) or q8_0 (8-bit, approximate). All compute in f32.")
    var weights: String = "stored"

    @Flag(help: "Print the generated token ids (space-separated) instead of text.")
    var ids = false

    @Flag(help: "Report per file the seconds spent on features, encoder and decoding on stderr.")
    var timings = false

    @Argument(help: "WAV files.")
    var files: [String]

    func validate() throws {
        guard WhisperPipeline.Task(rawValue: task) != nil else { throw ValidationError("--task must be transcribe or translate") }
        guard beam >= 1 && beam <= 16 else { throw ValidationError("--beam must be between 1 and 16") }
        guard threads >= 1 && threads <= 256 else { throw ValidationError("--threads must be between 1 and 256") }
        guard WhisperModel.WeightFormat(rawValue: weights) != nil else { throw ValidationError("--weights must be stored, f32 or q8_0") }
        guard !files.isEmpty else { throw ValidationError("give at least one WAV file") }
    }

    func run() throws {
        StandardOutput.prepare()
        var failures = 0
        try reportingErrors {
            let pipeline = try WhisperPipeline(directory: Self.modelDirectory(model), threads: threads,
                                               weights: WhisperModel.WeightFormat(rawValue: weights)!)
            let fixedLanguage = language == "auto" ? nil : language
            if let fixedLanguage, pipeline.languageToken(fixedLanguage) == nil {
                throw CommandError("unknown language '\(fixedLanguage)' (Whisper codes such as en, de, fr, es, or auto)")
            }
            for file in files {
                var line = ""
                do {
                    let audio = try WAV.read(path: file)
                    let result = try pipeline.run(audio, task: WhisperPipeline.Task(rawValue: task)!, language: fixedLanguage, beamSize: beam)
                    if let probability = result.languageProbability {
                        StandardError.write("quill: \(file): detected language \(result.language) (probability \(String(fixed: Double(probability), decimals: 4)))\n")
                    }
                    if timings {
                        StandardError.write("quill: \(file): features \(String(fixed: result.featureSeconds, decimals: 3)) s, "
                            + "encoder \(String(fixed: result.encoderSeconds, decimals: 3)) s, decoder \(String(fixed: result.decoderSeconds, decimals: 3)) s, "
                            + "processor \(String(fixed: result.cpuSeconds, decimals: 3)) s, \(result.ids.count) tokens\n")
                    }
                    line = ids ? result.ids.map(String.init).joined(separator: " ")
                        : result.text.replacingScalars("\n", with: " ")
                } catch let error as AudioError {
                    StandardError.write("quill: \(error)\n")
                    failures += 1
                }
                guard StandardOutput.write(line + "\n") else { throw closedOutputExitCode }
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    /// `whisper-base` → `${QUILL_HOME:-~/.cache/quill}/models/whisper-base`; anything else is a folder path.
    static func modelDirectory(_ name: String) throws -> String {
        guard name == "whisper-base" else { return name }
        let directory = WhisperModel.defaultDirectory
        guard FileManager.default.fileExists(atPath: directory + "/model.bin") else {
            throw CommandError("whisper-base is not at \(directory): run `Weights/fetch whisper-base` first")
        }
        return directory
    }
}
