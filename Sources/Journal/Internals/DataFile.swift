#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// What `data.mdb` says about itself, read before LMDB maps it (invariant 11).
//
// LMDB maps the whole data file and trusts it: a page the meta page names but the file no longer holds
// (a truncated file) is a SIGBUS at the first read, and a file that is empty is taken for a new
// environment. So the journal reads the file's first two pages itself, with pread, as LMDB's
// `mdb_env_read_header` does, and refuses a file LMDB would crash on or misread.
//
// The layout is liblmdb 0.9's (mdb.c), in native byte order, for a pointer size W (8 on 64-bit):
//
//     MDB_page header (PAGEHDRSZ = W + 8):  pgno_t mp_pgno (W), uint16 mp_pad, uint16 mp_flags,
//                                           uint16 mp_lower, uint16 mp_upper
//     MDB_meta, right after it:             uint32 mm_magic (0xBEEFC0DE), uint32 mm_version (1),
//                                           void *mm_address (W), size_t mm_mapsize (W),
//                                           MDB_db mm_dbs[2] (each 8 + 5W; mm_dbs[0].md_pad is the page size),
//                                           pgno_t mm_last_pg (W), txnid_t mm_txnid (W)
//
// Pages 0 and 1 are both meta pages (flag P_META, 0x08). LMDB uses the one with the greater txnid and
// starts every read at its two roots (`md_root`, the last word of each MDB_db; ~0 for an empty tree),
// so the file must hold the page each root names. It need not hold every page up to mm_last_pg: a page
// a commit allocated and freed again (a loose page) counts in mm_last_pg but is never written, so a
// sound file may end before mm_last_pg. Whether the pages past its end are all free is checked once
// LMDB has opened it, against the free list (`Journal.probe`).

/// The journal's data file as its meta pages describe it, or why it cannot be used.
enum DataFile {
    /// What ``inspect(directory:)`` found.
    enum Finding: Equatable {
        /// No `data.mdb` and no `lock.mdb`: a directory that never held a journal.
        case absent
        /// Both meta pages are LMDB's and the file holds every page the newer one names.
        case sound(Header)
        /// The file cannot be used; the text says why, naming the file.
        case damaged(String)
        /// The file could not be read (e.g. permissions): LMDB's own open reports it.
        case unreadable
    }

    /// The newer meta page's figures (the one LMDB uses).
    struct Header: Equatable {
        var pageSize: Int
        var lastPage: Int
        var transaction: UInt64
        var fileSize: Int
    }

    static let magic: UInt32 = 0xBEEF_C0DE
    static let dataVersion: UInt32 = 1
    static let metaFlag: UInt16 = 0x08
    static let word = MemoryLayout<Int>.size
    static var pageHeaderSize: Int { word + 8 }
    static var flagsOffset: Int { word + 2 }
    // Offsets inside MDB_meta.
    static let magicOffset = 0
    static let versionOffset = 4
    static var pageSizeOffset: Int { 8 + 2 * word }
    static var freeRootOffset: Int { 16 + 6 * word }
    static var mainRootOffset: Int { 24 + 11 * word }
    static var lastPageOffset: Int { 24 + 12 * word }
    static var transactionOffset: Int { 24 + 13 * word }
    static var metaSize: Int { 24 + 14 * word }

    /// Reads `directory/data.mdb`'s meta pages and size; never maps it, never writes.
    static func inspect(directory: String) -> Finding {
        let file = directory + "/data.mdb"
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            guard errno == ENOENT else { return .unreadable }
            if access(directory + "/lock.mdb", F_OK) == 0 {
                return .damaged("'\(file)' is missing while the journal's lock.mdb is there: the data file was deleted")
            }
            return .absent
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .unreadable }
        let initialSize = Int(st.st_size)
        if initialSize == 0 {
            return .damaged("'\(file)' is empty (0 bytes): it lost its contents (LMDB would take it for a new journal)")
        }
        let first: Meta
        switch readMeta(fd, at: 0, file: file, size: initialSize, page: 0) {
        case .success(let m): first = m
        case .failure(let text): return .damaged(text.text)
        }
        let pageSize = Int(first.pageSize)
        guard pageSize >= 256, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            return .damaged("'\(file)' page 0 names a page size of \(pageSize) bytes, which LMDB never writes: the page is overwritten")
        }
        let second: Meta
        switch readMeta(fd, at: pageSize, file: file, size: initialSize, page: 1) {
        case .success(let m): second = m
        case .failure(let text): return .damaged(text.text)
        }
        let newer = second.transaction > first.transaction ? second : first
        // The size is read again after the meta pages: the file only grows (LMDB writes a commit's pages,
        // syncs them, then its meta page), so a commit landing meanwhile cannot make a sound file look short.
        guard fstat(fd, &st) == 0 else { return .unreadable }
        let size = Int(st.st_size)
        guard newer.lastPage >= 1, newer.lastPage < UInt64(Int.max / pageSize) else {
            return .damaged("'\(file)' meta page names page \(newer.lastPage) as its last, which LMDB never writes: the page is overwritten")
        }
        for root in [newer.freeRoot, newer.mainRoot] where root != UInt64.max {
            guard root <= newer.lastPage, root >= 2 else {
                return .damaged("'\(file)' meta page (transaction \(newer.transaction)) roots a tree at page \(root), which LMDB never writes: the page is overwritten")
            }
            let needed = (Int(root) + 1) * pageSize
            if size < needed {
                return .damaged(
                    "'\(file)' is truncated: \(size) bytes, but its meta page (transaction \(newer.transaction)) roots a tree "
                        + "at page \(root), which needs \(needed) bytes")
            }
        }
        return .sound(Header(pageSize: pageSize, lastPage: Int(newer.lastPage), transaction: newer.transaction, fileSize: size))
    }

    struct Meta {
        var pageSize: UInt32
        var lastPage: UInt64
        var transaction: UInt64
        /// The free list's and the main database's root pages (`UInt64.max`: an empty tree).
        var freeRoot: UInt64
        var mainRoot: UInt64
    }

    struct Refusal: Error {
        var text: String
    }

    /// The meta page at byte `offset`, checked as `mdb_env_read_header` checks it (flag, magic, version).
    private static func readMeta(_ fd: Int32, at offset: Int, file: String, size: Int, page: Int) -> Result<Meta, Refusal> {
        let length = pageHeaderSize + metaSize
        var bytes = [UInt8](repeating: 0, count: length)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(offset)) }
        guard got == length else {
            if page == 0 {
                return .failure(Refusal(text: "'\(file)' is truncated: \(size) bytes, shorter than LMDB's first meta page"))
            }
            return .failure(Refusal(text: "'\(file)' is truncated: \(size) bytes, shorter than LMDB's two meta pages (\(2 * offset) bytes)"))
        }
        func load<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: T.self) }
        }
        let meta = pageHeaderSize
        let flags = load(flagsOffset, UInt16.self)
        let magic = load(meta + magicOffset, UInt32.self)
        guard flags & metaFlag != 0, magic == DataFile.magic else {
            return .failure(Refusal(text: "'\(file)' page \(page) is not an LMDB meta page (flags 0x\(String(flags, radix: 16)), magic 0x\(String(magic, radix: 16))): it is overwritten, or the file is not a journal"))
        }
        let version = load(meta + versionOffset, UInt32.self)
        guard version == dataVersion else {
            return .failure(Refusal(text: "'\(file)' page \(page) has LMDB data format version \(version); this liblmdb reads version \(dataVersion)"))
        }
        let pageSize = load(meta + pageSizeOffset, UInt32.self)
        func pgno(_ at: Int) -> UInt64 {
            if word == 8 { return load(meta + at, UInt64.self) }
            let v = load(meta + at, UInt32.self)
            return v == UInt32.max ? UInt64.max : UInt64(v)
        }
        return .success(
            Meta(
                pageSize: pageSize, lastPage: pgno(lastPageOffset), transaction: pgno(transactionOffset),
                freeRoot: pgno(freeRootOffset), mainRoot: pgno(mainRootOffset)))
    }
}
