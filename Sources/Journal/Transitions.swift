import Failures

/// A fetch in progress: the body id its chunks are written under.
public struct FetchTicket: Sendable, Hashable {
    public let object: ObjectRef
    public let bodyID: UInt64
    /// 1 for the first attempt.
    public let attempt: UInt32
}

/// What a listing page changed.
public struct ListingResult: Sendable, Equatable {
    /// Objects journaled as new work (with `force`: also finished objects put back to work).
    public var new = 0
    /// Objects skipped because a done marker says they finished earlier.
    public var alreadyDone = 0
    /// Objects already in the journal and not finished (they go on where they are).
    public var inProgress = 0
}

/// What ``Journal/requeue(_:source:clearing:)`` changed.
public struct RequeueResult: Sendable, Equatable {
    /// Objects put (back) in `received`.
    public var requeued = 0
    /// Objects left alone because they are still being worked on.
    public var inProgress = 0
    /// Objects left alone because they finished (with `skipDone`).
    public var alreadyDone = 0
    /// Quarantine entries removed.
    public var cleared = 0
}

extension Journal {
    // MARK: Transitions — each is one write transaction and returns after its commit.

    /// Journals a received SQS message and the objects it names, before anything else acts on it.
    ///
    /// A message seen before (a redelivery) gets its latest receipt handle and receive count. Each named
    /// object is created as `received`, joined if already in progress, or reported `alreadyDone` when a
    /// done marker exists. A message whose objects are all finished is `complete` at once.
    public func receive(_ message: ReceivedMessage) async throws -> ReceiptResult {
        try await write { try Transitions.receive($0, message) }
    }

    /// Records that `output`'s deliveries are failing with `error` (keeping when the failures began).
    /// Not a stage transition: it changes no object, only what `status()` reports. A URL's password in
    /// `error` is masked before it is stored (``redactingUserinfo(_:)``).
    public func outputFailing(_ output: String, error: String) async throws {
        let error = redactingUserinfo(error)
        try await write { txn in
            let key = OutputHealth.key(output)
            let now = txn.clock()
            let since = try txn.get(txn.dbs.meta, key).map { try OutputHealth.decode($0).since } ?? now
            try txn.put(txn.dbs.meta, key, OutputHealth(output: output, lastError: error, since: since, updated: now).encode())
        }
    }

    /// Clears what ``outputFailing(_:error:)`` recorded, once `output` delivers again.
    public func outputRecovered(_ output: String) async throws {
        try await write { txn in _ = try txn.delete(txn.dbs.meta, OutputHealth.key(output)) }
    }

    /// Forgets every output's recorded failure (at start: a failure is recorded again when it recurs, and
    /// an output no longer configured leaves nothing behind).
    public func forgetOutputFailures() async throws {
        try await write { txn in
            for o in try OutputHealth.all(txn.read) { _ = try txn.delete(txn.dbs.meta, OutputHealth.key(o.output)) }
        }
    }

    /// Journals a message that cannot be used (unrecognised, poison): it goes to the quarantine with
    /// the reason and its body (whole up to 64 KiB, else a 1 KiB excerpt), and the message is ready to delete
    /// (or leave to the DLQ).
    public func quarantineMessage(
        id: String, receiptHandle: String, receiveCount: UInt32, reason: String, detail: String? = nil
    ) async throws -> MessageState {
        // The reason is masked (it may quote a URL); the body is kept as received, for `journal retry`.
        let reason = redactingUserinfo(reason)
        return try await write { try Transitions.quarantineMessage($0, id, receiptHandle, receiveCount, reason, detail) }
    }

    /// Starts a download of a `received` object: counts the attempt and reserves a body id.
    public func startFetch(_ ref: ObjectRef) async throws -> FetchTicket {
        try await write { try Transitions.startFetch($0, ref) }
    }

    /// Stores body chunks of a fetch in progress (not a stage transition: the chunks belong to no
    /// object until ``finishFetch(_:chunks:bytes:recordCount:)`` commits).
    func storeChunks(_ ticket: FetchTicket, first index: UInt32, _ chunks: [[UInt8]]) async throws {
        let bytes = chunks.reduce(0) { $0 + $1.count }
        touched(bytes)
        try ensureRoomForBody(bytes)
        try await write { txn in
            guard try txn.get(txn.dbs.fetching, Transitions.bodyKey(ticket.bodyID)) != nil else {
                throw JournalError(
                    .invalidTransition, operation: "storeChunks", database: "fetching", key: "\(ticket.bodyID)",
                    path: txn.path, message: "the fetch of \(ticket.object) is no longer in progress")
            }
            for (i, chunk) in chunks.enumerated() {
                try txn.put(txn.dbs.bodies, Transitions.chunkKey(ticket.bodyID, index + UInt32(i)), chunk)
            }
        }
    }

    /// Bodies may not fill the last tenth of `maxSize`: it stays free for everything else (receipts,
    /// acknowledgements, cursors, quarantine entries) and for GC, whose deletes need pages too, so a
    /// journal full of bodies can always drain. Throws `.full` for a body that would reach into it.
    ///
    /// Measured in a snapshot before the write (inside a write transaction LMDB has taken free pages
    /// off the free list): concurrent fetches may overshoot the line by a chunk each, which the tenth
    /// absorbs.
    func ensureRoomForBody(_ bytes: Int) throws {
        guard let (room, used) = try roomForBodies(), bytes > room else { return }
        throw JournalError(
            .full, lmdbCode: .mapFull, operation: "store body", path: path,
            message: "the journal in '\(path)' has no room for more bodies: \(used) of \(effectiveLimit()) bytes used (journal.max_size, or less on a smaller disk), "
                + "and the last tenth is kept for acknowledgements and GC; intake pauses until acknowledged work is garbage-collected")
    }

    /// Marks a download complete: the stored body, its size and record count become the object's,
    /// and the object is `fetched` (or `done` when there is nothing to emit).
    ///
    /// `storing` are the body's last chunks (numbered from `from`), stored in the same transaction.
    public func finishFetch(
        _ ticket: FetchTicket, chunks: UInt32, bytes: UInt64, recordCount: UInt64, storing last: [[UInt8]] = [], from first: UInt32 = 0,
        integrity: IntegrityCommit? = nil
    ) async throws -> ObjectState {
        let lastBytes = last.reduce(0) { $0 + $1.count }
        touched(lastBytes)
        if lastBytes > 0 { try ensureRoomForBody(lastBytes) }
        return try await write { txn in
            let state = try Transitions.finishFetch(txn, ticket, chunks, bytes, recordCount)
            switch integrity {
            case .log(let log)?: try Ledger.recordLog(txn, log)
            case .digest(let verdict)?: try Ledger.record(txn, verdict)
            case nil: break
            }
            for (i, chunk) in last.enumerated() {
                try txn.put(txn.dbs.bodies, Transitions.chunkKey(ticket.bodyID, first + UInt32(i)), chunk)
            }
            return state
        }
    }

    /// Records a failed download attempt (the object stays `received`; its partial body is freed).
    ///
    /// - Parameter countAttempt: false when the failure is not the object's (no credentials to sign
    ///   with): the attempt ``startFetch(_:)`` counted is given back, so it never leads to quarantine.
    public func fetchFailed(_ ticket: FetchTicket, error: String, countAttempt: Bool = true) async throws -> ObjectState {
        let error = redactingUserinfo(error)
        return try await write { try Transitions.fetchFailed($0, ticket, error, countAttempt) }
    }

    /// Records one output's acknowledgement; returns the object's new state.
    public func acknowledge(_ ack: Acknowledgement) async throws -> ObjectState {
        try await acknowledge([ack])[0]
    }

    /// Records several acknowledgements in one transaction; returns the objects' new states in order.
    ///
    /// Cursors only grow: an acknowledgement below the current cursor changes nothing. An object whose
    /// every output reached its record count becomes `done` and gets a done marker.
    public func acknowledge(_ acks: [Acknowledgement]) async throws -> [ObjectState] {
        try await write { txn in try acks.map { try Transitions.acknowledge(txn, $0) } }
    }

    /// Records one output's acknowledgements of a batch (it may span several objects) in one
    /// transaction, and, when `delivery` is given, counts one delivery across that many objects in the
    /// output's totals (how `journal status` and the metrics know the batch sizes actually used).
    public func acknowledge(_ acks: [Acknowledgement], output: String, delivery objects: Int?) async throws -> [ObjectState] {
        try await write { txn in
            let states = try acks.map { try Transitions.acknowledge(txn, $0) }
            if let objects { try OutputRecords.add(txn, output: output, delivered: 0, filtered: 0, delivery: UInt64(objects)) }
            return states
        }
    }

    /// Finishes an object that has nothing to emit (e.g. a digest file), with a note saying why.
    public func complete(_ ref: ObjectRef, note: String) async throws -> ObjectState {
        try await write { try Transitions.complete($0, ref, note) }
    }

    /// Quarantines an object with the reason (a URL's password in it masked); its messages can then be deleted.
    public func quarantineObject(_ ref: ObjectRef, reason: String, detail: String? = nil) async throws -> ObjectState {
        let reason = redactingUserinfo(reason)
        return try await write { try Transitions.quarantineObject($0, ref, reason, detail) }
    }

    /// Records that SQS deleted these messages: they are forgotten, and objects no message names any
    /// more become collectable once finished. Unknown ids are ignored (deletes are idempotent).
    public func messagesDeleted(_ ids: [String]) async throws {
        try await write { txn in for id in ids { try Transitions.messageDeleted(txn, id) } }
    }

    /// Writes backfill cursors as they are, in one transaction (a job's new pass: every partition
    /// rewound and the marker's horizon set together, so a crash leaves the old pass or the new one).
    public func saveCursors(_ cursors: [BackfillCursor]) async throws {
        try await write { txn in
            let now = txn.clock()
            for var c in cursors {
                c.updated = now
                try txn.put(txn.dbs.cursors, c.storageKey, c.encode())
            }
        }
    }

    /// Journals one listing page of a backfill: the objects it discovered and the partition's new
    /// cursor, in the same transaction, so a crash never skips nor relists a key.
    ///
    /// - Parameter force: journal objects even when a done marker says they finished.
    public func saveListing(_ cursor: BackfillCursor, discovered: [DiscoveredObject], force: Bool = false) async throws -> ListingResult {
        try await write { try Transitions.saveListing($0, cursor, discovered, force) }
    }

    /// Frees, in a bounded batch, the bodies and records of finished objects no message names, orphaned
    /// bodies of interrupted downloads, and done markers past their retention.
    ///
    /// - Parameter maxChunks: the most body chunks to delete in this pass.
    public func collectGarbage(maxChunks: Int = 256) async throws -> GCResult {
        try await write { try Transitions.collect($0, maxChunks) }
    }

    /// Puts objects back to work, in one transaction: an object the journal does not hold (or holds
    /// finished: done or quarantined) becomes `received` again with no cursors and no attempts, its old
    /// body left to GC; an object still in progress is left alone. The quarantine entries named by
    /// `clearing` (their ``QuarantineEntry/key``) are removed in the same transaction, so a retried item
    /// is either back in the queue or still quarantined — never neither.
    ///
    /// - Parameter source: recorded on the requeued objects (e.g. `retry`).
    /// - Parameter skipDone: leave objects that finished (`done`, or a done marker without a record)
    ///   alone, counted in `alreadyDone` (`journal retry`); without it they are shipped again (`--force`).
    public func requeue(_ objects: [DiscoveredObject], source: String, clearing: [[UInt8]] = [], skipDone: Bool = false) async throws -> RequeueResult {
        try await write { txn in
            var result = RequeueResult()
            for key in clearing where try txn.read.quarantineEntry(key) != nil {
                try txn.delete(txn.dbs.quarantine, key)
                result.cleared += 1
            }
            for d in objects {
                if skipDone, try txn.read.object(d.ref).map({ $0.stage == .done }) ?? (try txn.read.doneMarker(d.ref) != nil) {
                    result.alreadyDone += 1
                } else if try Transitions.requeue(txn, d, source) {
                    result.requeued += 1
                } else {
                    result.inProgress += 1
                }
            }
            return result
        }
    }

    /// Removes quarantine entries (after an operator dealt with them); returns how many were removed.
    public func clearQuarantine() async throws -> Int {
        try await write { txn in
            var keys: [[UInt8]] = []
            try txn.scan(txn.dbs.quarantine) { k, _ in keys.append(Array(k)); return true }
            for k in keys { try txn.delete(txn.dbs.quarantine, k) }
            return keys.count
        }
    }
}

/// The transitions' bodies: pure functions of the transaction and their inputs, so the writer may run
/// them again after growing the map.
enum Transitions {
    static func bodyKey(_ id: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 8)
        w.bigEndian(id)
        return w.bytes
    }

    static func chunkKey(_ id: UInt64, _ index: UInt32) -> [UInt8] {
        var w = ByteWriter(capacity: 12)
        w.bigEndian(id)
        w.bigEndian(index)
        return w.bytes
    }

    static func missing(_ txn: WriteContext, _ ref: ObjectRef, _ op: String) -> JournalError {
        JournalError(
            .unknownObject, operation: op, database: "objects", key: ref.description, path: txn.path,
            message: "\(op): the journal holds no object \(ref)")
    }

    static func invalid(_ txn: WriteContext, _ state: ObjectState, _ op: String) -> JournalError {
        JournalError(
            .invalidTransition, operation: op, database: "objects", key: state.ref.description, path: txn.path,
            message: "\(op) does not apply to \(state.ref) in stage \(state.stage)")
    }

    static func receive(_ txn: WriteContext, _ m: ReceivedMessage) throws -> ReceiptResult {
        let now = txn.clock()
        var message =
            try txn.read.message(m.id)
            ?? MessageState(
                id: m.id, receiptHandle: m.receiptHandle, firstReceived: now, lastReceived: now,
                receiveCount: m.receiveCount, objects: [], state: .received)
        message.receiptHandle = m.receiptHandle
        message.lastReceived = now
        message.receiveCount = max(message.receiveCount, m.receiveCount)
        var dispositions: [ObjectRef: ObjectDisposition] = [:]
        if message.state != .quarantined {
            for discovered in m.objects {
                let ref = discovered.ref
                if !message.objects.contains(ref) { message.objects.append(ref) }
                if var state = try txn.read.object(ref) {
                    if !state.messages.contains(m.id) {
                        state.messages.append(m.id)
                        state.updated = now
                        try txn.store(state)
                    }
                    switch state.stage {
                    case .done: dispositions[ref] = .alreadyDone(finishedAt: state.updated)
                    case .quarantined: dispositions[ref] = .quarantined
                    default: dispositions[ref] = .inProgress(state.stage)
                    }
                } else if let finished = try txn.read.doneMarker(ref) {
                    dispositions[ref] = .alreadyDone(finishedAt: finished)
                } else {
                    try txn.store(
                        ObjectState(
                            ref: ref, stage: .received, size: discovered.size, recordCount: nil, body: nil,
                            cursors: [:], attempts: 0, lastError: nil, messages: [m.id], source: "sqs", note: nil,
                            firstSeen: now, updated: now))
                    txn.touch(.received)
                    dispositions[ref] = .new
                }
            }
        }
        try txn.store(message)
        message = try refreshMessage(txn, m.id) ?? message
        return ReceiptResult(message: message, objects: dispositions)
    }

    /// Moves a `received` message to `complete` when every object it names is finished.
    @discardableResult
    static func refreshMessage(_ txn: WriteContext, _ id: String) throws -> MessageState? {
        guard var message = try txn.read.message(id) else { return nil }
        guard message.state == .received else { return message }
        for ref in message.objects {
            if let state = try txn.read.object(ref) {
                if !state.stage.isFinal { return message }
            }
            // No record: finished and collected, or never ours (a done marker, or retention passed).
        }
        message.state = .complete
        try txn.store(message)
        txn.touch(.finished)
        return message
    }

    static func quarantineMessage(
        _ txn: WriteContext, _ id: String, _ handle: String, _ count: UInt32, _ reason: String, _ detail: String?
    ) throws -> MessageState {
        let now = txn.clock()
        var message =
            try txn.read.message(id)
            ?? MessageState(
                id: id, receiptHandle: handle, firstReceived: now, lastReceived: now, receiveCount: count,
                objects: [], state: .quarantined)
        message.receiptHandle = handle
        message.lastReceived = now
        message.receiveCount = max(message.receiveCount, count)
        message.state = .quarantined
        try txn.store(message)
        txn.touch(.finished)
        var entry = QuarantineEntry(
            kind: .message, object: nil, messageID: id, reason: reason, detail: detail.map { $0.utf8.count <= messageBodyLimit ? $0 : excerpt($0) },
            attempts: count, firstSeen: now, lastSeen: now)
        if let previous = try txn.read.quarantineEntry(entry.storageKey) { entry.firstSeen = previous.firstSeen }
        try txn.put(txn.dbs.quarantine, entry.storageKey, entry.encode())
        return message
    }

    /// A message body is kept whole up to 64 KiB (notifications are a few KiB), so `journal retry` can
    /// act on it; a larger one (junk, a flood) keeps a 1 KiB excerpt like everything else.
    static let messageBodyLimit = 64 << 10

    static func excerpt(_ s: String, limit: Int = 1024) -> String {
        s.utf8.count <= limit ? s : String(decoding: Array(s.utf8.prefix(limit)), as: UTF8.self) + "…"
    }

    static func startFetch(_ txn: WriteContext, _ ref: ObjectRef) throws -> FetchTicket {
        guard var state = try txn.read.object(ref) else { throw missing(txn, ref, "startFetch") }
        guard state.stage == .received else { throw invalid(txn, state, "startFetch") }
        let seqKey = Array("body_seq".utf8)
        var next: UInt64 = 1
        if let bytes = try txn.get(txn.dbs.meta, seqKey) {
            var r = ByteReader(bytes)
            next = try r.bigEndian64() + 1
        }
        try txn.put(txn.dbs.meta, seqKey, bodyKey(next))
        try txn.put(txn.dbs.fetching, bodyKey(next), ref.storageKey)
        state.attempts += 1
        state.updated = txn.clock()
        try txn.store(state)
        return FetchTicket(object: ref, bodyID: next, attempt: state.attempts)
    }

    static func finishFetch(
        _ txn: WriteContext, _ ticket: FetchTicket, _ chunks: UInt32, _ bytes: UInt64, _ count: UInt64
    ) throws -> ObjectState {
        guard var state = try txn.read.object(ticket.object) else { throw missing(txn, ticket.object, "finishFetch") }
        guard state.stage == .received, try txn.delete(txn.dbs.fetching, bodyKey(ticket.bodyID)) else {
            throw invalid(txn, state, "finishFetch")
        }
        state.body = BodyRef(id: ticket.bodyID, chunks: chunks, bytes: bytes)
        state.size = bytes
        state.recordCount = count
        state.stage = .fetched
        state.lastError = nil
        state.updated = txn.clock()
        return try settle(txn, state)
    }

    static func fetchFailed(_ txn: WriteContext, _ ticket: FetchTicket, _ error: String, _ countAttempt: Bool = true) throws -> ObjectState {
        guard var state = try txn.read.object(ticket.object) else { throw missing(txn, ticket.object, "fetchFailed") }
        if !countAttempt { state.attempts = max(0, state.attempts - 1) }
        if try txn.delete(txn.dbs.fetching, bodyKey(ticket.bodyID)) {
            try txn.put(txn.dbs.collect, [Databases.collectBody] + bodyKey(ticket.bodyID), [])
        }
        state.lastError = error
        state.updated = txn.clock()
        try txn.store(state)
        txn.touch(.received)  // to be claimed again once its backoff ends
        return state
    }

    static func acknowledge(_ txn: WriteContext, _ ack: Acknowledgement) throws -> ObjectState {
        guard var state = try txn.read.object(ack.object) else { throw missing(txn, ack.object, "acknowledge") }
        if state.stage == .done { return state }
        guard state.stage == .fetched || state.stage == .emitting, let total = state.recordCount else {
            throw invalid(txn, state, "acknowledge")
        }
        guard ack.count <= total else {
            throw JournalError(
                .invalidTransition, operation: "acknowledge", database: "objects", key: ack.object.description,
                path: txn.path,
                message: "output '\(ack.output)' acknowledged \(ack.count) records of \(ack.object), which has \(total)")
        }
        let previous = state.cursor(ack.output)
        guard ack.count > previous else { return state }
        let filtered = min(ack.filtered, ack.count - previous)
        try OutputRecords.add(txn, output: ack.output, delivered: ack.count - previous - filtered, filtered: filtered)
        state.cursors[ack.output] = ack.count
        state.stage = .emitting
        state.updated = txn.clock()
        return try settle(txn, state)
    }

    /// Stores `state`, first finishing it when every configured output has acknowledged every record.
    static func settle(_ txn: WriteContext, _ state: ObjectState) throws -> ObjectState {
        var state = state
        let total = state.recordCount ?? 0
        if txn.options.outputs.allSatisfy({ state.cursor($0) >= total }) {
            state.stage = .done
            try finish(txn, &state)
        } else {
            try txn.store(state)
            if state.stage == .fetched { txn.touch(.fetched) }
        }
        return state
    }

    /// Writes a finished object, its done marker and what follows for its messages and GC.
    static func finish(_ txn: WriteContext, _ state: inout ObjectState) throws {
        let now = txn.clock()
        state.updated = now
        try txn.store(state)
        txn.touch(.finished)
        if state.stage == .done {
            var w = ByteWriter(capacity: 8)
            w.bigEndian(UInt64(bitPattern: now))
            if let previous = try txn.read.doneMarker(state.ref) {
                try txn.delete(txn.dbs.doneByTime, bodyKey(UInt64(bitPattern: previous)) + state.ref.storageKey)
            }
            try txn.put(txn.dbs.done, state.ref.storageKey, w.bytes)
            try txn.put(txn.dbs.doneByTime, w.bytes + state.ref.storageKey, [])
        }
        for id in state.messages { try refreshMessage(txn, id) }
        if state.messages.isEmpty {
            try txn.put(txn.dbs.collect, [Databases.collectObject] + state.ref.storageKey, [])
        }
    }

    static func complete(_ txn: WriteContext, _ ref: ObjectRef, _ note: String) throws -> ObjectState {
        guard var state = try txn.read.object(ref) else { throw missing(txn, ref, "complete") }
        if state.stage == .done { return state }
        guard !state.stage.isFinal else { throw invalid(txn, state, "complete") }
        state.stage = .done
        state.note = note
        if state.recordCount == nil { state.recordCount = 0 }
        try finish(txn, &state)
        return state
    }

    static func quarantineObject(_ txn: WriteContext, _ ref: ObjectRef, _ reason: String, _ detail: String?) throws -> ObjectState {
        guard var state = try txn.read.object(ref) else { throw missing(txn, ref, "quarantineObject") }
        guard !state.stage.isFinal else { throw invalid(txn, state, "quarantineObject") }
        let now = txn.clock()
        state.stage = .quarantined
        state.lastError = reason
        var entry = QuarantineEntry(
            kind: .object, object: ref, messageID: state.messages.first, reason: reason, detail: detail.map { excerpt($0) },
            attempts: state.attempts, firstSeen: now, lastSeen: now)
        if let previous = try txn.read.quarantineEntry(entry.storageKey) { entry.firstSeen = previous.firstSeen }
        try txn.put(txn.dbs.quarantine, entry.storageKey, entry.encode())
        try finish(txn, &state)
        return state
    }

    static func messageDeleted(_ txn: WriteContext, _ id: String) throws {
        guard let message = try txn.read.message(id) else { return }
        for ref in message.objects {
            guard var state = try txn.read.object(ref) else { continue }
            guard let i = state.messages.firstIndex(of: id) else { continue }
            state.messages.remove(at: i)
            try txn.store(state)
            if state.messages.isEmpty && state.stage.isFinal {
                try txn.put(txn.dbs.collect, [Databases.collectObject] + ref.storageKey, [])
            }
        }
        try txn.delete(txn.dbs.messages, Array(id.utf8))
    }

    static func saveListing(
        _ txn: WriteContext, _ cursor: BackfillCursor, _ discovered: [DiscoveredObject], _ force: Bool
    ) throws -> ListingResult {
        let now = txn.clock()
        var result = ListingResult()
        for d in discovered {
            // `force` means the same whether a finished object's record is still here or GC removed it
            // and only its done marker is left: it is shipped again. In progress, it just goes on.
            if force {
                if try requeue(txn, d, "backfill:\(cursor.job)") { result.new += 1 } else { result.inProgress += 1 }
            } else if try txn.read.object(d.ref) != nil {
                result.inProgress += 1
            } else if try txn.read.doneMarker(d.ref) != nil {
                result.alreadyDone += 1
            } else {
                try txn.store(
                    ObjectState(
                        ref: d.ref, stage: .received, size: d.size, recordCount: nil, body: nil, cursors: [:],
                        attempts: 0, lastError: nil, messages: [], source: "backfill:\(cursor.job)", note: nil,
                        firstSeen: now, updated: now))
                txn.touch(.received)
                result.new += 1
            }
        }
        var c = cursor
        c.updated = now
        try txn.put(txn.dbs.cursors, c.storageKey, c.encode())
        return result
    }

    /// Makes `d` received again unless it is in progress; false when it is. A finished object keeps the
    /// messages that name it (they are deleted once it finishes again); its body goes to GC.
    static func requeue(_ txn: WriteContext, _ d: DiscoveredObject, _ source: String) throws -> Bool {
        let now = txn.clock()
        var state = ObjectState(
            ref: d.ref, stage: .received, size: d.size, recordCount: nil, body: nil, cursors: [:], attempts: 0,
            lastError: nil, messages: [], source: source, note: nil, firstSeen: now, updated: now)
        if let previous = try txn.read.object(d.ref) {
            guard previous.stage.isFinal else { return false }
            if let body = previous.body {
                try txn.put(txn.dbs.collect, [Databases.collectBody] + bodyKey(body.id), [])
            }
            if previous.stage == .quarantined {
                // Back to work: no longer quarantined (whoever requeues it).
                try txn.delete(txn.dbs.quarantine, [QuarantineEntry.Kind.object.rawValue] + d.ref.storageKey)
            }
            state.messages = previous.messages
            state.size = d.size ?? previous.size
            state.firstSeen = previous.firstSeen
        }
        try txn.store(state)
        txn.touch(.received)
        return true
    }

    /// Deletes up to `budget` chunks of a body; returns how many were deleted and whether any remain.
    static func deleteChunks(_ txn: WriteContext, _ body: UInt64, _ budget: Int) throws -> (Int, Bool) {
        let prefix = bodyKey(body)
        var keys: [[UInt8]] = []
        var more = false
        try txn.scan(txn.dbs.bodies, from: prefix) { k, _ in
            guard k.count == 12, k.starts(with: prefix) else { return false }
            if keys.count == budget {
                more = true
                return false
            }
            keys.append(Array(k))
            return true
        }
        for k in keys { try txn.delete(txn.dbs.bodies, k) }
        return (keys.count, more)
    }

    static func collect(_ txn: WriteContext, _ maxChunks: Int) throws -> GCResult {
        var result = GCResult()
        var budget = max(1, maxChunks)
        var entries: [[UInt8]] = []
        try txn.scan(txn.dbs.collect) { k, _ in
            entries.append(Array(k))
            return entries.count < 256
        }
        for entry in entries {
            guard budget > 0 else {
                result.moreWork = true
                break
            }
            let rest = Array(entry.dropFirst())
            if entry.first == Databases.collectBody {
                var r = ByteReader(rest)
                let (n, more) = try deleteChunks(txn, try r.bigEndian64(), budget)
                budget -= n
                result.chunksFreed += n
                if more { result.moreWork = true } else { try txn.delete(txn.dbs.collect, entry) }
                continue
            }
            guard let bytes = try txn.get(txn.dbs.objects, rest) else {
                try txn.delete(txn.dbs.collect, entry)
                continue
            }
            var state = try txn.read.decode(txn.dbs.objects, rest, bytes, ObjectState.decode)
            guard state.stage.isFinal, state.messages.isEmpty else {
                try txn.delete(txn.dbs.collect, entry)  // named again since; re-queued when it is not
                continue
            }
            if let body = state.body {
                let (n, more) = try deleteChunks(txn, body.id, budget)
                budget -= n
                result.chunksFreed += n
                if more {
                    result.moreWork = true
                    continue
                }
                state.body = nil
            }
            try txn.delete(txn.dbs.objects, rest)
            try txn.delete(txn.dbs.collect, entry)
            result.objectsRemoved += 1
        }
        if entries.count == 256 { result.moreWork = true }
        // Done markers past their retention, oldest first.
        let horizon = txn.clock() - txn.options.doneRetention
        var expired: [[UInt8]] = []
        try txn.scan(txn.dbs.doneByTime) { k, _ in
            guard k.count > 8 else { return true }
            let at = Int64(bitPattern: k.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            guard at < horizon else { return false }
            expired.append(Array(k))
            if expired.count == 1024 {
                result.moreWork = true
                return false
            }
            return true
        }
        for k in expired {
            try txn.delete(txn.dbs.doneByTime, k)
            try txn.delete(txn.dbs.done, Array(k.dropFirst(8)))
        }
        result.markersExpired = expired.count
        result.quarantineDropped = try boundQuarantine(txn)
        // Pages freed: intake waiting for room (nine tenths of max_size) may go on.
        if result.chunksFreed > 0 || result.objectsRemoved > 0 || !expired.isEmpty { txn.touch(.finished) }
        return result
    }

    static let quarantineDroppedKey = Array("quarantineDropped".utf8)

    /// Invariant 9: past `maxQuarantineEntries`, or past a tenth of `maxSize` in bytes (each message
    /// entry keeps up to 64 KiB of its body, so a count alone would not protect a small journal), the
    /// entries seen longest ago go, down to nine tenths of both bounds (so a flood costs one scan per
    /// tenth, not one per entry); returns how many.
    static func boundQuarantine(_ txn: WriteContext) throws -> Int {
        let limit = txn.options.maxQuarantineEntries
        guard limit > 0 else { return 0 }
        let byteLimit = max(1 << 20, txn.options.maxSize / 10)
        let count = try txn.read.count(txn.dbs.quarantine)
        let pageBytes = try txn.read.bytes(txn.dbs.quarantine)
        guard count > limit || pageBytes > byteLimit else { return 0 }
        var seen: [(key: [UInt8], lastSeen: Timestamp, size: Int)] = []
        var stored = 0
        try txn.scan(txn.dbs.quarantine) { k, v in
            let key = Array(k)
            seen.append((key, try txn.read.decode(txn.dbs.quarantine, key, Array(v), QuarantineEntry.decode).lastSeen, k.count + v.count))
            stored += k.count + v.count
            return true
        }
        seen.sort { $0.lastSeen != $1.lastSeen ? $0.lastSeen < $1.lastSeen : $0.key.lexicographicallyPrecedes($1.key) }
        // Entry sizes stand for the pages they take: the byte target is scaled by what pages add.
        let byteTarget = Double(byteLimit) * 0.9 * Double(stored) / Double(max(1, pageBytes))
        var (keptCount, keptBytes, drop) = (seen.count, stored, 0)
        for entry in seen {
            guard keptCount > limit * 9 / 10 || Double(keptBytes) > byteTarget else { break }
            _ = try txn.delete(txn.dbs.quarantine, entry.key)
            (keptCount, keptBytes, drop) = (keptCount - 1, keptBytes - entry.size, drop + 1)
        }
        var w = ByteWriter(capacity: 8)
        w.bigEndian(try quarantineDropped(txn.read) + UInt64(drop))
        try txn.put(txn.dbs.meta, quarantineDroppedKey, w.bytes)
        return drop
    }

    static func quarantineDropped(_ txn: ReadContext) throws -> UInt64 {
        guard let bytes = try txn.get(txn.dbs.meta, quarantineDroppedKey) else { return 0 }
        var r = ByteReader(bytes)
        return try r.bigEndian64()
    }
}
