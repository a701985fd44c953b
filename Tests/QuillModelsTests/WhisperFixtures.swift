import Foundation
import QuillModels
import Testing

/// Reference data copied from the pack (`shared/reference/whisper-base`) and the real model, which
/// `Weights/fetch whisper-base` downloads; tests that need it fail with that advice when it is missing.
enum WhisperFixtures {
    static func url(_ name: String) -> URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures/whisper/" + name)
    }

    static func modelDirectory() throws -> String {
        let directory = WhisperModel.defaultDirectory
        guard FileManager.default.fileExists(atPath: directory + "/model.bin") else {
            Issue.record("whisper-base not found at \(directory): run `Weights/fetch whisper-base` first")
            throw CancellationError()
        }
        return directory
    }

    static func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(name))) as! [String: Any]
    }

    /// A little-endian float32 `.npy` (format 1.0, C order): shape and values.
    static func npy(_ name: String) throws -> (shape: [Int], values: [Float]) {
        let data = try Data(contentsOf: url(name))
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, String(bytes: bytes[1..<6], encoding: .ascii) == "NUMPY" else {
            throw CheckpointError(path: name, problem: "not a .npy file")
        }
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        let header = String(bytes: bytes[10..<(10 + headerLength)], encoding: .ascii) ?? ""
        guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False"),
              let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw CheckpointError(path: name, problem: "unsupported .npy header \(header)")
        }
        let shape = header[open.upperBound..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let start = 10 + headerLength
        let count = shape.reduce(1, *)
        guard bytes.count == start + 4 * count else { throw CheckpointError(path: name, problem: "size does not match the shape") }
        let values = data.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: start + 4 * $0, as: UInt32.self))) }
        }
        return (shape, values)
    }
}
