import Foundation
import Testing

@testable import Journal

#if canImport(Glibc)
import Glibc
#endif

/// Invariant 11: a damaged journal is refused with `.damaged` (naming its path and what to do), never
/// mapped into a SIGBUS nor taken for a new journal, and left as it was.
@Suite("A damaged journal is refused")
struct DamageTests {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// A journal in `dir` with `objects` objects received, fetched (bodies of 20 000 bytes), shipped and
    /// collected, so its file has data pages and a free list; closed.
    func populated(_ dir: String, objects: Int = 12) async throws {
        var options = Journal.Options()
        options.outputs = ["a"]
        options.initialMapSize = 1 << 20
        options.bodyChunkSize = 4096
        let journal = try Journal(path: dir, options: options)
        defer { journal.close() }
        for n in 0..<objects {
            let ref = ObjectRef(bucket: "b", key: "k\(n)", version: "v")
            _ = try await journal.receive(ReceivedMessage(id: "m\(n)", receiptHandle: "h", receiveCount: 1, objects: [DiscoveredObject(ref)]))
            let writer = journal.bodyWriter(try await journal.startFetch(ref))
            try await writer.append([UInt8](repeating: UInt8(n), count: 20_000))
            _ = try await writer.finish(recordCount: 2)
            if n % 2 == 0 {
                _ = try await journal.acknowledge(Acknowledgement(object: ref, output: "a", count: 2))
                try await journal.messagesDeleted(["m\(n)"])
            }
        }
        _ = try await journal.collectGarbage()
    }

    /// Opening `dir` (writable and read-only) throws `.damaged`, its text naming the path, `why`, and
    /// what to do; the directory's files are byte for byte what they were.
    func expectRefused(_ dir: String, _ why: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = snapshot(dir)
        for readOnly in [false, true] {
            var options = Journal.Options()
            options.readOnly = readOnly
            options.exclusive = !readOnly
            let error = #expect(throws: JournalError.self, sourceLocation: sourceLocation) { _ = try Journal(path: dir, options: options) }
            #expect(error?.code == .damaged, "\(String(describing: error))", sourceLocation: sourceLocation)
            let text = error.map { "\($0)" } ?? ""
            #expect(text.contains("the journal in '\(dir)' is damaged") && text.contains(why), "\(text)", sourceLocation: sourceLocation)
            #expect(text.contains("restore it from a backup") && text.contains("mv '\(dir)' '\(dir).damaged'"), "\(text)", sourceLocation: sourceLocation)
        }
        #expect(snapshot(dir) == before, "nothing written to a damaged journal", sourceLocation: sourceLocation)
    }

    /// The data file's bytes and the names in the directory (lock.mdb's reader table, and owner.lock
    /// that an exclusive open takes before it looks, aside).
    func snapshot(_ dir: String) -> [String: Data?] {
        var files: [String: Data?] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where name != "owner.lock" {
            files[name] = name == "data.mdb" ? FileManager.default.contents(atPath: dir + "/" + name) : nil
        }
        return files
    }

    func overwrite(_ file: String, at offset: Int, _ bytes: [UInt8]) throws {
        let handle = try #require(FileHandle(forWritingAtPath: file))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        handle.write(Data(bytes))
    }

    func garbage(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// What the journal reads of data.mdb before LMDB does is what liblmdb itself reports.
    @Test func theMetaPagesAreReadAsLMDBReadsThem() async throws {
        let dir = TempDir("damage-meta")
        try await populated(dir.path)
        guard case .sound(let header) = DataFile.inspect(directory: dir.path) else {
            Issue.record("a sound journal: \(DataFile.inspect(directory: dir.path))")
            return
        }
        var options = Journal.Options()
        options.readOnly = true
        let journal = try Journal(path: dir.path, options: options)
        defer { journal.close() }
        let info = try journal.env.info().get()
        let stat = try journal.env.stat().get()
        #expect(header.lastPage == info.me_last_pgno && header.transaction == UInt64(info.me_last_txnid), "\(header) vs \(info)")
        // A file may end before the last page (pages allocated and freed again in one commit are never
        // written), never before the pages its two roots need.
        #expect(header.pageSize == Int(stat.ms_psize) && header.fileSize <= (header.lastPage + 1) * header.pageSize)
        #expect(header.fileSize >= 3 * header.pageSize)
    }

    @Test(arguments: ["short of its last page", "between its meta pages", "inside its first meta page"])
    func aTruncatedDataFileIsRefused(cut: String) async throws {
        let dir = TempDir("damage-truncated")
        try await populated(dir.path)
        let file = dir.sub("data.mdb")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        let length = switch cut {
        case "short of its last page": size - DamageTests.pageSize
        case "between its meta pages": DamageTests.pageSize + 100
        default: 40
        }
        #expect(truncate(file, off_t(length)) == 0)
        try expectRefused(dir.path, "'\(file)' is truncated: \(length) bytes")
    }

    @Test func anEmptyDataFileIsDamageNotANewJournal() async throws {
        let dir = TempDir("damage-empty")
        try await populated(dir.path)
        #expect(truncate(dir.sub("data.mdb"), 0) == 0)
        try expectRefused(dir.path, "'\(dir.sub("data.mdb"))' is empty (0 bytes)")
        // And one deleted while the journal's lock file is there.
        try FileManager.default.removeItem(atPath: dir.sub("data.mdb"))
        try expectRefused(dir.path, "'\(dir.sub("data.mdb"))' is missing while the journal's lock.mdb is there")
    }

    @Test(arguments: [0, 1]) func anOverwrittenMetaPageIsRefused(page: Int) async throws {
        let dir = TempDir("damage-meta-garbage")
        try await populated(dir.path)
        try overwrite(dir.sub("data.mdb"), at: page * DamageTests.pageSize, garbage(DamageTests.pageSize, seed: UInt64(page)))
        try expectRefused(dir.path, "page \(page) is not an LMDB meta page")
    }

    /// Garbage over every data page: LMDB meets a page of the wrong type, a page beyond the file, or a
    /// main database without the journal's databases. Each is `.damaged`, never a crash nor a new journal.
    @Test(arguments: 1...8 as ClosedRange<UInt64>) func overwrittenDataPagesAreRefused(seed: UInt64) async throws {
        let dir = TempDir("damage-pages")
        try await populated(dir.path)
        let file = dir.sub("data.mdb")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        try overwrite(file, at: 2 * DamageTests.pageSize, garbage(size - 2 * DamageTests.pageSize, seed: seed))
        try expectRefused(dir.path, "is damaged: ")
    }

    /// A free list naming a page the file does not have: LMDB would hand it out and write past the file
    /// (or over a live page). The free database's leaf (its root, at depth 1) is found from the meta page.
    @Test func aFreeListNamingAPageBeyondTheFileIsRefused() async throws {
        let dir = TempDir("damage-freelist")
        try await populated(dir.path, objects: 24)
        let file = dir.sub("data.mdb")
        let bytes = [UInt8](try #require(FileManager.default.contents(atPath: file)))
        func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) } }
        guard case .sound(let header) = DataFile.inspect(directory: dir.path) else {
            Issue.record("sound first")
            return
        }
        // The newer meta page; its free database (mm_dbs[0]): depth at +6, root page at +40.
        let metas = [0, header.pageSize].map { $0 + DataFile.pageHeaderSize }
        let meta = try #require(metas.first { load($0 + DataFile.transactionOffset, UInt64.self) == header.transaction })
        let freeDB = meta + DataFile.pageSizeOffset
        let depth = load(freeDB + 6, UInt16.self)
        let root = load(freeDB + 40, Int.self)
        guard depth == 1, root > 1, root <= header.lastPage else {
            Issue.record("a free list of one leaf page expected (depth \(depth), root \(root))")
            return
        }
        // The leaf's first node: mp_ptrs[0] (after the 16-byte header) is its offset in the page; a node
        // is lo, hi, flags, ksize (2 bytes each), the key (a transaction id), then the ID list: its
        // length, then the page numbers.
        let page = root * header.pageSize
        let node = page + Int(load(page + DataFile.pageHeaderSize, UInt16.self))
        let flags = load(node + 4, UInt16.self)
        let keySize = Int(load(node + 6, UInt16.self))
        let list = node + 8 + keySize
        let count = load(list, Int.self)
        guard flags & 0x01 == 0, count > 0, count < 10_000 else {
            Issue.record("an ID list in the first node expected (flags \(flags), length \(count))")
            return
        }
        var beyond = header.lastPage + 1000
        try overwrite(file, at: list + 8, withUnsafeBytes(of: &beyond) { Array($0) })
        try expectRefused(dir.path, "its free list names page \(beyond)")
    }

    /// LMDB's own verdicts on a bad page, met after open, are the same error.
    @Test func lmdbCorruptionCodesAreDamage() {
        for code in [LMDBCode.corrupted, .pageNotFound, .invalid] {
            let e = JournalError(.lmdb, lmdbCode: code, operation: "mdb_cursor_get", database: "objects", path: "/j")
            #expect(e.code == .damaged && "\(e)".contains("the journal in '/j' is damaged") && "\(e)".contains("\(code)"), "\(e)")
        }
        #expect(JournalError(.lmdb, lmdbCode: .noSpace, operation: "mdb_txn_commit").code == .lmdb)
    }

    /// A new journal's data file appears whole: none exists empty, and what a crash left in `.new` is
    /// cleared by the next open.
    @Test func aNewJournalIsMadeBesideAndMovedIntoPlace() throws {
        let dir = TempDir("damage-new")
        try FileManager.default.createDirectory(atPath: dir.sub(".new"), withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: dir.sub(".new/data.mdb"), contents: Data()))
        do {
            let journal = try Journal(path: dir.path)
            journal.close()
        }
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)) == ["data.mdb", "lock.mdb"])
        guard case .sound(let header) = DataFile.inspect(directory: dir.path) else { Issue.record("sound"); return }
        #expect(header.transaction >= 1, "the first open committed its format")
        let journal = try Journal(path: dir.path)
        journal.close()
    }

    /// A SIGBUS in the map — data.mdb truncated under an open journal — ends the process with the damage
    /// message and the status given, not a crash.
    @Test func aFileTruncatedWhileOpenEndsTheProcessWithTheDamage() async throws {
        let dir = TempDir("damage-sigbus")
        try await populated(dir.path)
        let path = dir.path
        let result = await #expect(processExitsWith: .exitCode(65), observing: [\.standardErrorContent]) { [path = path as String] in
            Journal.exitOnMapFault(status: 65)
            var options = Journal.Options()
            options.readOnly = true
            let journal = try Journal(path: path, options: options)
            _ = truncate(path + "/data.mdb", off_t(2 * Int(sysconf(Int32(_SC_PAGESIZE)))))
            // Every read after the truncation touches pages the file no longer holds.
            for o in try journal.objects() { if let body = o.body { _ = try readAllBody(journal, body) } }
            Issue.record("no fault")
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("the journal in '\(path)' is damaged") && stderr.contains("SIGBUS") && stderr.contains("restore it from a backup"), "\(stderr)")
    }
}
