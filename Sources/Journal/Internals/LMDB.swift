import CLMDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The only file that calls LMDB. Each C function is wrapped once, returns
// `Result<_, LMDBCode>`, and (in debug builds) passes through the fault injector.

/// An owned `MDB_env`.
final class LMDBEnvironment: @unchecked Sendable {
    let handle: OpaquePointer
    #if DEBUG
    let faults = FaultInjector()
    #endif

    /// The slot of ``MapFaults`` guarding this environment's map, and the data file it maps; set
    /// before ``open(path:flags:mode:)``. Every call that maps anew (open, a map resize) relocates it.
    var faultGuard: (slot: Int, dataFile: String)?

    private init(handle: OpaquePointer) { self.handle = handle }

    /// Creates an environment handle.
    ///
    /// The corresponding C function is `mdb_env_create`.
    static func create() -> Result<LMDBEnvironment, LMDBCode> {
        var env: OpaquePointer?
        let rc = mdb_env_create(&env)
        guard rc == 0, let env else { return .failure(LMDBCode(rc)) }
        return .success(LMDBEnvironment(handle: env))
    }

    /// Sets the size of the memory map; only while no transaction is active in this process.
    /// A size of 0 adopts the size another process has set.
    ///
    /// The corresponding C function is `mdb_env_set_mapsize`.
    func setMapSize(_ size: Int) -> Result<Void, LMDBCode> {
        defer { relocateFaultGuard() }
        return check(mdb_env_set_mapsize(handle, size))
    }

    /// Sets the number of named databases.
    ///
    /// The corresponding C function is `mdb_env_set_maxdbs`.
    func setMaxDatabases(_ n: UInt32) -> Result<Void, LMDBCode> {
        check(mdb_env_set_maxdbs(handle, MDB_dbi(n)))
    }

    /// Sets the size of the reader lock table.
    ///
    /// The corresponding C function is `mdb_env_set_maxreaders`.
    func setMaxReaders(_ n: UInt32) -> Result<Void, LMDBCode> {
        check(mdb_env_set_maxreaders(handle, n))
    }

    /// Opens the environment in a directory.
    ///
    /// The caller must still ``close()`` the environment when this fails.
    ///
    /// The corresponding C function is `mdb_env_open`.
    func open(path: String, flags: Int32, mode: mode_t) -> Result<Void, LMDBCode> {
        defer { relocateFaultGuard() }
        return check(mdb_env_open(handle, path, UInt32(bitPattern: flags), mode))
    }

    private func relocateFaultGuard() {
        if let g = faultGuard { MapFaults.locate(g.slot, dataFile: g.dataFile) }
    }

    /// Clears reader slots left by dead processes; returns how many were cleared.
    ///
    /// The corresponding C function is `mdb_reader_check`.
    func readerCheck() -> Result<Int, LMDBCode> {
        var dead: Int32 = 0
        return check(mdb_reader_check(handle, &dead)).map { Int(dead) }
    }

    /// Information about the environment: map size, last used page.
    ///
    /// The corresponding C function is `mdb_env_info`.
    func info() -> Result<MDB_envinfo, LMDBCode> {
        var info = MDB_envinfo()
        return check(mdb_env_info(handle, &info)).map { info }
    }

    /// Statistics of the environment (page size).
    ///
    /// The corresponding C function is `mdb_env_stat`.
    func stat() -> Result<MDB_stat, LMDBCode> {
        var st = MDB_stat()
        return check(mdb_env_stat(handle, &st)).map { st }
    }

    /// Flushes buffers to disk (a no-op with default flags, where every commit syncs).
    ///
    /// The corresponding C function is `mdb_env_sync`.
    func sync(force: Bool) -> Result<Void, LMDBCode> {
        check(mdb_env_sync(handle, force ? 1 : 0))
    }

    /// Drops the map's pages of `dataFile` from this process's resident set (they stay in the page
    /// cache; the next access faults them back in). The map is read-only without MDB_WRITEMAP, so
    /// nothing is lost. LMDB reports its map address only with MDB_FIXEDMAP, so the mapping is found in
    /// /proc/self/maps.
    ///
    /// The corresponding C function is `madvise`.
    ///
    /// The mapping is looked up once per map size (LMDB maps anew only when the size changes); callers
    /// hold the journal's resize lock for reading, so the map cannot move meanwhile.
    func dropResidentPages(dataFile: String, mapSize: Int) {
        let ranges: [(start: UInt, length: Int)] = mapsCache.withLock { cache in
            if let cached = cache, cached.mapSize == mapSize { return cached.ranges }
            guard let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8) else { return [] }
            var found: [(start: UInt, length: Int)] = []
            for line in maps.split(separator: "\n") where line.hasSuffix(" " + dataFile) {
                let range = line.prefix { $0 != " " }.split(separator: "-")
                guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16), end > start else { continue }
                found.append((start, Int(end - start)))
            }
            cache = (mapSize, found)
            return found
        }
        for r in ranges {
            guard let address = UnsafeMutableRawPointer(bitPattern: r.start) else { continue }
            _ = madvise(address, r.length, MADV_DONTNEED)
        }
    }
    private let mapsCache = LockedValue<(mapSize: Int, ranges: [(start: UInt, length: Int)])?>(nil)

    /// Closes the environment and frees its handle. Call once.
    ///
    /// The corresponding C function is `mdb_env_close`.
    func close() {
        mdb_env_close(handle)
        if let g = faultGuard { MapFaults.release(g.slot) }
        faultGuard = nil
    }

    /// Begins a transaction (`readOnly` for a snapshot reader).
    ///
    /// The corresponding C function is `mdb_txn_begin`.
    func begin(readOnly: Bool) -> Result<OpaquePointer, LMDBCode> {
        #if DEBUG
        if !readOnly, let code = faults.take(.beginWrite) { return .failure(LMDBCode(code)) }
        #endif
        var txn: OpaquePointer?
        let rc = mdb_txn_begin(handle, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn)
        guard rc == 0, let txn else { return .failure(LMDBCode(rc)) }
        return .success(txn)
    }

    /// Commits a transaction; on failure the transaction is aborted and freed all the same.
    ///
    /// Returns only after the data and the meta page are synced (default flags).
    ///
    /// The corresponding C function is `mdb_txn_commit`.
    func commit(_ txn: OpaquePointer) -> Result<Void, LMDBCode> {
        #if DEBUG
        if let code = faults.take(.commit) {
            mdb_txn_abort(txn)
            return .failure(LMDBCode(code))
        }
        if faults.commitDelay > 0 { usleep(faults.commitDelay) }
        #endif
        return check(mdb_txn_commit(txn))
    }

    /// Abandons a transaction and frees it.
    ///
    /// The corresponding C function is `mdb_txn_abort`.
    func abort(_ txn: OpaquePointer) { mdb_txn_abort(txn) }

    /// The transaction's id: for a read transaction, the id of the commit whose snapshot it sees.
    ///
    /// The corresponding C function is `mdb_txn_id`.
    func transactionID(_ txn: OpaquePointer) -> Int { Int(mdb_txn_id(txn)) }

    /// Removes a named database and its entries (tests: a journal from before that database existed).
    ///
    /// The corresponding C function is `mdb_drop`.
    func drop(_ txn: OpaquePointer, _ dbi: MDB_dbi) -> Result<Void, LMDBCode> { check(mdb_drop(txn, dbi, 1)) }

    /// Opens (creating when `create`) a named database.
    ///
    /// The corresponding C function is `mdb_dbi_open`.
    func openDatabase(_ txn: OpaquePointer, name: String, create: Bool) -> Result<MDB_dbi, LMDBCode> {
        var dbi: MDB_dbi = 0
        return check(mdb_dbi_open(txn, name, create ? UInt32(MDB_CREATE) : 0, &dbi)).map { dbi }
    }

    /// Entry count and pages of one database.
    ///
    /// The corresponding C function is `mdb_stat`.
    func stat(_ txn: OpaquePointer, _ dbi: MDB_dbi) -> Result<MDB_stat, LMDBCode> {
        var st = MDB_stat()
        return check(mdb_stat(txn, dbi, &st)).map { st }
    }

    /// Looks a key up; the bytes are copied out (they point into the map otherwise).
    ///
    /// The corresponding C function is `mdb_get`.
    func get(_ txn: OpaquePointer, _ dbi: MDB_dbi, key: [UInt8]) -> Result<[UInt8]?, LMDBCode> {
        key.withUnsafeBytes { kb in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(txn, dbi, &k, &v)
            if rc == MDB_NOTFOUND { return .success(nil) }
            guard rc == 0 else { return .failure(LMDBCode(rc)) }
            return .success(Array(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)))
        }
    }

    /// Stores a key/value pair, replacing any value.
    ///
    /// The corresponding C function is `mdb_put`.
    func put(_ txn: OpaquePointer, _ dbi: MDB_dbi, key: [UInt8], value: UnsafeRawBufferPointer) -> Result<Void, LMDBCode> {
        #if DEBUG
        if let code = faults.take(.put) { return .failure(LMDBCode(code)) }
        #endif
        return key.withUnsafeBytes { kb in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
            return check(mdb_put(txn, dbi, &k, &v, 0))
        }
    }

    /// Deletes a key; returns false when it was absent.
    ///
    /// The corresponding C function is `mdb_del`.
    func delete(_ txn: OpaquePointer, _ dbi: MDB_dbi, key: [UInt8]) -> Result<Bool, LMDBCode> {
        key.withUnsafeBytes { kb in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            let rc = mdb_del(txn, dbi, &k, nil)
            if rc == MDB_NOTFOUND { return .success(false) }
            return check(rc).map { true }
        }
    }

    /// Walks a database in key order from `start` (or the first key), calling `body` with
    /// borrowed key and value bytes until it returns false.
    ///
    /// The corresponding C functions are `mdb_cursor_open`, `mdb_cursor_get` and `mdb_cursor_close`.
    func scan(
        _ txn: OpaquePointer, _ dbi: MDB_dbi, from start: [UInt8]?,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws -> Result<Void, LMDBCode> {
        var cursor: OpaquePointer?
        let rc = mdb_cursor_open(txn, dbi, &cursor)
        guard rc == 0, let cursor else { return .failure(LMDBCode(rc)) }
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        var op: MDB_cursor_op
        var startCopy = start ?? []
        var status: Int32 = startCopy.withUnsafeMutableBytes { sb in
            if start != nil {
                k = MDB_val(mv_size: sb.count, mv_data: sb.baseAddress)
                return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
            }
            return mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
        }
        op = MDB_NEXT
        while status == 0 {
            let more = try body(
                UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
            if !more { return .success(()) }
            status = mdb_cursor_get(cursor, &k, &v, op)
        }
        if status == MDB_NOTFOUND { return .success(()) }
        return .failure(LMDBCode(status))
    }

    /// Counts the pages on LMDB's free list (database 0), for "used" disk figures.
    ///
    /// The corresponding C functions are `mdb_cursor_open` and `mdb_cursor_get` on the free database.
    func freePages(_ txn: OpaquePointer) -> Result<Int, LMDBCode> {
        var total = 0
        do {
            let r = try scan(txn, 0, from: nil) { _, value in
                // Each free-list entry is an ID list whose first word is its length.
                if value.count >= MemoryLayout<Int>.size {
                    total += value.loadUnaligned(as: Int.self)
                }
                return true
            }
            return r.map { total }
        } catch {
            return .success(total)
        }
    }

    @inline(__always)
    private func check(_ rc: Int32) -> Result<Void, LMDBCode> {
        rc == 0 ? .success(()) : .failure(LMDBCode(rc))
    }
}
