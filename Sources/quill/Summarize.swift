import ArgumentParser
import FoundationEssentials
import QuillCommandLine
import QuillGeneration
import QuillModels

struct Summarize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise the document read from stdin with an encoder-decoder model (BART, T5).",
        discussion: """
            Reads the whole document until EOF and writes one summary line. T5 models get the 'summarize: ' prefix \
            automatically; BART reads the text as it is. A document longer than the model's positions is cut. \
            The search (beams, length penalty, no-repeat n-gram size, min/max length) follows the model's \
            generation_config.json unless --beam / --max-length say otherwise.
            """)

    @OptionGroup var options: Seq2SeqOptions

    func run() throws {
        StandardOutput.prepare()
        try reportingErrors {
            let text = try StandardInput.readText()
            guard !text.allSatisfy(\.isWhitespace) else { throw CommandError("the document on standard input is empty") }
            let clock = ContinuousClock()
            let loadStart = clock.now
            let pipeline = try options.load { $0 == "t5" ? "summarize: " : "" }
            let loadTime = clock.now - loadStart
            let settings = options.settings(pipeline, nBest: 1)
            let start = clock.now
            var tokens = 0
            // Line breaks inside the document are ordinary whitespace to the tokenizers.
            let document = text.split(whereSeparator: \.isNewline).joined(separator: " ")
            try options.run([document], pipeline, settings) { _, hypotheses in
                tokens = hypotheses.first.map { $0.tokens.count - 1 } ?? 0
                let line = hypotheses.first.map { options.line($0, pipeline, withScore: false) } ?? ""
                guard StandardOutput.write(line + "\n") else { throw closedOutputExitCode }
            }
            report(load: loadTime, run: clock.now - start, sentences: 1, tokens: tokens,
                   threads: options.threads, beams: settings.numBeams)
        }
    }
}
