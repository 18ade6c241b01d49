import CLMDB

/// The named databases of the environment (the on-disk schema; see docs/journal.md).
struct Databases: Sendable {
    static let names = [
        "meta", "messages", "objects", "bodies", "fetching", "collect", "cursors", "quarantine", "done", "done_by_time",
    ]
    /// Databases a journal written by an older build may lack: created by the first writable open,
    /// absent (nil) in a read-only open of such a journal.
    static let optionalNames = ["integrity"]
    /// Prefix bytes of the `collect` database's keys.
    static let collectObject: UInt8 = 0x6f  // "o" + object key: a finished object awaiting GC
    static let collectBody: UInt8 = 0x62  // "b" + body id: an orphaned body awaiting GC

    struct Handle: Sendable {
        let name: String
        let dbi: MDB_dbi
    }

    let meta, messages, objects, bodies, fetching, collect, cursors, quarantine, done, doneByTime: Handle
    /// Integrity validation's ledger (IntegrityLedger.swift).
    let integrity: Handle?

    init(_ h: [String: MDB_dbi]) {
        func handle(_ n: String) -> Handle { Handle(name: n, dbi: h[n]!) }
        meta = handle("meta")
        messages = handle("messages")
        objects = handle("objects")
        bodies = handle("bodies")
        fetching = handle("fetching")
        collect = handle("collect")
        cursors = handle("cursors")
        quarantine = handle("quarantine")
        done = handle("done")
        doneByTime = handle("done_by_time")
        integrity = h["integrity"].map { Handle(name: "integrity", dbi: $0) }
    }
}

/// A snapshot read transaction (valid only inside the closure that receives it).
struct ReadContext {
    let env: LMDBEnvironment
    let txn: OpaquePointer
    let dbs: Databases
    let path: String

    func fail(_ code: LMDBCode, _ op: String, _ db: Databases.Handle?, _ key: [UInt8]?) -> JournalError {
        JournalError(
            .lmdb, lmdbCode: code, operation: op, database: db?.name, key: key.map(KeyBuilder.printable), path: path)
    }

    func get(_ db: Databases.Handle, _ key: [UInt8]) throws -> [UInt8]? {
        switch env.get(txn, db.dbi, key: key) {
        case .success(let v): return v
        case .failure(let code): throw fail(code, "mdb_get", db, key)
        }
    }

    /// Walks `db` from `start` (or its first key) while `body` returns true.
    func scan(
        _ db: Databases.Handle, from start: [UInt8]? = nil,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        if case .failure(let code) = try env.scan(txn, db.dbi, from: start, body) {
            throw fail(code, "mdb_cursor_get", db, start)
        }
    }

    func count(_ db: Databases.Handle) throws -> Int {
        switch env.stat(txn, db.dbi) {
        case .success(let st): return st.ms_entries
        case .failure(let code): throw fail(code, "mdb_stat", db, nil)
        }
    }

    /// The bytes of the pages `db` uses (branch, leaf and overflow).
    func bytes(_ db: Databases.Handle) throws -> Int {
        switch env.stat(txn, db.dbi) {
        case .success(let st): return Int(st.ms_psize) * (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages)
        case .failure(let code): throw fail(code, "mdb_stat", db, nil)
        }
    }

    func decode<T>(_ db: Databases.Handle, _ key: [UInt8], _ bytes: [UInt8], _ decoder: ([UInt8]) throws -> T) throws -> T {
        do {
            return try decoder(bytes)
        } catch {
            throw JournalError(
                .corrupt, operation: "decode", database: db.name, key: KeyBuilder.printable(key), path: path,
                message: "a stored value in '\(db.name)' could not be decoded")
        }
    }

    func object(_ ref: ObjectRef) throws -> ObjectState? {
        let key = ref.storageKey
        guard let bytes = try get(dbs.objects, key) else { return nil }
        return try decode(dbs.objects, key, bytes, ObjectState.decode)
    }

    func message(_ id: String) throws -> MessageState? {
        let key = Array(id.utf8)
        guard let bytes = try get(dbs.messages, key) else { return nil }
        return try decode(dbs.messages, key, bytes, MessageState.decode)
    }

    func doneMarker(_ ref: ObjectRef) throws -> Timestamp? {
        guard let bytes = try get(dbs.done, ref.storageKey) else { return nil }
        var r = ByteReader(bytes)
        return Int64(bitPattern: try r.bigEndian64())
    }

    func quarantineEntry(_ key: [UInt8]) throws -> QuarantineEntry? {
        guard let bytes = try get(dbs.quarantine, key) else { return nil }
        return try decode(dbs.quarantine, key, bytes, QuarantineEntry.decode)
    }
}

/// What a write transaction's transitions changed, for `JournalChanges` (signalled once it commits).
final class TouchedTopics {
    var topics: JournalChanges.Topics = []
}

/// A write transaction on the writer thread (valid only inside the closure that receives it).
struct WriteContext {
    let env: LMDBEnvironment
    let txn: OpaquePointer
    let dbs: Databases
    let path: String
    let clock: @Sendable () -> Timestamp
    let options: Journal.Options
    let touched = TouchedTopics()

    /// Notes that this transaction made work for the stages waiting on `topics` (JournalChanges'
    /// invariant 1): they are woken once it has committed.
    func touch(_ topics: JournalChanges.Topics) { touched.topics.formUnion(topics) }

    var read: ReadContext { ReadContext(env: env, txn: txn, dbs: dbs, path: path) }

    func get(_ db: Databases.Handle, _ key: [UInt8]) throws -> [UInt8]? { try read.get(db, key) }

    func scan(
        _ db: Databases.Handle, from start: [UInt8]? = nil,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws { try read.scan(db, from: start, body) }

    func put(_ db: Databases.Handle, _ key: [UInt8], _ value: [UInt8]) throws {
        try value.withUnsafeBytes { try put(db, key, $0) }
    }

    func put(_ db: Databases.Handle, _ key: [UInt8], _ value: UnsafeRawBufferPointer) throws {
        if case .failure(let code) = env.put(txn, db.dbi, key: key, value: value) {
            throw read.fail(code, "mdb_put", db, key)
        }
    }

    @discardableResult
    func delete(_ db: Databases.Handle, _ key: [UInt8]) throws -> Bool {
        switch env.delete(txn, db.dbi, key: key) {
        case .success(let found): return found
        case .failure(let code): throw read.fail(code, "mdb_del", db, key)
        }
    }

    func store(_ state: ObjectState) throws { try put(dbs.objects, state.ref.storageKey, state.encode()) }
    func store(_ message: MessageState) throws { try put(dbs.messages, Array(message.id.utf8), message.encode()) }
}
