import Foundation
import QuillModels
import Testing

/// Fixtures copied from the Hugging Face / llama.cpp reference pack (`shared/reference/smollm2`).
enum ReferenceData {
    static func url(_ path: String) -> URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures/smollm2/" + path)
    }

    static func jsonLines(_ path: String) throws -> [[String: Any]] {
        let text = try String(contentsOf: url(path), encoding: .utf8)
        return try text.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    static func json(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(path))) as! [String: Any]
    }

    /// Full logits stored as float16 (rounding error ≤ 0.016, far inside the quantised-path tolerances).
    static func halfLogits(_ path: String) throws -> [Float] {
        let data = try Data(contentsOf: url(path))
        return data.withUnsafeBytes { raw in
            (0..<data.count / 2).map { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        }
    }

    static func ids(_ value: Any?) -> [Int32] { (value as! [NSNumber]).map { $0.int32Value } }
}

/// The real SmolLM2 model that `Weights/fetch` downloads; the tests need it and say so when it is missing.
enum RealModel {
    static var path: String { DefaultModel.path }

    static func load(precision: ComputePrecision, threads: Int = 2) throws -> TextModel {
        guard FileManager.default.fileExists(atPath: path) else {
            Issue.record("model not found at \(path): run Weights/fetch first")
            throw CancellationError()
        }
        return try TextModel(path: path, threads: threads, precision: precision)
    }
}

/// log Σ exp(x), in Double.
func logSumExp(_ x: ArraySlice<Float>) -> Double {
    let m = Double(x.max()!)
    return m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
}
