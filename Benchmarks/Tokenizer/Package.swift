// swift-tools-version:6.0
import PackageDescription

// Standalone benchmark package: depends on the root Quill package by path (local packages may use
// the root's unsafeFlags; only URL dependencies may not). It imports QuillModels (GGUF vocabularies), whose
// kernels need the CPU features that `-target-cpu native` enables, as the root package builds them.
let package = Package(
    name: "TokenizerBench",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "Quill", path: "../..")],
    targets: [
        .executableTarget(name: "tokenizer-bench", dependencies: [.product(name: "Quill", package: "Quill")],
                          swiftSettings: [.unsafeFlags(["-Ounchecked", "-wmo", "-target-cpu", "native"])]),
    ]
)
