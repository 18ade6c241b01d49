/// Milliseconds since the Unix epoch, UTC.
public typealias Timestamp = Int64

/// An S3 object as the journal identifies it: bucket, key and the object's
/// version (its ETag, or its version id; empty when the notification gave neither).
public struct ObjectRef: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var bucket: String
    public var key: String
    public var version: String

    public init(bucket: String, key: String, version: String = "") {
        self.bucket = bucket
        self.key = key
        self.version = version
    }

    public static func < (a: ObjectRef, b: ObjectRef) -> Bool {
        (a.bucket, a.key, a.version) < (b.bucket, b.key, b.version)
    }

    public var description: String {
        // A local copy's bucket is already a URL (file:///…).
        let url = (bucket.contains("://") ? bucket : "s3://" + bucket) + "/" + key
        return version.isEmpty ? url : url + "@" + version
    }

    var storageKey: [UInt8] { KeyBuilder.key([bucket, key, version]) }

    func encode(into w: inout ByteWriter) {
        w.string(bucket)
        w.string(key)
        w.string(version)
    }
    static func decode(from r: inout ByteReader) throws -> ObjectRef {
        ObjectRef(bucket: try r.string(), key: try r.string(), version: try r.string())
    }
}

/// Where an object is in the pipeline.
public enum ObjectStage: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Named by a notification or a listing; not yet downloaded.
    case received = 1
    /// Downloaded, validated and stored; no output has acknowledged a record yet.
    case fetched = 2
    /// At least one output acknowledged records; not all outputs acknowledged all.
    case emitting = 3
    /// Every output acknowledged every record (or there was nothing to emit).
    case done = 4
    /// Could not be processed; the reason is in the quarantine.
    case quarantined = 5

    public var description: String {
        switch self {
        case .received: "received"
        case .fetched: "fetched"
        case .emitting: "emitting"
        case .done: "done"
        case .quarantined: "quarantined"
        }
    }

    /// Whether nothing more will happen to the object.
    public var isFinal: Bool { self == .done || self == .quarantined }
}

/// A stored object body: the bytes as downloaded, in chunks of the `bodies` database.
public struct BodyRef: Hashable, Sendable {
    public var id: UInt64
    public var chunks: UInt32
    public var bytes: UInt64
}

/// Everything the journal knows of one object.
public struct ObjectState: Sendable, Equatable {
    public var ref: ObjectRef
    public var stage: ObjectStage
    /// The size given by the notification or listing, then the stored body's size.
    public var size: UInt64?
    /// How many records the object holds; known once fetched.
    public var recordCount: UInt64?
    /// The stored body, once fetched.
    public var body: BodyRef?
    /// Per output: how many leading records it has acknowledged.
    public var cursors: [String: UInt64]
    /// Fetch attempts so far.
    public var attempts: UInt32
    /// The last failure, for operators.
    public var lastError: String?
    /// Ids of the SQS messages that name the object and are not deleted yet.
    public var messages: [String]
    /// Where the object came from: `sqs` or `backfill:<job>`.
    public var source: String
    /// A note on how the object finished (e.g. `digest: not emitted`).
    public var note: String?
    public var firstSeen: Timestamp
    public var updated: Timestamp

    /// The cursor of one output (0 when it has acknowledged nothing).
    public func cursor(_ output: String) -> UInt64 { cursors[output] ?? 0 }

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.byte(1)  // record layout version
        ref.encode(into: &w)
        w.byte(stage.rawValue)
        w.bool(size != nil); if let size { w.varint(size) }
        w.bool(recordCount != nil); if let recordCount { w.varint(recordCount) }
        w.bool(body != nil)
        if let body { w.varint(body.id); w.varint(UInt64(body.chunks)); w.varint(body.bytes) }
        w.varint(cursors.count)
        for (name, value) in cursors.sorted(by: { $0.key < $1.key }) { w.string(name); w.varint(value) }
        w.varint(UInt64(attempts))
        w.optionalString(lastError)
        w.varint(messages.count)
        for m in messages { w.string(m) }
        w.string(source)
        w.optionalString(note)
        w.varint(UInt64(bitPattern: firstSeen))
        w.varint(UInt64(bitPattern: updated))
        return w.bytes
    }

    /// The stage of an encoded state, read past the identity without decoding anything else (nil when
    /// the bytes are not a well-formed prefix of one).
    static func peekStage(_ v: UnsafeRawBufferPointer) -> ObjectStage? {
        guard v.count > 0, v[0] == 1 else { return nil }
        var i = 1
        for _ in 0..<3 {  // bucket, key, version: varint length, then the bytes
            var n = 0, shift = 0
            while true {
                guard i < v.count, shift < 63 else { return nil }
                let b = v[i]
                i += 1
                n |= Int(b & 0x7f) << shift
                if b & 0x80 == 0 { break }
                shift += 7
            }
            guard n >= 0, n <= v.count - i else { return nil }
            i += n
        }
        return i < v.count ? ObjectStage(rawValue: v[i]) : nil
    }

    static func decode(_ bytes: [UInt8]) throws -> ObjectState {
        var r = ByteReader(bytes)
        guard try r.byte() == 1 else { throw ByteReader.Truncated() }
        let ref = try ObjectRef.decode(from: &r)
        guard let stage = ObjectStage(rawValue: try r.byte()) else { throw ByteReader.Truncated() }
        let size: UInt64? = try r.bool() ? try r.varint() : nil
        let count: UInt64? = try r.bool() ? try r.varint() : nil
        var body: BodyRef?
        if try r.bool() {
            body = BodyRef(id: try r.varint(), chunks: UInt32(truncatingIfNeeded: try r.varint()), bytes: try r.varint())
        }
        var cursors: [String: UInt64] = [:]
        for _ in 0..<(try r.int()) { cursors[try r.string()] = try r.varint() }
        let attempts = UInt32(truncatingIfNeeded: try r.varint())
        let lastError = try r.optionalString()
        var messages: [String] = []
        for _ in 0..<(try r.int()) { messages.append(try r.string()) }
        let source = try r.string()
        let note = try r.optionalString()
        let first = Int64(bitPattern: try r.varint())
        let updated = Int64(bitPattern: try r.varint())
        return ObjectState(
            ref: ref, stage: stage, size: size, recordCount: count, body: body, cursors: cursors,
            attempts: attempts, lastError: lastError, messages: messages, source: source, note: note,
            firstSeen: first, updated: updated)
    }
}

/// An object named by a notification or a listing, with its size when known.
public struct DiscoveredObject: Hashable, Sendable {
    public var ref: ObjectRef
    public var size: UInt64?
    public init(_ ref: ObjectRef, size: UInt64? = nil) {
        self.ref = ref
        self.size = size
    }
}

/// What the journal knows of one SQS message that is not deleted yet.
public struct MessageState: Sendable, Equatable {
    public enum State: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        /// Some of its objects are still in progress.
        case received = 1
        /// All its objects are done or quarantined: delete it from the queue.
        case complete = 2
        /// The message itself could not be used (unrecognised, poison); see the quarantine.
        case quarantined = 3

        public var description: String {
            switch self {
            case .received: "received"
            case .complete: "complete"
            case .quarantined: "quarantined"
            }
        }
    }

    public var id: String
    /// The latest receipt handle: only it can delete the message or change its visibility.
    public var receiptHandle: String
    public var firstReceived: Timestamp
    public var lastReceived: Timestamp
    /// SQS's `ApproximateReceiveCount` at the latest receipt.
    public var receiveCount: UInt32
    public var objects: [ObjectRef]
    public var state: State

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.byte(1)
        w.string(id)
        w.string(receiptHandle)
        w.varint(UInt64(bitPattern: firstReceived))
        w.varint(UInt64(bitPattern: lastReceived))
        w.varint(UInt64(receiveCount))
        w.varint(objects.count)
        for o in objects { o.encode(into: &w) }
        w.byte(state.rawValue)
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws -> MessageState {
        var r = ByteReader(bytes)
        guard try r.byte() == 1 else { throw ByteReader.Truncated() }
        let id = try r.string()
        let handle = try r.string()
        let first = Int64(bitPattern: try r.varint())
        let last = Int64(bitPattern: try r.varint())
        let count = UInt32(truncatingIfNeeded: try r.varint())
        var objects: [ObjectRef] = []
        for _ in 0..<(try r.int()) { objects.append(try ObjectRef.decode(from: &r)) }
        guard let state = State(rawValue: try r.byte()) else { throw ByteReader.Truncated() }
        return MessageState(
            id: id, receiptHandle: handle, firstReceived: first, lastReceived: last, receiveCount: count,
            objects: objects, state: state)
    }
}

/// An SQS message as received, with the objects its notification names.
public struct ReceivedMessage: Sendable, Equatable {
    public var id: String
    public var receiptHandle: String
    public var receiveCount: UInt32
    public var objects: [DiscoveredObject]

    public init(id: String, receiptHandle: String, receiveCount: UInt32, objects: [DiscoveredObject]) {
        self.id = id
        self.receiptHandle = receiptHandle
        self.receiveCount = receiveCount
        self.objects = objects
    }
}

/// What a receipt found for one object it names.
public enum ObjectDisposition: Sendable, Equatable {
    /// First seen now: fetch it.
    case new
    /// Already journaled and in progress (another message named it, or a redelivery).
    case inProgress(ObjectStage)
    /// Finished earlier (a done marker exists): nothing to emit.
    case alreadyDone(finishedAt: Timestamp)
    /// Quarantined earlier.
    case quarantined
}

/// The result of journaling a received message.
public struct ReceiptResult: Sendable, Equatable {
    public var message: MessageState
    public var objects: [ObjectRef: ObjectDisposition]
}

/// Something that could not be processed, kept with its reason until an operator clears it.
public struct QuarantineEntry: Sendable, Equatable {
    public enum Kind: UInt8, Sendable, CustomStringConvertible {
        case object = 1
        case message = 2
        public var description: String { self == .object ? "object" : "message" }
    }

    public var kind: Kind
    /// Set for objects.
    public var object: ObjectRef?
    /// Set for messages (and for objects, the message that named it, if any).
    public var messageID: String?
    public var reason: String
    /// A bounded excerpt of the offending input (a message body), if useful.
    public var detail: String?
    public var attempts: UInt32
    public var firstSeen: Timestamp
    public var lastSeen: Timestamp

    /// The entry's identity in the quarantine (what ``Journal/requeue(_:source:clearing:)`` takes).
    public var key: [UInt8] { storageKey }

    var storageKey: [UInt8] {
        switch kind {
        case .object: [1] + (object?.storageKey ?? [])
        case .message: [2] + Array((messageID ?? "").utf8)
        }
    }

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.byte(1)
        w.byte(kind.rawValue)
        w.bool(object != nil)
        object?.encode(into: &w)
        w.optionalString(messageID)
        w.string(reason)
        w.optionalString(detail)
        w.varint(UInt64(attempts))
        w.varint(UInt64(bitPattern: firstSeen))
        w.varint(UInt64(bitPattern: lastSeen))
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws -> QuarantineEntry {
        var r = ByteReader(bytes)
        guard try r.byte() == 1, let kind = Kind(rawValue: try r.byte()) else { throw ByteReader.Truncated() }
        let object = try r.bool() ? try ObjectRef.decode(from: &r) : nil
        return QuarantineEntry(
            kind: kind, object: object, messageID: try r.optionalString(), reason: try r.string(),
            detail: try r.optionalString(), attempts: UInt32(truncatingIfNeeded: try r.varint()),
            firstSeen: Int64(bitPattern: try r.varint()), lastSeen: Int64(bitPattern: try r.varint()))
    }
}

/// The listing position of one partition of a backfill job.
///
/// A job's partitions are listed to their end once per pass. Running a finished job again starts a
/// new pass over every partition: objects last modified before ``horizon`` were there when the
/// previous pass listed them and are skipped; the rest are new (done markers skip any the previous
/// pass shipped after all). The job's marker cursor (partition `""`) holds the pass number, its
/// horizon, and when it started by the source's clock (S3's `Date`), which is the next pass's horizon.
public struct BackfillCursor: Sendable, Equatable {
    /// The job's identity (e.g. bucket, prefix and window).
    public var job: String
    /// The partition's prefix within the job (one account/region/day, or the whole prefix).
    public var partition: String
    /// The last key listed and journaled; listing resumes after it.
    public var lastKey: String?
    /// S3's continuation token for the next page, if the listing was mid-way.
    public var continuationToken: String?
    /// Objects discovered so far (in this pass).
    public var listed: UInt64
    /// Bytes discovered so far (in this pass).
    public var listedBytes: UInt64
    /// Whether the listing of this partition reached its end.
    public var complete: Bool
    public var updated: Timestamp
    /// The pass (1 for the first listing of the job).
    public var pass: UInt64
    /// Objects last modified before this (ms since the epoch; 0: none) were listed by an earlier pass.
    public var horizon: Timestamp
    /// The source's clock when this pass began listing (the marker: the whole job; a partition: its
    /// first page); 0: not yet. The next pass's horizon.
    public var started: Timestamp
    /// A `--force` pass: every object is journaled again (kept until the pass completes).
    public var forced: Bool

    public init(
        job: String, partition: String, lastKey: String? = nil, continuationToken: String? = nil,
        listed: UInt64 = 0, listedBytes: UInt64 = 0, complete: Bool = false, updated: Timestamp = 0,
        pass: UInt64 = 1, horizon: Timestamp = 0, started: Timestamp = 0, forced: Bool = false
    ) {
        self.job = job
        self.partition = partition
        self.lastKey = lastKey
        self.continuationToken = continuationToken
        self.listed = listed
        self.listedBytes = listedBytes
        self.complete = complete
        self.updated = updated
        self.pass = pass
        self.horizon = horizon
        self.started = started
        self.forced = forced
    }

    var storageKey: [UInt8] { KeyBuilder.key([job, partition]) }

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.byte(2)
        w.string(job)
        w.string(partition)
        w.optionalString(lastKey)
        w.optionalString(continuationToken)
        w.varint(listed)
        w.varint(listedBytes)
        w.bool(complete)
        w.varint(UInt64(bitPattern: updated))
        w.varint(pass)
        w.varint(UInt64(bitPattern: horizon))
        w.varint(UInt64(bitPattern: started))
        w.bool(forced)
        return w.bytes
    }

    /// Layout 1 (before passes) reads as the first pass.
    static func decode(_ bytes: [UInt8]) throws -> BackfillCursor {
        var r = ByteReader(bytes)
        let layout = try r.byte()
        guard layout == 1 || layout == 2 else { throw ByteReader.Truncated() }
        var c = BackfillCursor(
            job: try r.string(), partition: try r.string(), lastKey: try r.optionalString(),
            continuationToken: try r.optionalString(), listed: try r.varint(), listedBytes: try r.varint(),
            complete: try r.bool(), updated: Int64(bitPattern: try r.varint()))
        if layout == 2 {
            c.pass = try r.varint()
            c.horizon = Int64(bitPattern: try r.varint())
            c.started = Int64(bitPattern: try r.varint())
            c.forced = try r.bool()
        }
        return c
    }
}

/// An object's key in the journal: what a claimer holds, so that a scan can pass over the objects it
/// holds without decoding them (``Journal/objects(in:limit:from:skipping:where:)``).
public struct ObjectKey: Hashable, Sendable {
    let bytes: [UInt8]

    /// All bytes in one call: claimers look keys up in their claim sets for every object a scan passes
    /// over, and hashing an array element by element was a third of a scan's cost.
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

extension ObjectRef {
    /// The object's key in the journal.
    public var journalKey: ObjectKey { ObjectKey(bytes: storageKey) }
}

/// Where a claimer's last scan of the objects stopped (``Journal/objects(in:limit:from:skipping:where:)``).
public struct ObjectScanPosition: Sendable {
    var key: [UInt8]?
    public init() {}
}

/// One output's acknowledgement: `output` now has the first `count` records of `object`.
public struct Acknowledgement: Sendable, Equatable {
    public var object: ObjectRef
    public var output: String
    /// The output's new cursor: the leading records it has handled.
    public var count: UInt64
    /// How many of the records this acknowledgement moves the cursor past were dropped by the output's
    /// filter rather than delivered (for the output's totals).
    public var filtered: UInt64
    public init(object: ObjectRef, output: String, count: UInt64, filtered: UInt64 = 0) {
        self.object = object
        self.output = output
        self.count = count
        self.filtered = filtered
    }
}

/// Records an output has handled since the journal was created: delivered (its receiver has them) and
/// dropped by its filter. Kept in `meta`, updated in the transaction that moves the output's cursors,
/// so the two always add up to what the cursors passed, across crashes. Also the deliveries that moved
/// them and the objects each touched, so `delivered / deliveries` is the batch size actually used.
public struct OutputRecords: Sendable, Equatable, Codable {
    public var output: String
    public var delivered: UInt64
    public var filtered: UInt64
    /// Deliveries (batches the output acknowledged whole) recorded with ``Journal/acknowledge(_:output:delivery:)``.
    public var deliveries: UInt64
    /// The objects those deliveries touched, summed over deliveries (a batch across three objects adds 3).
    public var deliveryObjects: UInt64

    public init(output: String, delivered: UInt64, filtered: UInt64, deliveries: UInt64 = 0, deliveryObjects: UInt64 = 0) {
        self.output = output
        self.delivered = delivered
        self.filtered = filtered
        self.deliveries = deliveries
        self.deliveryObjects = deliveryObjects
    }

    /// Version 1: delivered, filtered; then (since deliveries were counted) deliveries and objects, which
    /// an older build's decoder, reading the first two, leaves alone.
    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 32)
        w.byte(1)
        w.varint(delivered)
        w.varint(filtered)
        w.varint(deliveries)
        w.varint(deliveryObjects)
        return w.bytes
    }

    static func key(_ output: String) -> [UInt8] { keyPrefix + Array(output.utf8) }
    static let keyPrefix = Array("output-records/".utf8)

    /// Adds `delivered` and `filtered` records (and a delivery across `objects` objects) to the output's totals.
    static func add(_ txn: WriteContext, output: String, delivered: UInt64, filtered: UInt64, delivery objects: UInt64? = nil) throws {
        let key = key(output)
        var totals = try txn.get(txn.dbs.meta, key).map { try decode(output, $0) } ?? OutputRecords(output: output, delivered: 0, filtered: 0)
        totals.delivered += delivered
        totals.filtered += filtered
        if let objects {
            totals.deliveries += 1
            totals.deliveryObjects += objects
        }
        try txn.put(txn.dbs.meta, key, totals.encode())
    }

    static func decode(_ output: String, _ bytes: [UInt8]) throws -> OutputRecords {
        var r = ByteReader(bytes)
        guard try r.byte() == 1 else { throw ByteReader.Truncated() }
        var totals = OutputRecords(output: output, delivered: try r.varint(), filtered: try r.varint())
        if !r.isAtEnd {
            totals.deliveries = try r.varint()
            totals.deliveryObjects = try r.varint()
        }
        return totals
    }

    /// Every output's totals, in name order.
    static func all(_ txn: ReadContext) throws -> [OutputRecords] {
        var out: [OutputRecords] = []
        try txn.scan(txn.dbs.meta, from: keyPrefix) { k, v in
            guard k.starts(with: keyPrefix) else { return false }
            let name = String(decoding: k.dropFirst(keyPrefix.count), as: UTF8.self)
            out.append(try txn.decode(txn.dbs.meta, Array(k), Array(v)) { try decode(name, $0) })
            return true
        }
        return out
    }
}

/// What one garbage-collection pass did.
public struct GCResult: Sendable, Equatable {
    /// Body chunks deleted.
    public var chunksFreed: Int = 0
    /// Finished objects whose record was removed (their done marker stays).
    public var objectsRemoved: Int = 0
    /// Done markers dropped after their retention.
    public var markersExpired: Int = 0
    /// Quarantine entries dropped, oldest first, to keep the quarantine within its bound.
    public var quarantineDropped: Int = 0
    /// Whether work is left for another pass (the pass is bounded).
    public var moreWork: Bool = false

    public init() {}
}

/// An output that is failing to deliver: recorded when its deliveries start failing (and when the
/// error changes), removed when one succeeds again. Its events wait in the journal meanwhile.
public struct OutputHealth: Sendable, Equatable {
    public var output: String
    public var lastError: String
    /// When the current run of failures began.
    public var since: Timestamp
    /// When `lastError` was recorded.
    public var updated: Timestamp

    public init(output: String, lastError: String, since: Timestamp, updated: Timestamp) {
        self.output = output
        self.lastError = lastError
        self.since = since
        self.updated = updated
    }

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 64 + lastError.utf8.count)
        w.byte(1)
        w.string(output)
        w.string(lastError)
        w.varint(UInt64(bitPattern: since))
        w.varint(UInt64(bitPattern: updated))
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws -> OutputHealth {
        var r = ByteReader(bytes)
        guard try r.byte() == 1 else { throw ByteReader.Truncated() }
        return OutputHealth(
            output: try r.string(), lastError: try r.string(), since: Timestamp(bitPattern: try r.varint()),
            updated: Timestamp(bitPattern: try r.varint()))
    }

    /// Its key in the `meta` database: `keyPrefix` and the output's name.
    static func key(_ output: String) -> [UInt8] { keyPrefix + Array(output.utf8) }
    static let keyPrefix = Array("output-failing/".utf8)

    /// Every recorded output failure, in name order.
    static func all(_ txn: ReadContext) throws -> [OutputHealth] {
        var out: [OutputHealth] = []
        try txn.scan(txn.dbs.meta, from: keyPrefix) { k, v in
            guard k.starts(with: keyPrefix) else { return false }
            out.append(try txn.decode(txn.dbs.meta, Array(k), Array(v), decode))
            return true
        }
        return out
    }
}

/// A snapshot of the journal for `journal status`.
public struct JournalStatus: Sendable {
    public struct Disk: Sendable {
        /// Bytes in use by live pages.
        public var usedBytes: Int
        /// The current size of the memory map.
        public var mappedBytes: Int
        /// The data file's size on disk.
        public var fileBytes: Int
        /// `journal.max_size`.
        public var maxBytes: Int
        public var pageSize: Int
        /// What the journal may reach now: `maxBytes`, or less when its filesystem holds less.
        public var limitBytes: Int
        /// Free space on the journal's filesystem (for an unprivileged writer).
        public var filesystemFreeBytes: Int
    }

    public var path: String
    public var formatVersion: UInt32
    public var objectsByStage: [ObjectStage: Int]
    public var messagesByState: [MessageState.State: Int]
    public var quarantined: [QuarantineEntry]
    /// Quarantine entries dropped (oldest first) to keep the quarantine within its bound, ever.
    public var quarantineDropped: UInt64
    /// Objects still `received` whose last download failed (`lastError`, `attempts`): they are retried
    /// after a backoff, or quarantined once `input.max_fetch_attempts` is reached.
    public var retrying: [ObjectState]
    /// Outputs whose deliveries are failing now, with the error (their events wait in the journal).
    public var failingOutputs: [OutputHealth]
    /// Per output: records delivered and records its filter dropped, deliveries and the objects they touched.
    public var outputRecords: [OutputRecords]
    /// Downloads started and not yet finished (the journal's `fetching` entries): the fetches in flight.
    public var fetchesInProgress: Int = 0
    public var backfill: [BackfillCursor]
    /// The time the oldest item not yet acknowledged by every output was first seen.
    public var oldestUnacknowledged: Timestamp?
    public var doneMarkers: Int
    /// Bodies waiting for GC (orphans of interrupted downloads and finished objects).
    public var bodiesAwaitingGC: Int
    public var storedBodyBytes: UInt64
    /// Body chunks on disk (stored bodies and those awaiting GC).
    public var bodyChunks: Int
    public var disk: Disk
}
