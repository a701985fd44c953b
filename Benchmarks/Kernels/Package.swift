// swift-tools-version:6.0
import PackageDescription

// Kernel micro-benchmarks, kept out of Quill's own build: a separate package that depends on the
// checkout by path. Build with the same native-CPU flags as Quill so the timed code is the same.
//   cd Benchmarks/Kernels && swift run -c release kernel-bench [--threads 1,2] [--filter matvec]
let package = Package(
    name: "QuillKernelBenchmarks",
    dependencies: [.package(name: "Quill", path: "../..")],
    targets: [
        .executableTarget(
            name: "kernel-bench",
            dependencies: [.product(name: "Quill", package: "Quill")],
            swiftSettings: [.unsafeFlags(["-Ounchecked", "-wmo", "-target-cpu", "native"])]),
    ]
)
