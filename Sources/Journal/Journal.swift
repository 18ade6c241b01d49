// # The journal — cloudtrailbeat's durable work queue
//
// One LMDB environment per data directory records every stage of every item, so a process killed at
// any instant resumes exactly where it stopped. Invariants (docs/journal.md explains them in prose):
//
// 1. Every stage transition is one LMDB write transaction. A transition is visible entirely or not at
//    all, after a crash as before it.
// 2. A transition's function returns only after `mdb_txn_commit` has returned, with LMDB's default
//    durable flags (no MDB_NOSYNC, no MDB_WRITEMAP): what a caller saw succeed is on disk. Callers act on
//    the world (delete an SQS message, move on past an output's batch) only after that return.
// 3. All writes run on one thread, the writer. Several callers' transitions may share one commit (group
//    commit); each is still all-or-nothing, and each caller is resumed only after that commit returns.
//    No transaction is ever held across an `await`, and reads are short snapshot transactions
//    (MDB_NOTLS), so the map can be grown between transactions. After each write batch, once its callers
//    were resumed, `changes` (JournalChanges.swift) moves the generation of the topics its committed
//    transitions touched (objects received, fetched, finished) and wakes the stages waiting on them,
//    so none has to poll to see a commit, and a commit wakes only the stages it made work for.
// 4. An object's body is written in chunks before the `fetched` transition that references it; a body
//    whose fetch never reached `fetched` is an orphan, found at open and freed by GC. Bodies are freed
//    only once every output acknowledged every record and no undeleted message names the object.
// 5. Per output, an object's cursor only grows: it counts the leading records that output acknowledged
//    (delivered, or dropped by its filter). The one exception is deliberate: an operator's `--force` or
//    `journal retry` puts a finished object back to `received`, cursors at zero, to ship it again. Replay after a crash re-sends at most what was sent but not
//    acknowledged. The output's totals (records delivered, records dropped) change in the transaction
//    that moves its cursors, so they always add up to what the cursors passed.
// 6. A done marker (bucket, key, version) outlives the object record for `doneRetention`, so a
//    redelivered notification of a finished object emits nothing.
// 7. The journal never grows past `maxSize`, nor past what its filesystem can hold (the data file
//    plus the free space statvfs reports, reread each second): at either limit writes fail with
//    `.full` — also when the disk itself refuses a commit (ENOSPC, EDQUOT, or EIO on a disk with
//    almost no free space, as LMDB reports a short write) — and nothing is corrupted (the commit
//    never happened); once GC frees pages or space appears, writes succeed again. Bodies (and intake: receiving, listing)
//    stop at nine tenths of it, so the last tenth is always there for acknowledgements and for GC,
//    whose deletes need pages too: a journal full of bodies can always drain. A body larger than the
//    journal could hold even empty (`bodyCapacity()`) is refused with `.bodyTooLarge`, not `.full`:
//    no GC would ever make room for it.
// 8. The environment stores its format version; a newer one than this build knows is refused before
//    anything is written. An older one is read, and the first writable open records the current
//    version, since what it writes from then on older builds cannot read.
// 9. The quarantine is bounded: past `maxQuarantineEntries` entries, or a tenth of `maxSize` in bytes,
//    GC drops the entries seen longest ago, down to nine tenths of both, and counts them
//    (`quarantineDropped`), so a flood of forged or broken messages cannot fill the journal and stop
//    healthy work. An entry is only a record for operators: dropping one deletes nothing in S3 or SQS,
//    and `journal retry s3://…` still takes its object.
// 10. Integrity validation's ledger (IntegrityLedger.swift) changes only inside the `fetched` transition
//    of the object it is about: a log's SHA-256 lands with the log's own `fetched`, a digest's verdict
//    (logs leaving the ledger, findings, counts) with the digest's `fetched`, whose body holds the
//    findings as records. So a verdict is never half-recorded, never recorded without its findings to
//    deliver, and a crash before its commit repeats the check from the ledger as it was.
// 11. A damaged journal is refused, never mapped into a crash nor taken for a new one. Before LMDB maps
//    data.mdb, its two meta pages are read with pread (Internals/DataFile.swift) and the file must hold
//    the pages the newer one's two roots name; an empty data.mdb, or none beside lock.mdb, is damage — a
//    new journal's data file is made beside the directory's and renamed into place once synced, so it is
//    never seen empty. Then the first entry of every database and the whole free list are read, and
//    every page past the file's end (up to the meta page's last, which counts pages allocated and freed
//    again but never written) must be free, and no database rooted there (``probe(_:path:)``). What
//    LMDB finds later (a page of the wrong type, a page beyond the file) is the same `.damaged` error,
//    and with `exitOnMapFault` a SIGBUS in the map (a file truncated while in use) ends the process
//    with that error's text instead of a crash. A journal found damaged at open is left as it was.

import CLMDB
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The durable work-queue journal: one LMDB environment in one directory.
///
/// Open it once per directory per process. Transitions (``receive(_:)``, ``acknowledge(_:)``, …) are
/// `async` and return after their commit is durable; reads (``object(_:)``, ``status()``, …) are
/// synchronous snapshot reads that never block the writer.
public final class Journal: @unchecked Sendable {
    /// The on-disk format this build reads and writes.
    /// 2: backfill cursors carry a pass and a horizon (format 1 journals are read, and upgraded by the
    /// first writable open).
    public static let formatVersion: UInt32 = 2

    /// How the journal is opened.
    public struct Options: Sendable {
        /// The largest the data file may grow (`journal.max_size`). Default 4 GiB.
        public var maxSize: Int = 4 << 30
        /// The map size of a new journal; grown by doubling up to ``maxSize``. Default 64 MiB.
        public var initialMapSize: Int = 64 << 20
        /// The outputs every record must be acknowledged by before an object is done.
        public var outputs: [String] = []
        /// How long a done marker is kept after its object finished, in milliseconds. Default 7 days.
        public var doneRetention: Int64 = 7 * 24 * 3600 * 1000
        /// How long the integrity ledger keeps a log awaiting its digest, a digest awaiting its successor,
        /// in milliseconds (`integrity.retention`). Default 2 days.
        public var integrityRetention: Int64 = 2 * 24 * 3600 * 1000
        /// The most quarantine entries kept (`journal.quarantine_max_entries`); 0 keeps every one.
        /// Default 10 000 (each holds up to 64 KiB of the message body it refused).
        public var maxQuarantineEntries: Int = 10_000
        /// The size of a stored body chunk. Default 128 KiB.
        public var bodyChunkSize: Int = 128 << 10
        /// Take the directory's owner lock, so that a second process cannot run on the same journal.
        public var exclusive: Bool = false
        /// Open for reading only (`journal status`): nothing is created or written.
        public var readOnly: Bool = false
        /// The clock, in milliseconds since the epoch (tests inject their own).
        public var clock: @Sendable () -> Timestamp = { Timestamp(Date().timeIntervalSince1970 * 1000) }

        public init() {}
    }

    /// The journal's directory.
    public let path: String
    public let options: Options

    let env: LMDBEnvironment
    let dbs: Databases
    let resizeLock = ReadWriteLock()
    private let writer = WriterThread()
    /// Signals every write batch's end, so stages wait for changes instead of polling, and counts commits.
    public let changes = JournalChanges()
    /// The map's size; changes only under `resizeLock` held for writing.
    private(set) var mapSize: Int
    private let state = NSLock()
    /// Since when writes fail for want of space (cleared by the next commit that succeeds), and how
    /// many such episodes there were. Guarded by `state`.
    private var fullSince: Date?
    private var fullEpisodes = 0
    /// The disk's limit (data file + free space) and when it was read. Guarded by `diskLock`.
    private let diskLock = NSLock()
    private var diskReading: (at: Date, limit: Int, free: Int)?
    /// Body bytes through the map since the resident pages were last dropped.
    let residency = LockedValue(0)
    private var broken: JournalError?
    private var closed = false
    /// The journal directory with symbolic links resolved.
    let registryKey: String
    private var ownerLockFD: Int32 = -1

    // MARK: Opening

    /// Opens (creating when needed) the journal in `path`.
    ///
    /// - Throws: ``JournalError`` with code `.notADirectory` or `.notWritable` (naming the path) when
    ///   the directory cannot hold a journal, `.newerFormat` when a newer cloudtrailbeat wrote it (the
    ///   journal is left untouched), `.lmdb` for other LMDB failures.
    public init(path: String, options: Options = Options()) throws {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        self.path = absolute
        self.options = options
        try Journal.prepareDirectory(absolute, readOnly: options.readOnly)
        let real = absolute.withCString { p -> String in
            guard let r = realpath(p, nil) else { return absolute }
            defer { free(r) }
            return String(cString: r)
        }
        registryKey = real
        try OpenRegistry.claim(real)
        var ok = false
        defer { if !ok { OpenRegistry.release(real) } }

        let lockFD = options.exclusive && !options.readOnly ? try Journal.takeOwnerLock(absolute) : -1
        defer { if !ok, lockFD >= 0 { Glibc.close(lockFD) } }

        // Before LMDB maps anything (invariant 11): a damaged data file is refused; where there is none,
        // a new one is made beside and moved into place.
        let dataFile = absolute + "/data.mdb"
        var existing = 0
        var new = false
        switch DataFile.inspect(directory: absolute) {
        case .damaged(let why):
            throw JournalError(.damaged, operation: "open", path: absolute, message: why)
        case .absent where options.readOnly:
            throw JournalError(.notADirectory, lmdbCode: .noEntry, operation: "open", path: absolute, message: "no journal in '\(absolute)'")
        case .absent:
            new = true
        case .sound(let header):
            existing = header.fileSize
        case .unreadable:
            existing = (try? FileManager.default.attributesOfItem(atPath: dataFile)[.size] as? Int) ?? 0
        }
        var size = Journal.roundUp(max(options.initialMapSize, existing, 1 << 20))
        if !options.readOnly { size = min(size, max(Journal.roundUp(options.maxSize), existing)) }
        if new { try Journal.createDataFile(absolute, mapSize: size) }

        let env = try Journal.lift(LMDBEnvironment.create(), "mdb_env_create", path: absolute)
        var envOK = false
        defer { if !envOK { env.close() } }
        if let slot = MapFaults.claim(message: "cloudtrailbeat: \(Journal.mapFault(absolute))\n") {
            env.faultGuard = (slot, real + "/data.mdb")
        }
        try Journal.lift(env.setMapSize(size), "mdb_env_set_mapsize", path: absolute)
        try Journal.lift(env.setMaxDatabases(16), "mdb_env_set_maxdbs", path: absolute)
        try Journal.lift(env.setMaxReaders(256), "mdb_env_set_maxreaders", path: absolute)
        var flags = MDB_NOTLS
        if options.readOnly { flags |= MDB_RDONLY }
        switch env.open(path: absolute, flags: flags, mode: 0o600) {
        case .success: break
        case .failure(let code):
            if code == .accessDenied || code == .readOnlyFileSystem {
                throw JournalError(
                    .notWritable, lmdbCode: code, operation: "mdb_env_open", path: absolute,
                    message: "cannot open the journal in '\(absolute)': \(code)")
            }
            if code == .noEntry && options.readOnly {
                throw JournalError(
                    .notADirectory, lmdbCode: code, operation: "mdb_env_open", path: absolute,
                    message: "no journal in '\(absolute)'")
            }
            throw JournalError(
                .lmdb, lmdbCode: code, operation: "mdb_env_open", path: absolute,
                message: "cannot open the journal in '\(absolute)': \(code)")
        }
        _ = try Journal.lift(env.readerCheck(), "mdb_reader_check", path: absolute)
        if let info = try? env.info().get() { size = info.me_mapsize }

        // Refuse a newer format before writing anything.
        let found = try Journal.readFormatVersion(env, path: absolute)
        if let found, found > Journal.formatVersion {
            throw JournalError(
                .newerFormat, operation: "open", database: "meta", path: absolute,
                message: "the journal in '\(absolute)' has format version \(found), newer than this "
                    + "cloudtrailbeat's \(Journal.formatVersion); upgrade cloudtrailbeat or choose another "
                    + "journal.path (nothing was changed)")
        }
        if options.readOnly && found == nil {
            throw JournalError(
                .notADirectory, operation: "open", path: absolute, message: "no journal in '\(absolute)'")
        }
        if found != nil { try Journal.probe(env, path: absolute) }
        self.env = env
        self.mapSize = size
        self.ownerLockFD = lockFD
        self.dbs = try Journal.openDatabases(env, path: absolute, create: !options.readOnly)
        envOK = true
        ok = true
        if !options.readOnly {
            try writeNow { txn in try Journal.bootstrap(txn, clock: options.clock) }
            writer.start { [unowned self] batch in self.runBatch(batch) }
        }
    }

    deinit {
        close()
    }

    /// Makes a SIGBUS inside any journal's memory map — data.mdb truncated while this process has it
    /// open, or a page whose garbage sends LMDB past the file's end — print that journal's
    /// ``JournalError/Code/damaged`` description on standard error and exit with `status`, instead of
    /// crashing. Other SIGBUS signals go to the handler installed before. Call once, at process start,
    /// before opening journals (the CLI does).
    ///
    /// The corresponding C function is `sigaction`.
    public static func exitOnMapFault(status: Int32) {
        MapFaults.install(status: status)
    }

    /// Finishes queued transitions, stops the writer and closes the environment.
    ///
    /// The corresponding C function is `mdb_env_close`.
    public func close() {
        let wasClosed: Bool = state.withLock {
            defer { closed = true }
            return closed
        }
        if wasClosed { return }
        writer.stop()
        resizeLock.withWriteLock { env.close() }
        if ownerLockFD >= 0 { Glibc.close(ownerLockFD) }
        OpenRegistry.release(registryKey)
    }

    #if DEBUG
    /// Debug builds only: fail the `n`th call through `point` with `code`, `times` times in a row.
    public func injectFault(_ code: LMDBCode, at point: JournalFaultPoint, onCall n: Int = 1, times: Int = 1) {
        env.faults.arm(point, code: code.rawValue, onCall: n, times: times)
    }

    /// Debug builds only: remove a database, as a journal written before it existed lacks it.
    func dropDatabaseForTests(_ name: String) async throws {
        let path = self.path
        try await write { txn in
            guard let handle = name == "integrity" ? txn.dbs.integrity : nil else { return }
            try Journal.lift(txn.env.drop(txn.txn, handle.dbi), "mdb_drop(\(name))", path: path)
        }
    }

    /// Debug builds only: remove all armed faults.
    public func clearFaults() { env.faults.disarm() }

    /// Debug builds only: how long every commit waits first (`CLOUDTRAILBEAT_DEBUG_COMMIT_DELAY_MS`), or nil.
    public var debugCommitDelayMilliseconds: UInt32? { env.faults.commitDelay > 0 ? env.faults.commitDelay / 1000 : nil }

    /// Debug builds only: stamp another format version (to test how newer journals are refused).
    func overwriteFormatVersion(_ version: UInt32) async throws {
        try await write { txn in
            var w = ByteWriter()
            w.bigEndian(version)
            try txn.put(txn.dbs.meta, Array("format".utf8), w.bytes)
        }
    }
    #endif

    /// The current size of the memory map.
    public var mappedSize: Int { resizeLock.withReadLock { mapSize } }

    /// What the filesystem under the journal can hold: the data file's size plus the space statvfs says
    /// an unprivileged writer may still use (`free`), reread at most once a second. A journal on a disk
    /// smaller than `journal.max_size` is bounded by this instead (invariant 7).
    public func diskLimit() -> (limit: Int, free: Int) {
        diskLock.withLock {
            if let r = diskReading, Date().timeIntervalSince(r.at) < 1 { return (r.limit, r.free) }
            var fs = statvfs()
            var st = stat()
            let free = statvfs(path, &fs) == 0 ? Int(fs.f_bavail) * Int(fs.f_frsize) : Int.max / 4
            let file = stat(path + "/data.mdb", &st) == 0 ? Int(st.st_blocks) * 512 : 0
            let limit = free >= Int.max / 4 ? Int.max / 2 : file + free
            diskReading = (Date(), limit, free)
            return (limit, free)
        }
    }

    /// The size the journal may reach now: the smaller of `journal.max_size` and ``diskLimit()``.
    public func effectiveLimit() -> Int { min(Journal.roundUp(options.maxSize), diskLimit().limit) }

    /// Since when writes have been failing for want of space (nil while they succeed), and how many
    /// times that began since the journal was opened.
    public var fullState: (since: Date?, episodes: Int) { state.withLock { (fullSince, fullEpisodes) } }

    private func noteCommit(full: Bool) {
        state.withLock {
            if full {
                if fullSince == nil {
                    fullSince = Date()
                    fullEpisodes += 1
                }
            } else {
                fullSince = nil
            }
        }
    }

    /// Whether a failed commit means the disk is full: ENOSPC, EDQUOT, or EIO — what LMDB reports for a
    /// short write — on a filesystem with almost nothing left (a genuine I/O error stays fatal).
    func outOfSpace(_ code: LMDBCode) -> Bool {
        if code == .noSpace || code.rawValue == EDQUOT { return true }
        guard code == .io else { return false }
        diskLock.withLock { diskReading = nil }
        return diskLimit().free < 1 << 20  // a short write on a disk with a megabyte left: full, not broken
    }

    // MARK: Writing

    /// Runs `body` in a write transaction on the writer thread and returns after its commit.
    ///
    /// `body` may run more than once (after growing the map, or when another transition sharing its
    /// commit failed), so it must depend only on the transaction and its captured inputs.
    func write<T: Sendable>(_ body: @escaping @Sendable (WriteContext) throws -> T) async throws -> T {
        try checkUsable()
        return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
            let accepted = writer.submit(
                WriterThread.Request(
                    body: { try body($0) },
                    complete: { result in cont.resume(with: result.map { $0 as! T }) }))
            if !accepted {
                cont.resume(throwing: JournalError(.closed, operation: "write", path: path, message: "the journal is closed"))
            }
        }
    }

    private func checkUsable() throws {
        try state.withLock {
            if let broken { throw broken }
            if closed { throw JournalError(.closed, operation: "write", path: path, message: "the journal is closed") }
        }
        if options.readOnly {
            throw JournalError(.notWritable, operation: "write", path: path, message: "the journal is open read-only")
        }
    }

    /// Runs a write transaction on the calling thread (only before the writer thread starts).
    private func writeNow<T>(_ body: (WriteContext) throws -> T) throws -> T {
        while true {
            let txn = try lift(env.begin(readOnly: false), "mdb_txn_begin")
            let ctx = WriteContext(env: env, txn: txn, dbs: dbs, path: path, clock: options.clock, options: options)
            let value: T
            do {
                value = try body(ctx)
            } catch let e as JournalError where e.lmdbCode == .mapFull {
                env.abort(txn)
                try grow()
                continue
            } catch {
                env.abort(txn)
                throw error
            }
            switch env.commit(txn) {
            case .success: return value
            case .failure(.mapFull): try grow()
            case .failure(let code): throw JournalError(.lmdb, lmdbCode: code, operation: "mdb_txn_commit", path: path)
            }
        }
    }

    /// The writer thread's work: run a batch of transitions in as few commits as possible.
    private func runBatch(_ batch: [WriterThread.Request]) {
        if let broken = state.withLock({ broken }) {
            for r in batch { r.complete(.failure(broken)) }
            return
        }
        var results = [Result<Any, any Error>?](repeating: nil, count: batch.count)
        var touched: JournalChanges.Topics = []
        execute(batch, Array(batch.indices), &results, &touched)
        for (i, r) in batch.enumerated() {
            r.complete(results[i] ?? .failure(JournalError(.lmdb, operation: "write", path: path)))
        }
        changes.signal(touched)
    }

    /// Runs `indices` of `batch` in as few transactions as possible; `touched` gains the topics of
    /// those that committed.
    private func execute(
        _ batch: [WriterThread.Request], _ indices: [Int], _ results: inout [Result<Any, any Error>?], _ touched: inout JournalChanges.Topics
    ) {
        var active = indices
        while !active.isEmpty {
            let txn: OpaquePointer
            switch beginWrite() {
            case .success(let t): txn = t
            case .failure(let e):
                for i in active { results[i] = .failure(e) }
                return
            }
            let ctx = WriteContext(env: env, txn: txn, dbs: dbs, path: path, clock: options.clock, options: options)
            var values: [Int: Any] = [:]
            var failed: (Int, any Error)?
            var mapFull = false
            for i in active {
                do {
                    values[i] = try batch[i].body(ctx)
                } catch let e as JournalError where e.lmdbCode == .mapFull {
                    mapFull = true
                    break
                } catch {
                    failed = (i, error)
                    break
                }
            }
            if let (i, error) = failed {
                env.abort(txn)
                noteFatal(error)
                results[i] = .failure(error)
                active.removeAll { $0 == i }
                continue
            }
            if !mapFull {
                switch env.commit(txn) {
                case .success:
                    noteCommit(full: false)
                    changes.committed()
                    touched.formUnion(ctx.touched.topics)
                    for i in active { results[i] = .success(values[i]!) }
                    return
                case .failure(.mapFull):
                    mapFull = true
                case .failure(let code) where outOfSpace(code):
                    // The disk refused the pages: nothing was committed. Retried one by one, what fits
                    // (an acknowledgement, a GC pass) may still land; the rest fails with `.full`.
                    let free = diskLimit().free
                    if active.count > 1 {
                        for i in active { execute(batch, [i], &results, &touched) }
                        return
                    }
                    noteCommit(full: true)
                    results[active[0]] = .failure(
                        JournalError(
                            .full, lmdbCode: code, operation: "mdb_txn_commit", path: path,
                            message: "the disk under the journal in '\(path)' is full (\(free >> 10) KiB free): \(code); "
                                + "intake pauses until GC frees pages or space appears"))
                    return
                case .failure(let code):
                    let error = JournalError(
                        .lmdb, lmdbCode: code, operation: "mdb_txn_commit", path: path,
                        message: "could not commit to the journal in '\(path)': \(code)")
                    noteFatal(error)
                    for i in active { results[i] = .failure(error) }
                    return
                }
            } else {
                env.abort(txn)
            }
            // The map is full: grow it and retry; at max_size, retry one by one so what fits still lands.
            do {
                try grow()
            } catch {
                if active.count > 1 {
                    for i in active { execute(batch, [i], &results, &touched) }
                } else {
                    noteCommit(full: true)
                    results[active[0]] = .failure(error)
                }
                return
            }
        }
    }

    private func beginWrite() -> Result<OpaquePointer, JournalError> {
        while true {
            switch env.begin(readOnly: false) {
            case .success(let txn): return .success(txn)
            case .failure(.mapResized):
                resizeLock.withWriteLock { _ = env.setMapSize(0); mapSize = (try? env.info().get().me_mapsize) ?? mapSize }
            case .failure(let code):
                let e = JournalError(.lmdb, lmdbCode: code, operation: "mdb_txn_begin", path: path)
                noteFatal(e)
                return .failure(e)
            }
        }
    }

    private func noteFatal(_ error: any Error) {
        guard let e = error as? JournalError, e.lmdbCode == .panic else { return }
        state.withLock {
            broken = JournalError(
                .panic, lmdbCode: .panic, operation: e.operation, path: path,
                message: "LMDB reported a fatal error; restart the process (the journal on disk is intact)")
        }
    }

    /// Doubles the map, up to `maxSize`; throws `.full` when already there.
    private func grow() throws {
        let limit = max(Journal.roundUp(options.maxSize), mapSize)
        guard mapSize < limit else {
            throw JournalError(
                .full, lmdbCode: .mapFull, operation: "write", path: path,
                message: "the journal in '\(path)' reached journal.max_size (\(limit) bytes); intake pauses "
                    + "until acknowledged work is garbage-collected")
        }
        let next = min(limit, Journal.roundUp(mapSize * 2))
        try resizeLock.withWriteLock {
            try lift(env.setMapSize(next), "mdb_env_set_mapsize")
            mapSize = next
        }
    }

    // MARK: Reading

    /// Runs `body` in a read-only snapshot transaction on the calling thread.
    func read<T>(_ body: (ReadContext) throws -> T) throws -> T {
        try state.withLock {
            if closed { throw JournalError(.closed, operation: "read", path: path, message: "the journal is closed") }
        }
        while true {
            let outcome: Result<T, any Error>? = try resizeLock.withReadLock {
                switch env.begin(readOnly: true) {
                case .failure(.mapResized): return nil
                case .failure(let code): throw JournalError(.lmdb, lmdbCode: code, operation: "mdb_txn_begin", path: path)
                case .success(let txn):
                    defer { env.abort(txn) }
                    let ctx = ReadContext(env: env, txn: txn, dbs: dbs, path: path)
                    return Result { try body(ctx) }
                }
            }
            if let outcome { return try outcome.get() }
            resizeLock.withWriteLock { _ = env.setMapSize(0); mapSize = (try? env.info().get().me_mapsize) ?? mapSize }
        }
    }

    // MARK: Helpers

    private func lift<T>(_ r: Result<T, LMDBCode>, _ op: String) throws -> T {
        try Journal.lift(r, op, path: path)
    }

    @discardableResult
    static func lift<T>(_ r: Result<T, LMDBCode>, _ op: String, path: String) throws -> T {
        switch r {
        case .success(let v): return v
        case .failure(let code): throw JournalError(.lmdb, lmdbCode: code, operation: op, path: path)
        }
    }

    static func roundUp(_ n: Int) -> Int {
        let unit = 1 << 20
        return (n + unit - 1) / unit * unit
    }

    private static func prepareDirectory(_ path: String, readOnly: Bool) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else {
                throw JournalError(
                    .notADirectory, lmdbCode: .notDirectory, operation: "open", path: path,
                    message: "journal path '\(path)' exists and is not a directory")
            }
            if !readOnly && access(path, W_OK | X_OK) != 0 {
                throw JournalError(
                    .notWritable, lmdbCode: LMDBCode(errno), operation: "open", path: path,
                    message: "journal directory '\(path)' is not writable: \(LMDBCode(errno))")
            }
            return
        }
        if readOnly {
            throw JournalError(.notADirectory, lmdbCode: .noEntry, operation: "open", path: path, message: "no journal in '\(path)'")
        }
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            // Name the component that is in the way, if any.
            var parent = (path as NSString).deletingLastPathComponent
            while !parent.isEmpty && parent != "/" && !FileManager.default.fileExists(atPath: parent) {
                parent = (parent as NSString).deletingLastPathComponent
            }
            var parentIsDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: parent, isDirectory: &parentIsDir), !parentIsDir.boolValue {
                throw JournalError(
                    .notADirectory, lmdbCode: .notDirectory, operation: "mkdir", path: path,
                    message: "cannot create journal directory '\(path)': '\(parent)' is not a directory")
            }
            throw JournalError(
                .notWritable, operation: "mkdir", path: path,
                message: "cannot create journal directory '\(path)': \((error as NSError).localizedDescription)")
        }
    }

    private static func takeOwnerLock(_ path: String) throws -> Int32 {
        let lockPath = path + "/owner.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw JournalError(
                .notWritable, lmdbCode: LMDBCode(errno), operation: "open", path: path,
                message: "cannot create '\(lockPath)': \(LMDBCode(errno))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = LMDBCode(errno)
            Glibc.close(fd)
            throw JournalError(
                .notWritable, lmdbCode: code, operation: "flock", path: path,
                message: "another cloudtrailbeat process is using the journal in '\(path)'")
        }
        return fd
    }

    private static func readFormatVersion(_ env: LMDBEnvironment, path: String) throws -> UInt32? {
        let txn = try lift(env.begin(readOnly: true), "mdb_txn_begin", path: path)
        defer { env.abort(txn) }
        let meta: MDB_dbi
        switch env.openDatabase(txn, name: "meta", create: false) {
        case .success(let dbi): meta = dbi
        case .failure(.notFound):
            // The first transaction ever committed creates every database, `meta` first among them: a
            // file with commits but no `meta` has its main database's pages overwritten.
            let committed = (try? env.info().get().me_last_txnid) ?? 0
            if committed > 0 {
                throw JournalError(
                    .damaged, operation: "open", database: "meta", path: path,
                    message: "its main database names no 'meta' database although \(committed) transactions were committed: its pages are overwritten")
            }
            return nil
        case .failure(let code): throw JournalError(.lmdb, lmdbCode: code, operation: "mdb_dbi_open", database: "meta", path: path)
        }
        guard let bytes = try lift(env.get(txn, meta, key: Array("format".utf8)), "mdb_get", path: path) else { return nil }
        var r = ByteReader(bytes)
        guard let v = try? r.bigEndian32() else {
            throw JournalError(.corrupt, operation: "open", database: "meta", key: "format", path: path)
        }
        return v
    }

    /// Reads the first entry of every database, and the whole free list, in a snapshot: a tree whose
    /// root or leftmost pages are overwritten, a database gone missing, or a free list naming pages the
    /// file does not have (LMDB would reuse them, writing over live pages or past the file) is refused
    /// at open (invariant 11) instead of being met mid-run. Garbage deeper in a tree is found when it
    /// is read (LMDB's MDB_CORRUPTED and MDB_PAGE_NOTFOUND, also ``JournalError/Code/damaged``).
    ///
    /// A file may end before the meta page's last page (pages a commit allocated and freed again are
    /// counted, never written: DataFile.swift), but every page past its end must then be on the free
    /// list, and no database's root may lie there: otherwise the file lost pages in use (truncated).
    /// That is checked when no commit landed between this snapshot and the figures it is compared with
    /// (a live engine beside a `journal status` is writing, and its file is evidently whole).
    static func probe(_ env: LMDBEnvironment, path: String) throws {
        let txn = try lift(env.begin(readOnly: true), "mdb_txn_begin", path: path)
        defer { env.abort(txn) }
        let info = try lift(env.info(), "mdb_env_info", path: path)
        let lastPage = info.me_last_pgno
        let pageSize = Int(try lift(env.stat(), "mdb_env_stat", path: path).ms_psize)
        // Read after the meta page: a file only grows, so a commit meanwhile cannot make it look short.
        var st = stat()
        let snapshotIsLatest = info.me_last_txnid == env.transactionID(txn)
        var filePages: Int?
        if snapshotIsLatest {
            let fd = open(path + "/data.mdb", O_RDONLY | O_CLOEXEC)
            if fd >= 0 {
                if fstat(fd, &st) == 0 { filePages = Int(st.st_size) / pageSize }
                Glibc.close(fd)
            }
        }
        func truncated(_ what: String) -> JournalError {
            JournalError(
                .damaged, operation: "open", path: path,
                message: "'\(path)/data.mdb' is truncated: \(Int(st.st_size)) bytes (\(filePages ?? 0) pages of \(pageSize) bytes), but \(what)")
        }
        let word = MemoryLayout<Int>.size
        for name in Databases.names + Databases.optionalNames {
            // Its root page, from its record in the main database (MDB_db: md_root is its last word).
            if let filePages, let record = try lift(env.get(txn, 1, key: Array(name.utf8)), "mdb_get(\(name))", path: path),
                record.count == 8 + 5 * word
            {
                let root = record.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8 + 4 * word, as: Int.self) }
                if root != -1 && root >= filePages { throw truncated("database '\(name)' has its root at page \(root)") }
            }
            let dbi: MDB_dbi
            switch env.openDatabase(txn, name: name, create: false) {
            case .success(let d): dbi = d
            case .failure(.notFound) where Databases.optionalNames.contains(name): continue
            case .failure(.notFound):
                throw JournalError(
                    .damaged, operation: "open", database: name, path: path,
                    message: "its database '\(name)' is missing from the main database: its pages are overwritten")
            case .failure(let code):
                throw JournalError(.lmdb, lmdbCode: code, operation: "mdb_dbi_open(\(name))", database: name, path: path)
            }
            try lift(try env.scan(txn, dbi, from: nil) { _, _ in false }, "mdb_cursor_get(\(name))", path: path)
        }
        var freeBeyondEnd = Set<Int>()
        try lift(
            try env.scan(txn, 0, from: nil) { _, value in
                // A free-list entry is an ID list: its length, then that many page numbers.
                let count = value.count >= word ? value.loadUnaligned(as: Int.self) : -1
                guard count >= 0, count <= value.count / word - 1 else {
                    throw JournalError(.damaged, operation: "open", database: "free list", path: path, message: "a free-list entry of \(value.count) bytes claims \(count) pages: its pages are overwritten")
                }
                for i in 0..<count {
                    let page = value.loadUnaligned(fromByteOffset: (i + 1) * word, as: Int.self)
                    guard page >= 2, page <= lastPage else {
                        throw JournalError(
                            .damaged, operation: "open", database: "free list", path: path,
                            message: "its free list names page \(page), outside the file's pages 2…\(lastPage): its pages are overwritten")
                    }
                    if let filePages, page >= filePages { freeBeyondEnd.insert(page) }
                }
                return true
            }, "mdb_cursor_get(free list)", path: path)
        if let filePages, filePages <= lastPage,
            let inUse = (filePages...lastPage).first(where: { !freeBeyondEnd.contains($0) })
        {
            throw truncated("page \(inUse) is in use (the meta page names \(lastPage + 1) pages, and page \(inUse) is not on the free list)")
        }
    }

    /// The damage a SIGBUS in the journal's map means (``MapFaults``).
    static func mapFault(_ path: String) -> JournalError {
        JournalError(
            .damaged, operation: "read", path: path,
            message: "a read in its memory map went past the end of '\(path)/data.mdb' (SIGBUS): the file was truncated while in use, or a page of it is overwritten")
    }

    /// Makes the data file of a new journal in `path`: LMDB writes its two meta pages in `path/.new`,
    /// they are synced, and the file is renamed into place (then the directory is synced). So
    /// `path/data.mdb` never exists empty, and an empty one is damage, never a new journal
    /// (invariant 11). A `.new` left by a crash is removed first.
    private static func createDataFile(_ path: String, mapSize: Int) throws {
        let staging = path + "/.new"
        try? FileManager.default.removeItem(atPath: staging)
        guard mkdir(staging, 0o700) == 0 else {
            let code = LMDBCode(errno)
            throw JournalError(.notWritable, lmdbCode: code, operation: "mkdir", path: path, message: "cannot create '\(staging)': \(code)")
        }
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let env = try lift(LMDBEnvironment.create(), "mdb_env_create", path: path)
        var open = true
        defer { if open { env.close() } }
        try lift(env.setMapSize(mapSize), "mdb_env_set_mapsize", path: path)
        try lift(env.open(path: staging, flags: MDB_NOTLS, mode: 0o600), "mdb_env_open", path: path)
        try lift(env.sync(force: true), "mdb_env_sync", path: path)
        env.close()
        open = false
        guard rename(staging + "/data.mdb", path + "/data.mdb") == 0 else {
            let code = LMDBCode(errno)
            throw JournalError(.notWritable, lmdbCode: code, operation: "rename", path: path, message: "cannot move a new data file into '\(path)': \(code)")
        }
        let dir = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)
            Glibc.close(dir)
        }
    }

    private static func openDatabases(_ env: LMDBEnvironment, path: String, create: Bool) throws -> Databases {
        let txn = try lift(env.begin(readOnly: !create), "mdb_txn_begin", path: path)
        var committed = false
        defer { if !committed { env.abort(txn) } }
        var handles: [String: MDB_dbi] = [:]
        for name in Databases.names {
            handles[name] = try lift(env.openDatabase(txn, name: name, create: create), "mdb_dbi_open(\(name))", path: path)
        }
        for name in Databases.optionalNames {
            switch env.openDatabase(txn, name: name, create: create) {
            case .success(let dbi): handles[name] = dbi
            case .failure(.notFound) where !create: break
            case .failure(let code): throw JournalError(.lmdb, lmdbCode: code, operation: "mdb_dbi_open(\(name))", path: path)
            }
        }
        committed = true
        try lift(env.commit(txn), "mdb_txn_commit", path: path)
        return Databases(handles)
    }

    private static func bootstrap(_ txn: WriteContext, clock: () -> Timestamp) throws {
        let stored = try txn.get(txn.dbs.meta, Array("format".utf8))
        var current = ByteWriter()
        current.bigEndian(Journal.formatVersion)
        if stored != current.bytes {
            // New, or an older format this build reads: from now on older builds refuse it (invariant 8).
            try txn.put(txn.dbs.meta, Array("format".utf8), current.bytes)
        }
        if stored == nil {
            var c = ByteWriter()
            c.bigEndian(UInt64(bitPattern: clock()))
            try txn.put(txn.dbs.meta, Array("created".utf8), c.bytes)
        }
        // Bodies whose download never reached `fetched` belong to no attempt now: free them.
        var orphans: [[UInt8]] = []
        try txn.scan(txn.dbs.fetching) { key, _ in
            orphans.append(Array(key))
            return true
        }
        for key in orphans {
            try txn.delete(txn.dbs.fetching, key)
            try txn.put(txn.dbs.collect, [Databases.collectBody] + key, [])
        }
    }
}

/// Processes may open a directory's environment only once (LMDB's rule): this enforces it.
enum OpenRegistry {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var open: Set<String> = []

    static func claim(_ path: String) throws {
        try lock.withLock {
            guard !open.contains(path) else {
                throw JournalError(
                    .notWritable, operation: "open", path: path,
                    message: "the journal in '\(path)' is already open in this process")
            }
            open.insert(path)
        }
    }

    static func release(_ path: String) { _ = lock.withLock { open.remove(path) } }
}

/// A value behind a lock.
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// A pthread read-write lock: readers hold it for their snapshot, the map is resized under the write lock.
final class ReadWriteLock: @unchecked Sendable {
    private var lock = pthread_rwlock_t()
    init() { pthread_rwlock_init(&lock, nil) }
    deinit { pthread_rwlock_destroy(&lock) }
    func withReadLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(&lock)
        defer { pthread_rwlock_unlock(&lock) }
        return try body()
    }
    func withWriteLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(&lock)
        defer { pthread_rwlock_unlock(&lock) }
        return try body()
    }
}

/// The one thread that runs write transactions, taking every queued request into one batch.
final class WriterThread: @unchecked Sendable {
    struct Request {
        let body: (WriteContext) throws -> Any
        let complete: (Result<Any, any Error>) -> Void
    }

    static let maxBatch = 512
    private let condition = NSCondition()
    private var queue: [Request] = []
    private var stopping = false
    private var running = false
    private let finished = DispatchSemaphore(value: 0)

    func start(_ run: @escaping @Sendable ([Request]) -> Void) {
        running = true
        let thread = Thread { [self] in
            while true {
                condition.lock()
                while queue.isEmpty && !stopping { condition.wait() }
                if queue.isEmpty && stopping {
                    condition.unlock()
                    break
                }
                let n = min(queue.count, WriterThread.maxBatch)
                let batch = Array(queue[..<n])
                queue.removeFirst(n)
                condition.unlock()
                run(batch)
            }
            finished.signal()
        }
        thread.name = "cloudtrailbeat.journal.writer"
        thread.start()
    }

    /// Queues a request; false once the writer is stopping.
    func submit(_ request: Request) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, running else { return false }
        queue.append(request)
        condition.signal()
        return true
    }

    /// Runs what is queued, then stops the thread and waits for it.
    func stop() {
        condition.lock()
        let wasRunning = running && !stopping
        stopping = true
        condition.signal()
        condition.unlock()
        if wasRunning { finished.wait() }
    }
}
