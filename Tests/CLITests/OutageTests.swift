import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A tmpfs of a given size, mounted for one test and unmounted after. Mounting needs root (CI runs as
/// root): without it the test fails with the reason, it does not skip.
final class SmallDisk {
    let path: String

    init(megabytes: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("ctb-disk-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let p = try ChildProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path], stderrPath: path + ".err")
        _ = p.readAll()
        let status = p.wait()
        let err = (try? String(contentsOfFile: path + ".err", encoding: .utf8)) ?? ""
        try #require(status.exited && status.code == 0, "mounting a \(megabytes) MiB tmpfs needs root (CI runs as root; run the suite as root): \(err)")
    }

    deinit {
        let p = try? ChildProcess("/bin/umount", ["-l", path])
        _ = p?.wait()
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: path + ".err")
    }
}

/// The journal on a real filesystem far smaller than the backlog (and than `journal.max_size`): a full
/// disk is backpressure, never an exit, never a loss.
@Suite("A real full disk", .serialized)
struct FullDiskTests {
    /// ~20 MB of gzipped logs (poorly compressible records) in a local copy; returns the records as the
    /// file output writes them.
    func backlog(_ dir: TempDir) throws -> [String] {
        let script = """
            import gzip, json, os, random
            rng = random.Random(13)
            root = '\(dir.sub("copy"))/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28'
            os.makedirs(root, exist_ok=True)
            out = open('\(dir.sub("expected.ndjson"))', 'w')
            n = 0
            for f in range(96):
                records = []
                for i in range(100):
                    n += 1
                    records.append(json.dumps({"eventVersion": "1.08", "eventTime": "2026-11-28T10:%02d:%02dZ" % (f % 60, i % 60),
                        "eventSource": "s3.amazonaws.com", "eventName": "PutObject", "awsRegion": "us-east-1", "eventID": "disk-%d" % n,
                        "requestParameters": {"blob": "%x" % rng.getrandbits(16000)}}, separators=(",", ":")))
                body = gzip.compress(('{"Records":[' + ",".join(records) + ']}').encode())
                open('%s/123456789012_CloudTrail_us-east-1_20261128T10%02dZ_%04d.json.gz' % (root, f % 60, f), 'wb').write(body)
                out.write("".join(r + "\\n" for r in records))
            """
        try script.write(toFile: dir.sub("gen.py"), atomically: true, encoding: .utf8)
        #expect(system("python3 '\(dir.sub("gen.py"))'") == 0)
        return try String(contentsOfFile: dir.sub("expected.ndjson"), encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func emitted(_ dir: TempDir) throws -> [String] {
        var records: [String] = []
        for file in (try? FileManager.default.contentsOfDirectory(atPath: dir.sub("out"))) ?? [] {
            for line in try String(contentsOfFile: dir.sub("out") + "/" + file, encoding: .utf8).split(separator: "\n") {
                guard let s = line.range(of: ",\"cloudtrail\":"), let e = line.range(of: ",\"s3\":{", options: .backwards) else { continue }
                records.append(String(line[s.upperBound..<e.lowerBound]))
            }
        }
        return records
    }

    func config(_ dir: TempDir, journal: String) throws -> String {
        // journal.max_size is left at its default (4 GiB): the disk is the limit.
        try "journal:\n  path: \(journal)\noutput:\n  file:\n    path: \(dir.sub("out"))\n    rotate_every_kb: 1000000\n"
            .write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
        return dir.sub("c.yml")
    }

    @Test func aBacklogLargerThanTheDiskArrivesWholeAndTheRunEndsWithExit0() throws {
        let dir = TempDir("fulldisk")
        let disk = try SmallDisk(megabytes: 12)
        let expected = try backlog(dir)
        let size = (try FileManager.default.subpathsOfDirectory(atPath: dir.sub("copy"))).reduce(0) {
            $0 + ((try? FileManager.default.attributesOfItem(atPath: dir.sub("copy") + "/" + $1)[.size] as? Int) ?? 0)
        }
        #expect(size > 16 << 20, "the backlog (\(size) bytes) is larger than the disk")
        let config = try config(dir, journal: disk.path + "/journal")
        let p = try ChildProcess(binary(), ["-c", config, "-b", dir.sub("copy")], environment: ["SWIFT_BACKTRACE": "enable=no"], stderrPath: dir.sub("run.log"))
        _ = p.readAll()
        let end = p.wait()
        let log = (try? String(contentsOfFile: dir.sub("run.log"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 0, "\(log.suffix(1500))")
        let got = try emitted(dir)
        #expect(got.count == expected.count && Set(got) == Set(expected), "\(got.count) of \(expected.count) records")
        let status = try run(["journal", "status", "-c", config])
        #expect(status.status == 0 && status.stdout.contains("the disk holds only"), "\(status.stdout)\(status.stderr)")
    }

    /// Another file takes every free byte of the disk mid-run: commits fail (ENOSPC, or EIO for LMDB's
    /// short write), the engine says so once and waits; once the space is back, it finishes.
    @Test func aDiskFilledByAnotherProgramPausesTheRunUntilSpaceReturns() throws {
        let dir = TempDir("fulldisk-filler")
        let disk = try SmallDisk(megabytes: 12)
        let expected = Set(try backlog(dir))
        let config = try config(dir, journal: disk.path + "/journal")
        try (try String(contentsOfFile: config, encoding: .utf8) + "http:\n  enabled: true\n  port: \(freePort())\n").write(toFile: config, atomically: true, encoding: .utf8)
        let port = Int(try String(contentsOfFile: config, encoding: .utf8).split(separator: "\n").last!.split(separator: " ").last!)!
        let p = try ChildProcess(binary(), ["-c", config, "-b", dir.sub("copy")], environment: ["SWIFT_BACKTRACE": "enable=no"], stderrPath: dir.sub("run.log"))
        usleep(700_000)
        _ = system("dd if=/dev/zero of='\(disk.path)/filler' bs=64k 2>/dev/null")
        sleep(4)
        let log = { (try? String(contentsOfFile: dir.sub("run.log"), encoding: .utf8)) ?? "" }
        #expect(kill(p.pid, 0) == 0, "still running on a full disk: \(log().suffix(800))")
        // The disk stays full, yet GC frees pages inside the journal and a commit that fits in them passes:
        // the gauge flaps between 1 and 0 while the disk is full (docs/operations.md), so it is watched
        // for a while rather than read once (a single read once met one of the 0s).
        var metrics = scrape(port)
        let watchUntil = Date().addingTimeInterval(60)
        while metrics["cloudtrailbeat_journal_full"] != 1 && Date() < watchUntil {
            usleep(100_000)
            metrics = scrape(port)
        }
        #expect(metrics["cloudtrailbeat_journal_full"] == 1 && metrics["cloudtrailbeat_journal_full_episodes_total"] ?? 0 >= 1, "\(metrics.filter { $0.key.contains("journal") })")
        #expect(log().components(separatedBy: "journal full: writes wait").count - 1 == 1, "said once: \(log().suffix(1500))")
        try FileManager.default.removeItem(atPath: disk.path + "/filler")
        _ = p.readAll()
        let end = p.wait()
        #expect(end.exited && end.code == 0, "\(log().suffix(1500))")
        #expect(log().contains("journal has room again"), "\(log().suffix(800))")
        #expect(Set(try emitted(dir)) == expected, "every record arrived")
    }

    @Test func killedWhileTheDiskIsFullLosesNothing() throws {
        let dir = TempDir("fulldisk-kill")
        let disk = try SmallDisk(megabytes: 12)
        let expected = Set(try backlog(dir))
        let config = try config(dir, journal: disk.path + "/journal")
        var rng = SplitMix64(seed: 29)
        var kills = 0
        for round in 0..<6 {
            let p = try ChildProcess(binary(), ["-c", config, "-b", dir.sub("copy")], environment: ["SWIFT_BACKTRACE": "enable=no"], stderrPath: dir.sub("round\(round).log"))
            usleep(UInt32.random(in: 200_000...1_500_000, using: &rng))
            p.kill()
            let end = p.wait()
            if !end.exited { kills += 1 }
            let log = (try? String(contentsOfFile: dir.sub("round\(round).log"), encoding: .utf8)) ?? ""
            #expect(!end.exited || end.code == 0, "round \(round) ended by itself with \(end.code): \(log.suffix(800))")
        }
        #expect(kills >= 3, "the binary was killed mid-run")
        let p = try ChildProcess(binary(), ["-c", config, "-b", dir.sub("copy")], environment: ["SWIFT_BACKTRACE": "enable=no"], stderrPath: dir.sub("final.log"))
        _ = p.readAll()
        let end = p.wait()
        let log = (try? String(contentsOfFile: dir.sub("final.log"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 0, "\(log.suffix(1500))")
        #expect(Set(try emitted(dir)) == expected, "every record arrived")
        #expect(try run(["journal", "status", "-c", config]).status == 0, "the journal opens after")
    }
}

/// The instance metadata service (the only source of credentials here) away for a while: the daemon
/// waits for it, saying so, and ships everything once it answers again; it never ends by itself.
@Suite("Credential outages", .serialized)
struct CredentialOutageTests {
    @Test func theDaemonRidesOutTheInstanceMetadataServiceGoingAway() throws {
        let stack = try Stack(objects: 6, bad: false)
        let control = stack.dir.sub("imds")
        let imds = try fixtureServer("AWSTests/Fixtures/imds_server.py", [control], name: "imds")
        // The IAM user's keys, served by IMDS as an instance role's, refreshed on every use (a TTL just
        // over the refresh margin): a refresh that fails must not matter while they are valid.
        let key = stack.environment["AWS_ACCESS_KEY_ID"]!, secret = stack.environment["AWS_SECRET_ACCESS_KEY"]!
        try #"{"AccessKeyId": "\#(key)", "SecretAccessKey": "\#(secret)", "ttl": 200}"#.write(toFile: control + ".creds", atomically: true, encoding: .utf8)
        try "".write(toFile: control + ".down", atomically: true, encoding: .utf8)  // away from the start
        var env = stack.environment
        env["AWS_ACCESS_KEY_ID"] = nil
        env["AWS_SECRET_ACCESS_KEY"] = nil
        env["HOME"] = stack.dir.path
        env["AWS_CONFIG_FILE"] = stack.dir.sub("none")
        env["AWS_SHARED_CREDENTIALS_FILE"] = stack.dir.sub("none")
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.url
        env["AWS_MAX_ATTEMPTS"] = "2"  // the engine, not the client's retries, sees the outage soon
        let p = try ChildProcess(binary(), ["-c", stack.config], environment: env, stderrPath: stack.dir.sub("engine.log"))
        let log = { (try? String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)) ?? "" }
        func stats() -> [String: Int] {
            (try? JSONSerialization.jsonObject(with: Data(curl(imds.url + "/_test/stats").utf8))) as? [String: Int] ?? [:]
        }
        sleep(6)
        #expect(kill(p.pid, 0) == 0, "still running without credentials: \(log().suffix(1000))")
        #expect(log().contains("retrying in") && log().contains("CredentialsUnavailable"), "\(log())")
        #expect(try stack.emitted().isEmpty && (stats()["refused"] ?? 0) > 0)
        try FileManager.default.removeItem(atPath: control + ".down")
        let deadline = Date().addingTimeInterval(60)
        while (try? stack.emitted().count) ?? 0 < stack.expected.count && Date() < deadline { usleep(200_000) }
        #expect(try stack.emitted().sorted() == stack.expected.sorted(), "everything shipped once IMDS answered")
        // Away again while running, with valid credentials cached: nothing fails.
        try "".write(toFile: control + ".down", atomically: true, encoding: .utf8)
        let refusedBefore = stats()["refused"] ?? 0
        // Refreshes come with the engine's next AWS calls: a second on an idle machine, longer on a
        // loaded CI one (a fixed three seconds once saw none).
        let refusedBy = Date().addingTimeInterval(60)
        while (stats()["refused"] ?? 0) <= refusedBefore && Date() < refusedBy { usleep(200_000) }
        sleep(2)
        #expect(kill(p.pid, 0) == 0 && (stats()["refused"] ?? 0) > refusedBefore, "refreshes were refused and the cached credentials kept")
        p.kill(SIGTERM)
        let end = p.wait()
        #expect(end.exited && end.code == 0, "\(log().suffix(800))")
        #expect(try stack.queueCount() == 0, "every message deleted")
    }
}

/// Forged notifications: a foreign bucket, an unwatched account, a forged log under a watched
/// account's prefix, a message that did not come through the topic — none shipped, each quarantined
/// with the setting that refused it, and nothing fetched from where it must not be.
@Suite("Forged notifications", .serialized)
struct ForgedNotificationTests {
    @Test func onlyTheWatchedBucketsAccountsAndTopicsAreRead() throws {
        let topic = "arn:aws:sns:us-east-1:123456789012:cloudtrail-topic"
        let stack = try Stack(objects: 6, bad: false) {
            $0 = $0.replacingOccurrences(of: "  workers: 2\n", with: "  workers: 2\n  buckets: [\"cloudtrail-demo-*\"]\n  accounts: [\"123456789012\"]\n  topics: [\"\(topic)\"]\n")
        }
        let script = """
            import boto3, gzip, json
            from botocore.config import Config
            kw = dict(endpoint_url='\(stack.moto.url)', region_name='us-east-1')
            s3 = boto3.client('s3', config=Config(s3={"addressing_style": "path"}), **kw)
            sns, sqs = boto3.client('sns', **kw), boto3.client('sqs', **kw)
            def log(account, recipient, tag):
                r = {"eventVersion": "1.08", "eventTime": "2026-11-28T10:00:00Z", "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
                     "awsRegion": "us-east-1", "eventID": tag, "recipientAccountId": recipient}
                return gzip.compress(json.dumps({"Records": [r]}).encode())
            key = lambda account, tag: 'AWSLogs/%s/CloudTrail/us-east-1/2026/11/28/%s_CloudTrail_us-east-1_20261128T1000Z_%s.json.gz' % (account, account, tag)
            s3.create_bucket(Bucket='foreign-bucket')
            s3.put_object(Bucket='foreign-bucket', Key=key('123456789012', 'foreign'), Body=log('123456789012', '123456789012', 'foreign'))
            s3.put_object(Bucket='cloudtrail-demo-bucket', Key=key('999999999999', 'unwatched'), Body=log('999999999999', '999999999999', 'unwatched'))
            s3.put_object(Bucket='cloudtrail-demo-bucket', Key=key('123456789012', 'forged'), Body=log('123456789012', '999999999999', 'forged'))
            for bucket, k in [('foreign-bucket', key('123456789012', 'foreign')), ('cloudtrail-demo-bucket', key('999999999999', 'unwatched')),
                              ('cloudtrail-demo-bucket', key('123456789012', 'forged'))]:
                sns.publish(TopicArn='\(topic)', Message=json.dumps({"s3Bucket": bucket, "s3ObjectKey": [k]}))
            # Straight into the queue, not through the topic: refused whatever it names.
            sqs.send_message(QueueUrl=open('\(stack.dir.sub("queue_url"))').read(),
                             MessageBody=json.dumps({"s3Bucket": "cloudtrail-demo-bucket", "s3ObjectKey": [key('123456789012', 'direct')]}))
            """
        try script.write(toFile: stack.dir.sub("forge.py"), atomically: true, encoding: .utf8)
        let setup = try ChildProcess("/usr/bin/env", ["python3", stack.dir.sub("forge.py")], environment: stack.environment, stderrPath: stack.dir.sub("forge.log"))
        _ = setup.readAll()
        #expect(setup.wait().code == 0, "\((try? String(contentsOfFile: stack.dir.sub("forge.log"), encoding: .utf8)) ?? "")")

        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        #expect(status == 0)
        #expect(try stack.emitted().sorted() == stack.expected.sorted(), "the real logs, and nothing forged")
        let reads = ((try? String(contentsOfFile: "/tmp/ctb-moto-\(stack.moto.port).log", encoding: .utf8)) ?? "")
            .split(separator: "\n").filter { $0.contains("\"GET /") || $0.contains("\"HEAD /") }
        #expect(reads.contains { $0.contains("_forged.json.gz") }, "the moto log shows object reads (the forged log is read to be judged)")
        #expect(!reads.contains { $0.contains("/foreign-bucket/") || $0.contains("AWSLogs/999999999999") }, "never fetched (no GET, no HEAD)")
        #expect(!reads.contains { $0.contains("_direct.json.gz") }, "a message that did not come through the topic names nothing fetched")
        let json = try stack.run(["journal", "status", "--json", "-c", stack.config], log: "status.log").1
        let reasons = ((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["quarantined"] as? [[String: Any]] ?? [])
            .compactMap { $0["reason"] as? String }
        for expected in ["refused: bucket 'foreign-bucket' is not in input.buckets", "refused: account '999999999999' is not in input.accounts",
                         "has recipientAccountId '999999999999', not the key's account '123456789012' (input.accounts)",
                         "refused: the message did not come through SNS"] {
            #expect(reasons.contains { $0.contains(expected) }, "\(expected): \(reasons)")
        }
        #expect(reasons.count == 4, "\(reasons)")
        #expect(try stack.queueCount() == 0, "refused messages are deleted like poison ones (no redrive policy)")
    }
}

/// SNS signatures checked against the signing certificate, fetched over verified HTTPS from an allowed
/// host: a tampered message and one pointing at another host's certificate are refused, unread.
@Suite("SNS signatures", .serialized)
struct SNSSignatureTests {
    @Test func onlyMessagesSignedBySNSAreRead() throws {
        let stack = try Stack(objects: 6, bad: false)
        let certs = stack.dir.sub("sns-certs")
        try FileManager.default.createDirectory(atPath: certs, withIntermediateDirectories: true)
        let host = try fixtureServer("AWSTests/Fixtures/sns_cert_server.py", [certs], name: "sns-certificates")
        let certURL = "https://127.0.0.1:\(host.port)/SimpleNotificationService-test.pem"
        let text = try String(contentsOfFile: stack.config, encoding: .utf8).replacingOccurrences(
            of: "  workers: 2\n",
            with: "  workers: 2\n  sns_signature: true\n  sns_certificate_hosts: [\"127.0.0.1\"]\n  sns_trusted_ca: \(certs)/ca.pem\n")
        try text.write(toFile: stack.config, atomically: true, encoding: .utf8)
        let fixture = Stack.repo.appendingPathComponent("Tests/AWSTests/Fixtures/sns_cert_server.py").path
        let script = """
            import boto3, gzip, json, subprocess, uuid
            from botocore.config import Config
            kw = dict(endpoint_url='\(stack.moto.url)', region_name='us-east-1')
            s3, sqs = boto3.client('s3', config=Config(s3={"addressing_style": "path"}), **kw), boto3.client('sqs', **kw)
            q = open('\(stack.dir.sub("queue_url"))').read()
            sqs.purge_queue(QueueUrl=q)  # moto's own deliveries carry fake signatures
            topic = 'arn:aws:sns:us-east-1:123456789012:cloudtrail-topic'
            def envelope(message, cert='\(certURL)'):
                return {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic, "Subject": "CloudTrail",
                        "Message": json.dumps(message), "Timestamp": "2026-12-02T10:00:00.000Z", "SigningCertURL": cert,
                        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"}
            def signed(e, version):
                return subprocess.run(['python3', '\(fixture)', 'sign', '\(certs)', version], input=json.dumps(e), capture_output=True, text=True, check=True).stdout
            keys = list(json.load(open('\(stack.dir.sub("records_per_key.json"))')))
            for i, k in enumerate(keys):
                sqs.send_message(QueueUrl=q, MessageBody=signed(envelope({"s3Bucket": "cloudtrail-demo-bucket", "s3ObjectKey": [k]}), "1" if i % 2 else "2"))
            extra = 'AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/123456789012_CloudTrail_us-east-1_20261128T1000Z_%s.json.gz'
            for tag in ['forged', 'elsewhere']:
                s3.put_object(Bucket='cloudtrail-demo-bucket', Key=extra % tag, Body=gzip.compress(b'{"Records":[{"eventID":"%s"}]}' % tag.encode()))
            # Signed, then the notification changed: the signature no longer verifies.
            tampered = json.loads(signed(envelope({"s3Bucket": "cloudtrail-demo-bucket", "s3ObjectKey": [keys[0]]}), "2"))
            tampered["Message"] = json.dumps({"s3Bucket": "cloudtrail-demo-bucket", "s3ObjectKey": [extra % 'forged']})
            sqs.send_message(QueueUrl=q, MessageBody=json.dumps(tampered))
            # A certificate of the sender's own choosing.
            sqs.send_message(QueueUrl=q, MessageBody=signed(envelope({"s3Bucket": "cloudtrail-demo-bucket", "s3ObjectKey": [extra % 'elsewhere']},
                             cert='https://evil.example.com/SimpleNotificationService-x.pem'), "2"))
            """
        try script.write(toFile: stack.dir.sub("sign.py"), atomically: true, encoding: .utf8)
        let setup = try ChildProcess("/usr/bin/env", ["python3", stack.dir.sub("sign.py")], environment: stack.environment, stderrPath: stack.dir.sub("sign.log"))
        _ = setup.readAll()
        #expect(setup.wait().code == 0, "\((try? String(contentsOfFile: stack.dir.sub("sign.log"), encoding: .utf8)) ?? "")")

        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        #expect(status == 0, "\((try? String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8))?.suffix(1200) ?? "")")
        #expect(try stack.emitted().sorted() == stack.expected.sorted(), "every log named by a signed message")
        let reads = ((try? String(contentsOfFile: "/tmp/ctb-moto-\(stack.moto.port).log", encoding: .utf8)) ?? "")
            .split(separator: "\n").filter { $0.contains("\"GET /") || $0.contains("\"HEAD /") }
        #expect(!reads.contains { $0.contains("_forged.json.gz") || $0.contains("_elsewhere.json.gz") }, "refused messages name nothing fetched")
        let json = try stack.run(["journal", "status", "--json", "-c", stack.config], log: "status.log").1
        let reasons = ((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["quarantined"] as? [[String: Any]] ?? [])
            .compactMap { $0["reason"] as? String }
        #expect(reasons.count == 2, "\(reasons)")
        #expect(reasons.contains { $0.contains("SNS signature: the signature does not verify") }, "\(reasons)")
        #expect(reasons.contains { $0.contains("SigningCertURL host 'evil.example.com' is not an SNS host") }, "\(reasons)")
        let fetch = try ChildProcess("/usr/bin/curl", ["-s", "--cacert", certs + "/ca.pem", "https://127.0.0.1:\(host.port)/_test/stats"])
        let body = fetch.readAll()
        _ = fetch.wait()
        let stats = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Int]
        #expect(stats?["certificates"] == 1, "the certificate is fetched once and cached: \(String(describing: stats))")
    }
}
