import QuillKernels

/// The tokens still in the running for the next position, with their (processed) logits.
///
/// Processors that filter (top-k, top-p, …) shrink the list instead of writing −∞, so later steps
/// touch a few dozen entries rather than the whole vocabulary.
public struct TokenCandidates: Sendable, Equatable {
    public var ids: [TokenID]
    public var logits: [Float]
    /// True when `ids[i] == i` for every i: the untouched logits of the whole vocabulary, so a token's
    /// entry can be found without searching.
    public private(set) var isWholeVocabulary: Bool
    /// True when sorted by logit, largest first (ties: smaller id first).
    public private(set) var isSorted: Bool

    /// Every token of the vocabulary, with `logits[id]`.
    public init(logits: [Float]) {
        self.ids = (0 ..< logits.count).map { TokenID($0) }
        self.logits = logits
        isWholeVocabulary = true
        isSorted = false
    }

    /// An explicit list of tokens and their logits.
    public init(ids: [TokenID], logits: [Float]) {
        precondition(ids.count == logits.count)
        self.ids = ids
        self.logits = logits
        isWholeVocabulary = false
        isSorted = false
    }

    public var count: Int { ids.count }

    /// Keeps the entries at `indices`, in that order.
    public mutating func keep(_ indices: [Int], sorted: Bool) {
        ids = indices.map { ids[$0] }
        logits = indices.map { logits[$0] }
        isWholeVocabulary = false
        isSorted = sorted
    }

    /// Sorts by logit, largest first; equal logits keep the smaller id first (as `argmax` does).
    public mutating func sort() {
        guard !isSorted else { return }
        let order = (0 ..< count).sorted {
            logits[$0] != logits[$1] ? logits[$0] > logits[$1] : ids[$0] < ids[$1]
        }
        keep(order, sorted: true)
    }

    /// The index of the largest logit (the smaller id on ties).
    public var indexOfMaximum: Int {
        var best = 0
        for i in 1 ..< max(count, 1) where logits[i] > logits[best] || (logits[i] == logits[best] && ids[i] < ids[best]) {
            best = i
        }
        return best
    }

    /// softmax(logits), in the order of the entries: e^(x − max) sixteen lanes at a time
    /// (`exponentiateShifted`, within 2 ulp of `expf`), then summed and normalised in Double. A −∞
    /// logit (a banned token) gets exactly 0. (A scalar Double `exp` per entry cost ~0.5 ms per
    /// whole-vocabulary draw, serial on the engine thread for every sequence of a batch.)
    public func probabilities() -> [Double] {
        guard !logits.isEmpty else { return [] }
        var e = logits
        e.withUnsafeMutableBufferPointer { _ = exponentiateShifted($0.baseAddress!, count: $0.count) }
        var p = [Double](repeating: 0, count: e.count)
        var total = 0.0
        for i in e.indices where logits[i] != -.infinity {
            p[i] = Double(e[i])
            total += p[i]
        }
        for i in p.indices { p[i] /= total }
        return p
    }

    /// The distribution as a dictionary from token id to probability (for tests and diagnostics).
    public func distribution() -> [TokenID: Double] {
        Dictionary(uniqueKeysWithValues: zip(ids, probabilities()))
    }
}
