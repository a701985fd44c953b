/// Bounds on the token ids that tokenizer files may contain.
///
/// A vocabulary is stored as an array indexed by id, so its size comes from the largest id in the
/// file: an id of 10¹² or 2³¹ would ask for an allocation that aborts, a negative one would index
/// before the array. Every loader checks its ids here first and reports a one-line `TokenizerError`.
public enum VocabularyLimits {
    /// The largest vocabulary accepted (real ones are below 2¹⁸).
    public static let maximumSize = 1 << 24

    /// Checks that `id` (from `source`, for the message) can index a vocabulary.
    public static func check(_ id: Int, in source: String) throws {
        guard id >= 0 && id < maximumSize else {
            throw TokenizerError("\(source): token id \(id) is outside 0..<\(maximumSize)")
        }
    }
}
