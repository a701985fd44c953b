import Foundation

// Shared by every harness (compiled into each): scratch files and input splitting.

/// A directory of this fuzzing process's own, for loaders that read files. In memory (/dev/shm) when
/// there is one: every execution writes its files, and on a disk-backed /tmp that I/O took more than
/// half of each execution's time.
let scratch: URL = {
    let shm = "/dev/shm"
    let base = access(shm, W_OK) == 0 ? URL(fileURLWithPath: shm, isDirectory: true) : FileManager.default.temporaryDirectory
    let url = base.appendingPathComponent("quill-fuzz-\(getpid())", isDirectory: true)
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}()

/// Writes `bytes` to `name` in the scratch directory and returns its URL.
@discardableResult
func writeScratch(_ name: String, _ bytes: ArraySlice<UInt8>) -> URL {
    let url = scratch.appendingPathComponent(name)
    let file = fopen(url.path, "wb")!
    bytes.withUnsafeBufferPointer { _ = fwrite($0.baseAddress, 1, $0.count, file) }
    fclose(file)
    return url
}

/// Marks the boundary between the files of a multi-file input (seeds use it; mutations move it).
let separator = Array("\n#####\n".utf8)

/// Splits `bytes` at `separator` into exactly `count` parts (missing parts are empty).
func split(_ bytes: [UInt8], into count: Int) -> [ArraySlice<UInt8>] {
    var parts: [ArraySlice<UInt8>] = []
    var start = 0, i = 0
    while i + separator.count <= bytes.count && parts.count < count - 1 {
        if bytes[i] == separator[0] && Array(bytes[i..<(i + separator.count)]) == separator {
            parts.append(bytes[start..<i])
            i += separator.count
            start = i
        } else {
            i += 1
        }
    }
    parts.append(bytes[start...])
    while parts.count < count { parts.append([]) }
    return parts
}

/// The input as an array.
func input(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Text that exercises tokenizers: ASCII, accents, CJK, emoji, digits, special-token text, spaces.
let sampleText = "Hello wörld, 你好! 🙂 12345  <s> </s> <|im_start|>user\n\tend"

/// Whether `bytes` (JSON text) holds a decimal number in `range`. Harnesses skip such inputs: a size
/// that the loaders accept but that is large (a vocabulary of 10⁷ ids, a position table of 10⁸ rows)
/// makes one execution take seconds of allocation and filling, while what the fuzzer is after, the
/// checks themselves, is reached by numbers on either side of the range.
func containsNumber(in range: Range<Int>, _ bytes: ArraySlice<UInt8>) -> Bool {
    var value = 0, inNumber = false, overflowed = false
    for byte in bytes + [0] {
        if byte >= 0x30 && byte <= 0x39 {
            if !overflowed {
                let (times10, o1) = value.multipliedReportingOverflow(by: 10)
                let (next, o2) = times10.addingReportingOverflow(Int(byte - 0x30))
                overflowed = o1 || o2
                value = next
            }
            inNumber = true
        } else if inNumber {
            if !overflowed && range.contains(value) { return true }
            value = 0
            inNumber = false
            overflowed = false
        }
    }
    return false
}
