// The batcher (Engine/Batcher.swift) in process, against a real journal and a recording output: no
// moto, no binary. What the end-to-end tests cannot pin down: which records each delivery carried, and
// what each acknowledgement committed.

import Codecs
import Foundation
import Journal
import Logging
import Outputs
import Stages
import Synchronization
import TestSupport
import Testing

@testable import Engine

/// Records every batch; takes at most `perCall` events per call (a receiver that answers in parts).
final class RecordingOutput: Output {
    let name = "rec"
    let maxBatch: Int
    let perCall: Int
    private let taken = Mutex<[[String]]>([])
    init(maxBatch: Int, perCall: Int) {
        self.maxBatch = maxBatch
        self.perCall = perCall
    }
    var calls: [[String]] { taken.withLock { $0 } }
    func deliver(_ batch: [OutputEvent]) async throws -> DeliveryReport {
        let part = Array(batch.prefix(perCall))
        taken.withLock { $0.append(part.map { String(decoding: $0.json, as: UTF8.self) }) }
        return DeliveryReport(handled: part.count)
    }
    func close() async {}
}

@Suite("The batcher: one delivery across many objects")
struct BatcherTests {
    /// `objects` small logs of 1–4 records each, fetched into a fresh journal whose only output is `rec`.
    /// Each record's eventName is `o<object>r<record>`; every third object's records are all `Skip`.
    /// With `decoded`, the records of every other object (as a fetch would split them from the bytes
    /// stored) wait there for the batcher, as in the engine.
    static func journal(_ dir: TempDir, objects: Int, decoded: DecodedBodies? = nil) async throws -> (Journal, [ObjectRef], [String]) {
        var options = Journal.Options()
        options.outputs = ["rec"]
        let journal = try Journal(path: dir.sub("journal"), options: options)
        let refs = (0..<objects).map { ObjectRef(bucket: "b", key: String(format: "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/123456789012_CloudTrail_us-east-1_20261128T%04dZ_x.json.gz", $0), version: "v") }
        _ = try await journal.receive(ReceivedMessage(id: "m", receiptHandle: "h", receiveCount: 1, objects: refs.map { DiscoveredObject($0) }))
        var names: [String] = []
        for (i, ref) in refs.enumerated() {
            let n = 1 + i % 4
            let records = (0..<n).map { r -> String in
                let name = i % 3 == 2 ? "Skip" : "o\(i)r\(r)"
                if i % 3 != 2 { names.append(name) }
                return "{\"eventVersion\":\"1.09\",\"eventTime\":\"2026-11-28T00:00:0\(r)Z\",\"eventName\":\"\(name)\",\"eventID\":\"\(i)-\(r)\"}"
            }
            let ticket = try await journal.startFetch(ref)
            let writer = journal.bodyWriter(ticket)
            let body = Array("{\"Records\":[\(records.joined(separator: ","))]}".utf8)
            try await writer.append(body)
            let state = try await writer.finish(recordCount: UInt64(n))
            if let decoded, i % 2 == 0 {
                var collector = DecodedRecords.Collector(limit: 1 << 20)
                let decoder = LogDecoder()
                try decoder.push(body) { collector.add($0) }
                let count = try decoder.finish { collector.add($0) }
                decoded.add(try #require(collector.records(count: count)), body: try #require(state.body).id)
            }
        }
        return (journal, refs, names)
    }

    /// Runs one batcher until every object is done (or 20 s pass), then stops it.
    static func drain(_ journal: Journal, _ output: RecordingOutput, filter: RecordFilter?, decoded: DecodedBodies? = nil) async throws {
        let held = Mutex(Set<ObjectRef>())
        let pump = OutputPump(output: output, deadLetters: nil)
        let hooks = Batcher.Hooks(
            claim: { n, _, position in
                try journal.objects(in: [.fetched, .emitting], limit: n, from: &position) { o in held.withLock { $0.insert(o.ref).inserted } }
            },
            release: { ref in _ = held.withLock { $0.remove(ref) } },
            quarantine: { ref, reason in _ = try await journal.quarantineObject(ref, reason: reason) },
            counted: { _, _, _ in },
            decoded: { body in decoded?.take(body: body) })
        let batcher = Task {
            try await Batcher(pump: pump, journal: journal, options: CodecOptions(), filter: filter, logger: Logger(label: "test"), hooks: hooks).run()
        }
        let deadline = Date().addingTimeInterval(20)
        while try journal.countObjects(in: [.fetched, .emitting]) > 0 && Date() < deadline { try await Task.sleep(nanoseconds: 10_000_000) }
        batcher.cancel()
        _ = try? await batcher.value
        #expect(held.withLock { $0.isEmpty }, "every claim given back")
    }

    static func eventName(_ json: String) -> String {
        let r = json.range(of: "\"eventName\":\"")!
        return String(json[r.upperBound...].prefix { $0 != "\"" })
    }

    /// With `inMemory`, half the objects' records come from their fetch (DecodedBodies), the other half
    /// from their stored bodies: the same deliveries either way.
    @Test(arguments: [(maxBatch: 50, perCall: 50, inMemory: false), (maxBatch: 50, perCall: 50, inMemory: true),
                      (maxBatch: 50, perCall: 7, inMemory: false), (maxBatch: 3, perCall: 2, inMemory: true)])
    func everyRecordOnceInOrderAcrossObjects(maxBatch: Int, perCall: Int, inMemory: Bool) async throws {
        let dir = TempDir("batcher")
        let decoded = inMemory ? DecodedBodies(capacity: 1 << 20, readers: 1) : nil
        let (journal, refs, names) = try await BatcherTests.journal(dir, objects: 90, decoded: decoded)
        defer { journal.close() }
        let output = RecordingOutput(maxBatch: maxBatch, perCall: perCall)
        let filter = RecordFilter(exclude: [["eventName": ["Skip"]]])
        try await BatcherTests.drain(journal, output, filter: filter, decoded: decoded)
        if let decoded {
            let usage = decoded.usage
            #expect(usage.hits == 45 && usage.misses == 45 && usage.entries == 0 && usage.bytes == 0, "\(usage)")
        }

        let sent = output.calls.flatMap { $0 }.map(BatcherTests.eventName)
        #expect(sent == names, "every kept record once, objects in key order, each object's records in order")
        for ref in refs {
            let state = try #require(try journal.object(ref))
            #expect(state.stage == .done && state.cursor("rec") == state.recordCount, "\(ref.key): \(state.stage), cursor \(state.cursor("rec"))")
        }
        let totals = try #require(try journal.status().outputRecords.first { $0.output == "rec" })
        let skipped = (0..<90).filter { $0 % 3 == 2 }.reduce(0) { $0 + 1 + $1 % 4 }
        #expect(totals.delivered == UInt64(names.count) && totals.filtered == UInt64(skipped), "delivered \(totals.delivered), filtered \(totals.filtered)")
        // Batches span objects: far fewer deliveries than objects when the output takes 50 at a time.
        let batches = output.calls.count
        if maxBatch == 50 && perCall == 50 {
            #expect(batches <= 8, "\(batches) deliveries for \(names.count) events of 60 objects")
            #expect(totals.deliveries == UInt64(batches) && totals.deliveryObjects >= 60, "deliveries \(totals.deliveries), objects \(totals.deliveryObjects)")
        }
        #expect(output.calls.allSatisfy { $0.count <= min(maxBatch, perCall) })
    }

    /// A delivery cut short (the task cancelled while the output answers in parts) leaves every cursor at
    /// what was acknowledged; the next batcher resumes there and nothing is lost.
    @Test func aBatcherStoppedMidBatchResumesFromTheCommittedCursors() async throws {
        let dir = TempDir("batcher-stop")
        let (journal, refs, names) = try await BatcherTests.journal(dir, objects: 60)
        defer { journal.close() }
        // First run: one event per call and stopped early, mid-batch.
        let slow = RecordingOutput(maxBatch: 40, perCall: 1)
        let held = Mutex(Set<ObjectRef>())
        let hooks = Batcher.Hooks(
            claim: { n, _, position in try journal.objects(in: [.fetched, .emitting], limit: n, from: &position) { o in held.withLock { $0.insert(o.ref).inserted } } },
            release: { ref in _ = held.withLock { $0.remove(ref) } },
            quarantine: { _, _ in }, counted: { _, _, _ in })
        let first = Task {
            try await Batcher(pump: OutputPump(output: slow, deadLetters: nil), journal: journal, options: CodecOptions(), filter: nil, logger: Logger(label: "t"), hooks: hooks).run()
        }
        while slow.calls.count < 15 { try await Task.sleep(nanoseconds: 1_000_000) }
        first.cancel()
        _ = try? await first.value
        #expect(held.withLock { $0.isEmpty })
        let firstSent = slow.calls.flatMap { $0 }.map(BatcherTests.eventName)
        let acknowledged = try refs.reduce(0) { $0 + Int(try journal.object($1)!.cursor("rec")) }
        #expect(acknowledged <= firstSent.count && acknowledged >= firstSent.count - 1, "cursors hold what was acknowledged: \(acknowledged) of \(firstSent.count) sent")

        let rest = RecordingOutput(maxBatch: 40, perCall: 40)
        try await BatcherTests.drain(journal, rest, filter: nil)
        let all = firstSent + rest.calls.flatMap { $0 }.map(BatcherTests.eventName)
        let expected = Set(names + Array(repeating: "Skip", count: 1))
        #expect(Set(all) == expected, "nothing lost")
        let kept = all.filter { $0 != "Skip" }
        #expect(kept.count - Set(kept).count <= 1, "at most the event in flight sent twice")
        #expect(try journal.countObjects(in: [.fetched, .emitting]) == 0)
    }
}
