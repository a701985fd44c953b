import FoundationEssentials
import Hummingbird
import NIOCore
import QuillGeneration
import QuillModels
import QuillTokenizers

/// The HTTP API: OpenAI's `/v1/chat/completions`, `/v1/completions`, `/v1/models`, and `/health`,
/// `/metrics`, `/tokenize`, `/detokenize`.
func makeRouter(configuration: ServerConfiguration, state: ServerState, metrics: ServerMetrics) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: OpenAIErrorMiddleware(metrics: metrics))
    router.get("/health") { _, _ -> Response in
        switch state.phase {
        case .loading: return jsonResponse(["status": "loading model"], status: .serviceUnavailable)
        case let .failed(message): return jsonResponse(["status": "error", "message": .string(message)], status: .serviceUnavailable)
        case .ready: return jsonResponse(["status": "ok"])
        }
    }
    router.get("/metrics") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                 body: .init(byteBuffer: ByteBuffer(string: metrics.render(engine: state.handler?.engine.snapshot))))
    }

    let api = router.group().add(middleware: APIKeyMiddleware(key: configuration.apiKey))
    api.get("/v1/models") { _, _ -> Response in
        jsonResponse(["object": "list", "data": [["id": .string(configuration.modelName), "object": "model",
                                                   "created": 0, "owned_by": "quill"]]])
    }
    api.post("/v1/chat/completions") { request, _ -> Response in
        try await completion(request, kind: .chat, configuration: configuration, state: state, metrics: metrics)
    }
    api.post("/v1/completions") { request, _ -> Response in
        try await completion(request, kind: .completion, configuration: configuration, state: state, metrics: metrics)
    }
    api.post("/tokenize") { request, _ -> Response in
        let handler = try ready(state)
        let f = RequestFields(try JSONValue.object(from: try await body(of: request, configuration)))
        guard let content = try f.string("content") else { throw APIError.invalid("'content' is required.", param: "content") }
        let special = try f.bool("add_special") ?? false
        let tokens = special ? handler.model.encodePrompt(content) : handler.model.encode(content, parseSpecialTokens: true)
        return jsonResponse(["tokens": .array(tokens.map { JSONValue(Int($0)) })])
    }
    api.post("/detokenize") { request, _ -> Response in
        let handler = try ready(state)
        let f = RequestFields(try JSONValue.object(from: try await body(of: request, configuration)))
        guard case let .array(items)? = f["tokens"] else { throw APIError.invalid("'tokens' must be an array of token ids.", param: "tokens") }
        var ids: [TokenID] = []
        for item in items {
            guard case let .integer(t) = item, t >= 0, t < Int64(handler.model.model.vocabularySize) else {
                throw APIError.invalid("'tokens' must hold token ids below \(handler.model.model.vocabularySize).", param: "tokens")
            }
            ids.append(TokenID(t))
        }
        return jsonResponse(["content": .string(String(decoding: handler.model.bytes(of: ids), as: UTF8.self))])
    }
    return router
}

private func ready(_ state: ServerState) throws(APIError) -> CompletionHandler {
    guard let handler = state.handler else { throw .loading }
    return handler
}

private func body(of request: Request, _ configuration: ServerConfiguration) async throws -> Data {
    let buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
    return Data(buffer.readableBytesView)
}

private func completion(_ request: Request, kind: CompletionRequest.Kind, configuration: ServerConfiguration,
                        state: ServerState, metrics: ServerMetrics) async throws -> Response {
    let arrival = ContinuousClock.now
    let handler = try ready(state)
    // Kept in the request (not only read), so that the connection's input can still be watched below.
    var request = request
    let buffer = try await request.collectBody(upTo: configuration.maxBodyBytes)
    let parsed = try CompletionRequest(body: Data(buffer.readableBytesView), kind: kind)
    let prepared = try handler.prepare(parsed)
    let endpoint = request.uri.path
    // Submitted before any byte of the answer, so that a full queue is still a 429.
    let submission = try handler.engine.submit(prepared.job)
    guard parsed.stream else {
        // Nothing is written until the answer is whole, so a client that goes away is seen by its
        // connection's input closing (the body has been read, so input ends only then). Watching
        // the input consumes it: Hummingbird then closes the connection after the response, which
        // says so (`Connection: close`) so that no client sends another request on it.
        var response = try await request.body.consumeWithInboundCloseHandler { _ in
            jsonResponse(try await handler.respond(prepared, submission: submission, arrival: arrival))
        } onInboundClosed: {
            handler.engine.cancel(submission.id)
        }
        response.headers[.connection] = "close"
        metrics.countRequest(endpoint: endpoint, status: 200)
        return response
    }
    metrics.countRequest(endpoint: endpoint, status: 200)
    let body = ResponseBody { writer in
        try await handler.stream(prepared, submission: submission, arrival: arrival) { event in
            try await writer.write(ByteBuffer(string: "data: \(event)\n\n"))
        }
        try await writer.finish(nil)
    }
    return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
}

func jsonResponse(_ object: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"],
             body: .init(byteBuffer: ByteBuffer(string: CompletionHandler.json(object))))
}

/// Answers every error in OpenAI's `{"error": …}` shape and counts responses by status.
struct OpenAIErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return respond(error, path: request.uri.path)
        } catch let error as any HTTPResponseError {
            let code = Int(error.status.code)
            let message: String
            switch code {
            case 404: message = "Unknown path \(request.uri.path)."
            case 405: message = "\(request.method) is not allowed on \(request.uri.path)."
            case 413: message = "The request body is larger than the server accepts."
            default: message = error.status.reasonPhrase
            }
            return respond(APIError(status: code, message: message, type: code >= 500 ? "server_error" : "invalid_request_error"),
                           path: request.uri.path)
        } catch {
            return respond(.server("\(error)"), path: request.uri.path)
        }
    }

    private func respond(_ error: APIError, path: String) -> Response {
        metrics.countRequest(endpoint: path, status: error.status)
        var response = jsonResponse(error.body, status: HTTPResponse.Status(code: error.status))
        if let seconds = error.retryAfterSeconds { response.headers[.retryAfter] = String(seconds) }
        return response
    }
}

/// Requires `Authorization: Bearer <key>` when the server has a key.
struct APIKeyMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let key: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let key, request.headers[.authorization] != "Bearer \(key)" { throw APIError.unauthorized }
        return try await next(request, context)
    }
}
