// The engine's stage components in process, against a real journal in a temporary directory: no moto,
// no binary. HeldMessages (the receipt handles the receivers, the fetch pool, the deleter and the
// visibility keeper share) and the Fetcher over a local copy.

@testable import AWS
import Foundation
import Journal
import Logging
import Stages
import TestSupport
import Testing

@testable import Engine

@Suite("The engine's stage components in process")
struct StageComponentTests {
    func message(_ id: String, _ handle: String) -> SQSMessage {
        SQSMessage(id: id, receiptHandle: handle, body: "{}", receiveCount: 1, attributes: [:])
    }

    @Test func heldMessagesAreExtendedHandedBackAndReleasedByTheirOwnHandle() {
        let held = HeldMessages()
        let start = Date()
        held.hold([message("a", "ha"), message("b", "hb"), message("c", "hc")], visibleAgainBy: start.addingTimeInterval(30))
        // Nothing is due while two thirds of a 30 s timeout remain; all three once 10 s have passed.
        #expect(held.due(at: start, margin: 20).isEmpty)
        let due = held.due(at: start.addingTimeInterval(10.5), margin: 20)
        #expect(Set(due.map(\.id)) == ["a", "b", "c"])
        // b's handle expired in SQS (dropped); a extended; c was received again meanwhile (a new handle):
        // the answer for its old handle must not touch it (invariant 3).
        held.hold([message("c", "hc2")], visibleAgainBy: start.addingTimeInterval(31))
        let sent = start.addingTimeInterval(11)
        let entries = due.sorted { $0.id < $1.id }
        held.extended(entries, failures: [SQSBatchFailure(id: "1", code: "ReceiptHandleIsInvalid", message: "expired", senderFault: true)], sent: sent, timeout: 30)
        let later = held.due(at: sent.addingTimeInterval(5), margin: 20)
        #expect(Set(later.map(\.id)) == ["c"], "a now counts from its extension, b is gone, c keeps its own deadline")
        #expect(later.first?.handle == "hc2")
        #expect(held.handBack(["a", "b", "zz"]) == ["ha"], "only what is held is handed back, once")
        #expect(held.handBack(["a"]).isEmpty)
        held.release(["c"])
        #expect(held.due(at: .distantFuture, margin: 0).isEmpty)
    }

    @Test func messagesLeftInTheQueueCountUntilTheyMayBeVisibleAgain() {
        let held = HeldMessages()
        let now = Date()
        held.hold([message("p", "hp")], visibleAgainBy: now.addingTimeInterval(5))
        held.left(["p", "q"], timeout: 30)  // q was never held: a full timeout from now
        #expect(held.leftInFlight(at: now) == 2)
        #expect(held.leftInFlight(at: now.addingTimeInterval(10)) == 1, "p: its deadline and two seconds; q: thirty")
        #expect(held.leftInFlight(at: now.addingTimeInterval(40)) == 0)
    }

    static func gzip(_ bytes: [UInt8]) -> [UInt8] {
        let writer = GzipWriter()
        var out: [UInt8] = []
        bytes.withUnsafeBytes { writer.write($0) { out += $0 } }
        writer.finish { out += $0 }
        return out
    }

    /// A fetch pool over a local copy: a good log is fetched (its records counted, and kept in memory for
    /// the batchers), a corrupt gzip and a JSON file that is not a CloudTrail log are quarantined with
    /// their reasons, and a missing file too; healthy work is not held up by them.
    @Test func theFetcherFetchesGoodLogsAndQuarantinesBadOnesWithTheirReasons() async throws {
        let dir = TempDir("fetcher")
        let root = dir.sub("copy")
        let prefix = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/"
        try FileManager.default.createDirectory(atPath: root + "/" + prefix, withIntermediateDirectories: true)
        func name(_ n: Int) -> String { prefix + String(format: "123456789012_CloudTrail_us-east-1_20261128T%04dZ_x.json.gz", n) }
        let good = #"{"Records":[{"eventVersion":"1.09","eventName":"A"},{"eventVersion":"1.09","eventName":"B"}]}"#
        try Data(Self.gzip(Array(good.utf8))).write(to: URL(fileURLWithPath: root + "/" + name(1)))
        try Data([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00]).write(to: URL(fileURLWithPath: root + "/" + name(2)))
        try Data(Self.gzip(Array(#"{"hello":"world"}"#.utf8))).write(to: URL(fileURLWithPath: root + "/" + name(3)))
        var options = Journal.Options()
        options.outputs = ["file"]
        let journal = try Journal(path: dir.sub("journal"), options: options)
        defer { journal.close() }
        let copy = LocalSource(root: root)
        let refs = (1...4).map { ObjectRef(bucket: copy.bucket, key: name($0), version: "") }
        _ = try await journal.receive(ReceivedMessage(id: "m", receiptHandle: "h", receiveCount: 1, objects: refs.map { DiscoveredObject($0) }))
        let config = try Config.parse("output:\n  file:\n    path: \(dir.sub("out"))\n", file: "c.yml")
        let tally = Tally()
        let decoded = DecodedBodies(capacity: 1 << 20, maxObjectBytes: 256 << 10, readers: 1)
        let stage = StageContext(config: config, drain: true, journal: journal, tally: tally, logger: Logger(label: "test"))
        let fetcher = Fetcher(stage, s3: nil, sqs: nil, held: HeldMessages(), decodedBodies: decoded, digestCheck: nil, backfill: nil, localCopy: copy)
        let pool = Task { try await fetcher.run() }
        for _ in 0..<2000 where try journal.countObjects(in: [.received]) > 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        pool.cancel()
        _ = try? await pool.value
        #expect(fetcher.inFlight == 0, "every claim released")
        let fetched = try #require(try journal.object(refs[0]))
        #expect(fetched.stage == .fetched && fetched.recordCount == 2)
        #expect(decoded.usage.entries == 1, "the good log's records wait in memory for the batchers")
        let reasons = Dictionary(uniqueKeysWithValues: try journal.quarantine().compactMap { e in e.object.map { ($0.key, e.reason) } })
        #expect(reasons[name(2)]?.hasPrefix("corrupt gzip") == true, "\(reasons)")
        #expect(reasons[name(3)]?.hasPrefix("invalid CloudTrail log") == true, "\(reasons)")
        #expect(reasons[name(4)]?.contains("cannot read") == true, "\(reasons)")
        let counts = tally.counters
        #expect(counts.objectsFetched == 1 && counts.objectsQuarantined == 3, "\(counts)")
    }
}
