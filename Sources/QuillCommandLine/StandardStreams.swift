import ArgumentParser
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to file descriptor 1, so every token reaches a pipe as soon as it is made.
public enum StandardOutput {
    /// Set once a write found the reader gone (EPIPE).
    public nonisolated(unsafe) static var closed = false

    /// Ignores SIGPIPE so that a closed pipe becomes an EPIPE error we can handle quietly.
    public static func prepare() { signal(SIGPIPE, SIG_IGN) }

    /// Writes all of `text`; returns false once the reader has gone away.
    @discardableResult
    public static func write(_ text: String) -> Bool {
        guard !closed else { return false }
        if writeAll(fd: 1, text) { return true }
        closed = true
        return false
    }
}

/// Writes all of `text` to `fd`, retrying short writes and EINTR; false on any other error.
private func writeAll(fd: Int32, _ text: String) -> Bool {
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }
}

/// Writes to file descriptor 2.
public enum StandardError {
    /// Unbuffered, like FileHandle.standardError was. A failed write to stderr is dropped: there is
    /// nowhere left to report it.
    public static func write(_ text: String) {
        _ = writeAll(fd: 2, text)
    }
}

/// Standard input read whole.
public enum StandardInput {
    /// Reads stdin to EOF and checks that it is UTF-8 text.
    public static func readText() throws -> String {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CommandError("cannot read standard input: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[..<n])
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw CommandError("standard input is not valid UTF-8 text")
        }
        return text
    }
}

/// Exit status when the reader of stdout went away: the conventional 128 + SIGPIPE, without a message.
public let closedOutputExitCode = ExitCode(141)
