import FoundationEssentials
import QuillTokenizers

extension JSONValue {
    /// Parses a request body; anything but a JSON object is a 400.
    public static func object(from data: Data) throws(APIError) -> [String: JSONValue] {
        guard !data.isEmpty else { throw .invalid("The request body is empty; send a JSON object.") }
        let value: JSONValue
        do { value = try JSONValue(parsing: data) } catch {
            throw .invalid("The request body is not valid JSON.")
        }
        guard case let .object(fields) = value else { throw .invalid("The request body must be a JSON object.") }
        return fields
    }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .integer, .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// Typed, validated access to the fields of a request object; `null` counts as absent, unknown
/// fields are ignored, and a wrong type or value is a 400 naming the field.
struct RequestFields {
    let fields: [String: JSONValue]
    /// Prefix of `param` in errors (for nested objects).
    var path = ""

    init(_ fields: [String: JSONValue], path: String = "") {
        self.fields = fields
        self.path = path
    }

    subscript(_ key: String) -> JSONValue? {
        guard let value = fields[key], value != .null else { return nil }
        return value
    }

    func param(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func wrongType(_ key: String, expected: String) -> APIError {
        .invalid("'\(param(key))' must be \(expected), not \(self[key]?.typeName ?? "null").", param: param(key))
    }

    func string(_ key: String) throws(APIError) -> String? {
        guard let value = self[key] else { return nil }
        guard case let .string(s) = value else { throw wrongType(key, expected: "a string") }
        return s
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let value = self[key] else { return nil }
        guard case let .bool(b) = value else { throw wrongType(key, expected: "a boolean") }
        return b
    }

    func integer(_ key: String, in range: ClosedRange<Int64>) throws(APIError) -> Int? {
        guard let value = self[key] else { return nil }
        let n: Int64
        switch value {
        case let .integer(i): n = i
        case let .number(d) where d == d.rounded() && abs(d) < 9e15: n = Int64(d)
        default: throw wrongType(key, expected: "an integer")
        }
        guard range.contains(n) else {
            throw .invalid("'\(param(key))' must be between \(range.lowerBound) and \(range.upperBound), not \(n).", param: param(key))
        }
        return Int(n)
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws(APIError) -> Double? {
        guard let value = self[key] else { return nil }
        let x: Double
        switch value {
        case let .integer(i): x = Double(i)
        case let .number(d): x = d
        default: throw wrongType(key, expected: "a number")
        }
        guard range.contains(x) else {
            throw .invalid("'\(param(key))' must be between \(range.lowerBound) and \(range.upperBound), not \(x).", param: param(key))
        }
        return x
    }

    func object(_ key: String) throws(APIError) -> RequestFields? {
        guard let value = self[key] else { return nil }
        guard case let .object(o) = value else { throw wrongType(key, expected: "an object") }
        return RequestFields(o, path: param(key))
    }
}
