import Foundation
import HTTP
import Synchronization
import Testing
import TestSupport

@testable import Outputs

/// The Splunk HEC output against Fixtures/hec_server.py, which follows Splunk's REST reference: tokens,
/// channels, ackIds, acks that come late or never, a restart that loses channels, 503 busy.
@Suite("splunk HEC output against a protocol-faithful test server")
struct SplunkHECTests {
    func server() throws -> LocalServer { try protocolServer("hec_server.py", name: "hec") }

    /// What was indexed: each event's envelope.
    func indexed(_ server: LocalServer) async throws -> [[String: Any]] {
        try await stats(server)["events"] as? [[String: Any]] ?? []
    }

    /// Waits until `n` deliveries of `output` have their batch accepted and wait for its ack, or 600 s
    /// have passed: the whole suite in parallel on two cores starves async tasks for minutes, so a
    /// fixed sleep does not say a batch was sent (a restart scripted too early once met no batch in CI).
    func waitUntilOutstanding(_ output: SplunkHECOutput, _ n: Int) async throws {
        let deadline = Date().addingTimeInterval(600)
        while output.outstandingAcks != n && Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
    }

    /// Raw CloudTrail records (the `raw` codec's events): their time travels beside them.
    func records(_ range: Range<Int>) -> [OutputEvent] {
        range.map { i in
            OutputEvent(
                id: "ev-\(i)", json: Array(#"{"eventVersion":"1.08","eventID":"ev-\#(i)","eventTime":"2026-11-28T22:07:05Z"}"#.utf8),
                timestamp: Array("2026-11-28T22:07:05.\(String(format: "%03d", i % 1000))Z".utf8), source: "s3://trail-bucket/AWSLogs/o\(i / 10).json.gz")
        }
    }

    func configuration(_ hec: LocalServer) -> SplunkHECOutput.Configuration {
        var c = SplunkHECOutput.Configuration()
        c.url = hec.url
        c.token = "secret-token"
        c.index = "cloudtrail"
        c.ackPollInterval = 0.05
        c.ackTimeout = 20
        return c
    }

    /// A delivery returns only once its batch is indexed (never on the 200 alone); concurrent deliveries
    /// share one ack query per poll; the envelope carries the event's time, source, sourcetype and index;
    /// gzip bodies.
    @Test func aBatchCountsOnlyOnceSplunkHasIndexedIt() async throws {
        let hec = try server()
        try await script(hec, #"{"ack_delay": 0.6}"#)
        var config = configuration(hec)
        config.compressionLevel = 4
        config.bulkMaxSize = 10
        let output = try SplunkHECOutput(config)
        let started = Date()
        let batches = (0..<4).map { records($0 * 10..<$0 * 10 + 10) }
        // Each delivery, when it returns, finds its own events indexed.
        let seenAtReturn = try await withThrowingTaskGroup(of: (Int, Set<String>).self) { group in
            for (i, batch) in batches.enumerated() {
                group.addTask {
                    let report = try await output.deliver(batch)
                    #expect(report.handled == 10 && report.deadLetters.isEmpty)
                    let ids = Set(try await indexed(hec).compactMap { ($0["event"] as? [String: Any])?["eventID"] as? String })
                    return (i, ids)
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(Date().timeIntervalSince(started) >= 0.6, "returned before indexing could have happened")
        for (i, ids) in seenAtReturn { #expect(Set(batches[i].map(\.id)).isSubset(of: ids), "batch \(i) returned before it was indexed") }
        let s = try await stats(hec)
        let ackRequests = try #require(s["ack_requests"] as? Int), queried = try #require(s["acks_queried"] as? Int)
        #expect(queried > ackRequests, "ack queries carry several ids (\(queried) ids in \(ackRequests) requests)")
        #expect((s["acks_true"] as? Int) == 4 && (s["encodings"] as? [String]) == Array(repeating: "gzip", count: 4))
        let events = try await indexed(hec)
        #expect(events.count == 40)
        let first = try #require(events.first { ($0["event"] as? [String: Any])?["eventID"] as? String == "ev-7" })
        #expect((first["time"] as? Double).map { abs($0 - 1_795_903_625.007) < 0.0005 } == true, "\(first["time"] ?? "")")
        #expect(first["sourcetype"] as? String == "aws:cloudtrail" && first["index"] as? String == "cloudtrail")
        #expect(first["source"] as? String == "s3://trail-bucket/AWSLogs/o0.json.gz" && first["host"] == nil)
        #expect((first["event"] as? [String: Any])?["eventVersion"] as? String == "1.08", "the record itself is the event")
        await output.close()
    }

    /// An ack that never comes (the batch was lost inside Splunk) fails the delivery after
    /// `ack_timeout` so it is sent again; a restart that loses the channel fails it at the next poll,
    /// long before the timeout. Through the pump, every event ends up indexed.
    @Test func lostBatchesAreSentAgain() async throws {
        let hec = try server()
        try await script(hec, #"{"ack_delay": 0.1, "never_ack": 1}"#)
        var config = configuration(hec)
        // The lost batches wait this long twice; a batch acked after 0.1 s must not outlast it on a
        // machine that starves async tasks (the suite runs in parallel on two cores).
        config.ackTimeout = 3
        let output = try SplunkHECOutput(config)
        let never = await #expect(throws: OutputError.self) { _ = try await output.deliver(records(0..<5)) }
        #expect(never?.retryable == true && never?.message.contains("not acknowledged within ack_timeout") == true, "\(String(describing: never))")
        #expect(try await indexed(hec).isEmpty)

        try await script(hec, #"{"ack_delay": 3600}"#)
        var patient = configuration(hec)
        patient.ackTimeout = 600
        let slow = try SplunkHECOutput(patient)
        let lost = Task { try await slow.deliver(records(5..<10)) }
        // Restart only once the batch waits for its ack: a batch sent after the restart is simply indexed.
        try await waitUntilOutstanding(slow, 1)
        try #require(slow.outstandingAcks == 1, "the batch was never accepted")
        let started = Date()
        try await script(hec, #"{"restart": true}"#)
        let gone = await #expect(throws: OutputError.self) { _ = try await lost.value }
        #expect(gone?.retryable == true && gone?.message.contains("the request channel is gone") == true, "\(String(describing: gone))")
        #expect(Date().timeIntervalSince(started) < 300, "a lost channel is noticed at a poll (at most 10 s apart), not after ack_timeout")

        try await script(hec, #"{"ack_delay": 0.1, "never_ack": 1}"#)
        let pump = OutputPump(output: output, deadLetters: nil, minBackoff: 0.01, maxBackoff: 0.05)
        var progress = 0
        try await pump.deliver(records(0..<10)) { progress = $0 }
        #expect(progress == 10 && pump.retries == 1)
        let ids = try await indexed(hec).compactMap { ($0["event"] as? [String: Any])?["eventID"] as? String }
        #expect(ids.sorted() == records(0..<10).map(\.id).sorted(), "each event indexed once: the lost batches were sent again")
        #expect((try await stats(hec))["lost_batches"] as? Int == 3)
        await output.close()
        await slow.close()
    }

    /// A restarted HEC numbers its ackIds from 0 again: a batch still waiting for ackId 0 when a new
    /// batch is given ackId 0 fails at once (and is sent again) instead of waiting forever for an ack
    /// that now means the other batch.
    @Test func anAckIdHandedOutAgainFailsTheEarlierWait() async throws {
        let hec = try server()
        try await script(hec, #"{"ack_delay": 3600}"#)
        var config = configuration(hec)
        // Long enough for the first wait to outlast the restart; short enough that a wait which never
        // ends fails this test instead of hanging the suite (seen once under a fully loaded machine).
        config.ackTimeout = 120
        let output = try SplunkHECOutput(config)
        let first = Task { try await output.deliver(records(0..<2)) }
        try await waitUntilOutstanding(output, 1)
        #expect(output.outstandingAcks == 1)
        try await script(hec, #"{"ack_delay": 0.05, "restart": true}"#)
        #expect(try await output.deliver(records(2..<4)).handled == 2, "the new batch, ackId 0 of the restarted channel")
        // Before the fix the first wait was simply forgotten and never ended: wait for it with a bound.
        let outcome = Outcome()
        Task { outcome.set(await first.result) }
        let bound = Date().addingTimeInterval(60)
        while outcome.get() == nil && Date() < bound { try await Task.sleep(nanoseconds: 20_000_000) }
        guard case .failure(let error)? = outcome.get(), let reused = error as? OutputError else {
            Issue.record("the earlier wait did not fail with an OutputError: \(String(describing: outcome.get()))")
            return
        }
        #expect(reused.retryable && reused.message.contains("ackId 0 was handed out again"), "\(reused)")
        #expect(output.outstandingAcks == 0)
        await output.close()
    }

    /// HEC's error answers, each handled as it must be.
    @Test func busyDisabledInvalidAndForbiddenAnswers() async throws {
        let hec = try server()
        try await script(hec, #"""
            {"ack_delay": 0.05, "busy": 1, "tokens": {"secret-token": {"ack": true, "indexes": ["cloudtrail"]},
             "off-token": {"ack": true, "indexes": ["cloudtrail"], "disabled": true}, "noack-token": {"ack": false, "indexes": ["main"]}}}
            """#)
        let output = try SplunkHECOutput(configuration(hec))
        // 503 busy: retried (nothing indexed, the pump backs off and sends again).
        let busy = await #expect(throws: OutputError.self) { _ = try await output.deliver(records(0..<3)) }
        #expect(busy?.retryable == true && busy?.message.contains("HTTP 503, HEC code 9: Server is busy") == true, "\(String(describing: busy))")
        #expect(try await output.deliver(records(0..<3)).handled == 3)

        func refusal(_ change: (inout SplunkHECOutput.Configuration) -> Void) async throws -> OutputError? {
            var c = configuration(hec)
            change(&c)
            return await #expect(throws: OutputError.self) { _ = try await SplunkHECOutput(c).deliver(records(0..<1)) }
        }
        let unknown = try await refusal { $0.token = "nope" }
        #expect(unknown?.code == .refused && unknown?.message.contains("HEC code 4: Invalid token") == true && unknown?.message.contains("output.splunk.token") == true)
        let disabled = try await refusal { $0.token = "off-token" }
        #expect(disabled?.retryable == true && disabled?.message.contains("the token is disabled") == true, "\(String(describing: disabled))")
        let index = try await refusal { $0.index = "secrets" }
        #expect(index?.code == .refused && index?.message.contains("may not write to index 'secrets'") == true && index?.message.contains("HEC code 7") == true)
        let noAck = try await refusal { $0.token = "noack-token"; $0.index = nil }
        #expect(noAck?.code == .refused && noAck?.message.contains("enable indexer acknowledgement on the token") == true, "\(String(describing: noAck))")
        let noCollector = try await refusal { $0.url = hec.url + "/nothing-here/services/collector/event" }
        #expect(noCollector?.code == .configuration && noCollector?.message.contains("no HTTP Event Collector") == true, "\(String(describing: noCollector))")
        // Without acknowledgement, a 200 is delivery.
        var plain = configuration(hec)
        plain.token = "noack-token"
        plain.index = nil
        plain.useAck = false
        #expect(try await SplunkHECOutput(plain).deliver(records(10..<12)).handled == 2)
        // 3 acknowledged, 2 without acknowledgement, and the one the ack-less token took before the
        // output refused to go on without an ackId.
        #expect(try await indexed(hec).count == 6)

        // The probe: healthy, token accepted, acknowledgement enabled; a bad token named.
        let good = await output.probe()
        #expect(good.count == 1 && good[0].ok && good[0].detail == "healthy, token accepted, indexer acknowledgement enabled", "\(good)")
        var bad = configuration(hec)
        bad.token = "nope"
        let refused = try await SplunkHECOutput(bad).probe()
        #expect(refused.count == 1 && !refused[0].ok && refused[0].detail.contains("Invalid token"), "\(refused)")
        await output.close()
    }

    /// An event HEC cannot take (here an empty event, code 13) is narrowed down by halving the batch
    /// and dead-lettered alone; the rest are indexed.
    @Test func anEventHECRefusesIsDeadLetteredAlone() async throws {
        let hec = try server()
        try await script(hec, #"{"ack_delay": 0.05}"#)
        let output = try SplunkHECOutput(configuration(hec))
        let dir = TempDir("hec")
        var batch = records(0..<8)
        batch[5].json = Array(#""""#.utf8)
        let pump = OutputPump(output: output, deadLetters: DeadLetterFile(path: dir.sub("dead.ndjson")), minBackoff: 0.01, maxBackoff: 0.05)
        try await pump.deliver(batch) { _ in }
        #expect(pump.deadLettered == 1)
        let dead = try String(contentsOfFile: dir.sub("dead.ndjson"), encoding: .utf8)
        #expect(dead.contains("\"id\":\"ev-5\"") && dead.contains("HEC code 13: Event field cannot be blank"), "\(dead)")
        let ids = try await indexed(hec).compactMap { ($0["event"] as? [String: Any])?["eventID"] as? String }
        #expect(ids.sorted() == ["ev-0", "ev-1", "ev-2", "ev-3", "ev-4", "ev-6", "ev-7"])
        await output.close()
    }

    /// Cancelling a delivery that waits for its ack resumes it at once; close() fails every waiter.
    @Test func aWaitingDeliveryIsCancelledAtOnce() async throws {
        let hec = try server()
        try await script(hec, #"{"ack_delay": 3600}"#)
        var config = configuration(hec)
        config.ackTimeout = 3600  // only a cancellation can end these deliveries
        let output = try SplunkHECOutput(config)
        let task = Task { try await output.deliver(records(0..<2)) }
        try await waitUntilOutstanding(output, 1)
        #expect(output.outstandingAcks == 1)
        let started = Date()
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        #expect(Date().timeIntervalSince(started) < 600 && output.outstandingAcks == 0, "resumed by its cancellation, not by an ack or the 3600 s timeout (minutes of starvation on two cores are not one)")
        let second = Task { try await output.deliver(records(2..<4)) }
        try await waitUntilOutstanding(output, 1)
        #expect(output.outstandingAcks == 1)
        await output.close()
        await #expect(throws: CancellationError.self) { _ = try await second.value }
    }
}

/// A delivery's result, set once by the task that awaited it.
final class Outcome: Sendable {
    private let result = Mutex<Result<DeliveryReport, any Error>?>(nil)
    func set(_ r: Result<DeliveryReport, any Error>) { result.withLock { $0 = r } }
    func get() -> Result<DeliveryReport, any Error>? { result.withLock { $0 } }
}
