import Foundation

extension Journal {
    // MARK: Reads — short snapshot transactions on the calling thread.

    /// The object's state, or nil when the journal holds none.
    public func object(_ ref: ObjectRef) throws -> ObjectState? {
        try read { try $0.object(ref) }
    }

    /// The message's state, or nil when the journal holds none (never seen, or deleted).
    public func message(_ id: String) throws -> MessageState? {
        try read { try $0.message(id) }
    }

    /// When the object finished, if a done marker for it is kept.
    public func doneMarker(_ ref: ObjectRef) throws -> Timestamp? {
        try read { try $0.doneMarker(ref) }
    }

    /// Every object record in the given stages (all when `stages` is nil).
    public func objects(in stages: Set<ObjectStage>? = nil) throws -> [ObjectState] {
        try read { txn in
            var out: [ObjectState] = []
            try txn.scan(txn.dbs.objects) { k, v in
                // Only records of the asked stages are decoded (a malformed one is decoded, and reported).
                if let stages, let stage = ObjectState.peekStage(v), !stages.contains(stage) { return true }
                let state = try txn.decode(txn.dbs.objects, Array(k), Array(v), ObjectState.decode)
                if stages?.contains(state.stage) ?? true { out.append(state) }
                return true
            }
            return out
        }
    }

    /// The first object (in key order) of the given stages that `accept` takes; the scan stops there.
    /// For workers claiming one item at a time: the cost is the items passed over, not the whole set.
    public func firstObject(in stages: Set<ObjectStage>, where accept: (ObjectState) -> Bool) throws -> ObjectState? {
        try firstObject(from: [], in: stages, where: accept)
    }

    /// Objects (in key order) of the given stages that `accept` takes, at most `limit`: what a
    /// dispatcher claims in one scan for several workers. `accept` may claim as it goes.
    ///
    /// With `position`, the scan starts after the object it names and wraps around to the first key,
    /// and `position` moves to the last object taken: a claimer that holds many objects does not pass
    /// over (and decode) the ones it holds at every scan.
    /// `skipping` is asked first, with the object's key only: what it skips (the objects a claimer
    /// holds) is neither decoded nor offered to `accept`.
    /// `enough` is asked after each object taken: true ends the scan before `limit` (a claimer that
    /// has what it needs).
    public func objects(
        in stages: Set<ObjectStage>, limit: Int, from position: inout ObjectScanPosition, skipping: (ObjectKey) -> Bool = { _ in false },
        enough: () -> Bool = { false }, where accept: (ObjectState) -> Bool
    ) throws -> [ObjectState] {
        guard limit > 0 else { return [] }
        let after = position.key
        let wanted = StageMask(stages)
        let (found, last) = try read { txn -> ([ObjectState], [UInt8]?) in
            var out: [ObjectState] = []
            var last: [UInt8]?
            func visit(_ k: UnsafeRawBufferPointer, _ v: UnsafeRawBufferPointer) throws -> Bool {
                if let stage = ObjectState.peekStage(v), !wanted.contains(stage) { return true }
                let key = Array(k)
                if skipping(ObjectKey(bytes: key)) { return true }
                let state = try txn.decode(txn.dbs.objects, key, Array(v), ObjectState.decode)
                if wanted.contains(state.stage) && accept(state) {
                    out.append(state)
                    last = key
                    if enough() { return false }
                }
                return out.count < limit
            }
            if let after {
                // After `after` to the end, then from the start up to and including it.
                try txn.scan(txn.dbs.objects, from: after) { k, v in
                    if compareKeys(k, after) == 0 { return true }
                    return try visit(k, v)
                }
                if out.count < limit && (out.isEmpty || !enough()) {
                    try txn.scan(txn.dbs.objects) { k, v in
                        guard compareKeys(k, after) <= 0 else { return false }
                        return try visit(k, v)
                    }
                }
            } else {
                try txn.scan(txn.dbs.objects) { k, v in try visit(k, v) }
            }
            return (out, last)
        }
        if let last { position.key = last }
        return found
    }

    /// The first object of `bucket` whose key starts with `keyPrefix`, of the given stages, that `accept`
    /// takes: a scan of that key range only.
    public func firstObject(bucket: String, keyPrefix: String, in stages: Set<ObjectStage>, where accept: (ObjectState) -> Bool) throws -> ObjectState? {
        try firstObject(from: Array(bucket.utf8) + [0] + Array(keyPrefix.utf8), in: stages, where: accept)
    }

    /// Scans the objects whose storage key starts with `start`.
    private func firstObject(from start: [UInt8], in stages: Set<ObjectStage>, where accept: (ObjectState) -> Bool) throws -> ObjectState? {
        let wanted = StageMask(stages)
        return try read { txn in
            var found: ObjectState?
            try txn.scan(txn.dbs.objects, from: start.isEmpty ? nil : start) { k, v in
                guard k.starts(with: start) else { return false }
                if let stage = ObjectState.peekStage(v), !wanted.contains(stage) { return true }
                let state = try txn.decode(txn.dbs.objects, Array(k), Array(v), ObjectState.decode)
                if wanted.contains(state.stage) && accept(state) {
                    found = state
                    return false
                }
                return true
            }
            return found
        }
    }

    /// How many objects are in the given stages (no record is decoded).
    public func countObjects(in stages: Set<ObjectStage>) throws -> Int {
        try read { txn in
            var n = 0
            try txn.scan(txn.dbs.objects) { k, v in
                guard let stage = ObjectState.peekStage(v) else {
                    _ = try txn.decode(txn.dbs.objects, Array(k), Array(v), ObjectState.decode)  // reports the corruption
                    return true
                }
                if stages.contains(stage) { n += 1 }
                return true
            }
            return n
        }
    }

    /// Every message record in the given states (all when `states` is nil).
    public func messages(in states: Set<MessageState.State>? = nil) throws -> [MessageState] {
        try read { txn in
            var out: [MessageState] = []
            try txn.scan(txn.dbs.messages) { k, v in
                let m = try txn.decode(txn.dbs.messages, Array(k), Array(v), MessageState.decode)
                if states?.contains(m.state) ?? true { out.append(m) }
                return true
            }
            return out
        }
    }

    /// The quarantine, in key order.
    /// How many items are quarantined (a count, nothing decoded: cheap at every metrics scrape).
    public func quarantineCount() throws -> Int {
        try read { try $0.count($0.dbs.quarantine) }
    }

    /// How many quarantine entries GC has dropped to keep the quarantine within its bound, ever.
    public func quarantineDropped() throws -> UInt64 {
        try read { try Transitions.quarantineDropped($0) }
    }

    public func quarantine() throws -> [QuarantineEntry] {
        try read { txn in
            var out: [QuarantineEntry] = []
            try txn.scan(txn.dbs.quarantine) { k, v in
                out.append(try txn.decode(txn.dbs.quarantine, Array(k), Array(v), QuarantineEntry.decode))
                return true
            }
            return out
        }
    }

    /// The backfill cursors of one job (all jobs when `job` is nil).
    public func cursors(job: String? = nil) throws -> [BackfillCursor] {
        try read { txn in
            var out: [BackfillCursor] = []
            try txn.scan(txn.dbs.cursors) { k, v in
                let c = try txn.decode(txn.dbs.cursors, Array(k), Array(v), BackfillCursor.decode)
                if job == nil || c.job == job { out.append(c) }
                return true
            }
            return out
        }
    }

    /// Releases the map's pages from the resident set after reading large bodies, so memory stays bounded
    /// whatever the objects' sizes (the pages stay in the page cache).
    /// Cheap to call often: it acts once 8 MiB of bodies were read or written since it last did.
    public func releaseMappedPages() {
        guard residency.withLock({ touched in
            guard touched >= 8 << 20 else { return false }
            touched = 0
            return true
        }) else { return }
        resizeLock.withReadLock { env.dropResidentPages(dataFile: registryKey + "/data.mdb", mapSize: mapSize) }
    }

    /// Counts body bytes that went through the map (for ``releaseMappedPages()``).
    func touched(_ bytes: Int) { residency.withLock { $0 += bytes } }

    /// One chunk of a stored body, or nil when there is no such chunk.
    public func bodyChunk(_ body: BodyRef, _ index: UInt32) throws -> [UInt8]? {
        let chunk = try read { try $0.get($0.dbs.bodies, Transitions.chunkKey(body.id, index)) }
        touched(chunk?.count ?? 0)
        return chunk
    }

    /// The stored body of a fetched object, chunk by chunk; each chunk is read in its own snapshot,
    /// so a large body never holds a transaction open nor needs its whole size in memory.
    public func bodyChunks(_ body: BodyRef) -> StoredBody { StoredBody(journal: self, body: body) }

    /// A writer that spools a download into the journal in chunks of `bodyChunkSize`.
    public func bodyWriter(_ ticket: FetchTicket) -> BodyWriter { BodyWriter(journal: self, ticket: ticket) }

    /// Whether nine tenths of the effective limit (`journal.max_size`, or what the disk can hold) are in
    /// use: intake (receiving, listing) waits then,
    /// as bodies do (``ensureRoomForBody(_:)``), so the rest stays for acknowledgements and GC.
    public func nearlyFull() throws -> Bool { try roomForBodies().map { $0.room <= 0 } ?? false }

    /// Bytes bodies may still take before nine tenths of the effective limit (`journal.max_size`, or less
    /// on a smaller disk; the bytes in use too), or
    /// nil while the map is far enough from the limit to grow (no need to count free pages then).
    func roomForBodies() throws -> (room: Int, used: Int)? {
        let limit = effectiveLimit()
        // Far from max_size, on a disk with room to spare: no need to count pages.
        guard mappedSize * 10 >= limit * 9 || limit < Journal.roundUp(options.maxSize) else { return nil }
        let used = try diskUse().used
        return (limit - limit / 10 - used, used)
    }

    /// The most body bytes the journal could hold were it empty: what fits below the body line (nine
    /// tenths of `journal.max_size`, ``ensureRoomForBody(_:)``) once the journal's own pages are
    /// counted (1 MiB allowed: its databases, the object's records), each chunk taking its run of
    /// overflow pages (LMDB's `OVPAGES`: a 16-byte header, then the value) and its node in a leaf page.
    /// A body larger than this can never be stored, however much GC frees: it is refused with
    /// `.bodyTooLarge` (``bodyTooLarge(_:_:)``) rather than waiting for ever. The disk is not counted:
    /// a disk smaller than `max_size` may grow or be cleaned, so a body it cannot hold waits (`.full`).
    public func bodyCapacity() throws -> Int {
        let limit = Journal.roundUp(options.maxSize)
        let pageSize = try pageInfo().pageSize
        let chunk = options.bodyChunkSize
        let perChunk = ((15 + chunk) / pageSize + 1) * pageSize + 64
        return max(0, (limit - limit / 10 - (1 << 20)) / perChunk) * chunk
    }

    /// The error for a body of `bytes` that the journal could not hold even empty (nil when it could):
    /// it names the size, the capacity and `journal.max_size`. `known` says how the size is known
    /// ("as listed", "downloaded so far, at least").
    public func bodyTooLarge(_ bytes: UInt64, _ known: String) throws -> JournalError? {
        let capacity = try bodyCapacity()
        guard bytes > UInt64(capacity) else { return nil }
        return JournalError(
            .bodyTooLarge, operation: "store body", path: path,
            message: "the object is \(bytes) bytes (\(known)) but the journal holds at most \(capacity) bytes of bodies even when empty "
                + "(nine tenths of journal.max_size, \(options.maxSize) bytes, less page overhead): it can never be stored; "
                + "raise journal.max_size, then `journal retry` it")
    }

    /// Bytes in use by live pages, and `journal.max_size` (cheap: no scan of the records).
    public func diskUse() throws -> (used: Int, max: Int) {
        (try read { try usedBytes($0) }, options.maxSize)
    }

    // MARK: Status

    /// Counts per stage, the quarantine (up to `listLimit` entries, newest first), objects whose
    /// download failed and waits to be retried (as many, newest failure first), backfill jobs, the
    /// oldest unacknowledged item and disk use.
    public func status(listLimit: Int = 100) throws -> JournalStatus {
        let pageSize = try pageInfo().pageSize
        return try read { txn in
            var byStage: [ObjectStage: Int] = [:]
            var oldest: Timestamp?
            var storedBytes: UInt64 = 0
            var retrying: [ObjectState] = []
            try txn.scan(txn.dbs.objects) { k, v in
                let s = try txn.decode(txn.dbs.objects, Array(k), Array(v), ObjectState.decode)
                byStage[s.stage, default: 0] += 1
                if !s.stage.isFinal { oldest = min(oldest ?? s.firstSeen, s.firstSeen) }
                if s.stage == .received && s.lastError != nil { retrying.append(s) }
                storedBytes += s.body?.bytes ?? 0
                return true
            }
            retrying.sort { $0.updated > $1.updated }
            var byState: [MessageState.State: Int] = [:]
            try txn.scan(txn.dbs.messages) { k, v in
                let m = try txn.decode(txn.dbs.messages, Array(k), Array(v), MessageState.decode)
                byState[m.state, default: 0] += 1
                oldest = min(oldest ?? m.firstReceived, m.firstReceived)
                return true
            }
            var quarantined: [QuarantineEntry] = []
            // Listed only when asked for (a metrics scrape asks for none): entries hold message bodies.
            if listLimit > 0 {
                try txn.scan(txn.dbs.quarantine) { k, v in
                    quarantined.append(try txn.decode(txn.dbs.quarantine, Array(k), Array(v), QuarantineEntry.decode))
                    return true
                }
            }
            quarantined.sort { $0.lastSeen > $1.lastSeen }
            var cursors: [BackfillCursor] = []
            try txn.scan(txn.dbs.cursors) { k, v in
                cursors.append(try txn.decode(txn.dbs.cursors, Array(k), Array(v), BackfillCursor.decode))
                return true
            }
            var awaiting = 0
            try txn.scan(txn.dbs.collect) { k, _ in
                if k.first == Databases.collectBody { awaiting += 1 }
                return true
            }
            let fileBytes =
                (try? FileManager.default.attributesOfItem(atPath: path + "/data.mdb")[.size] as? Int) ?? 0
            var version = Journal.formatVersion
            if let bytes = try txn.get(txn.dbs.meta, Array("format".utf8)) {
                var r = ByteReader(bytes)
                version = (try? r.bigEndian32()) ?? version
            }
            return JournalStatus(
                path: path, formatVersion: version, objectsByStage: byStage, messagesByState: byState,
                quarantined: Array(quarantined.prefix(listLimit)), quarantineDropped: try Transitions.quarantineDropped(txn), retrying: Array(retrying.prefix(listLimit)), failingOutputs: try OutputHealth.all(txn), outputRecords: try OutputRecords.all(txn), fetchesInProgress: try txn.count(txn.dbs.fetching), backfill: cursors,
                oldestUnacknowledged: oldest, doneMarkers: try txn.count(txn.dbs.done),
                bodiesAwaitingGC: awaiting, storedBodyBytes: storedBytes, bodyChunks: try txn.count(txn.dbs.bodies),
                disk: .init(
                    usedBytes: try usedBytes(txn), mappedBytes: mappedSize, fileBytes: fileBytes,
                    maxBytes: options.maxSize, pageSize: pageSize, limitBytes: effectiveLimit(),
                    filesystemFreeBytes: diskLimit().free))
        }
    }

    /// Bytes of live pages: pages up to the last one used, less those on LMDB's free list.
    private func usedBytes(_ txn: ReadContext) throws -> Int {
        let (pageSize, lastPage) = try pageInfo()
        let free = (try? env.freePages(txn.txn).get()) ?? 0
        return max(0, lastPage + 1 - free) * pageSize
    }

    private func pageInfo() throws -> (pageSize: Int, lastPage: Int) {
        let st = try Journal.lift(env.stat(), "mdb_env_stat", path: path)
        let info = try Journal.lift(env.info(), "mdb_env_info", path: path)
        return (Int(st.ms_psize), info.me_last_pgno)
    }
}

/// Spools a download into the journal: bytes are buffered up to one chunk and stored chunk by chunk,
/// so memory stays bounded by the chunk size whatever the object's size.
public final class BodyWriter: @unchecked Sendable {
    private let journal: Journal
    public let ticket: FetchTicket
    private var buffer: [UInt8] = []
    private var pending: [[UInt8]] = []
    private var firstPending: UInt32 = 0
    private var chunkCount: UInt32 = 0
    private var byteCount: UInt64 = 0
    /// Chunks are committed in groups of this many bytes (one sync per group).
    private let flushBytes: Int
    /// The most bytes a body may hold (``Journal/bodyCapacity()``).
    private let capacity: UInt64

    init(journal: Journal, ticket: FetchTicket) {
        self.journal = journal
        self.ticket = ticket
        self.flushBytes = max(journal.options.bodyChunkSize * 8, 1 << 20)
        self.capacity = UInt64((try? journal.bodyCapacity()) ?? Int.max)
        buffer.reserveCapacity(journal.options.bodyChunkSize)
    }

    /// Bytes accepted so far.
    public var bytesWritten: UInt64 { byteCount }

    /// Appends downloaded bytes; full chunks are stored as they fill.
    ///
    /// - Throws: `.bodyTooLarge` once the body passes what the journal could hold even empty (nothing of
    ///   these bytes is kept), `.full` while it waits for room.
    public func append(_ bytes: some Collection<UInt8>) async throws {
        if byteCount + UInt64(bytes.count) > capacity, let e = try journal.bodyTooLarge(byteCount + UInt64(bytes.count), "downloaded so far, at least") {
            throw e
        }
        let size = journal.options.bodyChunkSize
        var rest = bytes[...]
        while !rest.isEmpty {
            let take = min(size - buffer.count, rest.count)
            buffer.append(contentsOf: rest.prefix(take))
            rest = rest.dropFirst(take)
            byteCount += UInt64(take)
            if buffer.count == size {
                pending.append(buffer)
                buffer.removeAll(keepingCapacity: true)
                chunkCount += 1
                if pending.count * size >= flushBytes { try await flush() }
            }
        }
    }

    private func flush() async throws {
        guard !pending.isEmpty else { return }
        try await journal.storeChunks(ticket, first: firstPending, pending)
        firstPending += UInt32(pending.count)
        pending.removeAll()
        // Writing large bodies faults the map's pages in; keep the resident set bounded.
        journal.releaseMappedPages()
    }

    /// Stores what is left and commits the `fetched` transition with the record count.
    ///
    /// - Parameter integrity: the integrity ledger's change that belongs to this transition (invariant 10).
    public func finish(recordCount: UInt64, integrity: IntegrityCommit? = nil) async throws -> ObjectState {
        if !buffer.isEmpty {
            pending.append(buffer)
            buffer = []
            chunkCount += 1
        }
        // The last chunks commit with the `fetched` transition: one commit fewer per object, and a small
        // object's whole body lands atomically with its new stage.
        let last = pending
        pending.removeAll()
        let state = try await journal.finishFetch(ticket, chunks: chunkCount, bytes: byteCount, recordCount: recordCount, storing: last, from: firstPending, integrity: integrity)
        journal.releaseMappedPages()
        return state
    }
}

/// A stored body, read chunk by chunk.
public struct StoredBody: Sequence, Sendable {
    let journal: Journal
    let body: BodyRef

    public struct Iterator: IteratorProtocol {
        let journal: Journal
        let body: BodyRef
        var index: UInt32 = 0

        /// The next chunk; a missing chunk (which the journal's invariants rule out) ends the sequence
        /// early, and ``StoredBody/chunks()`` reports it as an error.
        public mutating func next() -> [UInt8]? {
            guard index < body.chunks else { return nil }
            defer { index += 1 }
            return try? journal.bodyChunk(body, index)
        }
    }

    public func makeIterator() -> Iterator { Iterator(journal: journal, body: body) }

    /// Visits every chunk in order, throwing when one is missing or unreadable.
    public func forEachChunk(_ body: ([UInt8]) throws -> Void) throws {
        for i in 0..<self.body.chunks {
            guard let chunk = try journal.bodyChunk(self.body, i) else {
                throw JournalError(
                    .corrupt, operation: "bodyChunk", database: "bodies", key: "\(self.body.id)/\(i)",
                    path: journal.path, message: "chunk \(i) of body \(self.body.id) is missing")
            }
            try body(chunk)
        }
    }
}

/// Byte order of two journal keys (LMDB's default order): negative, zero or positive.
func compareKeys(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Int {
    b.withUnsafeBytes { b in
        let n = min(a.count, b.count)
        let c = n == 0 ? 0 : Int(memcmp(a.baseAddress!, b.baseAddress!, n))
        return c != 0 ? c : a.count - b.count
    }
}

/// Stages as a bit mask, for scans that test every object they pass over (a set's `contains` hashes).
struct StageMask {
    private let bits: UInt32
    init(_ stages: Set<ObjectStage>) { bits = stages.reduce(0) { $0 | 1 << $1.rawValue } }
    func contains(_ stage: ObjectStage) -> Bool { bits & 1 << stage.rawValue != 0 }
}
