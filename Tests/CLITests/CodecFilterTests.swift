import Foundation
import Testing
import TestSupport

@testable import Journal

#if canImport(Glibc)
import Glibc
#endif

/// Every event line in the files of a directory, parsed.
func events(in dir: String) throws -> [[String: Any]] {
    var out: [[String: Any]] = []
    for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
        for line in try String(contentsOfFile: dir + "/" + name, encoding: .utf8).split(separator: "\n") {
            out.append(try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line.prefix(200))"))
        }
    }
    return out
}

/// The value at a dotted path of nested objects.
func value(_ json: [String: Any], _ path: String) -> Any? {
    var current: Any? = json
    for part in path.split(separator: ".") { current = (current as? [String: Any])?[String(part)] }
    return current
}

/// `journal status --json`'s records per output: (delivered, filtered).
func recordTotals(_ stackRun: () throws -> (Int32, String)) throws -> [String: (delivered: Int, filtered: Int)] {
    let (code, json) = try stackRun()
    #expect(code == 0)
    let report = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    var out: [String: (Int, Int)] = [:]
    for r in report["records"] as? [[String: Any]] ?? [] {
        out[r["output"] as? String ?? ""] = (r["delivered"] as? Int ?? -1, r["filtered"] as? Int ?? -1)
    }
    return out
}

@Suite("Codecs and filters end to end", .serialized)
struct CodecFilterTests {
    /// Queue mode, the file output in ECS with a filter (read-only events dropped except Decrypt, the
    /// request parameters removed), the binary killed at random moments: every kept record arrives, no
    /// dropped one does, and the journal's totals add up exactly to the records kept and dropped.
    @Test func aFilteredECSRunKilledAtRandomLosesNothingAndItsCountsAddUp() throws {
        let stack = try Stack(objects: 110, bad: false) { text in
            text = text.replacingOccurrences(of: "    filename: events.ndjson\n", with: "    filename: events.ndjson\n    bulk_max_size: 50\n    codec: ecs\n")
            text = text.replacingOccurrences(of: "  workers: 2\n", with: "  workers: 2\n  max_receive_count: 0\n")
            text = text.replacingOccurrences(of: "  visibility_timeout: 30\n", with: "  visibility_timeout: 3\n")
            text += "filter:\n  exclude:\n    - readOnly: true\n      eventName: [\"!Decrypt\"]\n  drop_fields: [requestParameters]\n"
        }
        var kept = Set<String>(), dropped = Set<String>()
        for line in stack.expected {
            let r = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let id = try #require(r["eventID"] as? String)
            if r["readOnly"] as? Bool == true && r["eventName"] as? String != "Decrypt" { dropped.insert(id) } else { kept.insert(id) }
        }
        #expect(kept.count > 100 && dropped.count > 100, "the corpus exercises both sides (\(kept.count) kept, \(dropped.count) dropped)")

        let kills = try stack.killAtRandomMoments(20)
        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        #expect(status == 0)
        let got = try events(in: stack.dir.sub("out"))
        let ids = got.compactMap { value($0, "event.id") as? String }
        #expect(ids.count == got.count, "every event has event.id")
        #expect(Set(ids) == kept, "every kept record arrives, and no dropped one")
        #expect(ids.count - Set(ids).count <= kills * 2 * 50, "duplicates only from unacknowledged batches")
        #expect(got.allSatisfy { value($0, "event.dataset") as? String == "aws.cloudtrail" && value($0, "cloudtrail") == nil }, "ECS, not the raw shape")
        #expect(got.allSatisfy { value($0, "aws.cloudtrail.request_parameters") == nil && value($0, "aws.cloudtrail.flattened.request_parameters") == nil },
                "drop_fields removed requestParameters")
        #expect(got.contains { value($0, "event.action") as? String == "Decrypt" && value($0, "aws.cloudtrail.read_only") as? Bool == true }, "the watch-listed read")
        let totals = try recordTotals { try stack.run(["journal", "status", "-c", stack.config, "--json"]) }
        #expect(totals["file"]?.delivered == kept.count && totals["file"]?.filtered == dropped.count,
                "journal totals \(String(describing: totals["file"])) vs \(kept.count) kept, \(dropped.count) dropped")
        let (_, text) = try stack.run(["journal", "status", "-c", stack.config])
        #expect(text.contains("records    file: \(kept.count) delivered, \(dropped.count) dropped by its filter"), "\(text)")
        print("filtered kill loop: \(kills) kills, \(kept.count) kept, \(dropped.count) dropped, \(ids.count - Set(ids).count) duplicates")
    }

    /// A backfill with two outputs: the file output in OCSF with the top-level filter, the console in
    /// ECS with its own filter; the journal counts what each delivered and dropped.
    @Test func eachOutputHasItsOwnCodecAndFilter() throws {
        let dir = TempDir("codecs")
        let script = """
            import gzip, json, os, sys
            d = sys.argv[1] + "/corpus/AWSLogs/123456789012/CloudTrail/eu-west-1/2026/11/28"
            os.makedirs(d, exist_ok=True)
            names = [("signin.amazonaws.com", "ConsoleLogin"), ("kms.amazonaws.com", "Decrypt"), ("iam.amazonaws.com", "CreateUser"), ("s3.amazonaws.com", "GetObject")]
            for i in range(30):
                recs = []
                for j in range(10):
                    src, name = names[(i + j) % 4]
                    recs.append({"eventVersion": "1.09", "eventTime": "2026-11-28T10:%02d:%02dZ" % (i, j), "eventID": "e-%d-%d" % (i, j),
                                 "eventSource": src, "eventName": name, "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.%d" % j,
                                 "userIdentity": {"type": "IAMUser", "userName": "u%d" % j, "accountId": "123456789012"},
                                 "responseElements": {"ConsoleLogin": "Success"} if name == "ConsoleLogin" else None,
                                 "readOnly": name in ("Decrypt", "GetObject"), "recipientAccountId": "123456789012"})
                with open("%s/123456789012_CloudTrail_eu-west-1_20261128T10%02dZ_%04d.json.gz" % (d, i, i), "wb") as f:
                    f.write(gzip.compress(json.dumps({"Records": recs}).encode()))
            """
        try script.write(toFile: dir.sub("corpus.py"), atomically: true, encoding: .utf8)
        try #require(system("python3 \(dir.sub("corpus.py")) \(dir.path)") == 0)
        let config = dir.sub("c.yml")
        try """
            journal.path: \(dir.sub("journal"))
            filter:
              exclude:
                - eventSource: kms.amazonaws.com
            output:
              file:
                path: \(dir.sub("out"))
                codec: ocsf
              console:
                codec: ecs
                filter:
                  include:
                    - eventName: Console*
            """.write(toFile: config, atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"
        let p = try ChildProcess(binary(), ["-c", config, "-b", dir.sub("corpus")], environment: env, stderrPath: dir.sub("run.log"))
        let stdout = p.readAll()
        let end = p.wait()
        #expect(end.exited && end.code == 0, "\((try? String(contentsOfFile: dir.sub("run.log"), encoding: .utf8))?.suffix(500) ?? "")")

        // Record j of file i is the ((i + j) % 4)th of ConsoleLogin, Decrypt (kms), CreateUser, GetObject.
        var count = [0, 0, 0, 0]
        for i in 0..<30 { for j in 0..<10 { count[(i + j) % 4] += 1 } }
        let logins = count[0], kms = count[1]
        let file = try events(in: dir.sub("out"))
        #expect(file.count == 300 - kms, "300 records less the kms ones")
        #expect(file.allSatisfy { $0["class_uid"] as? Int == 6003 || $0["class_uid"] as? Int == 3002 })
        #expect(!file.contains { value($0, "api.service.name") as? String == "kms.amazonaws.com" })
        #expect(file.filter { $0["class_uid"] as? Int == 3002 }.count == logins, "console sign-ins are Authentication events")
        let console = try stdout.split(separator: "\n").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(console.count == logins && console.allSatisfy { value($0, "event.action") as? String == "ConsoleLogin" && value($0, "event.category") as? [String] == ["authentication"] })
        #expect(console.allSatisfy { value($0, "event.outcome") as? String == "success" && value($0, "source.ip") != nil })

        let totals = try recordTotals {
            let q = try ChildProcess(binary(), ["journal", "status", "-c", config, "--json"], environment: env)
            let out = q.readAll()
            let e = q.wait()
            return (e.exited ? e.code : -1, out)
        }
        #expect(totals["file"]?.delivered == 300 - kms && totals["file"]?.filtered == kms)
        #expect(totals["console"]?.delivered == logins && totals["console"]?.filtered == 300 - logins)
    }

    /// The metrics endpoint counts what each output's filter dropped, while a daemon runs.
    @Test func theFilteredCounterMoves() throws {
        let metrics = freePort()
        let stack = try Stack(objects: 20, bad: false) { text in
            text = text.replacingOccurrences(of: "    filename: events.ndjson\n", with: "    filename: events.ndjson\n    filter:\n      exclude:\n        - readOnly: true\n")
            text += "http:\n  enabled: true\n  port: \(metrics)\n"
        }
        let dropped = try stack.expected.filter { line in
            let r = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return r["readOnly"] as? Bool == true
        }.count
        let p = try stack.start(["-c", stack.config])
        defer {
            p.kill(SIGTERM)
            _ = p.wait()
        }
        var samples: [String: Double] = [:]
        for _ in 0..<150 {
            usleep(200_000)
            samples = scrape(metrics)
            if samples["cloudtrailbeat_records_filtered_total{output=\"file\"}"] == Double(dropped) { break }
        }
        #expect(dropped > 0 && samples["cloudtrailbeat_records_filtered_total{output=\"file\"}"] == Double(dropped), "\(samples.filter { $0.key.contains("records") })")
        #expect(samples["cloudtrailbeat_output_records_acknowledged_total{output=\"file\"}"] == Double(stack.expected.count - dropped))
        #expect(curl("http://127.0.0.1:\(metrics)/metrics").contains("# HELP cloudtrailbeat_records_filtered_total "))
    }
}
