import Foundation
import Synchronization
import Testing
import TestSupport

@testable import Journal

/// The change signal's topics (JournalChanges.swift): each transition moves the generation of the
/// topics it makes work for, and a waiter wakes only for its own.
@Suite("Journal change topics")
struct JournalChangesTests {
    typealias Topics = JournalChanges.Topics

    /// The topics whose generation `step` moved. The writer signals after it has resumed its callers, so
    /// every signal of the writes so far is awaited first and after: with one caller, each batch commits
    /// once and signals once (`any` moves with every batch).
    static func moved(_ j: Journal, _ step: () async throws -> Void) async throws -> Topics {
        func signalled() async throws {
            let deadline = Date().addingTimeInterval(10)
            while j.changes.generation(.any) != j.changes.commits && Date() < deadline { try await Task.sleep(nanoseconds: 1_000_000) }
            #expect(j.changes.generation(.any) == j.changes.commits)
        }
        let all: [Topics] = [.received, .fetched, .finished, .any, .released]
        try await signalled()
        let before = all.map { j.changes.generation($0) }
        try await step()
        try await signalled()
        var moved: Topics = []
        for (t, g) in zip(all, before) where j.changes.generation(t) != g { moved.formUnion(t) }
        return moved
    }

    /// A fresh journal in `dir` with one output, `out`.
    static func journal(_ dir: TempDir) throws -> Journal {
        var options = Journal.Options()
        options.outputs = ["out"]
        return try Journal(path: dir.sub("j"), options: options)
    }

    @Test func eachTransitionMovesTheTopicsItMakesWorkFor() async throws {
        let dir = TempDir("changes")
        let j = try Self.journal(dir)
        defer { j.close() }
        let a = ObjectRef(bucket: "b", key: "a", version: "v"), b = ObjectRef(bucket: "b", key: "b", version: "v")
        #expect(try await Self.moved(j) {
            _ = try await j.receive(ReceivedMessage(id: "m", receiptHandle: "h", receiveCount: 1, objects: [DiscoveredObject(a), DiscoveredObject(b)]))
        } == [.received, .any])
        var ticket: FetchTicket?
        #expect(try await Self.moved(j) { ticket = try await j.startFetch(b) } == [.any], "a download starting is nobody's work")
        let ticketB = try #require(ticket)
        #expect(try await Self.moved(j) { _ = try await j.fetchFailed(ticketB, error: "timeout") } == [.received, .any], "back to wait for the pool")
        let w = j.bodyWriter(try await j.startFetch(a))
        try await w.append(Array("{\"Records\":[{},{}]}".utf8))
        #expect(try await Self.moved(j) { _ = try await w.finish(recordCount: 2) } == [.fetched, .any], "records for the outputs")
        #expect(try await Self.moved(j) {
            _ = try await j.acknowledge([Acknowledgement(object: a, output: "out", count: 1)], output: "out", delivery: 1)
        } == [.any], "a partial acknowledgement makes no new work")
        #expect(try await Self.moved(j) {
            _ = try await j.acknowledge([Acknowledgement(object: a, output: "out", count: 2)], output: "out", delivery: 1)
        } == [.finished, .any], "the object finished")
        #expect(try await Self.moved(j) { _ = try await j.quarantineObject(b, reason: "bad") } == [.finished, .any], "and with it the message")
    }

    /// No bound on how soon a waiter resumes: on two cores, with the whole suite running, a task may
    /// resume minutes late (the whole suite takes about eight). What is checked is what resumed it: not
    /// the receipt, and not its timeout (15 minutes).
    @Test func aWaiterWakesForItsTopicsOnlyAndTheTimeoutIsAFallback() async throws {
        let dir = TempDir("changes-wait")
        let j = try Self.journal(dir)
        defer { j.close() }
        let fetchedGeneration = j.changes.generation(.fetched)
        let began = Date()
        let woken = Mutex(false)
        let waiter = Task {
            await j.changes.wait(.fetched, since: fetchedGeneration, timeout: 900)
            woken.withLock { $0 = true }
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        let ref = ObjectRef(bucket: "b", key: "k", version: "v")
        _ = try await j.receive(ReceivedMessage(id: "m", receiptHandle: "h", receiveCount: 1, objects: [DiscoveredObject(ref)]))
        let t = try await j.startFetch(ref)
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(j.changes.generation(.fetched) == fetchedGeneration, "nothing fetched yet")
        #expect(!woken.withLock { $0 }, "a receipt and a download starting wake no batcher")
        let w = j.bodyWriter(t)
        try await w.append(Array("{\"Records\":[{}]}".utf8))
        _ = try await w.finish(recordCount: 1)
        await waiter.value
        #expect(Date().timeIntervalSince(began) < 600, "woken by the fetch, not by its timeout")
        // Already moved: it returns at once (not after its 15 minutes).
        let quick = Date()
        await j.changes.wait(.fetched, since: fetchedGeneration, timeout: 900)
        #expect(Date().timeIntervalSince(quick) < 600)
        // Nothing of its topic: the timeout ends it.
        let idle = Date()
        await j.changes.wait(.received, since: j.changes.generation(.received), timeout: 0.3)
        #expect(Date().timeIntervalSince(idle) >= 0.29)
    }

    /// A claim given back in memory (the fetch pool's slot) is announced, not committed: it moves
    /// `released` alone (not `any`, which counts write batches), and wakes who waits on it and nobody else.
    @Test func anAnnouncementMovesReleasedAloneAndWakesOnlyItsWaiters() async throws {
        let dir = TempDir("changes-announce")
        let j = try Self.journal(dir)
        defer { j.close() }
        #expect(try await Self.moved(j) { j.changes.announce(.released) } == [.released])
        #expect(j.changes.commits == 0 && j.changes.generation(.any) == 0, "no write batch counted")
        let released = j.changes.generation(.released), received = j.changes.generation(.received)
        let slotWoken = Mutex(false), workWoken = Mutex(false)
        let slot = Task {
            await j.changes.wait(.released, since: released, timeout: 900)
            slotWoken.withLock { $0 = true }
        }
        let work = Task {
            await j.changes.wait(.received, since: received, timeout: 900)
            workWoken.withLock { $0 = true }
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        let announced = Date()
        j.changes.announce(.released)
        await slot.value
        #expect(Date().timeIntervalSince(announced) < 600, "woken by the announcement, not by its timeout")
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(slotWoken.withLock { $0 } && !workWoken.withLock { $0 }, "the announcement woke the slot's waiter only")
        work.cancel()
        await work.value
    }
}
