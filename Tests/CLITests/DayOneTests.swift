import Foundation
import Testing
import TestSupport

@testable import Engine

#if canImport(Glibc)
import Glibc
#endif

/// What a new user trips over on day one, through the real binary: unset variables, typos in -b,
/// an empty date window, `s3://` URLs, durations with units, the version.
@Suite("Day one, through the binary")
struct DayOneTests {
    @Test func anUnsetEnvironmentVariableIsAnErrorNamingItAndTheKey() throws {
        let dir = temporaryDirectory("env")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/c.yml"
        try "journal.path: ${CTB_TEST_UNSET_JPATH}\noutput:\n  console: {}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let r = try run(["-c", config, "-b", dir])
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(config): journal.path: the environment variable CTB_TEST_UNSET_JPATH is not set"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "data.mdb") && !FileManager.default.fileExists(atPath: dir + "/data.mdb"), "no journal created anywhere")
        // A password too: never an empty one sent silently.
        try "journal.path: \(dir)/j\noutput:\n  redis:\n    hosts: [\"127.0.0.1:1\"]\n    password: ${CTB_TEST_UNSET_PW}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let p = try run(["journal", "status", "-c", config])
        #expect(p.status == 1 && p.stderr.contains("output.redis.password: the environment variable CTB_TEST_UNSET_PW is not set"), "\(p.stderr)")
        // An explicit default is taken.
        try "journal.path: ${CTB_TEST_UNSET_JPATH:\(dir)/by-default}\noutput:\n  console: {}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let s = try run(["journal", "status", "-c", config])
        #expect((s.stdout + s.stderr).contains("\(dir)/by-default"), "the default path was taken: \(s.stdout)\(s.stderr)")
    }

    /// A relative journal.path is the configuration file's neighbour, wherever the binary runs from,
    /// and `journal status` prints where it is; `path.data` moves every relative path.
    @Test func relativePathsAreRelativeToTheConfigurationFile() throws {
        let dir = temporaryDirectory("relative")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/copy", withIntermediateDirectories: true)
        let config = dir + "/etc/c.yml"
        try FileManager.default.createDirectory(atPath: dir + "/etc", withIntermediateDirectories: true)
        try "journal.path: data/journal\noutput:\n  file:\n    path: data/events\n".write(toFile: config, atomically: true, encoding: .utf8)
        let cwd = FileManager.default.currentDirectoryPath
        #expect(try run(["-c", config, "-b", dir + "/copy"]).status == 0)
        #expect(FileManager.default.fileExists(atPath: dir + "/etc/data/journal/data.mdb"), "the journal is beside the configuration")
        #expect(!FileManager.default.fileExists(atPath: cwd + "/data/journal"), "not in the working directory")
        let status = try run(["journal", "status", "-c", config])
        #expect(status.stdout.hasPrefix("journal    \(dir)/etc/data/journal "), "\(status.stdout)")
        try "path.data: \(dir)/var\njournal.path: j\noutput:\n  file:\n    path: events\n".write(toFile: config, atomically: true, encoding: .utf8)
        #expect(try run(["-c", config, "-b", dir + "/copy"]).status == 0)
        #expect(FileManager.default.fileExists(atPath: dir + "/var/j/data.mdb"), "path.data moves relative paths")
    }

    @Test(arguments: ["/tmp/ctb-no-such-dir-\(UUID().uuidString)", "file:///tmp/ctb-no-such-dir-\(UUID().uuidString)", "./typo", "not/a-bucket"])
    func aBackfillOfAMissingDirectoryIsAnError(target: String) throws {
        let dir = temporaryDirectory("typo")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/c.yml"
        try "journal.path: \(dir)/j\noutput:\n  console: {}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let r = try run(["-c", config, "-b", target])
        #expect(r.status != 0, "\(r.stdout)")
        #expect(r.stderr.contains("directory not found"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/j"), "nothing ran")
    }

    @Test func aFileOrANameThatIsNoBucketIsRefused() throws {
        let dir = temporaryDirectory("notbucket")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/c.yml"
        try "journal.path: \(dir)/j\noutput:\n  console: {}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let file = try run(["-c", config, "-b", config])
        #expect(file.status != 0 && file.stderr.contains("is a file"), "\(file.stderr)")
        let weird = try run(["-c", config, "-b", "my bucket!"])
        #expect(weird.status != 0 && weird.stderr.contains("neither an existing directory nor a bucket name"), "\(weird.stderr)")
        let both = try run(["-c", config, "-b", "s3://bucket/AWSLogs/", "-p", "other/"])
        #expect(both.status != 0 && both.stderr.contains("give it once"), "\(both.stderr)")
    }

    @Test func anEmptyDateWindowIsRefused() throws {
        let dir = temporaryDirectory("window")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(["-c", dir + "/c.yml", "-b", dir, "--since", "2026-12-01", "--until", "2026-01-01"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--since 2026-12-01 is after --until 2026-01-01"), "\(r.stderr)")
    }

    /// `test config` says what a run would lack, and exits 1.
    @Test func testConfigFailsWithoutCredentials() throws {
        let dir = TempDir("testconfig")
        try "input.sqs_url: https://sqs.eu-west-1.amazonaws.com/123456789012/q\noutput.elasticsearch:\n  hosts: [\"http://es:9200\"]\n  username: elastic\n  password: s3cret-password\n"
            .write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
        let env = ["HOME": "/nonexistent", "PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"]
        let p = try ChildProcess(binary(), ["test", "config", "-c", dir.sub("c.yml")], environment: env, stderrPath: dir.sub("err"))
        let out = p.readAll()
        let end = p.wait()
        let err = (try? String(contentsOfFile: dir.sub("err"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 1, "\(out)\(err)")
        #expect(out.contains("region: eu-west-1") && out.contains("password s3cr****") && !out.contains("s3cret-password"), "\(out)")
        #expect(err.contains("no AWS credentials") && !out.contains("config OK"), "\(err)")
    }

    @Test func versionAndDashDashVersion() throws {
        for args in [["version"], ["--version"]] {
            let r = try run(args)
            #expect(r.status == 0 && r.stdout == "cloudtrailbeat \(Release.version)\n", "\(args): \(r.stdout)\(r.stderr)")
        }
    }

    /// A finished backfill says so in words (no queue talk, no struct dump), and `logging.json: true`
    /// makes every log line one JSON object.
    @Test(arguments: [false, true])
    func aBackfillEndsWithAReadableSummary(json: Bool) throws {
        let dir = temporaryDirectory("summary")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let day = dir + "/copy/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28"
        try FileManager.default.createDirectory(atPath: day, withIntermediateDirectories: true)
        for i in 0..<3 {
            let records = (0..<4).map { #"{"eventTime":"2026-11-28T10:00:0\#($0)Z","eventID":"e\#(i)-\#($0)","eventName":"GetObject","readOnly":\#($0 % 2 == 0)}"# }
            try Data(("{\"Records\":[" + records.joined(separator: ",") + "]}").utf8).write(to: URL(fileURLWithPath: day + "/123456789012_CloudTrail_us-east-1_20261128T100\(i)Z_x\(i).json"))
        }
        let config = dir + "/c.yml"
        try "journal.path: \(dir)/j\nlogging.json: \(json)\nfilter.exclude: [{readOnly: true}]\noutput:\n  file:\n    path: \(dir)/out\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let r = try run(["-c", config, "-b", dir + "/copy"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("finished: every partition listed and every object shipped") && !r.stderr.contains("the queue answered empty"), "\(r.stderr)")
        #expect(r.stderr.contains("cloudtrailbeat stopped: objects 3 fetched (") && r.stderr.contains("file 6 delivered, 6 filtered"), "\(r.stderr)")
        #expect(!r.stderr.contains("Counters(") && !r.stderr.contains("objects/s"), "no struct dump, no rate without a second of history")
        let lines = r.stderr.split(separator: "\n")
        let parsed = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        if json {
            #expect(parsed.count == lines.count && !lines.isEmpty, "every line is JSON: \(r.stderr)")
            #expect(parsed.allSatisfy { $0["log.level"] is String && $0["message"] is String && $0["@timestamp"] is String })
            #expect(parsed.contains { ($0["message"] as? String)?.hasPrefix("cloudtrailbeat stopped: ") == true })
        } else {
            #expect(parsed.isEmpty, "text lines")
        }
    }

    /// `-b s3://bucket/prefix` is a bucket and a prefix, as the AWS CLI writes them.
    @Test func anS3URLNamesTheBucketAndThePrefix() throws {
        let stack = try BackfillStack(objects: 24)
        let config = try stack.config("s3url")
        #expect(try stack.run(["-c", config, "-b", "s3://org-trail-bucket/AWSLogs/"]) == 0)
        #expect(Set(try stack.emitted("s3url")) == (try stack.expected()))
        let status = try run(["journal", "status", "-c", config])
        #expect(status.stdout.contains("backfill   s3://org-trail-bucket/AWSLogs/ ["), "the job is the bucket with its prefix: \(status.stdout)")
        // A prefix under which nothing lies ships nothing, and says so.
        let none = try stack.config("s3url-none")
        #expect(try stack.run(["-c", none, "-b", "s3://org-trail-bucket/elsewhere/"]) == 0)
        #expect(try stack.emitted("s3url-none").isEmpty)
    }
}

@Suite("Durations")
struct DurationTests {
    @Test func everyDurationTakesUnitsAndBareNumbersKeepTheirMeaning() throws {
        let c = try Config.parse("""
            input:
              visibility_timeout: 5m
              wait_time: 10s
              sleep_time: 500ms
            journal.done_retention: 2d
            shutdown_timeout: 1.5s
            output:
              elasticsearch: {hosts: ["http://es:9200"], timeout: 2m}
              logstash: {hosts: ["ls:5044"], timeout: 45}
              redis: {hosts: ["r:6379"], timeout: 250ms}
            """, file: "c.yml")
        #expect(c.input.visibilityTimeout == 300 && c.input.waitTime == 10 && c.input.sleepTime == 0.5)
        #expect(c.journal.doneRetentionSeconds == 2 * 86400 && c.shutdownTimeout == 1.5)
        #expect(c.elasticsearch?.timeout == 120 && c.logstash?.timeout == 45 && c.redis?.timeout == 0.25)
        let bare = try Config.parse("input:\n  visibility_timeout: 300\n  wait_time: 20\noutput:\n  console: {}", file: "c.yml")
        #expect(bare.input.visibilityTimeout == 300 && bare.input.waitTime == 20)
        for (yaml, message) in [
            ("input:\n  visibility_timeout: 2.5s\noutput:\n  console: {}", "input.visibility_timeout: 2.5s is not a whole number of seconds"),
            ("input:\n  wait_time: 1m\noutput:\n  console: {}", "input.wait_time: 60s is out of range (0s–20s)"),
            ("input:\n  visibility_timeout: soon\noutput:\n  console: {}", "input.visibility_timeout: 'soon' is not a duration"),
        ] {
            #expect(throws: ConfigError.self) { try Config.parse(yaml, file: "c.yml") }
            do { _ = try Config.parse(yaml, file: "c.yml") } catch { #expect("\(error)".contains(message), "\(error)") }
        }
    }
}

/// Receive errors: a one-shot run stops on what no retry mends, a daemon backs off and says so.
@Suite("Receive errors", .serialized)
struct ReceiveErrorTests {
    @Test func aDrainRunAgainstAQueueThatDoesNotExistEndsWithExit1() throws {
        let stack = try Stack(objects: 1, bad: false) { text in
            text = text.replacingOccurrences(of: "/cloudtrail-queue\n", with: "/no-such-queue\n")
        }
        let began = Date()
        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        let log = try String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)
        #expect(status == 1, "\(log.suffix(500))")
        #expect(log.contains("stopped: ") && (log.contains("NonExistentQueue") || log.contains("QueueDoesNotExist")), "\(log.suffix(500))")
        #expect(Date().timeIntervalSince(began) < 30, "at once, not after retries")
    }

    @Test func aRefusedPortEndsADrainRunAndADaemonBacksOff() throws {
        let dir = temporaryDirectory("refused")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = freePort()
        let config = dir + "/c.yml"
        try """
            input:
              sqs_url: http://127.0.0.1:\(port)/123456789012/q
              endpoint: http://127.0.0.1:\(port)
              aws_region: us-east-1
              workers: 2
              wait_time: 1
            journal.path: \(dir)/j
            output:
              console: {}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = "AKIAREFUSED"
        env["AWS_SECRET_ACCESS_KEY"] = "refused"
        env["AWS_MAX_ATTEMPTS"] = "1"
        env["SWIFT_BACKTRACE"] = "enable=no"
        let drain = try ChildProcess(binary(), ["-c", config, "--drain"], environment: env, stderrPath: dir + "/drain.log")
        _ = drain.readAll()
        let end = drain.wait()
        let drainLog = (try? String(contentsOfFile: dir + "/drain.log", encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 1 && drainLog.contains("stopped: "), "\(drainLog.suffix(400))")
        // The daemon: waits that grow, one line per wait (not one per receiver every 2 s).
        let daemon = try ChildProcess(binary(), ["-c", config], environment: env, stderrPath: dir + "/daemon.log")
        usleep(9_000_000)
        daemon.kill(SIGTERM)
        _ = daemon.wait()
        let lines = ((try? String(contentsOfFile: dir + "/daemon.log", encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains("SQS ReceiveMessage failed") }
        #expect(lines.count >= 3 && lines.count <= 8, "\(lines.count) lines in 9 s: \(lines.joined(separator: "\n"))")
        #expect(lines.first?.contains("retrying in 1s") == true && lines.contains { $0.contains("retrying in 4s") }, "the waits double: \(lines.joined(separator: "\n"))")
    }
}
