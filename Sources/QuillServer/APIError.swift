import FoundationEssentials
import QuillTokenizers

/// An error answered in OpenAI's shape: an HTTP status and `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, CustomStringConvertible, Equatable, Sendable {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    /// Seconds for the `Retry-After` header (on 429).
    public var retryAfterSeconds: Int?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { message }

    /// 400 for a field with a wrong type or value.
    public static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    static func contextLengthExceeded(_ message: String, param: String) -> APIError {
        .invalid(message, param: param, code: "context_length_exceeded")
    }

    static let unauthorized = APIError(status: 401, message: "Incorrect or missing API key (send `Authorization: Bearer KEY`).",
                                       type: "invalid_request_error", code: "invalid_api_key")

    static func overloaded(retryAfterSeconds: Int) -> APIError {
        var error = APIError(status: 429, message: "The server is busy: its request queue is full. Retry later.",
                             type: "rate_limit_error", code: "rate_limit_exceeded")
        error.retryAfterSeconds = retryAfterSeconds
        return error
    }

    static let loading = APIError(status: 503, message: "The model is still loading.", type: "server_error", code: "model_loading")

    static func server(_ message: String) -> APIError { APIError(status: 500, message: message, type: "server_error") }

    /// The JSON body.
    var body: JSONValue {
        ["error": ["message": .string(message), "type": .string(type), "param": JSONValue(param), "code": JSONValue(code)]]
    }

    /// The body with sorted keys and escaped slashes, as JSONSerialization's `.sortedKeys` wrote it.
    var json: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(body)) ?? Data()
    }
}
