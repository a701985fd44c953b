import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import QuillGeneration
import QuillModels
import ServiceLifecycle
import UnixSignals
import Synchronization

/// How `quill serve` runs.
public struct ServerConfiguration: Sendable {
    public var modelPath: String
    /// The name `/v1/models` lists and responses carry.
    public var modelName: String
    public var host = "127.0.0.1"
    /// 0 picks a free port (printed when listening).
    public var port = 8080
    /// Compute threads of the engine.
    public var threads = ProcessInfo.processInfo.activeProcessorCount
    public var precision: ComputePrecision = .quantized
    /// KV positions shared by every sequence.
    public var contextTokens = 16384
    /// The most sequences decoding at once.
    public var parallel = 8
    /// The most requests waiting for admission; more get 429.
    public var maxQueue = 64
    /// Prompt tokens per chunk (and the most tokens per forward pass); the prefix cache reuses whole
    /// chunks, so a multiple of the 32-token KV block.
    public var promptChunk = 128
    public var prefixCaching = true
    /// Requests to `/v1/*` and `/tokenize` must send `Authorization: Bearer <apiKey>` when set.
    public var apiKey: String?
    /// Larger request bodies get 413.
    public var maxBodyBytes = 8 << 20
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    public var shutdownGraceSeconds = 30

    public init(modelPath: String, modelName: String) {
        self.modelPath = modelPath
        self.modelName = modelName
    }
}

/// The model's state as `/health` reports it.
final class ServerState: Sendable {
    enum Phase: Sendable { case loading, ready(CompletionHandler), failed(String) }
    private let _phase = Mutex(Phase.loading)
    var phase: Phase {
        get { _phase.withLock { $0 } }
        set { _phase.withLock { $0 = newValue } }
    }

    var handler: CompletionHandler? {
        if case let .ready(handler) = phase { return handler }
        return nil
    }
}

/// Loads the model behind the HTTP server (so that `/health` answers 503 meanwhile), runs the
/// engine, and stops it after the HTTP server has drained its requests.
struct EngineService: Service {
    let configuration: ServerConfiguration
    let state: ServerState
    let metrics: ServerMetrics

    func run() async throws {
        let engine: InferenceEngine
        let template: ChatTemplate?
        do {
            let model = try TextModel(path: configuration.modelPath, threads: configuration.threads,
                                      precision: configuration.precision, maxBatch: configuration.promptChunk)
            template = try? ChatTemplate(model: model)
            engine = try InferenceEngine(model: model, contextTokens: configuration.contextTokens,
                                         threads: configuration.threads, maxRunning: configuration.parallel,
                                         maxQueue: configuration.maxQueue, promptChunk: configuration.promptChunk,
                                         prefixCaching: configuration.prefixCaching)
        } catch {
            state.phase = .failed("\(error)")
            throw ServerStartError(message: "\(error)")
        }
        engine.start()
        state.phase = .ready(CompletionHandler(engine: engine, metrics: metrics, template: template,
                                               modelName: configuration.modelName))
        printError("quill serve: model ready (\(configuration.modelName), \(configuration.contextTokens) KV positions, up to \(configuration.parallel) sequences at once)")
        try? await gracefulShutdown()
        engine.stop()
    }
}

struct ServerStartError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Writes a line to stderr with write(2) (FoundationEssentials has no FileHandle); a closed or
/// failing stderr loses the line instead of stopping the server.
func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return }
        offset += n
    }
}

/// Runs `quill serve` until SIGTERM or SIGINT: stops accepting connections, lets in-flight requests
/// finish within the grace period, then returns.
public func runServer(_ configuration: ServerConfiguration) async throws {
    var logger = Logger(label: "quill.serve")
    // Errors reach clients as responses and the command line as one line; the framework's own logs
    // (cancelled channels while shutting down) would only add noise.
    logger.logLevel = .critical
    let state = ServerState()
    let metrics = ServerMetrics()
    let router = makeRouter(configuration: configuration, state: state, metrics: metrics)
    // One event-loop thread is plenty for the HTTP side; compute runs on the engine's own threads.
    let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "quill"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? configuration.port
            printError("quill serve: listening on http://\(configuration.host):\(port)")
        },
        eventLoopGroupProvider: .shared(eventLoops),
        logger: logger)
    let engine = EngineService(configuration: configuration, state: state, metrics: metrics)
    var group = ServiceGroupConfiguration(services: [.init(service: engine), .init(service: app)],
                                          gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    group.maximumGracefulShutdownDuration = .seconds(configuration.shutdownGraceSeconds)
    try await ServiceGroup(configuration: group).run()
    try await eventLoops.shutdownGracefully()
}
