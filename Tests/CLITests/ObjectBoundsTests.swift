import Foundation
import Stages
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Runs the real binary to completion under a small Python parent that forks and execs it, and reports
/// the binary's own peak RSS (`wait4`'s `ru_maxrss`). Spawned straight from this test process, the
/// figure would include the test process's own, since `posix_spawn` shares its address space until exec.
func runMeasured(_ arguments: [String], environment: [String: String], in dir: TempDir, log: String) throws -> (status: Int32, peakRSS: Int) {
    let script = dir.sub("measure.py")
    if !FileManager.default.fileExists(atPath: script) {
        try """
            import os, sys
            pid = os.fork()
            if pid == 0:
                os.execv(sys.argv[2], sys.argv[2:])
            _, status, usage = os.wait4(pid, 0)
            with open(sys.argv[1], "w") as f:
                f.write(str(usage.ru_maxrss * 1024))
            code = os.waitstatus_to_exitcode(status)
            sys.exit(code if code >= 0 else 128 - code)
            """.write(toFile: script, atomically: true, encoding: .utf8)
    }
    let rss = dir.sub(log + ".rss")
    let p = try ChildProcess("/usr/bin/env", ["python3", script, rss, binary()] + arguments, environment: environment, stderrPath: dir.sub(log))
    _ = p.readAll()
    let end = p.wait()
    let peak = Int((try? String(contentsOfFile: rss, encoding: .utf8)) ?? "") ?? -1
    return (end.exited ? end.code : 128 + end.code, peak)
}

/// Writes a multi-member gzip file (RFC 1952 allows any number of members; CloudTrail's long-lived
/// writers produce them): `head`, then `member` `times` over, then `tail`, each compressed once.
func writeMembers(_ path: String, head: String, member: [UInt8], times: Int, tail: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    let compressed = GzipWriter.compress(member, level: 9)
    var bytes = GzipWriter.compress(Array(head.utf8))
    bytes.reserveCapacity(compressed.count * times + 4096)
    for _ in 0..<times { bytes += compressed }
    if !tail.isEmpty { bytes += GzipWriter.compress(Array(tail.utf8)) }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// A valid CloudTrail log of about `bytes`, gzip with stored (uncompressed) blocks: its object is as
/// large as its JSON. Returns its records.
func writeStoredLog(_ path: String, tag: String, bytes: Int) throws -> Int {
    let pad = String(repeating: "x", count: 1000)
    let count = bytes / (pad.count + 120)
    let json = "{\"Records\":[" + (0..<count).map { #"{"eventVersion":"1.08","eventTime":"2026-11-28T00:00:00Z","eventID":"\#(tag)-\#($0)","pad":"\#(pad)"}"# }.joined(separator: ",") + "]}"
    try Data(GzipWriter.compress(Array(json.utf8), level: 0)).write(to: URL(fileURLWithPath: path))
    return count
}

/// Issue 31, bounds: input that would make memory or waiting grow without limit is quarantined with
/// its reason, healthy objects beside it are shipped, and the process's peak RSS stays bounded.
@Suite("Bounds: never-ending keys, zip bombs, objects larger than the journal", .serialized)
struct ObjectBoundsTests {
    enum Input: String, CaseIterable, CustomStringConvertible {
        case neverEndingKey, zipBomb, largerThanTheJournal
        var description: String { rawValue }
    }

    /// A local copy holding one bad object and two healthy ones, backfilled by the real binary: the bad
    /// one is quarantined with its reason (`journal status`, text and `--json`), the healthy ones are
    /// shipped whole, and the peak RSS stays under 300 MiB.
    ///
    /// - A gzip of `{"` and 200 MiB of `a` (200 KB compressed): a top-level key that never ends, refused
    ///   at the 16 MiB record limit (before the bound it grew to the body's size).
    /// - A valid CloudTrail log of 1 GiB uncompressed, 3 MB of gzip, under `input.max_object_size: 64MiB`:
    ///   refused at 64 MiB of inflation.
    /// - A 20 MiB object (stored gzip blocks) under `journal.max_size: 16MiB`: no empty journal holds it;
    ///   refused from the listing's size, not downloaded, not retried.
    @Test(arguments: Input.allCases)
    func aBadObjectIsQuarantinedWithItsReasonInBoundedMemory(input: Input) throws {
        let dir = TempDir("bounds-\(input)")
        let day = dir.sub("copy/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28")
        let healthy = try writeLog(day + "/123456789012_CloudTrail_us-east-1_20261128T0000Z_healthya.json.gz", tag: "ok-a", count: 5)
            + writeLog(day + "/123456789012_CloudTrail_us-east-1_20261128T2355Z_healthyz.json.gz", tag: "ok-z", count: 5)
        let key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/123456789012_CloudTrail_us-east-1_20261128T1200Z_\(input).json.gz"
        var settings = ""
        var journalSettings = ""
        let reason: [String]
        switch input {
        case .neverEndingKey:
            try writeMembers(dir.sub("copy/" + key), head: "{\"", member: [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20), times: 200, tail: "")
            reason = ["invalid CloudTrail log", "a top-level key is larger than the \(16 << 20)-byte limit"]
        case .zipBomb:
            let record = #"{"eventVersion":"1.08","eventTime":"2026-11-28T12:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventID":"bomb"},"#
            let block = Array(String(repeating: record, count: (1 << 20) / record.utf8.count).utf8)
            try writeMembers(dir.sub("copy/" + key), head: "{\"Records\":[", member: block, times: 1024, tail: "{}]}")
            settings = "input:\n  max_object_size: 64MiB\n"
            reason = ["larger than \(64 << 20) bytes uncompressed (input.max_object_size)"]
        case .largerThanTheJournal:
            _ = try writeStoredLog(dir.sub("copy/" + key), tag: "big", bytes: 20 << 20)
            journalSettings = "  max_size: 16MiB\n"
            reason = ["bytes (as listed)", "journal.max_size, \(16 << 20) bytes", "can never be stored"]
        }
        let size = try #require(try FileManager.default.attributesOfItem(atPath: dir.sub("copy/" + key))[.size] as? Int)
        let config = dir.sub("c.yml")
        try (settings + "journal:\n  path: \(dir.sub("j"))\n" + journalSettings + "output:\n  file:\n    path: \(dir.sub("out"))\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"

        let started = Date()
        let (status, peak) = try runMeasured(["-c", config, "-b", dir.sub("copy")], environment: env, in: dir, log: "run.log")
        let seconds = Date().timeIntervalSince(started)
        let log = (try? String(contentsOfFile: dir.sub("run.log"), encoding: .utf8)) ?? ""
        #expect(status == 0, "\(log.suffix(800))")
        print("bounds: \(input): \(size) bytes of object, peak RSS \(peak >> 20) MiB, \(String(format: "%.1f", seconds)) s")
        #expect(peak > 0 && peak < 300 << 20, "\(input): peak RSS \(peak >> 20) MiB")

        // The healthy objects beside it are shipped whole; nothing of the bad one is.
        let out = (try? String(contentsOfFile: dir.sub("out/cloudtrailbeat.ndjson"), encoding: .utf8)) ?? ""
        for record in healthy { #expect(out.contains(record), "\(input): \(record) not shipped") }
        #expect(out.split(separator: "\n").count == healthy.count, "\(input): only the healthy records")

        // Quarantined with its reason, in `journal status` and its --json.
        let text = try run(["journal", "status", "-c", config])
        #expect(text.status == 0 && text.stdout.contains("quarantine 1 item(s):") && text.stdout.contains(key), "\(text.stdout)\(text.stderr)")
        for words in reason { #expect(text.stdout.contains(words), "\(input): the reason says '\(words)': \(text.stdout)") }
        let json = try run(["journal", "status", "-c", config, "--json"])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.prefix { $0 != "\n" }.utf8)) as? [String: Any])
        let quarantined = try #require(report["quarantined"] as? [[String: Any]])
        #expect(quarantined.count == 1)
        let entry = try #require(quarantined.first)
        #expect(entry["kind"] as? String == "object" && entry["key"] as? String == key, "\(entry)")
        for words in reason { #expect((entry["reason"] as? String ?? "").contains(words), "\(input): \(entry)") }
        #expect((report["objects"] as? [String: Int])?["quarantined"] == 1, "\(report["objects"] ?? "-")")
    }

    /// An object larger than the journal named by a notification: its size is not trusted for the bound
    /// (a forged one could have a genuine log set aside unread), so the download starts, and the body
    /// writer refuses it once it passes what an empty journal holds. It is quarantined at the first
    /// attempt, not retried every few seconds with intake paused; the other objects are shipped.
    @Test func anObjectLargerThanTheJournalFromTheQueueIsQuarantinedAsItDownloads() throws {
        let stack = try Stack(objects: 6, bad: false) { text in
            text = text.replacingOccurrences(of: "journal:\n", with: "journal:\n  max_size: 16MiB\n")
        }
        let key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/123456789012_CloudTrail_us-east-1_20261128T1200Z_toolarge.json.gz"
        _ = try writeStoredLog(stack.dir.sub("big.json.gz"), tag: "big", bytes: 20 << 20)
        let script = """
            import boto3, json, os
            from botocore.config import Config
            endpoint, d = '\(stack.moto.url)', '\(stack.dir.path)'
            s3 = boto3.client('s3', endpoint_url=endpoint, region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}))
            sqs = boto3.client('sqs', endpoint_url=endpoint, region_name='us-east-1')
            body = open(d + '/big.json.gz', 'rb').read()
            s3.put_object(Bucket='cloudtrail-demo-bucket', Key='\(key)', Body=body)
            event = {'Records': [{'eventVersion': '2.1', 'eventSource': 'aws:s3', 'awsRegion': 'us-east-1', 'eventName': 'ObjectCreated:Put',
                                  's3': {'bucket': {'name': 'cloudtrail-demo-bucket'}, 'object': {'key': '\(key)', 'size': len(body)}}}]}
            sqs.send_message(QueueUrl=open(d + '/queue_url').read(), MessageBody=json.dumps(event))
            """
        try script.write(toFile: stack.dir.sub("big.py"), atomically: true, encoding: .utf8)
        let put = try ChildProcess("/usr/bin/env", ["python3", stack.dir.sub("big.py")], environment: stack.environment, stderrPath: stack.dir.sub("big.log"))
        _ = put.readAll()
        let putEnd = put.wait()
        try #require(putEnd.exited && putEnd.code == 0, "\((try? String(contentsOfFile: stack.dir.sub("big.log"), encoding: .utf8)) ?? "")")

        let (status, peak) = try runMeasured(["-c", stack.config, "--drain"], environment: stack.environment, in: stack.dir, log: "engine.log")
        let log = (try? String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)) ?? ""
        #expect(status == 0, "\(log.suffix(800))")
        print("bounds: larger than the journal, from the queue: peak RSS \(peak >> 20) MiB")
        #expect(peak > 0 && peak < 300 << 20, "peak RSS \(peak >> 20) MiB")
        #expect(!log.contains("journal full: downloads wait"), "refused by the bound, not waited for: \(log.suffix(800))")
        let got = try stack.emitted()
        #expect(got.count == stack.expected.count && Set(got) == Set(stack.expected), "the other objects are shipped whole")
        #expect(!got.contains { $0.contains("\"big-") })

        let (code, json) = try stack.run(["journal", "status", "-c", stack.config, "--json"])
        #expect(code == 0)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.prefix { $0 != "\n" }.utf8)) as? [String: Any])
        let quarantined = try #require(report["quarantined"] as? [[String: Any]])
        let entry = try #require(quarantined.first { $0["key"] as? String == key }, "\(quarantined)")
        let reason = entry["reason"] as? String ?? ""
        #expect(reason.contains("downloaded so far, at least") && reason.contains("journal.max_size, \(16 << 20) bytes"), "\(reason)")
        #expect(stack.gets()[key] == 1, "downloaded once, not retried: \(stack.gets()[key] ?? 0) GETs")
    }
}
