import Foundation
import QuillGeneration
import QuillKernels
import QuillModels
import Testing

/// Writes small safetensors files and model folders for the validation tests.
enum SafetensorsWriter {
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("quill-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A file with the given raw header JSON and data bytes.
    static func file(header: String, data: [UInt8]) throws -> String {
        let path = try temporaryDirectory().appendingPathComponent("model.safetensors").path
        var bytes: [UInt8] = []
        let json = Array(header.utf8)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes += $0 }
        bytes += json + data
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// F32 tensors laid out back to back.
    static func file(tensors: [(String, [Int], [Float])]) throws -> String {
        var header: [String] = [], data: [UInt8] = []
        for (name, shape, values) in tensors {
            let begin = data.count
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
            header.append("\"\(name)\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[\(begin),\(data.count)]}")
        }
        return try file(header: "{" + header.joined(separator: ",") + "}", data: data)
    }

    /// A copy of a fixture model folder (config, generation config, weights) to modify.
    static func copyOfFixture(_ model: String) throws -> URL {
        let destination = try temporaryDirectory()
        for name in ["config.json", "generation_config.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: Seq2SeqFixtures.directory(model) + "/" + name,
                                             toPath: destination.appendingPathComponent(name).path)
        }
        return destination
    }
}

@Suite struct SafetensorsTests {
    /// A tensor name of a megabyte (a mutated header can hold one) gives a message of a few hundred
    /// characters that still starts and ends as the full one does.
    @Test func longProblemsAreClipped() {
        let name = String(repeating: "x", count: 1 << 20)
        let error = CheckpointError(path: "/m/model.safetensors", problem: "tensor '\(name)' has shape [3]\nnot [2]")
        #expect(error.description.count < 700, "\(error.description.count) characters")
        #expect(error.description.hasPrefix("/m/model.safetensors: tensor 'xxx"))
        #expect(error.description.hasSuffix("xxx' has shape [3]\\nnot [2]"))
        #expect(error.description.contains("characters omitted") && !error.description.contains("\n"))
        let short = CheckpointError(path: "p", problem: "missing tensor 'a'")
        #expect(short.description == "p: missing tensor 'a'")
    }

    @Test func readsTensorsAndChecksShapes() throws {
        let path = try SafetensorsWriter.file(tensors: [("a", [2, 3], [1, 2, 3, 4, 5, 6]), ("b", [1, 2], [7, 8])])
        let file = try SafetensorsFile(path: path)
        #expect(try file.vector("b", count: 2) == [7, 8])
        let m = try file.matrix("a", rows: 2, columns: 3)
        #expect(m.row(1).loadUnaligned(fromByteOffset: 8, as: Float.self) == 6)
        #expect(throws: CheckpointError.self) { try file.matrix("a", rows: 3, columns: 2) }
        #expect(throws: CheckpointError.self) { try file.vector("missing", count: 1) }
    }

    /// Dropping a matrix's file pages after a load-time copy leaves its values readable (they fault
    /// back in), and memory outside the mapping is never advised away.
    @Test func releasedPagesReadBackTheSameValues() throws {
        let values = (0 ..< 4096 * 3).map { Float($0) * 0.5 }
        let path = try SafetensorsWriter.file(tensors: [("a", [3, 4096], values)])
        let file = try SafetensorsFile(path: path)
        let m = try file.matrix("a", rows: 3, columns: 4096)
        file.releaseResidentPages(of: m)
        let read = (0 ..< values.count).map { m.data.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        #expect(read == values)
        let heap = values
        heap.withUnsafeBufferPointer {
            file.releaseResidentPages(of: WeightMatrix(type: .f32, rows: 3, columns: 4096, data: UnsafeRawPointer($0.baseAddress!)))
        }
        #expect(heap == values, "heap memory is not the file's and must keep its values")
    }

    #if os(Linux)
    /// After the release, looking up one row (an embedding of a tied head) maps that row's page back
    /// into the process with at most the kernel's fault-around window (64 KB by default), not the
    /// whole matrix (counted in /proc/self/pagemap's present bits: 16 pages here, and 254 of 254
    /// without `MADV_RANDOM`, as the page cache holds the file in large folios).
    @Test func aRowLookedUpAfterReleaseMapsOnlyItsOwnPage() throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE))), columns = page / 4, rows = 256
        let path = try SafetensorsWriter.file(tensors: [("a", [rows, columns], (0 ..< rows * columns).map { Float($0 % 1000) })])
        let file = try SafetensorsFile(path: path)
        let m = try file.matrix("a", rows: rows, columns: columns)
        _ = (0 ..< rows).reduce(Float(0)) { $0 + m.row($1).load(as: Float.self) }   // every page mapped
        file.releaseResidentPages(of: m)
        // Whole pages of the matrix, past its first (unaligned) one.
        let first = (Int(bitPattern: m.data) + page - 1) / page + 1, count = rows - 2
        let row = first * page - Int(bitPattern: m.data) + 100 * page
        #expect(m.data.loadUnaligned(fromByteOffset: row, as: Float.self) == Float((row / 4) % 1000))
        let pagemap = try #require(FileHandle(forReadingAtPath: "/proc/self/pagemap"))
        try pagemap.seek(toOffset: UInt64(first * 8))
        let entries = try #require(try pagemap.read(upToCount: count * 8))
        let present = entries.withUnsafeBytes { raw in
            (0 ..< count).filter { raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self) >> 63 == 1 }.count
        }
        #expect(present >= 1 && present * page <= 64 * 1024, "\(present) of the matrix's \(count) pages are mapped after one lookup")
    }
    #endif

    @Test(arguments: [
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", "data_offsets span"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "outside the data section"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "outside the data section"),
        ("{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "negative dimension"),
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", "needs dtype, shape"),
        ("[1, 2]", "not a JSON object"),
        ("{\"a\":", "not a JSON object"),
    ])
    func rejectsMalformedHeaders(header: String, expected: String) throws {
        let path = try SafetensorsWriter.file(header: header, data: Array(repeating: 0, count: 12))
        do {
            _ = try SafetensorsFile(path: path)
            Issue.record("accepted \(header)")
        } catch let error as CheckpointError {
            #expect(error.description.contains(expected), "\(error)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test func rejectsHeaderLongerThanTheFile() throws {
        let path = try SafetensorsWriter.temporaryDirectory().appendingPathComponent("x.safetensors").path
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { bytes += $0 }
        try Data(bytes + Array("{}".utf8)).write(to: URL(fileURLWithPath: path))
        #expect(throws: CheckpointError.self) { try SafetensorsFile(path: path) }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect(throws: CheckpointError.self) { try SafetensorsFile(path: path) }
    }

    @Test func refusesIntegerTensorsForCompute() throws {
        let path = try SafetensorsWriter.file(
            header: "{\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},\"__metadata__\":{\"format\":\"pt\"}}",
            data: Array(repeating: 0, count: 8))
        let file = try SafetensorsFile(path: path)
        #expect(file.tensors["ids"]?.dtype == "I64")
        #expect(throws: CheckpointError.self) { try file.vector("ids", count: 1) }
    }

    @Test func typedConfigsReadHuggingFaceKeys() throws {
        let config = try HFModelConfig.load(directory: Seq2SeqFixtures.directory("tiny-t5-gated"))
        #expect(config.modelType == "t5" && config.dKv == 32 && config.isGatedAct == true && config.tieWordEmbeddings == false)
        let generation = try HFGenerationConfig.load(directory: Seq2SeqFixtures.directory("tiny-marian"))
        #expect(generation.badWordsIds == [[999]] && generation.forcedEosTokenId == TokenIDList([0]))
        let settings = Seq2SeqLoader.defaults(config: try HFModelConfig.load(directory: Seq2SeqFixtures.directory("tiny-bart")),
                                              generation: try HFGenerationConfig.load(directory: Seq2SeqFixtures.directory("tiny-bart")))
        #expect(settings.decoderStartToken == 2 && settings.forcedBOS == 0 && settings.forcedEOS == 2 && settings.maxNewTokens == 24)
    }
}

/// Bad model folders and inputs: one-line errors, no crash.
@Suite struct Seq2SeqBadInputTests {
    func loadError(_ directory: URL) -> String? {
        do {
            _ = try Seq2SeqLoader.load(directory: directory.path, threads: 1)
            return nil
        } catch { return "\(error)" }
    }

    @Test func missingConfig() throws {
        let folder = try SafetensorsWriter.copyOfFixture("tiny-bart")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("config.json"))
        let message = try #require(loadError(folder))
        #expect(message.contains("no config.json") && !message.contains("\n"))
    }

    @Test func missingWeights() throws {
        let folder = try SafetensorsWriter.copyOfFixture("tiny-marian")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("model.safetensors"))
        let message = try #require(loadError(folder))
        #expect(message.contains("no model.safetensors"))
    }

    @Test func unknownModelType() throws {
        let folder = try SafetensorsWriter.copyOfFixture("tiny-t5")
        let url = folder.appendingPathComponent("config.json")
        let text = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: "\"model_type\": \"t5\"", with: "\"model_type\": \"pegasus\"")
        try text.write(to: url, atomically: true, encoding: .utf8)
        let message = try #require(loadError(folder))
        #expect(message.contains("unsupported model_type 'pegasus'"))
    }

    @Test func wrongTensorShape() throws {
        let folder = try SafetensorsWriter.copyOfFixture("tiny-t5")
        let url = folder.appendingPathComponent("config.json")
        let text = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: "\"d_ff\": 256", with: "\"d_ff\": 512")
        try text.write(to: url, atomically: true, encoding: .utf8)
        let message = try #require(loadError(folder))
        #expect(message.contains("has shape [256, 128], expected [512, 128]"), "\(message)")
    }

    @Test func notAFolder() {
        let message = loadError(URL(fileURLWithPath: "/nonexistent/quill-model"))
        #expect(message?.contains("no such model folder") == true)
    }

    @Test func emptyAndInvalidSources() throws {
        let model = try Seq2SeqFixtures.load("tiny-bart")
        let settings = Seq2SeqFixtures.settings(model)
        #expect(throws: GenerationError.emptyPrompt) { try Seq2SeqSearch.greedy(model: model, sources: [[0, 2], []], settings: settings) }
        #expect(throws: GenerationError.invalidToken(5000, vocabularySize: 1500)) {
            try Seq2SeqSearch.beam(model: model, sources: [[0, 5000, 2]], settings: Seq2SeqFixtures.settings(model, beams: 2))
        }
    }

    /// The quantised path runs every product on exact int32 sums with per-row scales, so a source's
    /// translation is the same alone as among the 11 other cases, in greedy and in beam search
    /// (same tokens and bitwise the same scores).
    @Test(arguments: ["tiny-marian", "tiny-bart", "tiny-t5"])
    func quantisedTranslationsAreTheSameAloneAndInABatch(model name: String) throws {
        let model = try Seq2SeqFixtures.load(name, quantize: true)
        let sources = try Seq2SeqFixtures.cases(name).map { Seq2SeqFixtures.ids($0["source_ids"]) }
        let greedy = try Seq2SeqSearch.greedy(model: model, sources: sources, settings: Seq2SeqFixtures.settings(model))
        let beams = try Seq2SeqSearch.beam(model: model, sources: sources, settings: Seq2SeqFixtures.settings(model, beams: 4))
        for (i, source) in sources.enumerated() {
            let alone = try Seq2SeqSearch.greedy(model: model, sources: [source], settings: Seq2SeqFixtures.settings(model))[0]
            #expect(alone.tokens == greedy[i].tokens, "\(name) case \(i), greedy")
            let aloneBeams = try Seq2SeqSearch.beam(model: model, sources: [source], settings: Seq2SeqFixtures.settings(model, beams: 4))[0]
            #expect(aloneBeams.map(\.tokens) == beams[i].map(\.tokens), "\(name) case \(i), beam tokens")
            #expect(aloneBeams.map(\.score) == beams[i].map(\.score), "\(name) case \(i), beam scores")
        }
    }

    /// Q8_0 weights made at load time stay close to the f32 model (same greedy ids on most cases).
    @Test func quantizedWeightsStayClose() throws {
        let exact = try Seq2SeqFixtures.load("tiny-marian"), quantized = try Seq2SeqFixtures.load("tiny-marian", quantize: true)
        let case_ = try Seq2SeqFixtures.cases("tiny-marian")[0]
        let source = Seq2SeqFixtures.ids(case_["source_ids"]), input = Array(Seq2SeqFixtures.ids(case_["greedy_ids"]).dropLast())
        let a = try Seq2SeqFixtures.teacherForced(exact, source: source, decoderInput: input)
        let b = try Seq2SeqFixtures.teacherForced(quantized, source: source, decoderInput: input)
        let meanError = zip(a, b).map { Double(abs($0 - $1)) }.reduce(0, +) / Double(a.count)
        #expect(meanError < 0.1, "mean |Δlogit| with Q8_0 weights = \(meanError)")
        #expect(meanError > 0, "quantisation changed nothing: not applied?")
    }
}
