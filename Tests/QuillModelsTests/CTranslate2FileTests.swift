import Foundation
import QuillKernels
import QuillModels
import Testing

/// Writes small CTranslate2 `model.bin` files (binary version 6) for the reader tests.
enum CTranslate2Writer {
    struct Variable {
        var name: String
        var shape: [Int]
        var dtype: UInt8
        var data: [UInt8]
    }

    static func string(_ s: String) -> [UInt8] {
        let bytes = Array(s.utf8) + [0]
        return le(UInt16(bytes.count)) + bytes
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    static func f32(_ values: [Float]) -> [UInt8] { values.flatMap { le($0.bitPattern) } }
    static func f16(_ values: [Float]) -> [UInt8] { values.flatMap { le(Float16($0).bitPattern) } }
    static func bf16(_ values: [Float]) -> [UInt8] { values.flatMap { le(UInt16($0.bitPattern >> 16)) } }

    static func bytes(_ variables: [Variable], aliases: [(String, String)] = [], version: UInt32 = 6) -> [UInt8] {
        var out = le(version) + string("TestSpec") + le(UInt32(1)) + le(UInt32(variables.count))
        for v in variables {
            out += string(v.name) + [UInt8(v.shape.count)] + v.shape.flatMap { le(UInt32($0)) } + [v.dtype]
                + le(UInt32(v.data.count)) + v.data
        }
        out += le(UInt32(aliases.count))
        for (a, t) in aliases { out += string(a) + string(t) }
        return out
    }

    static func write(_ bytes: [UInt8]) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("quill-ct2-\(UUID().uuidString).bin")
        try Data(bytes).write(to: url)
        return url.path
    }

    /// One variable of each dtype the reader handles, two scales and a tied alias.
    static var sample: [Variable] {
        [
            Variable(name: "a/f32", shape: [2, 3], dtype: 0, data: f32([1, 2, 3, 4, 5, 6])),
            Variable(name: "b/f16", shape: [2, 2], dtype: 4, data: f16([0.5, -1, 2, 3.25])),
            Variable(name: "c/bf16", shape: [3], dtype: 5, data: bf16([1.5, -2, 256])),
            Variable(name: "d/weight", shape: [2, 2], dtype: 1, data: [2, 0xFE, 4, 8]),            // int8 [2,-2],[4,8]
            Variable(name: "d/weight_scale", shape: [2], dtype: 0, data: f32([2, 4])),
            Variable(name: "e/weight", shape: [1, 2], dtype: 2, data: le(Int16(-300)) + le(Int16(600))),
            Variable(name: "e/weight_scale", shape: [], dtype: 0, data: f32([100])),
            Variable(name: "heads", shape: [], dtype: 2, data: le(Int16(8))),
            Variable(name: "flag", shape: [], dtype: 1, data: [1]),
        ]
    }
}

@Suite struct CTranslate2FileTests {
    @Test func readsEveryDtypeAliasAndScalar() throws {
        let path = try CTranslate2Writer.write(CTranslate2Writer.bytes(CTranslate2Writer.sample, aliases: [("tied", "a/f32")]))
        defer { try? FileManager.default.removeItem(atPath: path) }  // a mapped file may be unlinked
        let file = try CTranslate2File(path: path)
        let storage = WeightStorage()
        #expect(file.specName == "TestSpec" && file.specRevision == 1 && file.variables.count == 9)
        func rows(_ m: WeightMatrix) -> [Float] {
            var out = [Float](repeating: 0, count: m.rows * m.columns)
            out.withUnsafeMutableBufferPointer { ReferenceDequantizer.dequantize(m.type, m.data, count: m.rows * m.columns, into: $0.baseAddress!) }
            return out
        }
        #expect(rows(try file.matrix("a/f32", rows: 2, columns: 3, storage: storage)) == [1, 2, 3, 4, 5, 6])
        #expect(rows(try file.matrix("tied", rows: 2, columns: 3, storage: storage)) == [1, 2, 3, 4, 5, 6])
        #expect(rows(try file.matrix("b/f16", rows: 2, columns: 2, storage: storage)) == [0.5, -1, 2, 3.25])
        #expect(try file.vector("c/bf16", count: 3) == [1.5, -2, 256])
        #expect(rows(try file.matrix("d/weight", rows: 2, columns: 2, storage: storage)) == [1, -1, 1, 2])
        #expect(rows(try file.matrix("e/weight", rows: 1, columns: 2, storage: storage)) == [-3, 6])
        #expect(try file.scalar("heads") == 8 && file.scalar("flag") == 1)
        #expect(throws: CheckpointError.self) { try file.matrix("a/f32", rows: 3, columns: 2, storage: storage) }
        #expect(throws: CheckpointError.self) { try file.scalar("a/f32") }
        #expect(throws: CheckpointError.self) { try file.vector("missing", count: 1) }
    }

    /// Crafted bad files: each gives a one-line CheckpointError naming the problem.
    @Test func badFilesGiveOneLineErrors() throws {
        let good = CTranslate2Writer.bytes(CTranslate2Writer.sample, aliases: [("tied", "a/f32")])
        var cases: [([UInt8], String)] = []
        for cut in [0, 3, 6, 20, 40, good.count / 2, good.count - 1] { cases.append((Array(good.prefix(cut)), cut == 0 ? "empty" : "truncated")) }
        cases.append((good + [0], "unexpected bytes"))
        cases.append((CTranslate2Writer.bytes(CTranslate2Writer.sample, version: 5), "binary version 5"))
        var wrongSize = CTranslate2Writer.sample
        wrongSize[0].data.removeLast(4)
        cases.append((CTranslate2Writer.bytes(wrongSize), "needs 24 bytes"))
        var badType = CTranslate2Writer.sample
        badType[1].dtype = 9
        cases.append((CTranslate2Writer.bytes(badType), "unknown dtype 9"))
        cases.append((CTranslate2Writer.bytes(CTranslate2Writer.sample, aliases: [("tied", "nowhere")]), "missing variable nowhere"))
        var duplicate = CTranslate2Writer.sample
        duplicate[1].name = "a/f32"
        cases.append((CTranslate2Writer.bytes(duplicate), "appears twice"))
        var bigRank = CTranslate2Writer.sample
        bigRank[2].shape = Array(repeating: 1, count: 9)
        cases.append((CTranslate2Writer.bytes(bigRank), "rank 9"))
        // A huge variable count in an otherwise small file.
        var hugeCount = good
        hugeCount.replaceSubrange(19..<23, with: CTranslate2Writer.le(UInt32.max))
        cases.append((hugeCount, "variable count"))
        // A name without its NUL terminator.
        var noNul = good
        let firstName = 23 + 2 + "a/f32".utf8.count  // the NUL after the first name
        noNul[firstName] = 0x41
        cases.append((noNul, "not NUL-terminated"))
        for (bytes, message) in cases {
            let path = bytes.isEmpty ? try CTranslate2Writer.write([]) : try CTranslate2Writer.write(bytes)
            defer { try? FileManager.default.removeItem(atPath: path) }  // a mapped file may be unlinked
            do {
                _ = try CTranslate2File(path: path)
                Issue.record("accepted a bad file (\(message))")
            } catch let error as CheckpointError {
                #expect(error.description.contains(message), "\(error.description) should mention \(message)")
                #expect(!error.description.contains("\n"))
            }
        }
    }

    @Test func quantisedMatrixWithoutScaleIsRefused() throws {
        let path = try CTranslate2Writer.write(CTranslate2Writer.bytes(Array(CTranslate2Writer.sample.prefix(4))))
        defer { try? FileManager.default.removeItem(atPath: path) }  // a mapped file may be unlinked
        let file = try CTranslate2File(path: path)
        #expect(throws: CheckpointError.self) { try file.matrix("d/weight", rows: 2, columns: 2, storage: WeightStorage()) }
    }

    /// The real whisper-base model.bin: the layout the reference pack lists (212 variables, one alias).
    @Test func readsWhisperBase() throws {
        let file = try CTranslate2File(path: try WhisperFixtures.modelDirectory() + "/model.bin")
        #expect(file.specName == "WhisperSpec" && file.specRevision == 3)
        #expect(file.variables.count == 212)
        #expect(file.aliases == ["decoder/projection/weight": "decoder/embeddings/weight"])
        #expect(try file.scalar("encoder/num_heads") == 8 && file.scalar("decoder/activation") == 3)
        #expect(file.variable("encoder/conv2/weight")?.shape == [512, 512, 3])
        #expect(file.variable("decoder/projection/weight")?.shape == [51865, 512])
    }
}
