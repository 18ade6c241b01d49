import Foundation
import Testing
import TestSupport

@testable import Engine

#if canImport(Glibc)
import Glibc
#endif

/// Writes a gzipped CloudTrail log file with `count` records whose eventIDs start with `tag`; returns
/// the records as the file output shows them.
@discardableResult
func writeLog(_ path: String, tag: String, count: Int) throws -> [String] {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    let records = (0..<count).map {
        #"{"eventVersion":"1.08","eventTime":"2026-11-26T10:00:0\#($0)Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","eventID":"\#(tag)-\#($0)"}"#
    }
    let plain = path.hasSuffix(".gz") ? String(path.dropLast(3)) : path
    try Data(("{\"Records\":[" + records.joined(separator: ",") + "]}").utf8).write(to: URL(fileURLWithPath: plain))
    if path.hasSuffix(".gz") { try #require(system("gzip -f '\(plain)'") == 0) }
    return records
}

/// Re-runs of a finished backfill, `--force` either side of `journal gc`, bucket polling, and
/// `journal retry`, through the real binary.
@Suite("Re-runs, --force, polling and retry", .serialized)
struct RerunTests {
    /// `journal <args> -c config` through the binary: its standard output, and its exit status.
    func journal(_ stack: BackfillStack, _ args: [String], _ config: String) throws -> (out: String, status: Int32) {
        let p = try stack.start(["journal"] + args + ["-c", config], log: "journal.log")
        let out = p.readAll()
        let end = p.wait()
        return (out + ((try? String(contentsOfFile: stack.dir.sub("journal.log"), encoding: .utf8)) ?? ""), end.code)
    }

    /// A finished job run again lists again: a file that arrived since (synced with an old modification
    /// time, into an old day) is shipped; nothing else is, even once GC expired every done marker.
    @Test func aFinishedBackfillRunAgainShipsOnlyWhatArrivedSince() throws {
        let stack = try BackfillStack(objects: 24)
        let config = try stack.config("rerun", s3: false)
        try (try String(contentsOfFile: config, encoding: .utf8)).replacingOccurrences(of: "journal:\n", with: "journal:\n  done_retention: 1s\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let local = stack.dir.sub("local")
        let expected = try stack.expected()
        #expect(try stack.run(["-c", config, "-b", local]) == 0)
        #expect(try stack.emitted("rerun").count == expected.count && Set(try stack.emitted("rerun")) == expected)

        #expect(try stack.run(["-c", config, "-b", local], log: "second.log") == 0)
        #expect(try stack.emitted("rerun").count == expected.count, "a re-run with nothing new ships nothing")
        let second = try String(contentsOfFile: stack.dir.sub("second.log"), encoding: .utf8)
        #expect(second.contains("pass=2") || second.contains("\"pass\":\"2\""), "\(second)")
        let status = try journal(stack, ["status"], config).out
        #expect(status.contains("] pass 2 complete "), "\(status)")

        // As `aws s3 sync` brings it: an old day's folder, the object's old modification time.
        let key = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/26/111111111111_CloudTrail_us-east-1_20261126T0000Z_late.json.gz"
        let late = try writeLog(local + "/" + key, tag: "late", count: 3)
        #expect(system("touch -m -d 2020-01-01 '\(local)/\(key)'") == 0)
        sleep(2)
        let gc = try journal(stack, ["gc"], config)
        #expect(gc.status == 0 && gc.out.contains("expired "), "\(gc.out)")
        #expect(try journal(stack, ["status"], config).out.contains("done       0 markers"), "every marker expired: the horizon alone must hold")

        #expect(try stack.run(["-c", config, "-b", local], log: "third.log") == 0)
        let emitted = try stack.emitted("rerun")
        #expect(emitted.count == expected.count + late.count, "only the late file: \(emitted.count) records, \(expected.count)+\(late.count) expected")
        #expect(Set(emitted) == expected.union(late), "no duplicate, none lost")

        #expect(try stack.run(["-c", config, "-b", local], log: "fourth.log") == 0)
        #expect(try stack.emitted("rerun").count == expected.count + late.count)
    }

    /// `--force` ships every object again, the same before `journal gc` (finished records still in the
    /// journal) and after it (only done markers, or nothing, left).
    @Test func forceMeansTheSameBeforeAndAfterGC() throws {
        let stack = try BackfillStack(objects: 24)
        let config = try stack.config("force", s3: false)
        try (try String(contentsOfFile: config, encoding: .utf8)).replacingOccurrences(of: "journal:\n", with: "journal:\n  done_retention: 1s\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let local = stack.dir.sub("local")
        let n = try stack.expected().count
        #expect(try stack.run(["-c", config, "-b", local]) == 0)
        #expect(try stack.emitted("force").count == n)
        #expect(try stack.run(["-c", config, "-b", local, "--force"]) == 0)
        #expect(try stack.emitted("force").count == 2 * n, "before gc: every object again")
        #expect(try journal(stack, ["status"], config).out.contains("] pass 2 (forced) complete "))
        sleep(2)
        #expect(try journal(stack, ["gc"], config).status == 0)
        #expect(try stack.run(["-c", config, "-b", local, "--force"]) == 0)
        #expect(try stack.emitted("force").count == 3 * n, "after gc: every object again, the same")
        #expect(try stack.run(["-c", config, "-b", local]) == 0)
        #expect(try stack.emitted("force").count == 3 * n, "without --force: nothing new")
        #expect(try journal(stack, ["status"], config).out.contains("quarantine empty"))
    }

    /// A `--force` pass killed midway goes on forced when the job runs again without `--force`: every
    /// record ends up shipped again, none only once.
    @Test func aKilledForcedPassResumesForced() throws {
        // More objects than a listing runs ahead of the fetches (256): the kill leaves keys unlisted.
        let stack = try BackfillStack(objects: 720)
        let config = try stack.config("forcekill", s3: false)
        let local = stack.dir.sub("local")
        #expect(try stack.run(["-c", config, "-b", local]) == 0)
        // Slow commits (a debug build's hook) so that the kill lands mid-pass, with part of it shipped.
        var slow = stack
        slow.env["CLOUDTRAILBEAT_DEBUG_COMMIT_DELAY_MS"] = "15"
        let p = try slow.start(["-c", config, "-b", local, "--force", "--page-size", "10"], log: "forced.log")
        let before = try stack.emitted("forcekill").count
        let deadline = Date().addingTimeInterval(20)
        while (try stack.emitted("forcekill").count) < before + 20 && Date() < deadline { usleep(20_000) }
        p.kill()
        #expect(!p.wait().exited, "killed mid-pass")
        let partly = try stack.emitted("forcekill").count - before
        #expect(partly > 0 && partly < before, "the forced pass had shipped \(partly) of \(before) records")
        #expect(try stack.run(["-c", config, "-b", local]) == 0)
        var counts: [String: Int] = [:]
        for r in try stack.emitted("forcekill") { counts[r, default: 0] += 1 }
        #expect(Set(counts.keys) == (try stack.expected()))
        #expect(counts.values.allSatisfy { $0 >= 2 }, "\(counts.values.filter { $0 < 2 }.count) records shipped only once")
    }

    /// `input.bucket_arn`: the daemon lists the bucket every interval and ships what arrived; after the
    /// first pass it lists each partition from the day before the previous pass, not from its start.
    @Test func bucketPollingShipsWhatArrivesEachInterval() throws {
        let stack = try BackfillStack(objects: 24)
        let config = try stack.config("poll", output: "  file:\n    path: \(stack.dir.sub("poll"))/out\n", settings: """
            input:
              aws_region: us-east-1
              endpoint: \(stack.moto.url)
              bucket_arn: arn:aws:s3:::org-trail-bucket
              bucket_list_interval: 1s

            """)
        let expected = try stack.expected()
        let p = try stack.start(["-c", config])
        func waitFor(_ count: Int) -> Bool {
            let deadline = Date().addingTimeInterval(30)
            while ((try? stack.emitted("poll").count) ?? 0) < count && Date() < deadline { usleep(100_000) }
            return ((try? stack.emitted("poll").count) ?? 0) == count
        }
        #expect(waitFor(expected.count), "the first pass ships the bucket")
        // CloudTrail delivers under today's folder.
        let today = Date().formatted(Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day().dateSeparator(.omitted))
        let day = "\(today.prefix(4))/\(today.dropFirst(4).prefix(2))/\(today.suffix(2))"
        let key = "AWSLogs/111111111111/CloudTrail/us-east-1/\(day)/111111111111_CloudTrail_us-east-1_\(today)T1200Z_new.json.gz"
        let file = stack.dir.sub("new.json.gz")
        let new = try writeLog(file, tag: "new", count: 4)
        #expect(system("python3 -c \"import boto3; boto3.client('s3', endpoint_url='\(stack.moto.url)', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b').upload_file('\(file)', 'org-trail-bucket', '\(key)')\"") == 0)
        #expect(waitFor(expected.count + new.count), "the next pass ships the new object")
        sleep(2)  // more passes: nothing more
        p.kill(SIGTERM)
        let end = p.wait()
        #expect(end.exited && end.code == 0)
        let emitted = try stack.emitted("poll")
        #expect(emitted.count == expected.count + new.count && Set(emitted) == expected.union(new))
        let log = try String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)
        #expect(log.contains("bucket listed (pass "), "\(log.suffix(1000))")
        let yesterday = Date().addingTimeInterval(-86400 - 900).formatted(Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day())
            .replacingOccurrences(of: "-", with: "/")
        #expect(stack.listCalls().contains { $0.removingPercentEncoding?.contains("start-after=AWSLogs/111111111111/CloudTrail/us-east-1/\(yesterday) ") == true },
                "later passes start at the day before: \(stack.listCalls().suffix(3))")
        // One pass and out with --drain.
        #expect(try stack.run(["-c", config, "--drain"], log: "drain.log") == 0)
        let drain = try String(contentsOfFile: stack.dir.sub("drain.log"), encoding: .utf8)
        #expect(drain.contains("bucket listed (pass ") && drain.contains("finished (--drain)"), "\(drain)")
        #expect(try stack.emitted("poll").count == expected.count + new.count, "nothing shipped twice")
    }

    /// Polling a bucket that is empty at first, and not in the CloudTrail layout: the objects that land
    /// later are shipped by a later pass.
    @Test func pollingAnEmptyFlatBucketShipsWhatLandsLater() throws {
        let stack = try BackfillStack(objects: 12)
        let python = { (code: String) -> Int32 in
            system("python3 -c \"import boto3; s3 = boto3.client('s3', endpoint_url='\(stack.moto.url)', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b'); \(code)\"")
        }
        #expect(python("s3.create_bucket(Bucket='flat-bucket')") == 0)
        let config = try stack.config("flat", output: "  file:\n    path: \(stack.dir.sub("flat"))/out\n", settings: """
            input:
              aws_region: us-east-1
              endpoint: \(stack.moto.url)
              bucket_arn: s3://flat-bucket
              bucket_list_interval: 1s

            """)
        let p = try stack.start(["-c", config], log: "flat.log")
        sleep(2)
        let records = try writeLog(stack.dir.sub("flat.json.gz"), tag: "flat", count: 3)
        #expect(python("s3.upload_file('\(stack.dir.sub("flat.json.gz"))', 'flat-bucket', 'exports/2026/flat.json.gz')") == 0)
        let deadline = Date().addingTimeInterval(30)
        while ((try? stack.emitted("flat").count) ?? 0) < records.count && Date() < deadline { usleep(100_000) }
        p.kill(SIGTERM)
        _ = p.wait()
        #expect(Set(try stack.emitted("flat")) == Set(records), "\((try? String(contentsOfFile: stack.dir.sub("flat.log"), encoding: .utf8))?.suffix(800) ?? "")")
    }

    /// A quarantined object goes back to work with `journal retry` once its cause is mended.
    @Test func journalRetryPutsAQuarantinedObjectBackToWork() throws {
        let stack = try BackfillStack(objects: 24)
        let config = try stack.config("retry", s3: false)
        let local = stack.dir.sub("local")
        let key = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/27/111111111111_CloudTrail_us-east-1_20261127T0000Z_bad.json.gz"
        try Data([0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9]).write(to: URL(fileURLWithPath: local + "/" + key))
        #expect(try stack.run(["-c", config, "-b", local]) == 0)
        let n = try stack.expected().count
        #expect(try stack.emitted("retry").count == n)
        let status = try journal(stack, ["status"], config).out
        #expect(status.contains("quarantine 1 item(s):") && status.contains("file://\(local)/\(key)") && status.contains("journal retry"), "\(status)")

        let nothing = try journal(stack, ["retry", "no/such/key.json.gz"], config)
        #expect(nothing.status == 1 && nothing.out.contains("nothing in the quarantine matches 'no/such/key.json.gz'"), "\(nothing.out)")

        let fixed = try writeLog(local + "/" + key, tag: "fixed", count: 2)
        let retried = try journal(stack, ["retry", "file://\(local)/\(key)"], config)
        #expect(retried.status == 0 && retried.out.contains("requeued 1 object(s)") && retried.out.contains("1 quarantine entry cleared"), "\(retried.out)")
        let after = try journal(stack, ["status", "--json"], config).out
        let json = try JSONSerialization.jsonObject(with: Data(after.prefix { $0 != "\n" }.utf8)) as? [String: Any] ?? [:]
        #expect((json["quarantined"] as? [Any])?.isEmpty == true && (json["objects"] as? [String: Int])?["received"] == 1, "\(after)")

        #expect(try stack.run(["-c", config, "-b", local]) == 0)
        let emitted = try stack.emitted("retry")
        #expect(emitted.count == n + fixed.count && Set(emitted).isSuperset(of: fixed), "the mended object shipped once")
        #expect(try journal(stack, ["retry", "--all"], config).out.contains("requeued 0 object(s)"))
    }
}

/// Poison messages: kept whole, retried from the journal, or left to the queue's dead-letter queue.
@Suite("Poison messages", .serialized)
struct PoisonMessageTests {
    /// With `max_receive_count: 1` every message is poison at once: quarantined with its body, deleted
    /// (the queue has no redrive policy), and `journal retry --all` ships what they named.
    @Test func aQuarantinedMessageIsRetriedFromItsKeptBody() throws {
        let stack = try Stack(objects: 6, bad: false) { $0 = $0.replacingOccurrences(of: "  workers: 2\n", with: "  workers: 2\n  max_receive_count: 1\n") }
        #expect(try stack.run(["-c", stack.config, "--drain"]).0 == 0)
        #expect(try stack.emitted().isEmpty)
        #expect(try stack.queueCount() == 0, "no redrive policy: quarantined messages are deleted")
        let status = try stack.run(["journal", "status", "-c", stack.config], log: "status.log").1
        #expect(status.contains("received 1 times (input.max_receive_count is 1)"), "\(status)")
        let retry = try stack.run(["journal", "retry", "--all", "-c", stack.config], log: "retry.log")
        #expect(retry.0 == 0 && retry.1.contains("requeued 6 object(s)"), "\(retry.1)")
        #expect(try stack.run(["-c", stack.config, "--drain"], log: "second.log").0 == 0)
        #expect(try stack.emitted().sorted() == stack.expected.sorted())
    }

    /// `leave_poison_to_dlq: auto` (the default): on a queue with a redrive policy, a message that is
    /// no notification is quarantined and left, and SQS moves it to the dead-letter queue.
    @Test func aPoisonMessageGoesToTheDeadLetterQueueWhenTheQueueHasOne() throws {
        let stack = try Stack(objects: 2, bad: false) { $0 = $0.replacingOccurrences(of: "  visibility_timeout: 30\n", with: "  visibility_timeout: 2\n") }
        let script = """
            import boto3, json
            c = boto3.client('sqs', endpoint_url='\(stack.moto.url)', region_name='us-east-1')
            q = open('\(stack.dir.sub("queue_url"))').read()
            dlq = c.create_queue(QueueName='cloudtrail-dlq')['QueueUrl']
            arn = c.get_queue_attributes(QueueUrl=dlq, AttributeNames=['QueueArn'])['Attributes']['QueueArn']
            c.set_queue_attributes(QueueUrl=q, Attributes={'RedrivePolicy': json.dumps({'deadLetterTargetArn': arn, 'maxReceiveCount': '2'})})
            c.send_message(QueueUrl=q, MessageBody='this is not a notification')
            open('\(stack.dir.sub("dlq_url"))', 'w').write(dlq)
            """
        try script.write(toFile: stack.dir.sub("dlq.py"), atomically: true, encoding: .utf8)
        let setup = try ChildProcess("/usr/bin/env", ["python3", stack.dir.sub("dlq.py")], environment: stack.environment)
        _ = setup.readAll()
        #expect(setup.wait().code == 0)
        func dlqCount() throws -> Int {
            let p = try ChildProcess("/usr/bin/env", ["python3", "-c", """
                import boto3; c = boto3.client('sqs', endpoint_url='\(stack.moto.url)', region_name='us-east-1')
                a = c.get_queue_attributes(QueueUrl=open('\(stack.dir.sub("dlq_url"))').read(), AttributeNames=['All'])['Attributes']
                print(int(a['ApproximateNumberOfMessages']) + int(a['ApproximateNumberOfMessagesNotVisible']))
                """], environment: stack.environment)
            let out = p.readAll()
            _ = p.wait()
            return Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }
        let p = try stack.start(["-c", stack.config])
        let deadline = Date().addingTimeInterval(60)
        while (try? dlqCount()) != 1 && Date() < deadline { usleep(200_000) }
        p.kill(SIGTERM)
        _ = p.wait()
        #expect(try dlqCount() == 1, "the redrive policy moved it")
        #expect(try stack.queueCount() == 0)
        #expect(try stack.emitted().sorted() == stack.expected.sorted(), "healthy work flowed")
        let log = try String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)
        #expect(log.contains("the queue has a dead-letter queue"), "\(log.suffix(800))")
        let status = try stack.run(["journal", "status", "-c", stack.config], log: "status.log").1
        #expect(status.contains("unrecognised message"), "\(status)")
    }
}

/// `-E`, durations and `AWS_EC2_METADATA_DISABLED` through the binary; `test output`.
@Suite("Overrides and checks, through the binary", .serialized)
struct OverrideAndCheckTests {
    @Test func dashEOverridesASettingAndErrorsSaySo() throws {
        let dir = TempDir("override")
        let copy = dir.sub("copy") + "/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/123456789012_CloudTrail_us-east-1_20261128T1000Z_a.json.gz"
        let records = try writeLog(copy, tag: "e", count: 3)
        try "journal.path: \(dir.sub("j"))\noutput:\n  file:\n    path: \(dir.sub("a"))\n".write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
        let r = try run(["-c", dir.sub("c.yml"), "-b", dir.sub("copy"), "-E", "output.file.path=\(dir.sub("b"))", "-E", "output.file.filename=x.ndjson"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.sub("a")))
        let lines = try String(contentsOfFile: dir.sub("b") + "/x.ndjson", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == records.count)

        let bad = try run(["test", "config", "-c", dir.sub("c.yml"), "-E", "input.workers=many"])
        #expect(bad.status == 1 && bad.stderr.contains("input.workers: must be a whole number (set by -E input.workers)"), "\(bad.stderr)")
        let typo = try run(["test", "config", "-c", dir.sub("c.yml"), "-E", "output.file.pth=x"])
        #expect(typo.status == 1 && typo.stderr.contains("pth") && typo.stderr.contains("path") && typo.stderr.contains("set by -E"), "\(typo.stderr)")
        let shape = try run(["test", "config", "-c", dir.sub("c.yml"), "-E", "journal.path"])
        #expect(shape.status != 0 && shape.stderr.contains("expected key=value"), "\(shape.stderr)")
        let shown = try run(["test", "config", "-c", dir.sub("c.yml"), "-E", "journal.max_size=64MiB", "-E", "journal.done_retention=2h"])
        #expect(shown.status == 0 && shown.stdout.contains("journal.max_size: 64.0 MiB") && shown.stdout.contains("journal.done_retention: 7200s"), "\(shown.stdout)\(shown.stderr)")
    }

    /// Durations with units reach the engine as seconds; a bad one names its key and the file.
    @Test func durationsThroughTheBinary() throws {
        let dir = TempDir("durations")
        let env = ["HOME": dir.path, "PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "AKIADURATION", "AWS_SECRET_ACCESS_KEY": "x"]
        func check(_ yaml: String) throws -> (Int32, String) {
            try yaml.write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
            let p = try ChildProcess(binary(), ["test", "config", "-c", dir.sub("c.yml")], environment: env, stderrPath: dir.sub("err"))
            let out = p.readAll()
            return (p.wait().code, out + ((try? String(contentsOfFile: dir.sub("err"), encoding: .utf8)) ?? ""))
        }
        let ok = try check("input:\n  sqs_url: https://sqs.eu-west-1.amazonaws.com/1/q\n  visibility_timeout: 5m\n  wait_time: 10s\njournal.done_retention: 3d\noutput.console: {}\n")
        #expect(ok.0 == 0 && ok.1.contains("input.visibility_timeout: 300s") && ok.1.contains("input.wait_time: 10s") && ok.1.contains("journal.done_retention: 259200s"), "\(ok.1)")
        let bad = try check("input:\n  sqs_url: https://sqs.eu-west-1.amazonaws.com/1/q\n  visibility_timeout: 5 fortnights\noutput.console: {}\n")
        #expect(bad.0 == 1 && bad.1.contains("\(dir.sub("c.yml")): input.visibility_timeout: '5 fortnights' is not a duration"), "\(bad.1)")
    }

    /// `AWS_EC2_METADATA_DISABLED=true`: the instance metadata service is never asked; without it, it is.
    @Test func theInstanceMetadataServiceIsNotAskedWhenDisabled() throws {
        let dir = TempDir("imds")
        let imds = try fixtureServer("AWSTests/Fixtures/imds_server.py", [dir.sub("no-notice")], name: "imds")
        try "input.sqs_url: https://sqs.eu-west-1.amazonaws.com/1/q\noutput.console: {}\n".write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
        func check(disabled: Bool) throws -> (Int32, String) {
            var env = ["HOME": dir.path, "PATH": "/usr/bin:/bin", "AWS_CONFIG_FILE": dir.sub("none"), "AWS_SHARED_CREDENTIALS_FILE": dir.sub("none"),
                       "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url]
            if disabled { env["AWS_EC2_METADATA_DISABLED"] = "true" }
            let p = try ChildProcess(binary(), ["test", "config", "-c", dir.sub("c.yml")], environment: env, stderrPath: dir.sub("err"))
            _ = p.readAll()
            return (p.wait().code, (try? String(contentsOfFile: dir.sub("err"), encoding: .utf8)) ?? "")
        }
        func tokens() -> Int {
            let stats = (try? JSONSerialization.jsonObject(with: Data(curl(imds.url + "/_test/stats").utf8))) as? [String: Any]
            return stats?["tokens"] as? Int ?? -1
        }
        let off = try check(disabled: true)
        #expect(off.0 == 1 && off.1.contains("the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)"), "\(off.1)")
        #expect(tokens() == 0, "not asked")
        let on = try check(disabled: false)
        #expect(on.0 == 1 && on.1.contains("the instance metadata service answered"), "\(on.1)")
        #expect(tokens() >= 1, "asked when not disabled")
    }

    /// `credential_process` and IAM Identity Center profiles, as the AWS CLI resolves them, through the
    /// binary: `test config` names where the credentials came from.
    @Test func credentialProcessAndSSOProfilesThroughTheBinary() throws {
        let dir = TempDir("profiles")
        let expiresMs = Int64(Date().addingTimeInterval(3600).timeIntervalSince1970 * 1000)
        let portal = try fixtureServer("AWSTests/Fixtures/sso_portal.py", ["cached-token", "123456789012", "ReadOnly", String(expiresMs), "refresh-1"], name: "sso-portal")
        try FileManager.default.createDirectory(atPath: dir.sub(".aws/sso/cache"), withIntermediateDirectories: true)
        try """
            #!/bin/sh
            echo '{"Version": 1, "AccessKeyId": "AKIAPROCESS1234", "SecretAccessKey": "process-secret"}'
            """.write(toFile: dir.sub("creds.sh"), atomically: true, encoding: .utf8)
        chmod(dir.sub("creds.sh"), 0o755)
        try """
            [profile tool]
            credential_process = \(dir.sub("creds.sh"))
            [profile dev]
            sso_session = corp
            sso_account_id = 123456789012
            sso_role_name = ReadOnly
            [sso-session corp]
            sso_start_url = https://corp.awsapps.com/start
            sso_region = us-east-1
            """.write(toFile: dir.sub(".aws/config"), atomically: true, encoding: .utf8)
        // `aws sso login --sso-session corp` writes the token under the SHA-1 of the session's name.
        let expiresAt = Date().addingTimeInterval(7200).formatted(.iso8601)
        try #"{"startUrl": "https://corp.awsapps.com/start", "region": "us-east-1", "accessToken": "cached-token", "expiresAt": "\#(expiresAt)"}"#
            .write(toFile: dir.sub(".aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json"), atomically: true, encoding: .utf8)
        func check(profile: String) throws -> (Int32, String) {
            try "input:\n  sqs_url: https://sqs.eu-west-1.amazonaws.com/123456789012/q\n  profile: \(profile)\noutput.console: {}\n"
                .write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
            let env = ["HOME": dir.path, "PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL_SSO": portal.url]
            let p = try ChildProcess(binary(), ["test", "config", "-c", dir.sub("c.yml")], environment: env, stderrPath: dir.sub("err"))
            let out = p.readAll()
            return (p.wait().code, out + ((try? String(contentsOfFile: dir.sub("err"), encoding: .utf8)) ?? ""))
        }
        let process = try check(profile: "tool")
        #expect(process.0 == 0 && process.1.contains("credentials: credential_process (profile tool), access key AKIA****"), "\(process.1)")
        #expect(!process.1.contains("process-secret") && !process.1.contains("AKIAPROCESS1234"))
        let sso = try check(profile: "dev")
        #expect(sso.0 == 0 && sso.1.contains("credentials: sso (profile dev, account 123456789012, role ReadOnly)"), "\(sso.1)")
        try FileManager.default.removeItem(atPath: dir.sub(".aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json"))
        let loggedOut = try check(profile: "dev")
        #expect(loggedOut.0 == 1 && loggedOut.1.contains("aws sso login"), "\(loggedOut.1)")
    }

    /// `test output` connects and authenticates to every output: a real redis-server with a password,
    /// the Elasticsearch stand-in requiring Basic credentials, a Lumberjack server, a directory.
    @Test func testOutputConnectsAndAuthenticatesToEachOutput() throws {
        let dir = TempDir("testoutput")
        let redisPort = freePort()
        let redis = try LocalServer(
            ["redis-server", "--port", String(redisPort), "--bind", "127.0.0.1", "--dir", dir.path, "--save", "", "--requirepass", "s3cret"],
            port: redisPort, name: "redis", installHint: "apt-get install redis-server (scripts/setup does it)")
        let es = try fixtureServer("OutputsTests/Fixtures/es_server.py", [], name: "es")
        _ = curl(es.url + "/_script", postJSON: #"{"require_auth": "Basic \#(Data("elastic:right".utf8).base64EncodedString())"}"#)
        let ls = try fixtureServer("OutputsTests/Fixtures/lumberjack_server.py", ["full", dir.sub("ls.log")], name: "logstash")
        func config(redisPassword: String, esPassword: String, lsPort: Int) throws -> String {
            let path = dir.sub("c.yml")
            try """
                journal.path: \(dir.sub("j"))
                output:
                  file: {path: \(dir.sub("out"))}
                  redis: {hosts: ["127.0.0.1:\(redis.port)"], password: \(redisPassword), key: cloudtrail}
                  elasticsearch: {hosts: ["\(es.url)"], username: elastic, password: \(esPassword)}
                  logstash: {hosts: ["127.0.0.1:\(lsPort)"], timeout: 2s}
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let good = try run(["test", "output", "-c", try config(redisPassword: "s3cret", esPassword: "right", lsPort: ls.port)])
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        #expect(good.stdout.contains("output.redis 127.0.0.1:\(redis.port): OK — connected, authenticated, PING answered PONG, key 'cloudtrail' is not created yet"), "\(good.stdout)")
        #expect(good.stdout.contains("output.elasticsearch \(es.url): OK — connected and authenticated: Elasticsearch 8.15.0, cluster ctb-test"), "\(good.stdout)")
        #expect(good.stdout.contains("output.logstash 127.0.0.1:\(ls.port): OK — connected"), "\(good.stdout)")
        #expect(good.stdout.contains("output.file \(dir.sub("out")): OK — writable") && good.stdout.hasSuffix("outputs OK\n"), "\(good.stdout)")

        let bad = try run(["test", "output", "-c", try config(redisPassword: "wrong", esPassword: "wrong", lsPort: freePort())])
        #expect(bad.status == 1, "\(bad.stdout)")
        #expect(bad.stdout.contains("output.redis 127.0.0.1:\(redis.port): FAILED — AUTH refused"), "\(bad.stdout)")
        #expect(bad.stdout.contains("output.elasticsearch \(es.url): FAILED — credentials refused (HTTP 401): unable to authenticate"), "\(bad.stdout)")
        #expect(bad.stdout.contains("output.logstash 127.0.0.1:") && bad.stdout.contains("FAILED — cannot connect"), "\(bad.stdout)")
        #expect(!bad.stdout.contains("outputs OK") && !bad.stdout.contains("s3cret"))
    }
}
