import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// A `quill serve` process on a free port, and plain HTTP requests to it.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    private(set) var port = 0
    private let errors = Pipe()
    private var stderrText = ""
    private let lock = NSLock()

    /// Starts the server and waits until `/health` answers 200 (or the process ends).
    init(_ arguments: [String]) throws {
        process.executableURL = QuillProcess.executable
        process.arguments = ["serve", "--port", "0"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        // Read stderr on a thread of its own: the port line, then everything else (kept for messages).
        let ready = DispatchSemaphore(value: 0)
        let handle = errors.fileHandleForReading
        Thread { [self] in
            var buffer = Data(), signalled = false
            while case let chunk = handle.availableData, !chunk.isEmpty {
                buffer += chunk
                lock.withLock { stderrText = String(decoding: buffer, as: UTF8.self) }
                if !signalled, let range = stderrText.range(of: #"listening on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                    port = Int(stderrText[range].split(separator: ":").last!)!
                    signalled = true
                    ready.signal()
                }
            }
            if !signalled { ready.signal() }
        }.start()
        ready.wait()
        guard port > 0 else { throw ServerError(message: "quill serve did not start: \(stderr)") }
        // The model loads after the port opens; /health says when it is ready.
        for _ in 0 ..< 600 {
            if (try? request("GET", "/health").status) == 200 { return }
            guard process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw ServerError(message: "quill serve never became healthy: \(stderr)")
    }

    var stderr: String { lock.withLock { stderrText } }

    struct ServerError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
        /// The `data:` payloads of a server-sent-event stream, in order.
        var events: [String] {
            text.components(separatedBy: "\n\n").compactMap { $0.hasPrefix("data: ") ? String($0.dropFirst(6)) : nil }
        }
    }

    /// One request; blocks until the whole answer has arrived.
    func request(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil,
                 headers: [String: String] = [:]) throws -> Reply {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = 600
        if let json { request.httpBody = try JSONSerialization.data(withJSONObject: json) }
        if let body { request.httpBody = body }
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        final class Box: @unchecked Sendable { var reply: Result<Reply, any Error>? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let response = response as? HTTPURLResponse {
                let headers = Dictionary(uniqueKeysWithValues: response.allHeaderFields.map { ("\($0.key)".lowercased(), "\($0.value)") })
                box.reply = .success(Reply(status: response.statusCode, headers: headers, body: data ?? Data()))
            } else {
                box.reply = .failure(error ?? ServerError(message: "no response"))
            }
            done.signal()
        }.resume()
        done.wait()
        return try box.reply!.get()
    }

    /// The value of the `/metrics` line `name value`, -1 if there is none.
    func metric(_ name: String) throws -> Int {
        let text = try request("GET", "/metrics").text
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") } ?? ""
        return Int(line.split(separator: " ").last ?? "") ?? -1
    }

    /// Sends `signal` and waits for the exit status.
    func stop(signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
}

/// Sends a request on a raw TCP connection and returns its socket, for a test to read from and close
/// when it chooses (URLSession reads every response to the end).
func sendRawRequest(port: Int, path: String, json: [String: Any]) throws -> Int32 {
    let body = try JSONSerialization.data(withJSONObject: json)
    let head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ServerProcess.ServerError(message: "socket failed") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        throw ServerProcess.ServerError(message: "connect failed")
    }
    let request = Data(head.utf8) + body
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    return fd
}

/// A raw TCP client, to walk away from a streaming response half way.
func readFirstBytesThenDisconnect(port: Int, path: String, json: [String: Any], bytes: Int) throws -> String {
    let fd = try sendRawRequest(port: port, path: path, json: json)
    defer { close(fd) }
    var received = Data(), buffer = [UInt8](repeating: 0, count: 4096)
    while received.count < bytes {
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 0 else { break }
        received += buffer[0 ..< n]
    }
    return String(decoding: received, as: UTF8.self)
}
