#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file could not be memory-mapped.
public struct MappedFileError: Error, CustomStringConvertible, Sendable {
    /// The kind of failure.
    public enum Kind: Sendable, Equatable {
        /// `open` failed (missing file, no permission, ...); `errno` is kept.
        case cannotOpen(errno: Int32)
        /// The path names a directory.
        case isDirectory
        /// The path is not a regular file (FIFO, device, ...).
        case notRegularFile
        /// The file has zero bytes; `mmap` cannot map an empty range.
        case empty
        /// `fstat` failed.
        case cannotStat(errno: Int32)
        /// `mmap` failed.
        case mmapFailed(errno: Int32)
    }

    public let path: String
    public let kind: Kind

    public init(path: String, kind: Kind) {
        self.path = path
        self.kind = kind
    }

    /// One line: `<path>: <problem>`.
    public var description: String { "\(path): \(problem)" }

    /// The problem without the path.
    public var problem: String {
        switch kind {
        case .cannotOpen(let e):
            return e == ENOENT ? "no such file" : "cannot open (\(Self.message(e)))"
        case .isDirectory: return "is a directory"
        case .notRegularFile: return "not a regular file"
        case .empty: return "file is empty"
        case .cannotStat(let e): return "cannot stat (\(Self.message(e)))"
        case .mmapFailed(let e): return "mmap failed (\(Self.message(e)))"
        }
    }

    private static func message(_ e: Int32) -> String {
        guard let s = strerror(e) else { return "errno \(e)" }
        return String(cString: s)
    }
}

/// A whole file mapped read-only into memory (`PROT_READ`, `MAP_PRIVATE`).
///
/// Nothing is copied: pages are faulted in from the page cache on first touch, so opening a
/// multi-gigabyte model is instant and the weights are shared with other processes reading it.
/// The mapping lives as long as this object; pointers derived from `base` must not outlive it.
public final class MappedFile: @unchecked Sendable {
    /// First byte of the mapping.
    public let base: UnsafeRawPointer
    /// Length of the file (and of the mapping) in bytes; always > 0.
    public let size: Int
    /// The path the file was opened with.
    public let path: String

    /// Maps the file at `path`. Throws `MappedFileError` for a missing file, a directory, an empty
    /// file or a failing `mmap`.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw MappedFileError(path: path, kind: .cannotOpen(errno: errno)) }
        // The mapping keeps its own reference to the file, so the descriptor can go right away.
        defer { close(fd) }

        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MappedFileError(path: path, kind: .cannotStat(errno: errno)) }
        let fileType = st.st_mode & S_IFMT
        if fileType == S_IFDIR { throw MappedFileError(path: path, kind: .isDirectory) }
        guard fileType == S_IFREG else { throw MappedFileError(path: path, kind: .notRegularFile) }
        let size = Int(st.st_size)
        guard size > 0 else { throw MappedFileError(path: path, kind: .empty) }

        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw MappedFileError(path: path, kind: .mmapFailed(errno: errno)) }
        self.base = UnsafeRawPointer(p)
        self.size = size
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), size)
    }

    /// The mapped bytes as a buffer.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Drops the whole pages of `byteCount` bytes at `start` from this process's resident set
    /// (`MADV_DONTNEED`), when they lie in this mapping (else nothing: other memory must never be
    /// advised away). For load-time copies (quantised weights): the file's bytes need not stay
    /// counted, and later reads fault them in again from the page cache. Those reads are row lookups
    /// (the embeddings of a tied output matrix), so the pages are also marked for random access
    /// (`MADV_RANDOM`): without it each looked-up token brought its neighbours' pages back too, and
    /// a q8_0 Marian translating 16 sentences grew 64 MB of file pages back (peak RSS 165 → 131 MiB).
    public func releaseResidentPages(start: UnsafeRawPointer, byteCount: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let low = Int(bitPattern: start), high = low + byteCount
        guard low >= Int(bitPattern: base), high <= Int(bitPattern: base) + size else { return }
        let first = (low + page - 1) / page * page, end = high / page * page
        if end > first {
            _ = madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_DONTNEED)
            _ = madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_RANDOM)
        }
    }
}
