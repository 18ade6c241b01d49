// # The batcher — one output's emitter, filling each batch from as many objects as are ready
//
// Each of an output's `worker` batchers claims objects whose records that output has not all
// acknowledged, in key order, decodes their stored bodies chunk by chunk and fills batches of up to the
// output's `maxBatch` events across objects: a trail's usual file holds a few records, and one delivery
// (one write and fsync, one bulk request) and one journal commit per object would cap throughput at the
// receiver's round trips. Invariants:
//
// 1. An object is held by one batcher of an output at a time: the claim (the engine's claim set) is
//    taken before its first record is read and released only after the acknowledgement that moves its
//    cursor to its last record has committed, or once the batcher has stopped delivering. So one
//    object's records reach the output in index order, and no two batchers send the same record.
// 2. A batch is a run of events in claim order, each object's events contiguous and in index order.
//    Every progress report of the delivery (the first `n` events handled) is one journal transaction
//    (`acknowledge(_:output:delivery:)`) moving the cursor of each object it finished or entered to its
//    first record not yet handled; cursors only grow (the journal's invariant 5).
// 3. At most one batch is in flight per batcher, and the next is built while it is delivered. So
//    acknowledgements commit in order, a crash re-sends at most the batch in flight (per batcher), and
//    memory is two batches of events plus one stored chunk of the object being read (or its records,
//    when its fetch handed them over in memory: DecodedBodies.swift, at most `maxObjectBytes`).
// 4. A batcher never waits for records to fill a batch: when no other object is ready it sends what it
//    has. Batches grow with the backlog, not with added latency.
// 5. Records the output's filter drops count as handled: they move their object's cursor with the next
//    acknowledgement that reaches past them, or (when none of its events is pending) in a commit of
//    their own after the batch in flight.

import Codecs
import Foundation
import Journal
import Logging
import Outputs
import Stages

/// One output's batcher (see the invariants above). Not shared: it runs in one task.
final class Batcher {
    /// What the batcher needs from the engine.
    struct Hooks: Sendable {
        /// Claims up to `n` objects this output has records of (in key order from `position`, none another
        /// batcher of the output holds), stopping once they hold `records` records not yet acknowledged;
        /// each re-read after the claim; none when none is ready.
        var claim: @Sendable (_ n: Int, _ records: Int, _ position: inout ObjectScanPosition) throws -> [ObjectState]
        /// Gives a claim back.
        var release: @Sendable (ObjectRef) -> Void
        /// Sets an object aside with the reason (a stored chunk is missing).
        var quarantine: @Sendable (ObjectRef, String) async throws -> Void
        /// Counts a delivery: events sent, records dropped by the filter, objects touched.
        var counted: @Sendable (_ events: Int, _ filtered: Int, _ objects: Int) -> Void
        /// The records its fetch split from a stored body, when still in memory (DecodedBodies.swift);
        /// nil: decode the stored body.
        var decoded: @Sendable (_ body: UInt64) -> DecodedRecords? = { _ in nil }
    }

    /// A claimed object, its records read in order.
    private final class Reading {
        let object: ObjectState
        let body: BodyRef
        let total: Int
        var encoder: EventEncoder
        let findings: FindingEncoder?
        let source: String
        /// One past the last record taken (turned into an event, or dropped by the filter).
        var seen: Int
        /// Records below this are in a batch handed out, or dropped before one.
        var queued: Int
        /// The cursor as last acknowledged.
        var delivered: Int
        /// Every record was taken.
        var read = false
        /// The output's cursor when it was claimed.
        let start: Int

        init(object: ObjectState, body: BodyRef, total: Int, options: CodecOptions, filter: RecordFilter?, start: Int) {
            self.object = object
            self.body = body
            self.total = total
            let ref = object.ref
            encoder = EventEncoder(options: options, filter: filter, bucket: ref.bucket, key: ref.key, receivedAt: object.firstSeen)
            // A digest checked by integrity validation holds findings, not CloudTrail records.
            findings = ObjectClassifier.classify(key: ref.key) == .digest ? FindingEncoder(options: options, bucket: ref.bucket, key: ref.key) : nil
            // The log file, as Splunk's `source` names it (a local copy's "bucket" is its directory's URL).
            source = ref.bucket.contains("/") ? ref.bucket + "/" + ref.key : "s3://\(ref.bucket)/\(ref.key)"
            self.start = start
            seen = start
            queued = start
            delivered = start
        }
    }

    /// One object's part of a batch: the events `events` of the slice, records `from..<to` (the events'
    /// records and those the filter dropped among and before them).
    private struct Segment: Sendable {
        var object: ObjectRef
        var from: Int
        var to: Int
        var events: Range<Int>
        /// Each event's record index.
        var indices: [Int]
    }

    let pump: OutputPump
    let journal: Journal
    let options: CodecOptions
    let filter: RecordFilter?
    let logger: Logger
    let hooks: Hooks
    /// Objects claimed in one scan of the journal (each scan passes over the objects held already).
    static let claimsPerScan = 64
    private var name: String { pump.output.name }
    private let batch: Int

    /// Where the last claiming scan stopped: the next starts after it.
    private var position = ObjectScanPosition()
    /// Objects claimed and not yet read, in claim order (one scan claims several).
    private var claimed: [ObjectState] = []
    /// Objects being read or with records not yet acknowledged, in claim order.
    private var open: [Reading] = []
    private var pending: [OutputEvent] = []
    /// Each pending event's object and record index.
    private var pendingOwner: [ObjectIdentifier] = []
    private var pendingIndex: [Int] = []
    private var inFlight: Task<[Segment], any Error>?

    init(pump: OutputPump, journal: Journal, options: CodecOptions, filter: RecordFilter?, logger: Logger, hooks: Hooks) {
        self.pump = pump
        self.journal = journal
        self.options = options
        self.filter = filter
        self.logger = logger
        self.hooks = hooks
        batch = max(1, pump.output.maxBatch)
    }

    /// Runs until cancelled: claims, reads, batches and delivers; waits for a journal change when there
    /// is nothing to do. A failure (a full journal while acknowledging) gives every claim back; the
    /// objects are claimed again from their committed cursors.
    func run() async throws {
        while true {
            try Task.checkCancellation()
            let generation = journal.changes.generation(.fetched)
            do {
                if try await step() { continue }
            } catch let e as JournalError where e.code == .full {
                await abandon()
                logger.debug("journal full: emitting waits for GC", metadata: ["output": "\(name)", "error": "\(e)"], source: LogStage.emit.rawValue)
                try await Task.sleep(nanoseconds: 1_000_000_000)
                continue
            } catch {
                await abandon()
                throw error
            }
            // Nothing claimable and nothing pending: wait for an object to become fetched, 1 s at most
            // (a claim another batcher gave back without a commit), then 10 ms more. An empty scan
            // passes over every object held (by this batcher and the others), so one scan answers a
            // busy moment's fetches, and what arrived meanwhile makes the next batch larger.
            await journal.changes.wait(.fetched, since: generation, timeout: 1, pause: 0.01)
        }
    }

    /// Reads the next ready object into the batch (sending full batches on the way); when none is ready,
    /// sends what is pending. Returns whether there was anything to do.
    private func step() async throws -> Bool {
        // What the next batch needs, not more: the output's other batchers take the rest.
        if claimed.isEmpty { claimed = try hooks.claim(Batcher.claimsPerScan, max(1, batch - pending.count), &position) }
        if !claimed.isEmpty {
            let object = claimed.removeFirst()
            guard let body = object.body, let total = object.recordCount else {
                hooks.release(object.ref)
                return true
            }
            let reading = Reading(
                object: object, body: body, total: Int(total), options: options, filter: filter, start: Int(object.cursor(name)))
            open.append(reading)
            try await read(reading)
            return true
        }
        if open.isEmpty { return false }
        try await flush(all: true)
        try await settle()
        return true
    }

    /// Takes every record of `reading` (from its cursor), sending each batch as it fills.
    private func read(_ r: Reading) async throws {
        let owner = ObjectIdentifier(r)
        let start = r.seen
        func take(_ record: RecordView) {
            guard record.index >= UInt64(start) else { return }
            r.seen = Int(record.index) + 1
            var out: [UInt8] = []  // the encoder reserves what its codec needs
            guard let info = r.findings?.encode(record, to: &out) ?? r.encoder.encode(record, to: &out) else { return }
            pending.append(OutputEvent(id: info.id, json: out, timestamp: info.timestamp, source: r.source))
            pendingOwner.append(owner)
            pendingIndex.append(Int(record.index))
        }
        if let records = hooks.decoded(r.body.id) {
            // Split at fetch, from the bytes the stored body holds (DecodedBodies' invariant 1).
            records.forEach(from: start, take)
            try await flush(all: false)
            finishReading(r)
            return
        }
        // Local: a claimed object keeps no gunzip buffers once read (a batch may hold thousands).
        let decoder = LogDecoder()
        for index in 0..<r.body.chunks {
            try Task.checkCancellation()
            guard let chunk = try journal.bodyChunk(r.body, index) else {
                // Its records taken so far go out with the batch; then it is set aside.
                try await flush(all: true)
                try await settle()
                try await hooks.quarantine(r.object.ref, "stored body chunk \(index) is missing")
                drop(r)
                return
            }
            try decoder.push(chunk, take)
            try await flush(all: false)
            journal.releaseMappedPages()
        }
        try decoder.finish(take)
        journal.releaseMappedPages()
        finishReading(r)
    }

    /// `r` was read whole: checks its count, and releases it when nothing of it awaits acknowledgement.
    private func finishReading(_ r: Reading) {
        r.read = true
        if r.seen < r.total {
            logger.error(
                "the stored body yielded fewer records than counted at fetch",
                metadata: ["object": "\(r.object.ref)", "counted": "\(r.total)", "found": "\(r.seen)"], source: LogStage.emit.rawValue)
        }
        // An object with nothing pending and nothing to acknowledge (all sent before) is released now.
        releaseSettled()
    }

    /// Sends full batches (and, with `all`, the rest; records the filter dropped with no event after
    /// them are acknowledged too), each after the batch in flight has settled.
    private func flush(all: Bool) async throws {
        while pending.count >= batch || (all && !pending.isEmpty) {
            let count = min(batch, pending.count)
            let slice = Array(pending.prefix(count))
            let owners = Array(pendingOwner.prefix(count))
            let indices = Array(pendingIndex.prefix(count))
            pending.removeFirst(count)
            pendingOwner.removeFirst(count)
            pendingIndex.removeFirst(count)
            var segments: [Segment] = []
            var i = 0
            while i < count {
                let owner = owners[i]
                var j = i
                while j < count && owners[j] == owner { j += 1 }
                let r = open.first { ObjectIdentifier($0) == owner }!
                // The object's next pending event (if the batch ends inside it) bounds what this one covers.
                let to = pendingOwner.first == owner ? pendingIndex[0] : r.seen
                segments.append(Segment(object: r.object.ref, from: r.queued, to: to, events: i..<j, indices: Array(indices[i..<j])))
                r.queued = to
                i = j
            }
            // Objects whose records taken since were all dropped by the filter: acknowledged with this batch.
            for r in open where r.queued < r.seen && !pendingOwner.contains(ObjectIdentifier(r)) {
                segments.append(Segment(object: r.object.ref, from: r.queued, to: r.seen, events: count..<count, indices: []))
                r.queued = r.seen
            }
            try await settle()
            inFlight = deliver(slice, segments)
        }
        if all {
            let dropped = open.filter { $0.queued < $0.seen }
            if !dropped.isEmpty {
                // Dropped records after every event (or objects the filter dropped whole): no delivery.
                try await settle()
                let acks = dropped.map { Acknowledgement(object: $0.object.ref, output: name, count: UInt64($0.seen), filtered: UInt64($0.seen - $0.queued)) }
                _ = try await journal.acknowledge(acks, output: name, delivery: nil)
                hooks.counted(0, dropped.reduce(0) { $0 + $1.seen - $1.queued }, 0)
                for r in dropped {
                    r.queued = r.seen
                    r.delivered = r.seen
                }
                releaseSettled()
            }
        }
    }

    /// Starts delivering `slice`; each progress report commits the cursors it moves, in one transaction.
    private func deliver(_ slice: [OutputEvent], _ segments: [Segment]) -> Task<[Segment], any Error> {
        let pump = pump, journal = journal, name = name, counted = hooks.counted
        return Task {
            var cursors = segments.map(\.from)
            var handled = segments.map { _ in 0 }
            try await pump.deliver(slice) { n in
                var acks: [Acknowledgement] = []
                for (s, segment) in segments.enumerated() {
                    let cursor: Int, done: Int
                    if segment.events.isEmpty {
                        // Objects only dropped records of come last: acknowledged with the whole batch.
                        guard n == slice.count else { break }
                        (cursor, done) = (segment.to, 0)
                    } else {
                        guard n > segment.events.lowerBound else { break }
                        done = min(n, segment.events.upperBound) - segment.events.lowerBound
                        // The cursor moves to the first event not yet handled; what it passes beyond the
                        // handled events was dropped by the filter.
                        cursor = done < segment.events.count ? segment.indices[done] : segment.to
                    }
                    guard cursor > cursors[s] else { continue }
                    let dropped = (cursor - cursors[s]) - (done - handled[s])
                    acks.append(Acknowledgement(object: segment.object, output: name, count: UInt64(cursor), filtered: UInt64(max(0, dropped))))
                    cursors[s] = cursor
                    handled[s] = done
                }
                let whole = n == slice.count
                if !acks.isEmpty || whole {
                    _ = try await journal.acknowledge(acks, output: name, delivery: whole ? segments.count : nil)
                }
            }
            let filtered = segments.reduce(0) { $0 + ($1.to - $1.from) } - slice.count
            counted(slice.count, filtered, segments.count)
            return segments
        }
    }

    /// Waits for the batch in flight; returns once its acknowledgement is committed, and releases the
    /// objects it finished.
    private func settle() async throws {
        guard let task = inFlight else { return }
        inFlight = nil
        // The delivery is an unstructured task: pass a cancellation (shutdown_timeout) on to it.
        let segments = try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
        for segment in segments {
            if let r = open.first(where: { $0.object.ref == segment.object }) { r.delivered = max(r.delivered, segment.to) }
        }
        releaseSettled()
    }

    /// Releases the claims of objects read whole whose every record is acknowledged.
    private func releaseSettled() {
        let done = open.filter { $0.read && $0.delivered >= $0.seen && $0.queued >= $0.seen }
        for r in done {
            logger.debug("emitted", metadata: ["object": "\(r.object.ref)", "output": "\(name)", "records": "\(r.seen - r.start)", "from": "\(r.start)"], source: LogStage.emit.rawValue)
            drop(r)
        }
    }

    private func drop(_ r: Reading) {
        let owner = ObjectIdentifier(r)
        if pendingOwner.contains(owner) {
            // Only a quarantined object's events are dropped here; they were flushed before.
            let keep = pendingOwner.indices.filter { pendingOwner[$0] != owner }
            pending = keep.map { pending[$0] }
            pendingIndex = keep.map { pendingIndex[$0] }
            pendingOwner = keep.map { pendingOwner[$0] }
        }
        open.removeAll { $0 === r }
        hooks.release(r.object.ref)
    }

    /// Stops: cancels the batch in flight (never left running past this call: it would acknowledge into a
    /// closing journal), forgets what is pending and gives every claim back.
    private func abandon() async {
        if let task = inFlight {
            task.cancel()
            _ = try? await task.value
            inFlight = nil
        }
        pending.removeAll()
        pendingOwner.removeAll()
        pendingIndex.removeAll()
        for r in open { hooks.release(r.object.ref) }
        open.removeAll()
        for o in claimed { hooks.release(o.ref) }
        claimed.removeAll()
    }
}
