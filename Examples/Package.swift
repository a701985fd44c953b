// swift-tools-version:6.0
// A package that uses Quill as a library, by path, with no extra flags: `cd Examples && swift run stream`.
import PackageDescription

let package = Package(
    name: "QuillExamples",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "Quill", path: "..")],
    targets: [
        .executableTarget(name: "stream", dependencies: [.product(name: "Quill", package: "Quill")]),
    ]
)
