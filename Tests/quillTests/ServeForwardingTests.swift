import Foundation
import Testing

/// `quill serve` runs the `quill-server` executable beside `quill` with the same arguments.
@Suite struct ServeForwardingTests {
    @Test func helpListsTheServersOptions() throws {
        let result = try QuillProcess.run(["serve", "--help"], input: Data())
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.text.contains("USAGE: quill serve"))
        for option in ["--prompt-chunk", "--ctx-size", "--api-key", "--model"] {
            #expect(result.text.contains(option), "help: \(result.text)")
        }
    }

    @Test func theServerValidatesTheArgumentsPassedOn() throws {
        let result = try QuillProcess.run(["serve", "--port", "70000"], input: Data())
        #expect(result.status == 64)  // ArgumentParser's validation exit code, from quill-server
        #expect(result.stderr.contains("--port must be between 0 and 65535"), "stderr: \(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test func aQuillWithoutItsServerSaysSoInOneLine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("quill-alone-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let lone = directory.appendingPathComponent("quill").path
        let result = try QuillProcess.run([], input: Data(), shellPipeline: "cp \"$QUILL\" '\(lone)' && '\(lone)' serve --port 0")
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("quill-server") && result.stderr.contains(directory.path), "stderr: \(result.stderr)")
    }
}
