import Foundation
import QuillKernels
import QuillModels
import Testing

// Malformed files: each must produce a one-line GGUFError naming the problem, never a crash or an
// allocation sized by an unchecked header field.

/// Expects `bytes` to fail with a problem containing every fragment.
private func expectProblem(_ bytes: [UInt8], _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
    guard let e = ggufError(bytes) else {
        Issue.record("expected a GGUFError", sourceLocation: sourceLocation)
        return
    }
    for f in fragments {
        #expect(e.problem.contains(f), "\(e.problem) lacks \(f)", sourceLocation: sourceLocation)
    }
    #expect(!e.description.contains("\n"), sourceLocation: sourceLocation)
    #expect(e.description == "\(e.path): \(e.problem)", sourceLocation: sourceLocation)
}

/// A small valid file touching every region: scalar, string and array metadata, two tensors.
/// The long first string keeps cuts after it past the up-front "counts fit in the file" check,
/// so they reach the region-specific reads.
private func sampleFile() -> GGUFBytes {
    var w = GGUFWriter()
    w.metadata = [
        ("blob", .string(String(repeating: "x", count: 200))),
        ("count", .uint32(7)),
        ("tokens", .array([.string("a"), .string("bc"), .string("def")])),
        ("nested", .array([.array([.int32(1), .int32(2)])])),
    ]
    w.tensors = [
        .init(name: "t0", dims: [4], type: 0, data: [UInt8](repeating: 0, count: 16)),
        .init(name: "t1", dims: [32, 2], type: 2, data: [UInt8](repeating: 0x88, count: 36)),
    ]
    return w.build()
}

/// A header + `kv` + tensor infos with no metadata, for tensor-info cases.
private func fileWithTensorInfos(alignment: UInt32? = nil, _ infos: (inout GGUFBytes) -> Void, tensorCount: UInt64,
                                 dataBytes: Int = 64) -> [UInt8] {
    var b = GGUFBytes()
    b.header(tensors: tensorCount, metadata: alignment == nil ? 0 : 1)
    if let alignment { b.kv("general.alignment", .uint32(alignment)) }
    infos(&b)
    b.pad(to: Int(alignment ?? 32))
    b.raw([UInt8](repeating: 0, count: dataBytes))
    return b.bytes
}

@Test func sampleFileIsValid() throws {
    let g = try openGGUF(sampleFile().bytes)
    #expect(g.tensors.count == 2 && g.metadata.count == 4)
}

@Test func badMagic() {
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 0, magic: Array("GGML".utf8))
    expectProblem(b.bytes, "not a GGUF file", "47 47 4d 4c")
}

@Test(arguments: [UInt32(0), 1, 4, 0x0300_0000])
func unsupportedVersion(version: UInt32) {
    var b = GGUFBytes()
    b.header(version: version, tensors: 0, metadata: 0)
    expectProblem(b.bytes, "unsupported GGUF version \(version)")
}

@Test func fileSystemErrors() throws {
    let dir = try TempDirectory()
    let missing = dir.url.appendingPathComponent("nope.gguf").path
    #expect(throws: GGUFError.self) { try GGUFFile(path: missing) }
    do { _ = try GGUFFile(path: missing) } catch let e as GGUFError {
        #expect(e.description == "\(missing): no such file")
    }
    do { _ = try GGUFFile(path: dir.url.path) } catch let e as GGUFError {
        #expect(e.problem == "is a directory")
    }
    let empty = try dir.write([], name: "empty.gguf")
    do { _ = try GGUFFile(path: empty) } catch let e as GGUFError {
        #expect(e.description == "\(empty): file is empty")
    }
}

@Test func everyTruncationIsAnError() throws {
    // Every proper prefix of a valid file (the writer adds no trailing padding) must be rejected.
    let full = sampleFile().bytes
    let dir = try TempDirectory()
    for length in 1..<full.count {
        let path = try dir.write(Array(full[..<length]), name: "prefix\(length).gguf")
        #expect(throws: GGUFError.self, "prefix of \(length) bytes parsed") { try GGUFFile(path: path) }
    }
}

@Test func truncationMessagesNameTheRegion() {
    let s = sampleFile()
    let bytes = s.bytes
    func cut(_ mark: String, plus: Int) -> [UInt8] { Array(bytes[..<(s.marks[mark]! + plus)]) }
    expectProblem(cut("header", plus: 3), "truncated in header")
    expectProblem(cut("header", plus: 10), "truncated in header")
    expectProblem(cut("header", plus: 20), "truncated in header")
    expectProblem(cut("key0", plus: 150), "truncated in value of key blob", "string length 200")
    expectProblem(cut("header", plus: 24 + 60), "metadata count 4 and tensor count 2 need at least 100 bytes")
    expectProblem(cut("key3", plus: 4), "truncated in key of metadata pair 3")
    expectProblem(cut("key3", plus: 10), "truncated in key of metadata pair 3", "string length 6")
    expectProblem(cut("value1", plus: 2), "truncated in value of key count")  // in the type code
    expectProblem(cut("value1", plus: 6), "truncated in value of key count")  // in the uint32
    expectProblem(cut("value2", plus: 8), "truncated in value of key tokens")  // in the array header
    expectProblem(cut("value2", plus: 30), "value of key tokens")              // in the array elements
    expectProblem(cut("value3", plus: 30), "value of key nested")              // in a nested array
    expectProblem(cut("tensorInfo0", plus: 4), "truncated in name of tensor info 0")
    expectProblem(cut("tensorInfo1", plus: 12), "truncated in tensor info 1 (t1)")
    expectProblem(cut("infosEnd", plus: 0), "tensor t0 data", "extends past the end of the file")
    expectProblem(cut("tensorData1", plus: 35), "tensor t1 data", "extends past the end of the file")
}

@Test(arguments: [UInt64.max, UInt64(Int.max), 1 << 40, 100])
func stringLengthBeyondFile(length: UInt64) {
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 1)
    b.string("k")
    b.u32(8)
    b.u64(length)
    b.raw(Array("short".utf8))
    expectProblem(b.bytes, "string length \(length)", "value of key k", "exceeds the 5 bytes left")
}

@Test func keyLengthBeyondFile() {
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 1)
    b.u64(.max)
    b.raw([UInt8](repeating: 0, count: 20))
    expectProblem(b.bytes, "key of metadata pair 0", "string length \(UInt64.max)")
}

private let hostileArrays: [(UInt32, UInt64)] = [
    (0, .max), (0, UInt64(Int.max)), (0, 1 << 40), (0, 9), (8, 2), (6, 3), (10, 2), (9, 1),
]

@Test(arguments: hostileArrays)
func arrayCountBeyondFile(elementType: UInt32, count: UInt64) {
    // 8 bytes follow the count: enough for 8 uint8, 1 string length, 2 float32, 1 uint64,
    // but not for the counts given; arrays of arrays need 12 bytes each.
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 1)
    b.string("arr")
    b.u32(9)
    b.u32(elementType)
    b.u64(count)
    b.raw([UInt8](repeating: 0, count: 8))
    let problem = ggufError(b.bytes)?.problem ?? ""
    #expect(problem.contains("array count \(count)") || problem.contains("truncated"), "\(problem)")
    #expect(problem.contains("value of key arr"), "\(problem)")
}

@Test func hugeHeaderCounts() {
    for (tensors, kvs) in [(UInt64.max, UInt64(0)), (0, .max), (1 << 40, 0), (0, 1 << 40), (2, 0)] {
        var b = GGUFBytes()
        b.header(tensors: tensors, metadata: kvs)
        b.raw([UInt8](repeating: 0, count: 24))
        let problem = ggufError(b.bytes)?.problem ?? ""
        #expect(problem.contains("count \(tensors == 0 ? kvs : tensors)"), "\(problem)")
    }
}

@Test func arraysNestedTooDeep() {
    var v = GGUFValue.uint8(1)
    for _ in 0..<9 { v = .array([v]) }
    var w = GGUFWriter()
    w.metadata = [("deep", v)]
    expectProblem(w.build().bytes, "nested deeper than 8", "value of key deep")
}

@Test func deeplyNestedHostileArrayDoesNotRecurseUnbounded() {
    // 100 000 nested empty-looking array headers: must stop at the depth limit, not blow the stack.
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 1)
    b.string("deep")
    b.u32(9)
    for _ in 0..<100_000 {
        b.u32(9)
        b.u64(1)
    }
    expectProblem(b.bytes, "nested deeper than 8")
}

@Test func unknownValueType() {
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 1)
    b.string("k")
    b.u32(13)
    b.u64(0)
    expectProblem(b.bytes, "unknown value type 13", "value of key k")

    var a = GGUFBytes()
    a.header(tensors: 0, metadata: 1)
    a.string("k")
    a.u32(9)
    a.u32(77)
    a.u64(0)
    expectProblem(a.bytes, "unknown value type 77")
}

/// A key length corrupted to cover hundreds of megabytes of the file (found by the mutation campaign
/// on Qwen2.5: a metadata value type set to 0 made the reader take later bytes as a key length; the
/// message quoted the whole "key", and escaping its line breaks took more than 30 s of CPU). Keys and
/// tensor names longer than the GGUF specification's 2¹⁶ − 1 bytes are refused before they are read.
@Test func aKeyOrTensorNameLongerThanTheSpecificationAllowsIsRefused() {
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 1)
    b.string(String(repeating: "k", count: 65_536))
    b.u32(4)
    b.u32(1)
    expectProblem(b.bytes, "key of metadata pair 0 is 65536 bytes long", "at most 65535")

    let name = String(repeating: "t", count: 70_000)
    let bytes = fileWithTensorInfos({ $0.tensorInfo(name, dims: [4], type: 0, offset: 0) }, tensorCount: 1)
    expectProblem(bytes, "name of tensor info 0 is 70000 bytes long")
}

/// A long name that is allowed still gives a short message: its start and end, and the problem.
@Test func aLongKeyIsShortenedInTheMessage() {
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 1)
    b.string(String(repeating: "line\n", count: 13_000))  // 65,000 bytes with 13,000 line breaks
    b.u32(13)
    b.u64(0)
    guard let e = ggufError(b.bytes) else {
        Issue.record("expected a GGUFError")
        return
    }
    #expect(e.problem.utf8.count < 1_000, "\(e.problem.utf8.count) bytes")
    #expect(e.problem.hasPrefix("unknown value type 13 in value of key line\\nline"), "\(e.problem.prefix(80))")
    #expect(e.problem.contains("bytes left out"))
    #expect(!e.description.contains("\n"))
}

@Test func errorsStayOnOneLine() {
    var w = GGUFWriter()
    w.metadata = [("line\nbreak\r\u{2028}", .uint8(1)), ("line\nbreak\r\u{2028}", .uint8(2))]
    expectProblem(w.build().bytes, "duplicate key line\\nbreak\\r\\u{2028}")
    let d = GGUFError(path: "p", problem: "a\r\nb").description
    #expect(d == "p: a\\r\\nb")
}

@Test func duplicateKey() {
    var w = GGUFWriter()
    w.metadata = [("a", .uint8(1)), ("a", .uint8(2))]
    expectProblem(w.build().bytes, "duplicate key a")
}

@Test(arguments: [UInt32(0), 5, 100])
func badDimensionCount(nDims: UInt32) {
    let bytes = fileWithTensorInfos({ b in
        b.string("t")
        b.u32(nDims)
        for _ in 0..<nDims { b.u64(1) }
        b.u32(0)
        b.u64(0)
    }, tensorCount: 1)
    expectProblem(bytes, "tensor t has \(nDims) dimensions, expected 1 to 4")
}

@Test func zeroAndOverflowingDimensions() {
    func file(_ dims: [UInt64]) -> [UInt8] {
        fileWithTensorInfos({ $0.tensorInfo("t", dims: dims, type: 0, offset: 0) }, tensorCount: 1)
    }
    expectProblem(file([4, 0]), "tensor t has a dimension of size 0")
    expectProblem(file([1 << 32, 1 << 32]), "tensor t element count overflows")
    expectProblem(file([1 << 20, 1 << 20, 1 << 20, 1 << 20]), "tensor t element count overflows")
    expectProblem(file([UInt64.max]), "tensor t dimension \(UInt64.max) is too large")
    // Elements fit in Int but bytes do not: 2^62 F32 elements.
    expectProblem(file([1 << 31, 1 << 31]), "tensor t byte size overflows")
}

@Test func unsupportedTensorType() {
    func file(_ type: UInt32) -> [UInt8] {
        fileWithTensorInfos({ $0.tensorInfo("blk.0.attn_q.weight", dims: [256], type: type, offset: 0) }, tensorCount: 1)
    }
    #expect(ggufError(file(10))?.problem == "tensor blk.0.attn_q.weight has unsupported type 10 (Q2_K)")
    #expect(ggufError(file(11))?.problem == "tensor blk.0.attn_q.weight has unsupported type 11 (Q3_K)")
    #expect(ggufError(file(999))?.problem == "tensor blk.0.attn_q.weight has unsupported type 999 (unknown)")
}

@Test func rowsMustBeWholeBlocks() {
    let bytes = fileWithTensorInfos({ $0.tensorInfo("t", dims: [33, 2], type: 2, offset: 0) }, tensorCount: 1,
                                    dataBytes: 200)
    expectProblem(bytes, "tensor t rows of 33 elements are not whole Q4_0 blocks of 32")
    // 64 elements in total, but a row of 16 would split blocks.
    let split = fileWithTensorInfos({ $0.tensorInfo("t", dims: [16, 4], type: 8, offset: 0) }, tensorCount: 1,
                                    dataBytes: 200)
    expectProblem(split, "tensor t rows of 16 elements are not whole Q8_0 blocks of 32")
    // K-quants need rows of whole 256-value super-blocks: SmolLM2's width 576 is not.
    let smol = fileWithTensorInfos({ $0.tensorInfo("t", dims: [576, 2], type: 12, offset: 0) }, tensorCount: 1,
                                   dataBytes: 1000)
    expectProblem(smol, "tensor t rows of 576 elements are not whole Q4_K blocks of 256")
    // Qwen2.5's width 896 cannot be Q5_K either (its Q4_K_M file stores those rows as Q5_0).
    let qwen = fileWithTensorInfos({ $0.tensorInfo("t", dims: [896, 2], type: 13, offset: 0) }, tensorCount: 1,
                                   dataBytes: 2000)
    expectProblem(qwen, "tensor t rows of 896 elements are not whole Q5_K blocks of 256")
}

/// The tensor types of real Q4_K_M files (Q5_0 and Q8_0 at widths 640 / 896, Q4_K, Q5_K, Q6_K, and
/// Q5_1 from other files) bind as weight matrices of whole-block rows.
@Test func modelFileQuantTypesLoad() throws {
    // One Q5_0 block by hand: d = 1 (0x3C00), qh all ones, qs 0x21: values 0–15 are 1 | 16 − 16 = 1,
    // values 16–31 are 2 | 16 − 16 = 2.
    let q5Block: [UInt8] = [0x00, 0x3C, 0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0x21, count: 16)
    var w = GGUFWriter()
    w.tensors = [
        .init(name: "gemma", dims: [640, 2], type: 6, data: Array([[UInt8]](repeating: q5Block, count: 40).joined())),
        .init(name: "qwen", dims: [896, 1], type: 7, data: [UInt8](repeating: 0, count: 28 * 24)),
        .init(name: "q5k", dims: [512, 3], type: 13, data: [UInt8](repeating: 0, count: 6 * 176)),
        .init(name: "q6k", dims: [256, 1], type: 14, data: [UInt8](repeating: 0, count: 210)),
    ]
    let g = try openGGUF(w.build().bytes)
    let expected: [(String, TensorType, Int, Int, Int)] = [("gemma", .q5_0, 2, 640, 440), ("qwen", .q5_1, 1, 896, 672),
                                                           ("q5k", .q5_K, 3, 512, 352), ("q6k", .q6_K, 1, 256, 210)]
    for (name, type, rows, columns, rowBytes) in expected {
        let m = try g.weightMatrix(name)
        #expect(m.type == type && m.rows == rows && m.columns == columns && m.rowBytes == rowBytes, "\(name)")
    }
    let gemma = try g.weightMatrix("gemma")
    var row = [Float](repeating: .nan, count: 640)
    row.withUnsafeMutableBufferPointer { ReferenceDequantizer.dequantize(.q5_0, gemma.row(1), count: 640, into: $0.baseAddress!) }
    #expect(row[0] == 1 && row[15] == 1 && row[16] == 2 && row[639] == 2)
}

@Test func tensorDataPastEndOfFile() {
    // 64 data bytes: a 16-float tensor fits at offset 0, not at offset 32, nor does a 17-float one.
    expectProblem(fileWithTensorInfos({ $0.tensorInfo("t", dims: [16], type: 0, offset: 32) }, tensorCount: 1),
                  "tensor t data (64 bytes at data offset 32) extends past the end of the file")
    expectProblem(fileWithTensorInfos({ $0.tensorInfo("t", dims: [17], type: 0, offset: 0) }, tensorCount: 1),
                  "extends past the end of the file")
    expectProblem(fileWithTensorInfos({ $0.tensorInfo("t", dims: [1], type: 0, offset: UInt64(Int.max) / 32 * 32) },
                                      tensorCount: 1), "extends past the end of the file")
    expectProblem(fileWithTensorInfos({ $0.tensorInfo("t", dims: [1], type: 0, offset: .max - 31) }, tensorCount: 1),
                  "tensor offset", "too large")
    #expect(ggufError(fileWithTensorInfos({ $0.tensorInfo("t", dims: [16], type: 0, offset: 0) }, tensorCount: 1)) == nil)
}

@Test func misalignedTensorOffset() {
    expectProblem(fileWithTensorInfos({ $0.tensorInfo("t", dims: [4], type: 0, offset: 16) }, tensorCount: 1),
                  "tensor t offset 16 is not a multiple of the alignment 32")
    expectProblem(fileWithTensorInfos(alignment: 64, { $0.tensorInfo("t", dims: [4], type: 0, offset: 32) },
                                      tensorCount: 1, dataBytes: 128),
                  "tensor t offset 32 is not a multiple of the alignment 64")
}

@Test func duplicateTensorName() {
    let bytes = fileWithTensorInfos({ b in
        b.tensorInfo("w", dims: [4], type: 0, offset: 0)
        b.tensorInfo("w", dims: [4], type: 0, offset: 32)
    }, tensorCount: 2)
    expectProblem(bytes, "duplicate tensor name w")
}

@Test(arguments: [UInt32(0), 3, 48, 0x8000_0000])
func badAlignment(alignment: UInt32) {
    var w = GGUFWriter()
    w.metadata = [("general.alignment", .uint32(alignment))]
    expectProblem(w.build().bytes, "general.alignment \(alignment) is not a power of two")
}

@Test func alignmentOfWrongType() {
    var w = GGUFWriter()
    w.metadata = [("general.alignment", .string("32"))]
    expectProblem(w.build().bytes, "general.alignment of type string")
}
