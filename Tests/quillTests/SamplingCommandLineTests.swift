import Foundation
import Testing

@Suite(.serialized) struct SamplingCommandLineTests {
    let modelPath = ProcessInfo.processInfo.environment["QUILL_MODEL"]
        ?? (NSHomeDirectory() + "/.cache/quill/models/SmolLM2-135M-Instruct.Q4_1.gguf")

    func sample(_ extra: [String], prompt: String = "Once upon a time") throws -> QuillProcess.Result {
        let result = try QuillProcess.run(["complete", "-m", modelPath, "--ids", "-n", "24", "--ignore-eos"] + extra,
                                          input: Data(prompt.utf8))
        #expect(result.status == 0, "\(result.stderr)")
        return result
    }

    @Test func aSeedRepeatsARunAndIsPrinted() throws {
        let first = try sample(["--temp", "0.8", "--seed", "42"])
        let second = try sample(["--temp", "0.8", "--seed", "42"])
        #expect(first.text == second.text && first.text.split(separator: " ").count == 24)
        #expect(first.stderr.contains("quill: seed 42\n"))
        let other = try sample(["--temp", "0.8", "--seed", "43"])
        #expect(other.text != first.text)
    }

    @Test func beamSearchPrintsTheNBestContinuationsWithScores() throws {
        let result = try QuillProcess.run(["complete", "-m", modelPath, "--precision", "f32", "--beam", "4", "--n-best", "2",
                                           "-n", "8", "--ids"], input: Data("The capital of France is".utf8))
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.text.split(separator: "\n")
        #expect(lines.count == 2)
        let scores = lines.compactMap { $0.split(separator: "\t").last.flatMap { Float($0) } }
        #expect(scores.count == 2 && scores[0] >= scores[1] && scores[0] < 0, "best first, log-probabilities")
        #expect(lines.allSatisfy { $0.split(separator: "\t")[0].split(separator: " ").count <= 8 })
        let bad = try QuillProcess.run(["complete", "-m", modelPath, "--n-best", "2"], input: Data("Hi".utf8))
        #expect(bad.status != 0 && bad.stderr.contains("--n-best needs --beam"))
    }

    @Test func withoutASeedOneIsChosenAndPrinted() throws {
        let run = try sample(["--temp", "1"])
        let line = run.stderr.split(separator: "\n").first { $0.hasPrefix("quill: seed ") }
        let seed = try #require(line.map { String($0.dropFirst("quill: seed ".count)) })
        #expect(UInt64(seed) != nil)
        #expect(try sample(["--temp", "1", "--seed", seed]).text == run.text)  // the printed seed repeats it
    }

    @Test func theSameSeedGivesTheSameTokensOnOneAndTwoThreads() throws {
        // One-token prompts run through the mat-vec kernels only, longer ones through the GEMM too.
        for precision in ["f32", "quantized"] {
            for prompt in ["Once", "The capital of France is"] {
                let one = try sample(["--precision", precision, "--temp", "0.8", "--seed", "7", "-t", "1"], prompt: prompt)
                let two = try sample(["--precision", precision, "--temp", "0.8", "--seed", "7", "-t", "2"], prompt: prompt)
                #expect(one.text == two.text, "\(precision): \(prompt)")
            }
        }
    }

    @Test func greedyPrintsNoSeed() throws {
        let run = try sample(["--temp", "0"])
        #expect(!run.stderr.contains("seed"))
    }

    @Test func aStopStringEndsTheTextAndIsNotPrinted() throws {
        let result = try QuillProcess.run(["complete", "-m", modelPath, "--precision", "f32", "--temp", "0", "-n", "48", "--stop", "\\n\\n"],
                                          input: Data("The capital of France is".utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.text == " Paris.")
        #expect(result.stderr.contains("generated 4 tokens"))
        // Two stop strings: the first to appear wins.
        let either = try QuillProcess.run(["complete", "-m", modelPath, "--precision", "f32", "--temp", "0", "-n", "48",
                                           "--stop", "answer", "--stop", "is:"], input: Data("The capital of France is".utf8))
        #expect(either.text == " Paris.\n\nThe ")
    }

    @Test func penaltiesChangeGreedyOutput() throws {
        let plain = try sample(["--temp", "0", "-n", "48"], prompt: "Repeat after me: la la la la")
        let penalised = try sample(["--temp", "0", "-n", "48", "--repeat-penalty", "1.5", "--presence-penalty", "1"],
                                   prompt: "Repeat after me: la la la la")
        #expect(plain.text != penalised.text)
    }

    @Test func badSamplingValuesAreClearErrors() throws {
        for (flag, value) in [("--top-p", "2"), ("--temp", "-1"), ("--min-p", "1.5"), ("--repeat-last-n", "-2")] {
            let result = try QuillProcess.run(["complete", "-m", modelPath, flag, value], input: Data("Hi".utf8))
            #expect(result.status != 0 && result.stderr.contains(flag), "\(flag): \(result.stderr)")
        }
    }

    @Test func chatReusesTheCacheAcrossTurnsAndHandlesResetAndEOF() throws {
        let input = "What is the capital of France?\nAnd of Italy?\n/reset\nHello!\n"
        let result = try QuillProcess.run(["chat", "-m", modelPath, "--temp", "0", "-n", "24"], input: Data(input.utf8))
        #expect(result.status == 0, "\(result.stderr)")
        let turns = result.stderr.split(separator: "\n").filter { $0.contains("quill: turn ") }
        #expect(turns.count == 3, "\(result.stderr)")
        guard turns.count == 3 else { return }
        #expect(turns[0].contains("(0 reused"), "\(turns[0])")
        #expect(!turns[1].contains("(0 reused") && turns[1].contains("prompt 16 new tokens"), "\(turns[1])")
        #expect(result.stderr.contains("conversation reset"))
        #expect(turns[2].contains("(0 reused"), "\(turns[2])")
        #expect(result.text.split(separator: "\n", omittingEmptySubsequences: false).count >= 4)
    }
}
