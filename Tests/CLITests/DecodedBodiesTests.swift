// The fetch-to-batcher hand-off of small objects' records (Engine/DecodedBodies.swift), in process.

import Foundation
import Stages
import Testing

@testable import Engine

@Suite("Decoded bodies: small objects' records handed from fetch to the outputs")
struct DecodedBodiesTests {
    /// A gzipped log of `n` records whose eventNames are `r0`, `r1`, …; odd records have no eventID.
    static func log(_ n: Int, pad: Int = 0) -> [UInt8] {
        let records = (0..<n).map { i in
            "{\"eventTime\":\"2026-11-28T00:00:0\(i % 10)Z\",\"eventName\":\"r\(i)\"" + (i % 2 == 0 ? ",\"eventID\":\"id-\(i)\"" : "")
                + ",\"pad\":\"\(String(repeating: "x", count: pad))\"}"
        }
        return GzipWriter.compress(Array("{\"Records\":[\(records.joined(separator: ","))]}".utf8))
    }

    /// What the decoder delivers, in the order it does, as comparable values.
    struct Seen: Equatable {
        var index: UInt64
        var bytes: [UInt8]
        var eventTime: Range<Int>?
        var eventID: Range<Int>?
        init(_ r: RecordView) {
            index = r.index
            bytes = Array(r.bytes)
            eventTime = r.eventTime
            eventID = r.eventID
        }
    }

    static func collect(_ gz: [UInt8], limit: Int) throws -> (DecodedRecords?, [Seen]) {
        var collector = DecodedRecords.Collector(limit: limit)
        var seen: [Seen] = []
        let decoder = LogDecoder()
        // In pieces, as a download arrives.
        for start in stride(from: 0, to: gz.count, by: 97) {
            try decoder.push(Array(gz[start..<min(gz.count, start + 97)])) { collector.add($0); seen.append(Seen($0)) }
        }
        let count = try decoder.finish { collector.add($0); seen.append(Seen($0)) }
        return (collector.records(count: count), seen)
    }

    @Test func theRecordsAreWhatTheDecoderDeliveredFromAnyStart() throws {
        let (records, seen) = try DecodedBodiesTests.collect(DecodedBodiesTests.log(9), limit: 1 << 20)
        let r = try #require(records)
        #expect(r.count == 9 && seen.count == 9)
        for start in [0, 4, 8, 9] {
            var got: [Seen] = []
            r.forEach(from: start) { got.append(Seen($0)) }
            #expect(got == Array(seen.dropFirst(start)), "from \(start)")
        }
        #expect(seen[1].eventID == nil && seen[0].eventID != nil, "absent and present ranges both kept")
    }

    @Test func anObjectPastTheLimitOrWithoutRecordsIsNotKept() throws {
        let (big, seen) = try DecodedBodiesTests.collect(DecodedBodiesTests.log(20, pad: 100), limit: 1000)
        #expect(big == nil && seen.count == 20)
        let (empty, _) = try DecodedBodiesTests.collect(GzipWriter.compress(Array("{\"Records\":[]}".utf8)), limit: 1000)
        #expect(empty == nil)
        var c = DecodedRecords.Collector(limit: 1 << 20)
        let decoder = LogDecoder()
        try decoder.push(DecodedBodiesTests.log(3)) { c.add($0) }
        try decoder.finish { c.add($0) }
        #expect(c.records(count: 4) == nil, "a count other than the decoder's is refused")
    }

    @Test func eachOutputTakesAnEntryOnceThenItIsGone() throws {
        let store = DecodedBodies(capacity: 1 << 20, readers: 2)
        let r = try #require(try DecodedBodiesTests.collect(DecodedBodiesTests.log(3), limit: 1 << 20).0)
        store.add(r, body: 7)
        #expect(store.usage.entries == 1 && store.usage.bytes > 0)
        #expect(store.take(body: 7) != nil)
        #expect(store.take(body: 7) != nil)
        #expect(store.take(body: 7) == nil, "two outputs, two readings")
        #expect(store.usage.entries == 0 && store.usage.bytes == 0)
        #expect(store.usage.hits == 2 && store.usage.misses == 1)
    }

    @Test func theCapacityRefusesNewEntriesAndDropsOnlyStaleOnes() throws {
        let r = try #require(try DecodedBodiesTests.collect(DecodedBodiesTests.log(5, pad: 200), limit: 1 << 20).0)
        let size = r.bytes.count + r.layout.count * MemoryLayout<Int>.size
        let store = DecodedBodies(capacity: 3 * size, readers: 1, maxAge: 60)
        let t0 = Date()
        for id in 1...4 { store.add(r, body: UInt64(id), now: t0) }
        #expect(store.usage.entries == 3 && store.usage.bytes == 3 * size, "the fourth is refused: the first three are read next")
        #expect(store.take(body: 4) == nil && store.take(body: 1) != nil)
        store.add(r, body: 5, now: t0.addingTimeInterval(1))
        #expect(store.take(body: 5) != nil, "room again once one was read")
        // Entries nobody read for longer than maxAge make room for new ones.
        store.add(r, body: 6, now: t0.addingTimeInterval(100))
        store.add(r, body: 7, now: t0.addingTimeInterval(120))
        #expect(store.take(body: 2) == nil && store.take(body: 3) == nil, "stale entries dropped")
        #expect(store.take(body: 6) != nil && store.take(body: 7) != nil)
        #expect(store.usage.bytes == 0)
    }
}
