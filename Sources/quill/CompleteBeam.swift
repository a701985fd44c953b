import FoundationEssentials
import QuillCommandLine
import QuillGeneration
import QuillModels

/// `quill complete --beam N`: prints the best continuation (or `--n-best K` of them, each
/// `text<TAB>score`) when the search is done.
struct CompleteBeamSearch {
    let beams: Int
    let nBest: Int
    let printIds: Bool

    /// Runs the search and prints the result; returns the length of the best hypothesis.
    func run(_ loaded: TextModel, prompt: [TokenID], maxNewTokens: Int, contextSize: Int,
             stopAtEndOfSequence: Bool) throws -> Int {
        let hypotheses = try loaded.beamSearch(prompt: prompt, beams: beams, maxNewTokens: maxNewTokens, nBest: nBest,
                                               stopAtEndOfSequence: stopAtEndOfSequence, contextSize: contextSize)
        let hidden = stopAtEndOfSequence ? loaded.model.endOfSequenceTokens : []
        for hypothesis in hypotheses {
            var line = printIds ? hypothesis.tokens.map(String.init).joined(separator: " ")
                : String(decoding: loaded.bytes(of: hypothesis.tokens.filter { !hidden.contains($0) }), as: UTF8.self)
            if nBest > 1 { line += "\t" + String(hypothesis.score) }
            guard StandardOutput.write(line + (nBest > 1 || printIds ? "\n" : "")) else { throw closedOutputExitCode }
        }
        return hypotheses.first?.tokens.count ?? 0
    }
}
