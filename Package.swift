// swift-tools-version:6.1
import PackageDescription

// Quill builds its kernels for the CPU it is compiled on (as llama.cpp does by default):
// without a target-CPU flag Swift SIMD lowers to scalar `fmaf` calls and Float16 to library calls.
// Set QUILL_PORTABLE=1 in the environment to build a binary that runs on any x86-64 / arm64 CPU.
import Foundation
let portable = ProcessInfo.processInfo.environment["QUILL_PORTABLE"] != nil
let nativeFlags: [SwiftSetting] = portable ? [] : [
    .unsafeFlags(["-target-cpu", "native"]),
]
// Only the kernels' hot loops drop Swift's bounds and overflow checks (-Ounchecked): they index
// buffers whose sizes were validated when the model was bound. Everything that reads untrusted input
// (file formats, configs, tokenizers, the command line) keeps the checks, so a validation that was
// missed traps with a message instead of corrupting memory; measured, this costs nothing for pp/tg.
let kernelFlags: [SwiftSetting] = nativeFlags + [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]
let checkedFlags: [SwiftSetting] = nativeFlags + [.unsafeFlags(["-wmo"], .when(configuration: .release)), .enableUpcomingFeature("MemberImportVisibility")]

// `quill` carries the Swift runtime and FoundationEssentials in its binary on Linux (what `swift build
// --static-swift-stdlib` does, without compiling every module a second time for it): loaded as shared
// libraries they cost every run 4 MB of resident memory for their symbol tables and relocations
// (peak RSS of `complete -c 2048` over 2,000 tokens 159.7 -> 155.6 MB), and the binary then runs where
// no Swift toolchain is installed. The two libraries named are what the static FoundationEssentials
// needs besides itself in this toolchain; other toolchain versions link the runtime dynamically.
#if compiler(>=6.3) && compiler(<6.4)
let staticRuntime: [LinkerSetting] = [
    .unsafeFlags(["-static-stdlib", "-l_FoundationCollections", "-l_FoundationCShims"], .when(platforms: [.linux])),
]
#else
let staticRuntime: [LinkerSetting] = []
#endif

let package = Package(
    name: "Quill",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Quill", targets: ["Quill"]),
        .executable(name: "quill", targets: ["quill"]),
        .executable(name: "quill-server", targets: ["quill-server"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Without Hummingbird's default traits: "FullFoundation" made its URL-encoded form coder import
        // Foundation (the rest of Hummingbird imports FoundationEssentials), which put libFoundation and
        // ICU (~7 MB resident) into `quill`; "ConfigurationSupport" compiles swift-configuration.
        // Quill uses neither. Traits need Hummingbird 2.28 or later.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .target(name: "QuillKernels", dependencies: ["COpenBLAS"], swiftSettings: kernelFlags),
        .target(name: "QuillTokenizers", swiftSettings: checkedFlags),
        // Audio files and speech features (WAV, resampling, log-mel); FoundationEssentials only.
        .target(name: "QuillAudio", swiftSettings: checkedFlags),
        .target(name: "QuillGeneration", dependencies: ["QuillKernels"], swiftSettings: checkedFlags),
        .target(name: "QuillModels", dependencies: ["QuillGeneration", "QuillKernels", "QuillTokenizers", "QuillAudio"],
                swiftSettings: checkedFlags),
        // `import Quill`: re-exports the library modules (Sources/QuillLibrary, so that the name
        // does not clash with the `quill` tool's folder on case-insensitive file systems).
        .target(name: "Quill", dependencies: ["QuillModels", "QuillGeneration", "QuillTokenizers", "QuillKernels", "QuillAudio"],
                path: "Sources/QuillLibrary"),
        // The OpenAI-compatible HTTP server (the library targets stay free of HTTP).
        .target(name: "QuillServer", dependencies: [
            "QuillModels",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ], swiftSettings: checkedFlags + [.unsafeFlags(["-enable-testing"])]),  // request handling is tested from inside
        // What the two executables share: model options, error reporting, unbuffered standard streams.
        .target(name: "QuillCommandLine", dependencies: [
            "QuillModels",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: checkedFlags),
        .executableTarget(name: "quill", dependencies: [
            "QuillModels", "QuillCommandLine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: checkedFlags, linkerSettings: staticRuntime),
        // `quill serve` runs this executable: the HTTP stack (SwiftNIO, Hummingbird) is linked here only,
        // so the other commands neither map nor relocate it (2.3 MB of resident memory each run).
        .executableTarget(name: "quill-server", dependencies: [
            "QuillServer", "QuillCommandLine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: checkedFlags),
        .testTarget(name: "QuillKernelsTests", dependencies: ["QuillKernels"], swiftSettings: nativeFlags),
        .testTarget(name: "QuillTokenizersTests", dependencies: ["QuillTokenizers"],
                    resources: [.copy("Fixtures")], swiftSettings: nativeFlags),
        .testTarget(name: "QuillAudioTests", dependencies: ["QuillAudio"],
                    resources: [.copy("Fixtures")], swiftSettings: nativeFlags),
        .testTarget(name: "QuillGenerationTests", dependencies: ["QuillGeneration"], swiftSettings: nativeFlags),
        .testTarget(name: "QuillModelsTests", dependencies: ["QuillModels"],
                    resources: [.copy("Fixtures")], swiftSettings: nativeFlags),
        .testTarget(name: "QuillServerTests", dependencies: ["QuillServer"], swiftSettings: nativeFlags),
        // Runs the built `quill` binary as a user would (bad input, exit codes, streaming). `swift test`
        // builds every product first; a dependency on the executables would link `quill`'s objects, and
        // with them its static runtime, into the test bundle.
        .testTarget(name: "quillTests", swiftSettings: nativeFlags),
    ]
)
