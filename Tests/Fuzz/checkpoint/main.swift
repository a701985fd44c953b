import Foundation
import QuillGeneration
import QuillModels

// Hugging Face encoder-decoder folder: config.json, generation_config.json and the safetensors header
// (input = the three files joined by the separator); a checkpoint that loads decodes two tokens.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let parts = split(input(data, size), into: 3)
    // Position tables, layer counts and lengths from 10⁵ up to the limits are valid and only slow.
    for config in parts.prefix(2) where containsNumber(in: 100_000 ..< Seq2SeqLimits.maximumPositionTableElements, config) {
        return 0
    }
    writeScratch("config.json", parts[0])
    writeScratch("generation_config.json", parts[1])
    writeScratch("model.safetensors", parts[2])
    if let file = try? SafetensorsFile(path: scratch.appendingPathComponent("model.safetensors").path) {
        for (name, info) in file.tensors.prefix(8) where info.elementCount <= 4096 {
            _ = try? file.vector(name, count: info.elementCount)
        }
    }
    guard let model = try? Seq2SeqLoader.load(directory: scratch.path, threads: 1) else { return 0 }
    var settings = model.generationDefaults
    settings.maxNewTokens = 2
    settings.numReturnSequences = 1
    let source: [TokenID] = [0, TokenID(min(1, model.vocabularySize - 1))]
    _ = try? Seq2SeqSearch.greedy(model: model, sources: [source], settings: settings)
    return 0
}
