import Foundation
import Testing
import TestSupport

@testable import Engine
@testable import Journal

#if canImport(Glibc)
import Glibc
#endif

/// moto (signatures not verified: moto's own check rejects the '/' that every listing prefix holds,
/// for boto3 alike) with a bucket of existing logs, and the same files in a local directory.
struct BackfillStack {
    let moto: LocalServer
    let dir: TempDir
    var env: [String: String]

    init(objects: Int) throws {
        let port = freePort()
        moto = try LocalServer(["moto_server", "-H", "127.0.0.1", "-p", String(port)], port: port, name: "moto", installHint: "pip install 'moto[server]'")
        dir = TempDir("backfill")
        let script = Stack.repo.appendingPathComponent("scripts/demo_aws.py").path
        try #require(system("python3 '\(script)' backfill-setup --endpoint \(moto.url) --dir '\(dir.path)' --objects \(objects) > '\(dir.sub("setup.log"))' 2>&1") == 0,
                     "backfill-setup failed: \((try? String(contentsOfFile: dir.sub("setup.log"), encoding: .utf8)) ?? "")")
        env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = "AKIABACKFILL"
        env["AWS_SECRET_ACCESS_KEY"] = "backfill"
        env["SWIFT_BACKTRACE"] = "enable=no"
    }

    /// A config with just journal and a file output (plus the endpoint for S3).
    func config(_ name: String, s3: Bool = true, queue: String? = nil) throws -> String {
        var settings = ""
        if s3 {
            settings += "input:\n  aws_region: us-east-1\n  endpoint: \(moto.url)\n  workers: 4\n"
            if let queue { settings += "  sqs_url: \(queue)\n  wait_time: 1\n  max_receive_count: 0\n" }
        }
        return try config(name, output: "  file:\n    path: \(dir.sub(name))/out\n    bulk_max_size: 100\n", settings: settings)
    }

    /// Writes `<name>.yml` (over any earlier one): the journal in `<name>/journal`, the top-level
    /// `settings`, and `output` (the YAML under `output:`); returns its path.
    func config(_ name: String, output: String, settings: String = "") throws -> String {
        let path = dir.sub("\(name).yml")
        try (settings + "journal:\n  path: \(dir.sub(name))/journal\noutput:\n" + output).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func start(_ args: [String], log: String = "engine.log") throws -> ChildProcess {
        try ChildProcess(binary(), args, environment: env, stderrPath: dir.sub(log))
    }

    func run(_ args: [String], log: String = "engine.log") throws -> Int32 {
        let p = try start(args, log: log)
        _ = p.readAll()
        let end = p.wait()
        return end.exited ? end.code : 128 + end.code
    }

    func expected(days: [String] = ["26", "27", "28"]) throws -> Set<String> {
        var out = Set<String>()
        for d in days { for l in try String(contentsOfFile: dir.sub("expected-\(d).ndjson"), encoding: .utf8).split(separator: "\n") { out.insert(String(l)) } }
        return out
    }

    /// The `cloudtrail` members in a run's file output.
    func emitted(_ name: String) throws -> [String] {
        var records: [String] = []
        let out = dir.sub(name) + "/out"
        for file in (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? [] {
            for line in try String(contentsOfFile: out + "/" + file, encoding: .utf8).split(separator: "\n") {
                guard let s = line.range(of: ",\"cloudtrail\":"), let e = line.range(of: ",\"s3\":{", options: .backwards) else { continue }
                records.append(String(line[s.upperBound..<e.lowerBound]))
            }
        }
        return records
    }

    var motoLog: [Substring] { ((try? String(contentsOfFile: "/tmp/ctb-moto-\(moto.port).log", encoding: .utf8)) ?? "").split(separator: "\n") }
    func listCalls() -> [Substring] { motoLog.filter { $0.contains("list-type=2") } }
    func gets() -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in motoLog where line.contains("\"GET /org-trail-bucket/") {
            if let r = line.range(of: "GET /org-trail-bucket/"), let end = line[r.upperBound...].firstIndex(of: " ") {
                counts[String(line[r.upperBound..<end]), default: 0] += 1
            }
        }
        return counts
    }
}

@Suite("Backfill", .serialized)
struct BackfillTests {
    @Test func killedRepeatedlyThenCompletedLosesNothingAndListsLittleMore() throws {
        let stack = try BackfillStack(objects: 2520)
        // An uninterrupted run, for the reference count of List calls.
        let before = stack.listCalls().count
        let reference = try stack.config("reference")
        let began = Date()
        #expect(try stack.run(["-c", reference, "-b", "org-trail-bucket", "--page-size", "50"]) == 0)
        // Kill within a 25th of an uninterrupted run: 24 rounds cannot finish the walk, however fast it is.
        let window = max(0.15, Date().timeIntervalSince(began) / 25)
        let uninterrupted = stack.listCalls().count - before
        let expected = try stack.expected()
        #expect(Set(try stack.emitted("reference")) == expected)
        #expect(uninterrupted > 4 * 2 * 6, "more than two pages per partition (\(uninterrupted) calls)")

        let config = try stack.config("killed")
        let start = stack.listCalls().count
        var rng = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        var fetchedGets: [String: Int] = [:]
        var kills = 0
        // Kill early and often enough that the walk cannot finish before its 20th kill.
        for round in 0..<40 where kills < 24 {
            let p = try stack.start(["-c", config, "-b", "org-trail-bucket", "--page-size", "50"])
            usleep(UInt32(Double.random(in: 0.05...window, using: &rng) * 1e6))
            p.kill()
            let end = p.wait()
            if end.exited { break }  // it finished before the kill
            kills += 1
            stack.moto.settle()
            var options = Journal.Options()
            options.readOnly = true
            let journal = try Journal(path: stack.dir.sub("killed") + "/journal", options: options)
            let fetched = try journal.objects().filter { $0.stage != .received }.map(\.ref.key)
            journal.close()
            let counts = stack.gets()
            for key in fetched where fetchedGets[key] == nil { fetchedGets[key] = counts[key] ?? 0 }
            _ = round
        }
        #expect(kills >= 20, "killed \(kills) times")
        #expect(try stack.run(["-c", config, "-b", "org-trail-bucket", "--page-size", "50"]) == 0)
        let interrupted = stack.listCalls().count - start
        let got = try stack.emitted("killed")
        #expect(Set(got) == expected, "no record lost")
        // A kill repeats at most the page each walker had in flight (input.workers: 4 partitions at once),
        // since every listed page commits with its cursor (docs/backfill.md).
        #expect(interrupted <= uninterrupted + kills * 4, "\(interrupted) List calls vs \(uninterrupted) uninterrupted, \(kills) kills")
        let finalGets = stack.gets()
        for (key, count) in fetchedGets { #expect(finalGets[key] == count, "\(key) fetched again after its fetch was committed") }
        print("backfill kill loop: \(kills) kills, \(expected.count) records, List calls \(interrupted) vs \(uninterrupted) uninterrupted, \(fetchedGets.count) objects fetched before a kill")
        // Re-running a finished backfill re-sends nothing.
        let lines = got.count
        #expect(try stack.run(["-c", config, "-b", "org-trail-bucket", "--page-size", "50"]) == 0)
        #expect(try stack.emitted("killed").count == lines)
    }

    @Test func windowsOrgTrailsPrefixesAndLocalCopies() throws {
        let stack = try BackfillStack(objects: 240)
        // --since/--until: exactly the window's records, listing only its day prefixes.
        let before = stack.listCalls().count
        let window = try stack.config("window")
        #expect(try stack.run(["-c", window, "-b", "org-trail-bucket", "--since", "2026-11-27", "--until", "2026-11-27"]) == 0)
        #expect(Set(try stack.emitted("window")) == (try stack.expected(days: ["27"])))
        let calls = stack.listCalls().dropFirst(before)
        let listings = calls.filter { !$0.contains("delimiter=") && !$0.contains("max-keys=1&") }  // not the pass's clock reading
        #expect(listings.count == 4 && listings.allSatisfy { $0.contains("%2F27%2F") || $0.contains("/27/") }, "\(listings)")
        // The org trail is discovered; -p restricts to it.
        let org = try stack.config("org")
        #expect(try stack.run(["-c", org, "-b", "org-trail-bucket", "-p", "AWSLogs/o-abc123def4/"]) == 0)
        let orgRecords = try stack.emitted("org")
        let orgLocal = try stack.config("org-local", s3: false)
        #expect(try stack.run(["-c", orgLocal, "-b", "file://" + stack.dir.sub("local"), "-p", "AWSLogs/o-abc123def4/"]) == 0)
        let orgFromLocal = try stack.emitted("org-local")
        let all = try stack.expected()
        #expect(!orgRecords.isEmpty && Set(orgRecords) == Set(orgFromLocal), "the org subtree, from S3 and from the local copy")
        #expect(orgRecords.count < all.count, "-p restricted the walk")
        // A local copy (with no input section at all) yields what S3 yields.
        let s3 = try stack.config("s3")
        #expect(try stack.run(["-c", s3, "-b", "org-trail-bucket"]) == 0)
        let local = try stack.config("local", s3: false)
        #expect(try stack.run(["-c", local, "-b", stack.dir.sub("local")]) == 0)
        #expect(Set(try stack.emitted("local")) == Set(try stack.emitted("s3")))
        #expect(Set(try stack.emitted("s3")) == (try stack.expected()))
    }

    /// A journal far smaller than the backlog (`journal.max_size: 16MiB`, 22 MB of logs): bodies stop at
    /// nine tenths, fetches wait for GC, acknowledgements and GC keep the last tenth, and every record
    /// arrives once.
    @Test func aSmallJournalFillsAndDrainsWithoutLoss() throws {
        let dir = TempDir("small-journal")
        let script = """
            import gzip, json, os, sys
            d = sys.argv[1] + "/corpus/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28"
            os.makedirs(d, exist_ok=True)
            for i in range(120):
                recs = [{"eventID": "e%d-%d" % (i, j), "eventTime": "2026-11-28T00:00:00Z", "pad": os.urandom(150).hex()} for j in range(1000)]
                with open("%s/123456789012_CloudTrail_us-east-1_20261128T%04dZ_%016d.json.gz" % (d, i, i), "wb") as f:
                    f.write(gzip.compress(json.dumps({"Records": recs}).encode(), 1))
            """
        try script.write(toFile: dir.sub("corpus.py"), atomically: true, encoding: .utf8)
        try #require(system("python3 \(dir.sub("corpus.py")) \(dir.path)") == 0)
        let config = dir.sub("c.yml")
        try "journal:\n  path: \(dir.sub("j"))\n  max_size: 16MiB\noutput:\n  file:\n    path: \(dir.sub("out"))\n    rotate_every_kb: 1048576\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"
        let p = try ChildProcess(binary(), ["-c", config, "-b", dir.sub("corpus")], environment: env, stderrPath: dir.sub("run.log"))
        _ = p.readAll()
        let end = p.wait()
        let log = (try? String(contentsOfFile: dir.sub("run.log"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 0, "\(end): \(log.suffix(600))")
        #expect(log.contains("journal full: downloads wait until GC frees room"), "the journal did fill: \(log.suffix(400))")
        #expect(log.components(separatedBy: "journal full: downloads wait").count - 1 <= 2, "said once a minute at most")
        var ids: [Substring] = []
        for line in try String(contentsOfFile: dir.sub("out/cloudtrailbeat.ndjson"), encoding: .utf8).split(separator: "\n") {
            guard let r = line.range(of: "\"eventID\": \"") else { continue }  // records are verbatim: json.dumps spacing
            ids.append(line[r.upperBound...].prefix { $0 != "\"" })
        }
        #expect(ids.count == 120_000 && Set(ids).count == 120_000, "\(ids.count) events, \(Set(ids).count) distinct, of 120000")
    }

    /// The redis output as configured (hosts, key, password, db), against a real redis-server that
    /// requires a password: every record arrives in the list, once.
    @Test func redisOutputFromTheConfiguration() throws {
        let stack = try BackfillStack(objects: 24)
        let port = freePort()
        let server = try LocalServer(
            ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", stack.dir.path, "--save", "", "--requirepass", "s3cret"],
            port: port, name: "redis", installHint: "apt-get install redis-server (scripts/setup does it)")
        defer { server.stop() }
        let config = try stack.config("redis", output: """
              redis:
                hosts: ["127.0.0.1:\(port)"]
                key: trail-events
                password: s3cret
                db: 3
                bulk_max_size: 50

            """)
        #expect(try stack.run(["-c", config, "-b", stack.dir.sub("local")], log: "redis.log") == 0)
        let cli = try #require(LocalServer.which("redis-cli"), "redis-cli missing: apt-get install redis-tools")
        let p = try ChildProcess(cli, ["-p", String(port), "-a", "s3cret", "--no-auth-warning", "-n", "3", "--raw", "LRANGE", "trail-events", "0", "-1"])
        let lines = p.readAll().split(separator: "\n")
        _ = p.wait()
        let ids = lines.compactMap { ((try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["cloudtrail"] as? [String: Any])?["eventID"] as? String }
        let expected = try stack.expected().map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }.map { $0["eventID"] as! String }
        #expect(ids.count == lines.count && ids.count == expected.count && Set(ids) == Set(expected), "\(ids.count) events of \(lines.count) lines for \(expected.count) records")
    }

    /// `journal status` (text) shows each backfill partition and an empty quarantine; `journal gc -c`
    /// expires done markers by that configuration's `journal.done_retention`.
    @Test func journalStatusAndGCAfterABackfill() throws {
        let stack = try BackfillStack(objects: 24)
        let config = try stack.config("gc", s3: false)
        let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "journal:\n", with: "journal:\n  done_retention: 3s\n")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        #expect(try stack.run(["-c", config, "-b", stack.dir.sub("local")]) == 0)
        func journal(_ args: [String]) throws -> String {
            let p = try stack.start(["journal"] + args + ["-c", config], log: "journal.log")
            let out = p.readAll()
            #expect(p.wait().code == 0, "journal \(args): \((try? String(contentsOfFile: stack.dir.sub("journal.log"), encoding: .utf8)) ?? "")")
            return out
        }
        func markers(_ status: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix("done ") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
        }
        let status = try journal(["status"])
        #expect(status.contains("quarantine empty"), "\(status)")
        let partitions = status.split(separator: "\n").filter { $0.hasPrefix("backfill ") && $0.contains(" complete ") }
        #expect(!partitions.isEmpty && partitions.allSatisfy { $0.contains(" objects, ") && $0.contains("last key ") }, "\(status)")
        let kept = markers(status)
        #expect(kept > 0, "markers kept right after the run: \(status)")
        // Once the retention has passed, gc expires them all (the default, 7 days, would expire none).
        sleep(4)
        let gc = try journal(["gc"])
        #expect(gc.contains("expired \(kept) done markers"), "\(gc)")
        #expect(markers(try journal(["status"])) == 0)
    }

    /// The console output: every record on standard output, one event per line or (pretty) one indented
    /// object each, and nothing else there (logs go to standard error).
    @Test(arguments: [false, true])
    func consoleOutputPrintsEveryRecordOnStdout(pretty: Bool) throws {
        let stack = try BackfillStack(objects: 24)
        let name = pretty ? "pretty" : "plain"
        let config = try stack.config(name, output: "  console:\n    pretty: \(pretty)\n")
        let p = try stack.start(["-c", config, "-b", stack.dir.sub("local")], log: "\(name).log")
        let stdout = p.readAll()
        let end = p.wait()
        #expect(end.exited && end.code == 0, "\(end)")
        // Pretty objects end with a "}" alone on its line; plain ones are a line each.
        let texts = pretty
            ? stdout.components(separatedBy: "\n}\n").dropLast().map { $0 + "\n}" }
            : stdout.split(separator: "\n").map(String.init)
        #expect(pretty == stdout.hasPrefix("{\n"), "indented only when pretty")
        var ids: [String] = []
        for text in texts {
            let event = try #require(try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not one JSON event: \(text.prefix(200))")
            ids.append(try #require((event["cloudtrail"] as? [String: Any])?["eventID"] as? String))
        }
        let expected = try stack.expected().map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }.map { $0["eventID"] as! String }
        #expect(ids.count == expected.count && Set(ids) == Set(expected), "\(ids.count) events for \(expected.count) records")
    }

    /// `-d <stages>` turns on debug lines for those stages only; info lines always show; a typo is refused.
    @Test func debugSelectorsPickStages() throws {
        let stack = try BackfillStack(objects: 24)
        func debugRun(_ name: String, _ selectors: String) throws -> (code: Int32, log: String) {
            let code = try stack.run(["-c", try stack.config(name, s3: false), "-b", stack.dir.sub("local"), "-d", selectors], log: "\(name).log")
            return (code, (try? String(contentsOfFile: stack.dir.sub("\(name).log"), encoding: .utf8)) ?? "")
        }
        let objects = try FileManager.default.subpathsOfDirectory(atPath: stack.dir.sub("local")).filter { $0.hasSuffix(".json.gz") }.count
        let emit = try debugRun("emit", "emit")
        #expect(emit.code == 0)
        let emitted = emit.log.split(separator: "\n").filter { $0.contains(" debug ") && $0.contains("[emit] emitted") }
        #expect(objects > 0 && emitted.count == objects, "one emit debug line per object: \(emitted.count) of \(objects)")
        #expect(!emit.log.contains("[fetch] fetched") && !emit.log.contains("[backfill] page listed"), "no debug line of another stage")
        #expect(emit.log.contains(" info ") && emit.log.contains("cloudtrailbeat started"), "info lines still show")
        let several = try debugRun("several", "fetch, backfill")
        #expect(several.log.contains("[fetch] fetched") && several.log.contains("[backfill] page listed") && !several.log.contains("[emit] emitted"))
        let all = try debugRun("all", "*")
        #expect(all.log.contains("[fetch] fetched") && all.log.contains("[emit] emitted"))
        let typo = try debugRun("typo", "fech")
        #expect(typo.code == 64 && typo.log.contains("'fech' is not a stage"), "\(typo)")
    }

    @Test func enqueueFansOutAndResumes() throws {
        let stack = try BackfillStack(objects: 600)
        let script = """
            import boto3; c = boto3.client('sqs', endpoint_url='\(stack.moto.url)', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b')
            print(c.create_queue(QueueName='fanout')['QueueUrl'])
            """
        try script.write(toFile: stack.dir.sub("q.py"), atomically: true, encoding: .utf8)
        let q = try ChildProcess("/usr/bin/env", ["python3", stack.dir.sub("q.py")], environment: stack.env)
        let queue = q.readAll().trimmingCharacters(in: .whitespacesAndNewlines)
        _ = q.wait()
        let enqueue = try stack.config("enqueue", queue: queue)
        // A run after one that finished is a new pass, which re-sends objects dated within two seconds
        // of the previous pass's start (S3's clocks have whole seconds; --enqueue keeps no done markers):
        // let the freshly uploaded objects age past that, so only the kills can cause re-sends.
        sleep(3)
        var kills = 0
        var rng = SplitMix64(seed: 11)
        for _ in 0..<4 {
            let p = try stack.start(["-c", enqueue, "-b", "org-trail-bucket", "--enqueue", "--page-size", "20"])
            usleep(UInt32.random(in: 150_000...400_000, using: &rng))
            p.kill()
            if !p.wait().exited { kills += 1 }
        }
        #expect(try stack.run(["-c", enqueue, "-b", "org-trail-bucket", "--enqueue", "--page-size", "20"]) == 0)
        // Count the keys sent, then let queue mode ship them.
        let count = """
            import boto3, json; c = boto3.client('sqs', endpoint_url='\(stack.moto.url)', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b')
            a = c.get_queue_attributes(QueueUrl='\(queue)', AttributeNames=['ApproximateNumberOfMessages'])['Attributes']
            print(a['ApproximateNumberOfMessages'])
            """
        try count.write(toFile: stack.dir.sub("c.py"), atomically: true, encoding: .utf8)
        let c = try ChildProcess("/usr/bin/env", ["python3", stack.dir.sub("c.py")], environment: stack.env)
        let messages = Int(c.readAll().trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        _ = c.wait()
        let objects = 600 / 12 * 12
        // One message per 10 keys; a resumed run re-sends at most the pages in flight at each kill.
        #expect(messages >= objects / 10 && messages <= objects / 10 + kills * 4 * 2 + 4, "\(messages) messages for \(objects) objects over \(kills) kills")
        let consume = try stack.config("consume", queue: queue)
        #expect(try stack.run(["-c", consume, "--drain"]) == 0)
        #expect(Set(try stack.emitted("consume")) == (try stack.expected()))
    }
}

@Suite("Local copies listed as a bucket")
struct LocalSourceTests {
    /// Keys in S3's byte order, paged with start-after, common prefixes under a delimiter: the same as
    /// sorting the whole tree, whatever the page size, with names that sort differently as paths.
    @Test(arguments: [1, 3, 7, 1000])
    func pagesMatchAFullSortedListing(pageSize: Int) async throws {
        let dir = TempDir("local-source")
        let files = ["a/b/1.json.gz", "a/b/2.json.gz", "a-c/x.json.gz", "a/b-c/3.json.gz", "a/b.json.gz", "a/é/4.json.gz",
                     "a/B/5.json.gz", "a/b/sub/6.json.gz", "z.json.gz", "a/b/0.json.gz", "a/bb/7.json.gz"]
        for f in files {
            let path = dir.sub(f)
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(repeating: 1, count: f.count).write(to: URL(fileURLWithPath: path))
        }
        let source = LocalSource(root: dir.path)
        func all(_ prefix: String, delimiter: String? = nil) async throws -> (keys: [String], prefixes: [String], sizes: [UInt64]) {
            var keys: [String] = [], prefixes: [String] = [], sizes: [UInt64] = []
            var after: String?
            while true {
                let page = try await source.list(prefix: prefix, delimiter: delimiter, startAfter: after, maxKeys: pageSize)
                #expect(page.objects.count + page.commonPrefixes.count <= pageSize)
                keys += page.objects.map(\.key)
                sizes += page.objects.map(\.size)
                prefixes += page.commonPrefixes
                guard page.isTruncated, let last = (page.commonPrefixes + page.objects.map(\.key)).max(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) else { break }
                after = last
            }
            return (keys, prefixes, sizes)
        }
        func sorted(_ xs: [String]) -> [String] { xs.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) } }
        let everything = try await all("")
        #expect(everything.keys == sorted(files), "byte order across pages of \(pageSize)")
        #expect(everything.sizes == sorted(files).map { UInt64($0.count) })
        #expect(try await all("a/b").keys == sorted(files.filter { $0.hasPrefix("a/b") }))
        #expect(try await all("a/b/").keys == sorted(files.filter { $0.hasPrefix("a/b/") }))
        let top = try await all("", delimiter: "/")
        #expect(top.keys == ["z.json.gz"] && top.prefixes == ["a-c/", "a/"])
        let underA = try await all("a/", delimiter: "/")
        #expect(underA.keys == ["a/b.json.gz"] && underA.prefixes == ["a/B/", "a/b-c/", "a/b/", "a/bb/", "a/é/"])
        // Resuming inside a subtree skips what is before it.
        let resumed = try await source.list(prefix: "", delimiter: nil, startAfter: "a/b/1.json.gz", maxKeys: 2)
        #expect(resumed.objects.map(\.key) == ["a/b/2.json.gz", "a/b/sub/6.json.gz"] && resumed.isTruncated)
    }
}
