import ArgumentParser
import QuillCommandLine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `quill serve`: replaces this process with `quill-server`, built beside `quill`, given the same arguments.
///
/// The HTTP stack (SwiftNIO, Hummingbird) is in that executable so that the other commands do not
/// map and relocate it at every start: measured, `quill complete` stays 2.3 MB smaller in resident
/// memory and starts 2 ms sooner. `exec` keeps the process id, so signals, the exit status and the
/// standard streams are the server's own, as if `quill` were the server.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over HTTP with OpenAI's API (/v1/chat/completions, /v1/completions, /v1/models).",
        discussion: "Runs quill-server (built beside quill) with these arguments; `quill serve --help` lists its options.",
        helpNames: [])  // `--help` goes to quill-server, which knows the options

    @Argument(parsing: .allUnrecognized, help: "The server's options.")
    var arguments: [String] = []

    func run() throws {
        try reportingErrors {
            let server = try siblingExecutable(named: "quill-server")
            let argv = ([server] + arguments).map { strdup($0) } + [nil]
            execv(server, argv)  // returns only on failure
            throw CommandError("cannot run \(server): \(String(cString: strerror(errno)))")
        }
    }
}

/// The path of the executable `name` in the directory of the running executable.
private func siblingExecutable(named name: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    #if os(Linux)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard length > 0 else { throw CommandError("cannot find the running executable: \(String(cString: strerror(errno)))") }
    let own = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    #else
    var size = UInt32(buffer.count)
    guard _NSGetExecutablePath(&buffer, &size) == 0, let resolved = realpath(buffer, nil) else {
        throw CommandError("cannot find the running executable")
    }
    defer { free(resolved) }
    let own = String(cString: resolved)
    #endif
    let directory = own.lastIndex(of: "/").map { String(own[..<$0]) } ?? "."
    let path = directory + "/" + name
    guard access(path, X_OK) == 0 else {
        throw CommandError("quill serve runs \(name), which is not beside quill (\(path)); `swift build -c release` builds both")
    }
    return path
}
