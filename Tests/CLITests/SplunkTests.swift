import Foundation
import Testing
import TestSupport

/// Splunk HEC from the configuration, through the binary, against OutputsTests/Fixtures/hec_server.py.
@Suite("Splunk HEC with indexer acknowledgement, end to end", .serialized)
struct SplunkTests {
    func stats(_ hec: LocalServer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(curl(hec.url + "/_test/stats").utf8)) as? [String: Any])
    }

    /// Each record as a JSON object, to compare what Splunk indexed with what was uploaded.
    func objects(_ lines: [String]) -> [NSDictionary] {
        lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? NSDictionary }
    }

    /// The daemon ships the queue's log files to HEC; it is SIGKILLed while batches wait for their
    /// acknowledgement, and each time "Splunk restarts" and loses every batch it had not indexed. Had
    /// any record been acknowledged in the journal before Splunk said it was indexed, it would be lost
    /// for good; instead every record is indexed (at least once: HEC has no id), every message is
    /// deleted, and each event is Splunk's aws:cloudtrail shape: the record itself, its time, its file.
    @Test func killedWhileAcksAreOutstandingLosesNothing() throws {
        let hec = try fixtureServer("OutputsTests/Fixtures/hec_server.py", [], name: "hec")
        _ = curl(hec.url + "/_script", postJSON: #"{"ack_delay": 1.5}"#)
        let stack = try Stack(objects: 8, bad: false) { text in
            text = text.replacingOccurrences(of: "output:\n", with: """
                output:
                  splunk:
                    url: "\(hec.url)"
                    token: "${HEC_TOKEN:secret-token}"
                    index: cloudtrail
                    bulk_max_size: 7
                    compression_level: 3
                    ack_poll_interval: 100ms
                    ack_timeout: 60s

                """)
        }
        let expected = objects(stack.expected)
        try #require(expected.count >= 20, "the stack uploads records")
        var kills = 0
        for round in 0..<3 {
            let p = try stack.start(["-c", stack.config], log: "engine-\(round).log")
            // Wait until batches are out and waiting for their acks, then kill.
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, (try stats(hec)["outstanding"] as? Int ?? 0) == 0 { usleep(20_000) }
            usleep(UInt32.random(in: 0...300_000))
            let outstanding = try stats(hec)["outstanding"] as? Int ?? 0
            p.kill()
            let end = p.wait()
            #expect(!end.exited, "round \(round): the daemon exited by itself")
            if outstanding > 0 { kills += 1 }
            _ = curl(hec.url + "/_script", postJSON: #"{"restart": true}"#)
        }
        #expect(kills > 0, "the daemon was killed with acknowledgements outstanding")
        let lost = try #require(try stats(hec)["lost_batches"] as? Int)
        #expect(lost > 0, "batches Splunk had not indexed were lost in its restarts")

        _ = curl(hec.url + "/_script", postJSON: #"{"ack_delay": 0.1}"#)
        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        #expect(status == 0, "\((try? String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8))?.suffix(1500) ?? "")")
        let events = try #require(try stats(hec)["events"] as? [[String: Any]])
        let indexed = Set(events.compactMap { $0["event"] as? NSDictionary })
        #expect(Set(expected).isSubset(of: indexed), "every record indexed: \(Set(expected).subtracting(indexed).count) missing")
        #expect(indexed.count == Set(expected).count, "nothing else was indexed")
        #expect(try stack.queueCount() == 0, "every message deleted")
        for e in events {
            let record = try #require(e["event"] as? [String: Any])
            #expect(e["sourcetype"] as? String == "aws:cloudtrail" && e["index"] as? String == "cloudtrail")
            #expect((e["source"] as? String)?.hasPrefix("s3://") == true && (e["source"] as? String)?.hasSuffix(".json.gz") == true)
            if let time = record["eventTime"] as? String, let t = ISO8601DateFormatter().date(from: time) {
                #expect((e["time"] as? Double).map { abs($0 - t.timeIntervalSince1970) < 0.001 } == true, "time is eventTime: \(e["time"] ?? "") vs \(time)")
            }
        }
        // Status and `test output` speak of it.
        let probe = try stack.run(["test", "output", "-c", stack.config], log: "probe.log")
        #expect(probe.0 == 0 && probe.1.contains("output.splunk \(hec.url)/services/collector/event: OK — healthy, token accepted, indexer acknowledgement enabled"), "\(probe.1)")
        let journal = try stack.run(["journal", "status", "-c", stack.config], log: "status.log")
        #expect(journal.1.contains("records    splunk: "), "\(journal.1)")
    }
}
