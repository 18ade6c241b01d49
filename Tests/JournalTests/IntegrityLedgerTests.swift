import Foundation
import Testing

@testable import Journal

/// The integrity ledger (invariant 10): a log's hash lands with its `fetched`, a digest's verdict with the
/// digest's, and GC bounds what waits for a digest that never comes.
@Suite("Integrity ledger")
struct IntegrityLedgerTests {
    let clock = ManualClock()

    func open(_ dir: TempDir) throws -> Journal {
        var options = Journal.Options()
        options.outputs = ["file"]
        options.initialMapSize = 1 << 20
        options.integrityRetention = 10_000
        options.clock = { [clock] in clock.now }
        return try Journal(path: dir.path, options: options)
    }

    /// Receives and fetches `key`, its `fetched` carrying `integrity`.
    func fetch(_ journal: Journal, _ key: String, integrity: IntegrityCommit?, id: Int) async throws {
        let ref = ObjectRef(bucket: "b", key: key, version: "")
        _ = try await journal.receive(ReceivedMessage(id: "m\(id)", receiptHandle: "h", receiveCount: 1, objects: [DiscoveredObject(ref)]))
        let writer = journal.bodyWriter(try await journal.startFetch(ref))
        try await writer.append(Array("{\"Records\":[]}".utf8))
        _ = try await writer.finish(recordCount: 0, integrity: integrity)
    }

    func log(_ key: String, at delivered: Int64, scope: String = "AWSLogs/1 r") -> IntegrityLog {
        IntegrityLog(bucket: "b", key: key, scope: scope, delivered: delivered, sha256: Array(repeating: UInt8(delivered % 251), count: 32))
    }

    @Test func logsWaitByScopeAndTimeUntilADigestSettlesThem() async throws {
        let dir = TempDir("ledger")
        let journal = try open(dir)
        defer { journal.close() }
        try await fetch(journal, "l1", integrity: .log(log("l1", at: 100)), id: 1)
        try await fetch(journal, "l2", integrity: .log(log("l2", at: 300)), id: 2)
        try await fetch(journal, "l3", integrity: .log(log("l3", at: 200)), id: 3)
        try await fetch(journal, "other", integrity: .log(log("other", at: 50, scope: "AWSLogs/2 r")), id: 4)
        #expect(try journal.pendingLog(bucket: "b", key: "l1") == log("l1", at: 100))
        #expect(try journal.pendingLogs(scope: "AWSLogs/1 r", deliveredBefore: 250).map(\.key) == ["l1", "l3"], "oldest first, that scope only")
        #expect(try journal.integrityStatus().pendingLogs == 4)

        // A digest verifies l1 and a log this journal never fetched, settles l3 (modified), reports l2 as
        // listed by none; its findings are kept and counted.
        var verdict = IntegrityVerdict(bucket: "b", key: "d1")
        verdict.seen = IntegrityDigestSeen(sha256: Array(repeating: 7, count: 32), signature: "ab12")
        verdict.verified = [("b", "l1"), ("b", "later")]
        verdict.settled = [("b", "l3")]
        verdict.notCovered = [("b", "l2")]
        verdict.findings = [("log_modified", Array("{\"kind\":\"log_modified\"}".utf8)), ("log_not_covered", Array("{\"kind\":\"log_not_covered\"}".utf8))]
        try await fetch(journal, "d1", integrity: .digest(verdict), id: 5)
        #expect(try journal.pendingLogs(scope: "AWSLogs/1 r", deliveredBefore: .max).isEmpty)
        #expect(try journal.digestSeen(bucket: "b", key: "d1") == IntegrityDigestSeen(sha256: Array(repeating: 7, count: 32), signature: "ab12"))
        let status = try journal.integrityStatus()
        #expect(status.counts == ["digests_verified": 1, "logs_verified": 2, "log_modified": 1, "log_not_covered": 1])
        #expect(status.recent.count == 2 && status.pendingLogs == 1)

        // Two verdicts at the same instant (verdicts sharing a group commit share its clock) keep both
        // findings: neither overwrites the other's entry.
        var other = IntegrityVerdict(bucket: "b", key: "d2")
        other.seen = IntegrityDigestSeen(sha256: Array(repeating: 9, count: 32), signature: "cd", valid: false)
        other.findings = [("digest_invalid", Array("{\"kind\":\"digest_invalid\"}".utf8))]
        try await fetch(journal, "d2", integrity: .digest(other), id: 7)
        #expect(try journal.integrityStatus().recent.count == 3)
        // An invalid digest is remembered as such (its successor reports nothing more) and not counted.
        #expect(try journal.digestSeen(bucket: "b", key: "d2")?.valid == false)
        #expect(try journal.integrityStatus().counts["digests_verified"] == 1)

        // A log the digest verified before this journal fetched it adds nothing when it is fetched; nor
        // does one it found modified (its finding was raised: no second one as "listed by none").
        try await fetch(journal, "later", integrity: .log(log("later", at: 150)), id: 6)
        #expect(try journal.pendingLog(bucket: "b", key: "later") == nil)
        var third = IntegrityVerdict(bucket: "b", key: "d3")
        third.settled = [("b", "tampered-later")]
        try await fetch(journal, "d3", integrity: .digest(third), id: 8)
        try await fetch(journal, "tampered-later", integrity: .log(log("tampered-later", at: 160)), id: 9)
        #expect(try journal.pendingLog(bucket: "b", key: "tampered-later") == nil)
    }

    @Test func gcDropsWhatWaitedPastRetentionAndReadOnlyOpensOfOldJournalsSeeNoLedger() async throws {
        let dir = TempDir("ledger-gc")
        let journal = try open(dir)
        try await fetch(journal, "old", integrity: .log(log("old", at: 1)), id: 1)
        clock.advance(6_000)
        try await fetch(journal, "young", integrity: .log(log("young", at: 2)), id: 2)
        clock.advance(6_000)
        #expect(try await journal.collectIntegrity() == 1, "only the entry stored more than 10 s ago")
        #expect(try journal.pendingLogs(scope: "AWSLogs/1 r", deliveredBefore: .max).map(\.key) == ["young"])
        journal.close()

        // A journal from before the ledger existed: a read-only open (journal status) has no ledger.
        let older = TempDir("ledger-none")
        var options = Journal.Options()
        options.initialMapSize = 1 << 20
        let created = try Journal(path: older.path, options: options)
        try await created.dropDatabaseForTests("integrity")
        created.close()
        options.readOnly = true
        let readOnly = try Journal(path: older.path, options: options)
        defer { readOnly.close() }
        #expect(readOnly.dbs.integrity == nil)
        #expect(try readOnly.integrityStatus().counts.isEmpty)
        #expect(try readOnly.pendingLog(bucket: "b", key: "x") == nil)
    }
}
