import Foundation
import Testing

@testable import Journal

@Suite("Journal limits and faults")
struct LimitsTests {
    func options(max: Int) -> Journal.Options {
        var o = Journal.Options()
        o.outputs = ["out"]
        o.initialMapSize = 1 << 20
        o.maxSize = max
        o.bodyChunkSize = 16 << 10
        return o
    }

    /// Fetches an object with `size` random bytes and `records` records.
    func ingest(_ j: Journal, _ i: Int, size: Int, records: UInt64 = 1) async throws -> ObjectRef {
        let ref = ObjectRef(bucket: "b", key: "k\(i)", version: "v")
        _ = try await j.receive(ReceivedMessage(id: "m\(i)", receiptHandle: "h", receiveCount: 1, objects: [DiscoveredObject(ref)]))
        let t = try await j.startFetch(ref)
        let w = j.bodyWriter(t)
        var g = SplitMix64(seed: UInt64(i))
        try await w.append((0..<size).map { _ in UInt8(truncatingIfNeeded: g.next()) })
        _ = try await w.finish(recordCount: records)
        return ref
    }

    /// Invariant 9: a flood of refused messages cannot grow the quarantine (and the journal) without
    /// bound; GC keeps the entries seen most recently and counts what it dropped.
    @Test func theQuarantineIsBoundedOldestDroppedFirst() async throws {
        let dir = TempDir("quarantine-bound")
        let clock = ManualClock()
        var o = options(max: 64 << 20)
        o.maxQuarantineEntries = 20
        o.clock = { clock.now }
        let j = try Journal(path: dir.path, options: o)
        func flood(_ range: Range<Int>, into j: Journal) async throws {
            for i in range {
                clock.advance(1000)
                _ = try await j.quarantineMessage(id: "forged-\(i)", receiptHandle: "h", receiveCount: 1, reason: "refused: topic", detail: String(repeating: "x", count: 2048))
            }
        }
        try await flood(0..<20, into: j)
        #expect(try await j.collectGarbage().quarantineDropped == 0, "at the bound, nothing goes")
        try await flood(20..<30, into: j)
        #expect(try j.quarantineCount() == 30, "only GC drops")
        #expect(try await j.collectGarbage().quarantineDropped == 12, "down to nine tenths of the bound")
        let kept = try j.quarantine().compactMap(\.messageID)
        #expect(Set(kept) == Set((12..<30).map { "forged-\($0)" }), "the newest stay: \(kept.sorted())")
        // Seen again, an old entry is new: it stays, the next oldest go.
        clock.advance(1000)
        _ = try await j.quarantineMessage(id: "forged-12", receiptHandle: "h", receiveCount: 2, reason: "refused: topic")
        try await flood(30..<33, into: j)
        #expect(try await j.collectGarbage().quarantineDropped == 3)
        let now = try j.quarantine().compactMap(\.messageID)
        #expect(now.contains("forged-12") && !now.contains("forged-13") && now.contains("forged-16"), "\(now.sorted())")
        #expect(try j.quarantineDropped() == 15)
        #expect(try j.status().quarantineDropped == 15)
        j.close()
        var unbounded = o
        unbounded.maxQuarantineEntries = 0
        let again = try Journal(path: dir.path, options: unbounded)
        try await flood(33..<60, into: again)
        #expect(try await again.collectGarbage().quarantineDropped == 0, "0 keeps every entry")
        again.close()
    }

    /// Each refused message keeps up to 64 KiB of its body: on a small journal the bytes, not the
    /// count, reach the bound first. The quarantine keeps to a tenth of `maxSize`.
    @Test func theQuarantineIsBoundedInBytesOnASmallJournal() async throws {
        let dir = TempDir("quarantine-bytes")
        let clock = ManualClock()
        var o = options(max: 16 << 20)
        o.clock = { clock.now }
        let j = try Journal(path: dir.path, options: o)
        let body = String(repeating: "y", count: 60 << 10)
        for i in 0..<60 {
            clock.advance(1000)
            _ = try await j.quarantineMessage(id: "big-\(i)", receiptHandle: "h", receiveCount: 1, reason: "refused", detail: body)
        }
        let dropped = try await j.collectGarbage().quarantineDropped
        let kept = try j.quarantine().compactMap(\.messageID)
        #expect(dropped > 0 && dropped + kept.count == 60, "dropped \(dropped), kept \(kept.count)")
        #expect(kept.count * (60 << 10) <= (16 << 20) / 10, "\(kept.count) bodies of 60 KiB")
        #expect(Set(kept) == Set((60 - kept.count..<60).map { "big-\($0)" }), "the newest stay")
        #expect(try await j.collectGarbage().quarantineDropped == 0, "within the bound: nothing more")
        j.close()
    }

    @Test func mapGrowsThenFullThenResumesAfterGC() async throws {
        let dir = TempDir("grow")
        let j = try Journal(path: dir.path, options: options(max: 8 << 20))
        let initial = j.mappedSize
        #expect(initial == 1 << 20)
        var refs: [ObjectRef] = []
        var fullError: JournalError?
        for i in 0..<100 {
            do {
                refs.append(try await ingest(j, i, size: 300 << 10))
            } catch let e as JournalError {
                fullError = e
                break
            }
        }
        let e = try #require(fullError, "the journal never reported full")
        #expect(e.code == .full)
        #expect(e.description.contains(dir.path) && e.description.contains("max_size"))
        #expect(j.mappedSize == 8 << 20, "grew transparently up to max_size")
        #expect(refs.count >= 15, "only \(refs.count) objects fit before full")
        // Bodies stop at nine tenths: the rest still takes small transitions (receipts here).
        #expect(e.operation == "store body", "refused by the body line, not by LMDB: \(e)")
        for i in 2000..<2300 {
            let small = DiscoveredObject(ObjectRef(bucket: "b", key: "small\(i)", version: "v"))
            _ = try await j.receive(ReceivedMessage(id: "r\(i)", receiptHandle: "h", receiveCount: 1, objects: [small]))
        }
        // Consistent after the failure: everything stored so far is readable.
        for ref in refs { #expect(try j.object(ref)?.stage == .fetched) }
        // Finish and collect everything: writing resumes.
        for (i, ref) in refs.enumerated() {
            _ = try await j.acknowledge(Acknowledgement(object: ref, output: "out", count: 1))
            try await j.messagesDeleted(["m\(i)"])
        }
        while try await j.collectGarbage(maxChunks: 64).moreWork {}
        #expect(try j.status().bodyChunks == 0)
        for i in 1000..<1010 { _ = try await ingest(j, i, size: 300 << 10) }
        j.close()
        let reopened = try Journal(path: dir.path, options: options(max: 8 << 20))
        #expect(try reopened.objects(in: [.fetched]).count == 10)
        reopened.close()
    }

    /// A body no empty journal could hold is refused as it passes ``Journal/bodyCapacity()``, with the
    /// typed `bodyTooLarge` that names its size and `journal.max_size` (the engine quarantines it; it
    /// would otherwise wait for room for ever); a body of exactly the capacity fits an empty journal, so
    /// the bound refuses nothing that could be stored.
    @Test(arguments: [(16 << 20, 128 << 10), (16 << 20, 16 << 10), (48 << 20, 128 << 10)])
    func aBodyThatCouldNeverFitIsRefusedNotWaitedFor(max: Int, chunk: Int) async throws {
        var o = options(max: max)
        o.bodyChunkSize = chunk
        let piece = [UInt8](repeating: 0x5a, count: 1 << 20)
        /// Downloads `size` bytes into a fresh object of `j`, in 1 MiB pieces; returns how many were
        /// accepted before an error, and the error.
        func download(_ j: Journal, _ i: Int, _ size: Int) async throws -> (accepted: Int, FetchTicket, BodyWriter, JournalError?) {
            let ref = ObjectRef(bucket: "b", key: "big\(i)", version: "v")
            _ = try await j.receive(ReceivedMessage(id: "m\(i)", receiptHandle: "h", receiveCount: 1, objects: [DiscoveredObject(ref)]))
            let t = try await j.startFetch(ref)
            let w = j.bodyWriter(t)
            var accepted = 0
            do {
                while accepted < size {
                    let n = min(piece.count, size - accepted)
                    try await w.append(piece.prefix(n))
                    accepted += n
                }
            } catch let e as JournalError {
                return (accepted, t, w, e)
            }
            return (accepted, t, w, nil)
        }

        let dir = TempDir("body-capacity")
        let j = try Journal(path: dir.path, options: o)
        let capacity = try j.bodyCapacity()
        // Nine tenths, less 1 MiB, less what pages add: a 128 KiB chunk takes 33 pages of 4 KiB, a 16 KiB one 5.
        let pages = Double(chunk == 16 << 10 ? 4 * 5 : 32 * 33) / Double(chunk == 16 << 10 ? 4 * 4 : 32 * 32)
        #expect(capacity < max * 9 / 10 && Double(capacity) > 0.98 * Double(max - max / 10 - (1 << 20)) / pages, "\(capacity) of \(max)")
        let (accepted, ticket, _, refused) = try await download(j, 1, capacity + 1)
        let e = try #require(refused, "a body past the capacity was accepted")
        #expect(e.code == .bodyTooLarge, "refused by the bound, not by a full journal first: \(e)")
        #expect(accepted <= capacity && accepted > capacity - piece.count, "refused at the piece that passed it: \(accepted)")
        #expect(e.description.contains("journal.max_size") && e.description.contains("\(max) bytes") && e.description.contains("\(capacity + 1) bytes"), "\(e)")
        #expect(try j.bodyTooLarge(UInt64(capacity), "as listed") == nil)
        #expect(try j.bodyTooLarge(UInt64(capacity) + 1, "as listed")?.code == .bodyTooLarge)
        // The failed download leaves nothing behind but its object, back in `received`.
        #expect(try await j.fetchFailed(ticket, error: "\(e)").stage == .received)
        j.close()

        let fresh = TempDir("body-capacity-fits")
        let empty = try Journal(path: fresh.path, options: o)
        let (stored, _, writer, error) = try await download(empty, 2, capacity)
        #expect(error == nil && stored == capacity, "the capacity itself must fit an empty journal: \(String(describing: error))")
        if error == nil { #expect(try await writer.finish(recordCount: 1).stage == .fetched) }
        empty.close()
    }

    @Test(arguments: [LMDBCode.io, LMDBCode.noSpace])
    func failedCommitLeavesJournalConsistent(code: LMDBCode) async throws {
        let dir = TempDir("fault")
        var j = try Journal(path: dir.path, options: options(max: 64 << 20))
        let ref = try await ingest(j, 1, size: 50_000, records: 10)
        _ = try await j.acknowledge(Acknowledgement(object: ref, output: "out", count: 4))
        let before = try j.object(ref)
        j.injectFault(code, at: .commit)
        await #expect {
            _ = try await j.acknowledge(Acknowledgement(object: ref, output: "out", count: 10))
        } throws: { error in
            (error as? JournalError)?.lmdbCode == code
        }
        #expect(try j.object(ref) == before, "a failed commit changed nothing")
        // Same on a put inside the transaction, and on a multi-object transition.
        j.injectFault(code, at: .put, onCall: 2)
        await #expect(throws: JournalError.self) {
            _ = try await j.receive(ReceivedMessage(id: "m2", receiptHandle: "h", receiveCount: 1, objects: [
                DiscoveredObject(ObjectRef(bucket: "b", key: "x")), DiscoveredObject(ObjectRef(bucket: "b", key: "y")),
            ]))
        }
        #expect(try j.message("m2") == nil && j.object(ObjectRef(bucket: "b", key: "x")) == nil, "nothing half-applied")
        // It keeps working, and reopens with the same state.
        let after = try await j.acknowledge(Acknowledgement(object: ref, output: "out", count: 10))
        #expect(after.stage == .done)
        j.close()
        j = try Journal(path: dir.path, options: options(max: 64 << 20))
        #expect(try j.object(ref)?.stage == .done)
        #expect(try j.doneMarker(ref) != nil)
        j.close()
    }

    @Test func injectedMapFullGrowsOrReportsFull() async throws {
        let dir = TempDir("mapfull")
        let j = try Journal(path: dir.path, options: options(max: 2 << 20))
        let ref = try await ingest(j, 1, size: 1000, records: 2)
        // Below max_size: the writer grows the map and the transition lands.
        j.injectFault(.mapFull, at: .commit)
        _ = try await j.acknowledge(Acknowledgement(object: ref, output: "out", count: 1))
        #expect(try j.object(ref)?.cursor("out") == 1)
        #expect(j.mappedSize == 2 << 20)
        // At max_size: a typed full error, nothing applied, and the next write works.
        j.injectFault(.mapFull, at: .put)
        await #expect {
            _ = try await j.acknowledge(Acknowledgement(object: ref, output: "out", count: 2))
        } throws: { ($0 as? JournalError)?.code == .full }
        #expect(try j.object(ref)?.cursor("out") == 1)
        j.injectFault(.io, at: .beginWrite)
        await #expect(throws: JournalError.self) {
            _ = try await j.acknowledge(Acknowledgement(object: ref, output: "out", count: 2))
        }
        #expect(try await j.acknowledge(Acknowledgement(object: ref, output: "out", count: 2)).stage == .done)
        j.close()
    }

    @Test func concurrentTransitionsShareCommitsAndAllLand() async throws {
        let dir = TempDir("group")
        let j = try Journal(path: dir.path, options: options(max: 64 << 20))
        let refs = (0..<200).map { ObjectRef(bucket: "b", key: "k\($0)") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, ref) in refs.enumerated() {
                group.addTask {
                    _ = try await j.receive(ReceivedMessage(id: "m\(i)", receiptHandle: "h", receiveCount: 1, objects: [DiscoveredObject(ref)]))
                }
            }
            // One invalid transition in the middle fails alone.
            group.addTask {
                await #expect(throws: JournalError.self) {
                    _ = try await j.acknowledge(Acknowledgement(object: ObjectRef(bucket: "none", key: "none"), output: "out", count: 1))
                }
            }
            try await group.waitForAll()
        }
        #expect(try j.objects().count == 200)
        #expect(try j.messages().count == 200)
        j.close()
    }

    @Test func longKeysAreDistinctAndRoundTrip() async throws {
        let dir = TempDir("long")
        let j = try Journal(path: dir.path, options: options(max: 64 << 20))
        let base = String(repeating: "a/", count: 450)
        let refs = [ObjectRef(bucket: "b", key: base + "x"), ObjectRef(bucket: "b", key: base + "y"), ObjectRef(bucket: "b", key: base + "x", version: "2")]
        _ = try await j.receive(ReceivedMessage(id: "m", receiptHandle: "h", receiveCount: 1, objects: refs.map { DiscoveredObject($0) }))
        for ref in refs { #expect(try j.object(ref)?.ref == ref) }
        #expect(try j.objects().count == 3)
        j.close()
    }

    @Test func oneEnvironmentPerPathPerProcess() throws {
        let dir = TempDir("twice")
        let j = try Journal(path: dir.path)
        #expect(throws: JournalError.self) { _ = try Journal(path: dir.path) }
        j.close()
        let again = try Journal(path: dir.path)
        again.close()
    }
}
