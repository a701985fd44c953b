import FoundationEssentials

/// A parsed JSON value that keeps JSON's own types apart (a boolean is not a number, an integer
/// keeps all its digits). Quill reads its JSON files (`tokenizer.json`, `config.json`, safetensors
/// headers, CTranslate2 vocabularies) and the server's requests into this type with
/// FoundationEssentials' `JSONDecoder`, and writes the server's responses from it with `JSONEncoder`,
/// so that nothing needs the full Foundation's `JSONSerialization`.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number written without a fraction or exponent that fits in `Int64` (`JSONDecoder` also
    /// reads `1.0` and `1e3` as integers).
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses a JSON document with `JSONDecoder` (UTF-8, or UTF-16/32 with a byte order mark).
    /// - Throws: `JSONDecoder`'s error when `data` is not valid JSON.
    public init(parsing data: Data) throws {
        let decoder = JSONDecoder()
        decoder.userInfo[KindHint.key] = KindHint()
        self = try decoder.decode(JSONValue.self, from: data)
    }

    /// Decodes whatever value the decoder holds; prefer `init(parsing:)`, which makes this fast.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null; return }
        // The Decoder API can only ask "is this a T?", and each wrong guess costs a thrown error
        // (about 2 µs: a 3.5 MB tokenizer.json took 0.43 s with a fixed order). Siblings at one depth
        // nearly always share a kind (vocabulary ids, merge pairs), so try the kind last seen at this
        // depth first: 0.12 s, against 0.06 s for JSONSerialization and 0.09 s for a typed Decodable.
        guard let hint = decoder.userInfo[KindHint.key] as? KindHint else {
            self = try Self.decodeAnyKind(container, first: .string, hint: nil)
            return
        }
        let depth = hint.depth
        let predicted = depth < hint.kinds.count ? hint.kinds[depth] : .string
        self = try Self.decodeAnyKind(container, first: predicted, hint: hint)
    }

    /// Encodes the value as itself (with `JSONEncoder`: the JSON text it stands for).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case let .bool(b): try container.encode(b)
        case let .integer(i): try container.encode(i)
        case let .number(d): try container.encode(d)
        case let .string(s): try container.encode(s)
        case let .array(a): try container.encode(a)
        case let .object(o): try container.encode(o)
        }
    }

    /// The member `key` of an object (nil for a missing member or a value that is not an object).
    public subscript(key: String) -> JSONValue? {
        guard case let .object(fields) = self else { return nil }
        return fields[key]
    }

    /// The text of a string value.
    public var stringValue: String? {
        guard case let .string(s) = self else { return nil }
        return s
    }

    /// The elements of an array value.
    public var arrayValue: [JSONValue]? {
        guard case let .array(a) = self else { return nil }
        return a
    }

    /// The members of an object value.
    public var objectValue: [String: JSONValue]? {
        guard case let .object(o) = self else { return nil }
        return o
    }

    /// True for JSON's `null`.
    public var isNull: Bool { self == .null }
}

// MARK: - Decoding any kind

extension JSONValue {
    /// The kinds in the order they are tried after the predicted one (strings and integers are the
    /// bulk of Quill's files).
    enum Kind: CaseIterable {
        case string, integer, array, object, bool, number
    }

    /// The kind that last decoded at each depth, shared by one `init(parsing:)`. Decoding runs on
    /// one thread, so plain stored properties are enough.
    final class KindHint: @unchecked Sendable {
        static let key = CodingUserInfoKey(rawValue: "quill.JSONValue.kindHint")!
        var depth = 0
        var kinds = [Kind](repeating: .string, count: 32)
    }

    private static func decodeAnyKind(_ container: any SingleValueDecodingContainer, first: Kind,
                                      hint: KindHint?) throws -> JSONValue {
        if let value = attempt(first, container, hint) { return value }
        for kind in Kind.allCases where kind != first && kind != .number {
            if let value = attempt(kind, container, hint) {
                hint?.remember(kind)
                return value
            }
        }
        // Every JSON value is one of the kinds, so only a number is left; anything else (a string
        // that is not valid UTF-8, a number out of Double's range) is an error of the document.
        let value = JSONValue.number(try container.decode(Double.self))
        hint?.remember(.number)
        return value
    }

    private static func attempt(_ kind: Kind, _ container: any SingleValueDecodingContainer, _ hint: KindHint?) -> JSONValue? {
        switch kind {
        case .string: return (try? container.decode(String.self)).map(JSONValue.string)
        case .integer: return (try? container.decode(Int64.self)).map(JSONValue.integer)
        case .number: return (try? container.decode(Double.self)).map(JSONValue.number)
        case .bool: return (try? container.decode(Bool.self)).map(JSONValue.bool)
        case .array:
            hint?.depth += 1
            defer { hint?.depth -= 1 }
            return (try? container.decode([JSONValue].self)).map(JSONValue.array)
        case .object:
            hint?.depth += 1
            defer { hint?.depth -= 1 }
            return (try? container.decode([String: JSONValue].self)).map(JSONValue.object)
        }
    }
}

extension JSONValue.KindHint {
    func remember(_ kind: JSONValue.Kind) {
        if depth < kinds.count { kinds[depth] = kind }
    }
}

// MARK: - Literals (for building responses)

/// `["id": .string(id), "choices": [...], "logprobs": nil]` builds an object; `nil` is `null`.
extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }

    /// An integer value.
    public init(_ value: Int) { self = .integer(Int64(value)) }
    /// A number value.
    public init(_ value: Double) { self = .number(value) }
    /// A string value, or `null` for nil.
    public init(_ value: String?) { self = value.map(JSONValue.string) ?? .null }
}

// MARK: - JSONSerialization's number semantics

/// Quill's file readers used `JSONSerialization`, whose numbers and booleans are all `NSNumber`s.
/// These accessors answer what those readers' casts answered, so that a file that loaded (or was
/// refused) before still does.
extension JSONValue {
    /// `value as? Bool`: `true` and `false`, and also the numbers 0 and 1 (an `NSNumber` that is
    /// exactly 0 or 1 bridges to `Bool`).
    package var bridgedBool: Bool? {
        switch self {
        case let .bool(b): b
        case let .integer(i): i == 0 ? false : i == 1 ? true : nil
        case let .number(d): d == 0 ? false : d == 1 ? true : nil
        default: nil
        }
    }

    /// `(value as? NSNumber)?.intValue`: any number, truncated toward zero (`1.5` is 1), and booleans
    /// as 1 and 0. A number outside `Int`'s range is `Int.min`, as x86-64's conversion gives it.
    package var bridgedInt: Int? {
        switch self {
        case let .bool(b): b ? 1 : 0
        case let .integer(i): Int(i)
        case let .number(d): d >= -0x1p63 && d < 0x1p63 ? Int(d) : Int.min
        default: nil
        }
    }

    /// `(value as? NSNumber)?.floatValue`: any number rounded to `Float`, booleans as 1 and 0.
    package var bridgedFloat: Float? {
        switch self {
        case let .bool(b): b ? 1 : 0
        case let .integer(i): Float(i)
        case let .number(d): Float(d)
        default: nil
        }
    }

    /// `value as? [NSNumber]`, each element as `bridgedInt`: nil unless every element is a number
    /// or a boolean.
    package var bridgedIntArray: [Int]? {
        guard case let .array(elements) = self else { return nil }
        var result: [Int] = []
        result.reserveCapacity(elements.count)
        for element in elements {
            guard let n = element.bridgedInt else { return nil }
            result.append(n)
        }
        return result
    }
}
