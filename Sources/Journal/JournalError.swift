import CLMDB
import Failures

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A code returned by LMDB or by the operating system beneath it.
///
/// LMDB reports both its own `MDB_*` codes (negative numbers) and plain `errno`
/// values such as `EIO` or `ENOSPC`, so this is an open set: any `Int32` is a
/// valid value, and the well-known ones have Swift names.
public struct LMDBCode: RawRepresentable, Hashable, Sendable, Error, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// `MDB_KEYEXIST`: the key/data pair already exists.
    public static let keyExists = LMDBCode(MDB_KEYEXIST)
    /// `MDB_NOTFOUND`: no matching key/data pair.
    public static let notFound = LMDBCode(MDB_NOTFOUND)
    /// `MDB_CORRUPTED`: a page has an invalid type.
    public static let corrupted = LMDBCode(MDB_CORRUPTED)
    /// `MDB_PAGE_NOTFOUND`: a page number beyond the data file's last page (a damaged tree).
    public static let pageNotFound = LMDBCode(MDB_PAGE_NOTFOUND)
    /// `MDB_PANIC`: a fatal error; the environment must be closed.
    public static let panic = LMDBCode(MDB_PANIC)
    /// `MDB_VERSION_MISMATCH`: the environment was written by another LMDB version.
    public static let versionMismatch = LMDBCode(MDB_VERSION_MISMATCH)
    /// `MDB_INVALID`: the file is not an LMDB data file.
    public static let invalid = LMDBCode(MDB_INVALID)
    /// `MDB_MAP_FULL`: the environment's map size is reached.
    public static let mapFull = LMDBCode(MDB_MAP_FULL)
    /// `MDB_DBS_FULL`: too many named databases.
    public static let dbsFull = LMDBCode(MDB_DBS_FULL)
    /// `MDB_READERS_FULL`: the reader lock table is full.
    public static let readersFull = LMDBCode(MDB_READERS_FULL)
    /// `MDB_TXN_FULL`: the transaction has too many dirty pages.
    public static let txnFull = LMDBCode(MDB_TXN_FULL)
    /// `MDB_MAP_RESIZED`: another process grew the map; adopt its size.
    public static let mapResized = LMDBCode(MDB_MAP_RESIZED)
    /// `MDB_BAD_TXN`: the transaction must be aborted.
    public static let badTransaction = LMDBCode(MDB_BAD_TXN)
    /// `MDB_BAD_VALSIZE`: a key or value is too large.
    public static let badValueSize = LMDBCode(MDB_BAD_VALSIZE)
    /// `EIO`: an input/output error.
    public static let io = LMDBCode(EIO)
    /// `ENOSPC`: no space left on the device.
    public static let noSpace = LMDBCode(ENOSPC)
    /// `EACCES`: permission denied.
    public static let accessDenied = LMDBCode(EACCES)
    /// `EROFS`: read-only file system.
    public static let readOnlyFileSystem = LMDBCode(EROFS)
    /// `ENOMEM`: out of memory.
    public static let noMemory = LMDBCode(ENOMEM)
    /// `ENOENT`: no such file or directory.
    public static let noEntry = LMDBCode(ENOENT)
    /// `ENOTDIR`: not a directory.
    public static let notDirectory = LMDBCode(ENOTDIR)

    /// The text LMDB gives for the code (it falls back to `strerror` for `errno` values).
    ///
    /// The corresponding C function is `mdb_strerror`.
    public var description: String { String(cString: mdb_strerror(rawValue)) }
}

/// An error raised by the journal: what went wrong (``code``), the underlying
/// LMDB or system code when there is one, and where (operation, database, key, path).
public struct JournalError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. Open, so new kinds can be added without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: Hashable, Sendable {
            case lmdb, full, notADirectory, notWritable, newerFormat, corrupt, closed, panic, damaged
            case unknownObject, unknownMessage, invalidTransition, bodyTooLarge
        }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// LMDB or the system returned an error code (see ``JournalError/lmdbCode``).
        public static let lmdb = Code(.lmdb)
        /// The journal reached `journal.max_size`: stop intake until GC frees space.
        public static let full = Code(.full)
        /// The journal path exists but is not a directory.
        public static let notADirectory = Code(.notADirectory)
        /// The journal directory cannot be created or written.
        public static let notWritable = Code(.notWritable)
        /// The journal was written by a newer cloudtrailbeat; it is left untouched.
        public static let newerFormat = Code(.newerFormat)
        /// A stored value could not be decoded.
        public static let corrupt = Code(.corrupt)
        /// The journal's files are damaged (truncated, overwritten, emptied, deleted): it is refused
        /// before LMDB maps it, or when LMDB finds a page of the wrong type or beyond the file. Nothing
        /// goes on with it; the description says what to do.
        public static let damaged = Code(.damaged)
        /// The journal was closed, or a fatal error made it unusable.
        public static let closed = Code(.closed)
        /// LMDB reported `MDB_PANIC`: the process must exit and be restarted.
        public static let panic = Code(.panic)
        /// A transition named an object the journal does not hold.
        public static let unknownObject = Code(.unknownObject)
        /// A transition named a message the journal does not hold.
        public static let unknownMessage = Code(.unknownMessage)
        /// The transition does not apply to the item's current stage.
        public static let invalidTransition = Code(.invalidTransition)
        /// A body larger than the journal could hold even empty (``Journal/bodyCapacity()``): no GC
        /// ever makes room for it.
        public static let bodyTooLarge = Code(.bodyTooLarge)

        public var description: String {
            switch kind {
            case .lmdb: "lmdb"
            case .full: "journal-full"
            case .notADirectory: "not-a-directory"
            case .notWritable: "not-writable"
            case .newerFormat: "newer-format"
            case .corrupt: "corrupt"
            case .damaged: "damaged"
            case .closed: "closed"
            case .panic: "panic"
            case .unknownObject: "unknown-object"
            case .unknownMessage: "unknown-message"
            case .invalidTransition: "invalid-transition"
            case .bodyTooLarge: "body-too-large"
            }
        }
    }

    public var code: Code
    /// The LMDB or `errno` code behind the error, if any.
    public var lmdbCode: LMDBCode?
    /// The operation that failed, e.g. `mdb_txn_commit` or `acknowledge`.
    public var operation: String
    /// The named database involved, if any.
    public var database: String?
    /// A printable form of the key involved, if any.
    public var key: String?
    /// The journal directory.
    public var path: String?
    /// A human explanation.
    public var message: String?

    /// An LMDB failure whose code says the file itself is bad (`MDB_CORRUPTED`, `MDB_PAGE_NOTFOUND`,
    /// `MDB_INVALID`) is given the code ``Code/damaged`` instead of ``Code/lmdb``.
    public init(
        _ code: Code, lmdbCode: LMDBCode? = nil, operation: String, database: String? = nil,
        key: String? = nil, path: String? = nil, message: String? = nil
    ) {
        self.code = code == .lmdb && lmdbCode.map(JournalError.damageCodes.contains) == true ? .damaged : code
        self.lmdbCode = lmdbCode
        self.operation = operation
        self.database = database
        self.key = key
        self.path = path
        self.message = message
    }

    /// LMDB's codes for a data file that is not what its pages say.
    static let damageCodes: Set<LMDBCode> = [.corrupted, .pageNotFound, .invalid]

    /// What an operator does about the damaged journal in `path` (the end of a ``Code/damaged`` error's
    /// description).
    public static func damageAdvice(_ path: String) -> String {
        "cloudtrailbeat will not use it. Stop every cloudtrailbeat that uses this directory, then restore it from a backup, "
            + "or move it aside (mv '\(path)' '\(path).damaged') to start with a new, empty journal, knowing that a new journal "
            + "remembers nothing that was shipped: a backfill ships every object again, and so does the queue for the messages still in it"
    }

    public var description: String {
        if code == .damaged {
            var detail = message ?? "LMDB found a page that is not what its tree says (overwritten or torn)"
            if let lmdbCode {
                detail += ": \(lmdbCode) [\(lmdbCode.rawValue)] during \(operation)" + (database.map { " on database '\($0)'" } ?? "")
            }
            let path = path ?? "?"
            return "the journal in '\(path)' is damaged: \(detail). " + JournalError.damageAdvice(path)
        }
        var parts: [String] = []
        if let message { parts.append(message) } else { parts.append("journal error (\(code))") }
        if let lmdbCode { parts.append("\(lmdbCode) [\(lmdbCode.rawValue)]") }
        var context = "during \(operation)"
        if let database { context += " on database '\(database)'" }
        if let key { context += " key '\(key)'" }
        if let path { context += " in '\(path)'" }
        parts.append(context)
        return parts.joined(separator: ": ")
    }
}

extension JournalError: ClassifiedError {
    /// A full journal (its size limit, or its disk) is waited out; a body no empty journal could hold
    /// is the object's own fault (waiting would be for ever), so it is quarantined; every other journal
    /// error, damage first, is fatal: the journal is the record of what was done, and nothing goes on
    /// without it.
    public var disposition: Disposition {
        switch code {
        case .full: .wait
        case .bodyTooLarge: .quarantine
        default: .fatal
        }
    }
}
