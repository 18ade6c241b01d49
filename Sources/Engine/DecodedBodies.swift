// # Decoded bodies — a small object's records, handed from its fetch to the batchers in memory
//
// A fetch gunzips and splits an object's body to validate and count its records; each output's batcher
// then did the same again from the stored body. For a trail's usual file (a few records) those are
// the larger part of the CPU an object costs. So a fetch keeps the records it split, when the object is
// small, and the batchers read them from here; the stored body stays what a restart, an eviction or a
// re-read decodes. Invariants:
//
// 1. The journal stays the truth. An entry is keyed by the id of the body its download stored, and
//    holds the very records the same decoder split from the bytes that body holds: reading the entry or
//    decoding the body yields the same records in the same order. It is added just before the commit
//    that makes the object `fetched` (so a batcher woken by that commit finds it) and removed when that
//    commit fails or leaves the object otherwise; no batcher asks for a body before it claimed the
//    object `fetched`. A missing entry only means the batcher decodes the stored body, as it would anyway.
// 2. Nothing is acknowledged from memory: the batcher delivers and acknowledges an entry's records as it
//    does a decoded body's (its invariants), so a crash loses the entries and nothing else.
// 3. Bounded: the entries' bytes never exceed `capacity`. An entry that would pass it is not added (the
//    objects already here are those the batchers claim next, in key order), except that entries older
//    than `maxAge` are dropped first; an object larger than `maxObjectBytes` is never kept.
// 4. An entry is taken once per output (`readers`); after the last, it is gone. Entries are immutable,
//    so a batcher reads one outside the lock.

import Foundation
import Journal
import Stages
import Synchronization

/// One object's records, split at fetch.
final class DecodedRecords: Sendable {
    /// The records' bytes, one after another.
    let bytes: [UInt8]
    /// Per record: where it starts in `bytes`, its length, and its `eventTime` and `eventID` ranges
    /// (relative to the record, as ``RecordView`` has them; `-1` when absent).
    let layout: [Int]
    static let stride = 6

    init(bytes: [UInt8], layout: [Int]) {
        self.bytes = bytes
        self.layout = layout
    }

    var count: Int { layout.count / DecodedRecords.stride }

    /// The bytes an entry holds: what `DecodedBodies.capacity` bounds.
    var footprint: Int { bytes.count + layout.count * MemoryLayout<Int>.size }

    /// Calls `body` with each record from index `start`, as the decoder delivered it.
    func forEach(from start: Int, _ body: (RecordView) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { all in
            var i = start * DecodedRecords.stride
            var index = start
            while i < layout.count {
                let l = layout[i..<(i + DecodedRecords.stride)]
                let b = l.startIndex
                let record = UnsafeRawBufferPointer(rebasing: all[l[b]..<(l[b] + l[b + 1])])
                try body(RecordView(
                    index: UInt64(index), bytes: record,
                    eventTime: l[b + 2] < 0 ? nil : l[b + 2]..<l[b + 3],
                    eventID: l[b + 4] < 0 ? nil : l[b + 4]..<l[b + 5]))
                i += DecodedRecords.stride
                index += 1
            }
        }
    }

    /// Collects the records a fetch's decoder delivers, until they pass `limit` bytes.
    struct Collector {
        let limit: Int
        private(set) var bytes: [UInt8] = []
        private(set) var layout: [Int] = []
        /// Past the limit: nothing is kept.
        private(set) var overflowed = false

        init(limit: Int) { self.limit = limit }

        mutating func add(_ record: RecordView) {
            guard !overflowed else { return }
            guard bytes.count + record.bytes.count <= limit else {
                overflowed = true
                bytes = []
                layout = []
                return
            }
            layout += [bytes.count, record.bytes.count,
                       record.eventTime?.lowerBound ?? -1, record.eventTime?.upperBound ?? -1,
                       record.eventID?.lowerBound ?? -1, record.eventID?.upperBound ?? -1]
            bytes.append(contentsOf: record.bytes)
        }

        /// The records collected, or nil past the limit or when `count` (the decoder's) disagrees.
        func records(count: UInt64) -> DecodedRecords? {
            guard !overflowed, layout.count / DecodedRecords.stride == Int(count), count > 0 else { return nil }
            return DecodedRecords(bytes: bytes, layout: layout)
        }
    }
}

/// The fetch pool's decoded small objects, waiting for the batchers (invariants above).
final class DecodedBodies: Sendable {
    private struct Entry {
        let records: DecodedRecords
        let added: Date
        var takenBy: Int
    }
    private struct State {
        var entries: [UInt64: Entry] = [:]
        var bytes = 0
        /// Entries and bytes ever handed out, and those decoded from the journal instead.
        var hits = 0
        var misses = 0
    }

    /// An object whose records pass this many bytes is not kept.
    let maxObjectBytes: Int
    let capacity: Int
    let readers: Int
    let maxAge: TimeInterval
    private let state = Mutex(State())

    init(capacity: Int, maxObjectBytes: Int = 1 << 20, readers: Int, maxAge: TimeInterval = 60) {
        self.capacity = capacity
        self.maxObjectBytes = maxObjectBytes
        self.readers = max(1, readers)
        self.maxAge = maxAge
    }

    /// Keeps `records` for the body `body` (just before the commit that makes its object `fetched`:
    /// invariant 1).
    func add(_ records: DecodedRecords, body: UInt64, now: Date = Date()) {
        let size = records.footprint
        state.withLock { s in
            if s.bytes + size > capacity {
                for (id, e) in s.entries where now.timeIntervalSince(e.added) > maxAge {
                    s.entries[id] = nil
                    s.bytes -= e.records.footprint
                }
            }
            guard s.bytes + size <= capacity, s.entries[body] == nil else { return }
            s.entries[body] = Entry(records: records, added: now, takenBy: 0)
            s.bytes += size
        }
    }

    /// Drops the entry of `body` (its commit failed, or did not make the object `fetched`).
    func remove(body: UInt64) {
        state.withLock { s in
            guard let e = s.entries.removeValue(forKey: body) else { return }
            s.bytes -= e.records.footprint
        }
    }

    /// The records of `body`, for one output's reading of it; nil when not here (decode the stored body).
    func take(body: UInt64) -> DecodedRecords? {
        state.withLock { s in
            guard var e = s.entries[body] else {
                s.misses += 1
                return nil
            }
            s.hits += 1
            e.takenBy += 1
            if e.takenBy >= readers {
                s.entries[body] = nil
                s.bytes -= e.records.footprint
            } else {
                s.entries[body] = e
            }
            return e.records
        }
    }

    /// Bytes held now, and readings served from memory and from the journal so far.
    var usage: (bytes: Int, entries: Int, hits: Int, misses: Int) {
        state.withLock { ($0.bytes, $0.entries.count, $0.hits, $0.misses) }
    }
}
