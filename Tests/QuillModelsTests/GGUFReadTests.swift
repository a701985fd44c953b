import Foundation
import QuillKernels
import QuillModels
import Testing

// Round trips through GGUFWriter: every value type, v2 and v3, tensors, alignment, accessors.

private let scalars: [(String, GGUFValue)] = [
    ("u8", .uint8(255)), ("i8", .int8(-128)), ("u16", .uint16(65535)), ("i16", .int16(-32768)),
    ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)),
    ("u64", .uint64(.max)), ("i64", .int64(.min)),
    ("f32", .float32(-1.25)), ("f64", .float64(1e300)),
    ("yes", .bool(true)), ("no", .bool(false)),
    ("s", .string("héllo ✓ 🦙")), ("empty", .string("")),
]

@Test(arguments: [UInt32(2), 3])
func scalarValuesRoundTrip(version: UInt32) throws {
    var w = GGUFWriter()
    w.version = version
    w.metadata = scalars
    let g = try openGGUF(w.build().bytes)
    #expect(g.version == Int(version))
    #expect(g.metadata.count == scalars.count)
    for (key, value) in scalars { #expect(g.metadata[key] == value, "\(key)") }
    #expect(g.tensors.isEmpty)
}

@Test(arguments: [UInt32(2), 3])
func arrayValuesRoundTrip(version: UInt32) throws {
    let arrays: [(String, GGUFValue)] = [
        ("a.u8", .array([.uint8(1), .uint8(2), .uint8(255)])),
        ("a.i8", .array([.int8(-1), .int8(127)])),
        ("a.u16", .array([.uint16(7)])),
        ("a.i16", .array([.int16(-7), .int16(8)])),
        ("a.u32", .array([.uint32(1), .uint32(.max)])),
        ("a.i32", .array([.int32(3), .int32(-3)])),
        ("a.u64", .array([.uint64(.max)])),
        ("a.i64", .array([.int64(-5)])),
        ("a.f32", .array([.float32(0.5), .float32(-2)])),
        ("a.f64", .array([.float64(-0.25)])),
        ("a.bool", .array([.bool(true), .bool(false)])),
        ("a.str", .array([.string("a"), .string(""), .string("ĠHello")])),
        ("a.empty", .array([])),
        ("a.nested", .array([.array([.int32(1), .int32(2)]), .array([.int32(3)]), .array([])])),
        ("a.deep", .array([.array([.array([.string("x")])])])),
    ]
    var w = GGUFWriter()
    w.version = version
    w.metadata = arrays
    let g = try openGGUF(w.build().bytes)
    for (key, value) in arrays { #expect(g.metadata[key] == value, "\(key)") }
}

@Test func arraysNestedToTheLimitAreAccepted() throws {
    // 8 levels of arrays is the documented maximum.
    var v = GGUFValue.uint8(1)
    for _ in 0..<8 { v = .array([v]) }
    var w = GGUFWriter()
    w.metadata = [("deep", v)]
    #expect(try openGGUF(w.build().bytes).metadata["deep"] == v)
}

@Test func largeArraysRoundTrip() throws {
    let tokens = (0..<50_000).map { GGUFValue.string("tok\($0)") }
    let types = (0..<50_000).map { GGUFValue.int32(Int32($0 % 4)) }
    var w = GGUFWriter()
    w.metadata = [("tokenizer.ggml.tokens", .array(tokens)), ("tokenizer.ggml.token_type", .array(types))]
    let g = try openGGUF(w.build().bytes)
    let t = try g.stringArray("tokenizer.ggml.tokens")
    #expect(t.count == 50_000 && t[49_999] == "tok49999")
    #expect(try g.intArray("tokenizer.ggml.token_type")[7] == 3)
    // Arrays are decoded from the mapping on each request: after the header's pages are dropped
    // from the resident set they read back the same (faulted in again from the page cache).
    g.releaseMetadataPages()
    #expect(try g.stringArray("tokenizer.ggml.tokens") == t)
    #expect(g.metadata["tokenizer.ggml.token_type"] == .array(types))
}

@Test func invalidUTF8DecodesLossily() throws {
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 1)
    b.string("bad")
    b.u32(8)
    b.rawString([0x61, 0xFF, 0x62])  // "a", invalid byte, "b"
    let g = try openGGUF(b.bytes)
    #expect(try g.string("bad") == "a\u{FFFD}b")
}

@Test func typedAccessors() throws {
    var w = GGUFWriter()
    w.metadata = scalars + [
        ("floats", .array([.float32(0.5), .float32(2)])),
        ("doubles", .array([.float64(-3)])),
        ("ints", .array([.uint32(1), .uint32(3)])),
        ("signed", .array([.int64(-2)])),
        ("bigints", .array([.uint32(.max)])),
        ("strs", .array([.string("a"), .string("b")])),
        ("mixed", .array([.array([.string("a")])])),
    ]
    let g = try openGGUF(w.build().bytes)
    #expect(try g.int("u8") == 255)
    #expect(try g.int("i8") == -128)
    #expect(try g.int("u16") == 65535)
    #expect(try g.int("i16") == -32768)
    #expect(try g.int("u32") == 4_000_000_000)
    #expect(try g.int("i32") == -2_000_000_000)
    #expect(try g.int("i64") == Int(Int64.min))
    #expect(try g.float("f32") == -1.25)
    #expect(try g.float("f64") == Float(1e300))  // rounds to +inf
    #expect(try g.float("u32") == 4e9)
    #expect(try g.string("s") == "héllo ✓ 🦙")
    #expect(try g.bool("yes") && !(try g.bool("no")))
    #expect(try g.floatArray("floats") == [0.5, 2])
    #expect(try g.floatArray("doubles") == [-3])
    #expect(try g.floatArray("ints") == [1, 3])
    #expect(try g.intArray("ints") == [1, 3])
    #expect(try g.intArray("signed") == [-2])
    #expect(try g.stringArray("strs") == ["a", "b"])
    #expect(g.optionalInt("u16") == 65535 && g.optionalInt("nope") == nil && g.optionalInt("s") == nil)
    #expect(g.optionalFloat("f32") == -1.25 && g.optionalString("s") != nil && g.optionalBool("yes") == true)

    func problem(_ body: () throws -> Any) -> String? {
        do { _ = try body(); return nil } catch { return (error as? GGUFError)?.problem }
    }
    #expect(problem { try g.int("nope") } == "missing key nope")
    #expect(problem { try g.int("s") } == "key s has type string, expected an integer")
    #expect(problem { try g.int("u64") } == "key u64 has type uint64, expected an integer")  // > Int.max
    #expect(problem { try g.string("u32") } == "key u32 has type uint32, expected string")
    #expect(problem { try g.bool("u8") } == "key u8 has type uint8, expected bool")
    #expect(problem { try g.float("yes") } == "key yes has type bool, expected a number")
    #expect(problem { try g.stringArray("s") } == "key s has type string, expected array of string")
    #expect(problem { try g.stringArray("ints") } == "key ints has type array of uint32, expected array of string")
    #expect(problem { try g.stringArray("mixed") } == "key mixed has type array of array of string, expected array of string")
    #expect(problem { try g.intArray("bigints") } == "key bigints has type array of uint32, expected array of integers that fit in int32")
    #expect(problem { try g.floatArray("strs") } == "key strs has type array of string, expected array of numbers")
}

private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

@Test(arguments: [UInt32(2), 3])
func tensorsRoundTrip(version: UInt32) throws {
    // norm: F32 [3] = 1, -2, 0.5
    let norm = [Float(1), -2, 0.5].flatMap { f in withUnsafeBytes(of: f.bitPattern.littleEndian) { Array($0) } }
    // q8: Q8_0 [64, 2]; row r block b: d = 0.5 (0x3800), all q = r*2+b+1 → x = (r*2+b+1)/2
    var q8: [UInt8] = []
    for r in 0..<2 { for b in 0..<2 { q8 += le16(0x3800) + [UInt8](repeating: UInt8(r * 2 + b + 1), count: 32) } }
    // q4: Q4_0 [32, 2, 3] = 6 rows of one block: d = 1 (0x3C00), bytes 0x9A → low 10-8 = 2, high 9-8 = 1
    let q4 = (0..<6).flatMap { _ in le16(0x3C00) + [UInt8](repeating: 0x9A, count: 16) }
    // h: F16 [2] = 1, -2; b: BF16 [2] = 1, -5; q41: Q4_1 [32]: d = 1, m = 0.5, bytes 0x10 → 0.5, 1.5
    let h = le16(0x3C00) + le16(0xC000)
    let bf = le16(0x3F80) + le16(0xC0A0)
    let q41 = le16(0x3C00) + le16(0x3800) + [UInt8](repeating: 0x10, count: 16)

    var w = GGUFWriter()
    w.version = version
    w.metadata = [("general.architecture", .string("llama"))]
    w.tensors = [
        .init(name: "norm", dims: [3], type: 0, data: norm),
        .init(name: "q8", dims: [64, 2], type: 8, data: q8),
        .init(name: "q4", dims: [32, 2, 3], type: 2, data: q4),
        .init(name: "h", dims: [2], type: 1, data: h),
        .init(name: "b", dims: [2], type: 30, data: bf),
        .init(name: "q41", dims: [32], type: 3, data: q41),
    ]
    let built = w.build()
    let g = try openGGUF(built.bytes)
    #expect(g.tensors.map(\.name) == ["norm", "q8", "q4", "h", "b", "q41"])
    #expect(g.dataOffset == built.marks["data"])
    #expect(g.dataOffset % 32 == 0)
    for (i, t) in g.tensors.enumerated() {
        #expect(t.offset == built.marks["tensorData\(i)"])
        #expect((t.offset - g.dataOffset) % 32 == 0)
        #expect(t.byteCount == w.tensors[i].data.count)
    }
    let q4Info = try #require(g.tensor("q4"))
    #expect(q4Info.dimensions == [32, 2, 3] && q4Info.type == .q4_0 && q4Info.rows == 6 && q4Info.elementCount == 192)
    #expect(g.tensor("missing") == nil)

    let n = try g.weightMatrix("norm")
    #expect(n.type == .f32 && n.rows == 1 && n.columns == 3)
    #expect(ReferenceDequantizer.dequantize(n) == [1, -2, 0.5])

    let m = try g.weightMatrix("q8")
    #expect(m.type == .q8_0 && m.rows == 2 && m.columns == 64 && m.rowBytes == 68)
    #expect(m.data == g.data(for: g.tensor("q8")!))
    let x = ReferenceDequantizer.dequantize(m)
    #expect(x[0] == 0.5 && x[32] == 1 && x[64] == 1.5 && x[127] == 2)

    let q = try g.weightMatrix("q4")
    #expect(q.rows == 6 && q.columns == 32)
    #expect(ReferenceDequantizer.dequantize(q) == [Float]((0..<6).flatMap { _ in
        [Float](repeating: 2, count: 16) + [Float](repeating: 1, count: 16) }))
    #expect(ReferenceDequantizer.dequantize(try g.weightMatrix("h")) == [1, -2])
    #expect(ReferenceDequantizer.dequantize(try g.weightMatrix("b")) == [1, -5])
    #expect(ReferenceDequantizer.dequantize(try g.weightMatrix("q41")) ==
            [Float](repeating: 0.5, count: 16) + [Float](repeating: 1.5, count: 16))

    #expect(throws: GGUFError.self) { try g.weightMatrix("output.weight") }
    do {
        _ = try g.weightMatrix("output.weight")
    } catch let e as GGUFError {
        #expect(e.problem == "missing tensor output.weight")
        #expect(e.description == "\(g.path): missing tensor output.weight")
    }
}

@Test(arguments: [1, 8, 32, 64, 256])
func customAlignment(alignment: Int) throws {
    var w = GGUFWriter()
    w.alignment = alignment
    w.metadata = [("general.alignment", .uint32(UInt32(alignment))), ("pad", .string("xyz"))]
    w.tensors = [
        .init(name: "a", dims: [3], type: 0, data: [UInt8](repeating: 1, count: 12)),
        .init(name: "b", dims: [5], type: 1, data: [UInt8](repeating: 2, count: 10)),
        .init(name: "c", dims: [1], type: 0, data: [UInt8](repeating: 3, count: 4)),
    ]
    let built = w.build()
    let g = try openGGUF(built.bytes)
    #expect(g.alignment == alignment)
    #expect(g.dataOffset == built.marks["data"] && g.dataOffset % alignment == 0)
    for (i, t) in g.tensors.enumerated() {
        #expect(t.offset == built.marks["tensorData\(i)"])
        #expect(g.data(for: t).load(as: UInt8.self) == UInt8(i + 1))
    }
}

@Test func defaultAlignmentIs32() throws {
    var w = GGUFWriter()
    w.metadata = [("k", .string("abc"))]  // makes the infos end off a 32-byte boundary
    w.tensors = [.init(name: "t", dims: [1], type: 0, data: [0, 0, 0x80, 0x3F])]
    let built = w.build()
    #expect(built.marks["infosEnd"]! % 32 != 0)
    let g = try openGGUF(built.bytes)
    #expect(g.alignment == 32 && g.dataOffset == (built.marks["infosEnd"]! + 31) / 32 * 32)
    #expect(ReferenceDequantizer.dequantize(try g.weightMatrix("t")) == [1])
}

@Test func headerOnlyFileIsValid() throws {
    var b = GGUFBytes()
    b.header(tensors: 0, metadata: 0)
    let g = try openGGUF(b.bytes)
    #expect(g.metadata.isEmpty && g.tensors.isEmpty && g.version == 3)
}
