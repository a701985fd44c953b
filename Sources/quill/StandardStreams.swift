import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to file descriptor 1, so every token reaches a pipe as soon as it is made.
enum StandardOutput {
    /// Set once a write found the reader gone (EPIPE).
    nonisolated(unsafe) static var closed = false

    /// Ignores SIGPIPE so that a closed pipe becomes an EPIPE error we can handle quietly.
    static func prepare() { signal(SIGPIPE, SIG_IGN) }

    /// Writes all of `text`; returns false once the reader has gone away.
    @discardableResult
    static func write(_ text: String) -> Bool {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBytes { writeAll(fd: 1, $0) }
    }

    private static func writeAll(fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) -> Bool {
        guard !closed else { return false }
        var offset = 0
        while offset < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                closed = true
                return false
            }
            offset += n
        }
        return true
    }
}

enum StandardError {
    static func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}

enum StandardInput {
    /// Reads stdin to EOF and checks that it is UTF-8 text.
    static func readText() throws -> String {
        let data = FileHandle.standardInput.readDataToEndOfFile()
        guard let text = String(validating: data, as: UTF8.self) else {
            throw CommandError("standard input is not valid UTF-8 text")
        }
        return text
    }
}

/// Exit status when the reader of stdout went away: the conventional 128 + SIGPIPE, without a message.
let closedOutputExitCode = ExitCode(141)
