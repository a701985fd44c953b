/// One GGUF metadata value. Arrays may nest and may mix nothing: every element of a GGUF array has
/// the array's single element type (an empty array keeps no element type).
///
/// Not `indirect`: the array case already holds its elements in a heap buffer, and an indirect enum
/// boxes every value on the heap — for a vocabulary's tokens, merges and token types (~147k values
/// for SmolLM2, kept with the file for the model's lifetime) that was several MB of resident memory.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8)
    case int8(Int8)
    case uint16(UInt16)
    case int16(Int16)
    case uint32(UInt32)
    case int32(Int32)
    case uint64(UInt64)
    case int64(Int64)
    case float32(Float)
    case float64(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    /// The GGUF name of the value's type (`uint32`, `string`, `array`, ...), for error messages.
    public var typeName: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .int32: return "int32"
        case .uint64: return "uint64"
        case .int64: return "int64"
        case .float32: return "float32"
        case .float64: return "float64"
        case .bool: return "bool"
        case .string: return "string"
        case .array(let a): return a.first.map { "array of \($0.typeName)" } ?? "array"
        }
    }

    /// The value as an Int if it is any integer type and fits; nil otherwise.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// The value as a Float if it is a float or integer type; nil otherwise.
    /// Large integers and float64 values round to the nearest Float.
    public var floatValue: Float? {
        switch self {
        case .float32(let v): return v
        case .float64(let v): return Float(v)
        case .uint64(let v): return Float(v)
        case .int64(let v): return Float(v)
        default: return intValue.map(Float.init)
        }
    }

    /// The string if the value is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The flag if the value is a bool.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The elements if the value is an array.
    public var arrayValue: [GGUFValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

/// GGUF value type codes as stored in the file.
enum GGUFValueType: UInt32 {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// The fewest bytes one value of this type can occupy: the fixed size for scalars, the length
    /// field for strings, element type + count for arrays. Used to bound array counts against
    /// the bytes left before anything is allocated.
    var minimumSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }
}
