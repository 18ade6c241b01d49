import Foundation
import Testing
import TestSupport

@testable import Journal

#if canImport(Glibc)
import Glibc
#endif

/// A Python test server from Tests/ (a path below it) on a free loopback port: `python3 SCRIPT PORT ARGS…`.
func fixtureServer(_ script: String, _ arguments: [String] = [], name: String) throws -> LocalServer {
    let port = freePort()
    return try LocalServer(["python3", Stack.repo.appendingPathComponent("Tests/" + script).path, String(port)] + arguments,
                           port: port, name: name, installHint: "python3 is needed")
}

/// The body curl gets from a loopback URL (a POST of `json` when given).
func curl(_ url: String, postJSON json: String? = nil) -> String {
    let post = json.map { ["-X", "POST", "-H", "Content-Type: application/json", "-d", $0] } ?? []
    guard let p = try? ChildProcess("/usr/bin/curl", ["-s", "--max-time", "10"] + post + [url]) else { return "" }
    defer { _ = p.wait() }
    return p.readAll()
}

/// A moto_server with a bucket, topic and queue set up by scripts/demo_aws.py, and the binary's config.
struct Stack {
    let moto: LocalServer
    let dir: TempDir
    let environment: [String: String]
    var config: String { dir.sub("cloudtrailbeat.yml") }
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    init(objects: Int, bad: Bool, role: Bool = false, configure: (inout String) -> Void = { _ in }) throws {
        let port = freePort()
        moto = try LocalServer(
            ["moto_server", "-H", "127.0.0.1", "-p", String(port)], port: port, environment: ["INITIAL_NO_AUTH_ACTION_COUNT": "3"],
            name: "moto", installHint: "pip install 'moto[server]' (scripts/setup does it)")
        dir = TempDir("e2e")
        let shared = ProcessInfo.processInfo.environment["CTB_SHARED_DIR"] ?? Stack.repo.deletingLastPathComponent().appendingPathComponent("shared").path
        let script = Stack.repo.appendingPathComponent("scripts/demo_aws.py").path
        let command = "python3 '\(script)' setup --endpoint \(moto.url) --dir '\(dir.path)' --objects \(objects) \(bad ? "--bad" : "") \(role ? "--role" : "") --shared '\(shared)' > '\(dir.sub("setup.log"))' 2>&1"
        try #require(system(command) == 0, "scripts/demo_aws.py setup failed: \((try? String(contentsOfFile: dir.sub("setup.log"), encoding: .utf8)) ?? "")")
        var env = ProcessInfo.processInfo.environment
        for line in try String(contentsOfFile: dir.sub("env"), encoding: .utf8).split(separator: "\n") {
            let kv = line.replacingOccurrences(of: "export ", with: "").split(separator: "=", maxSplits: 1)
            env[String(kv[0])] = String(kv[1])
        }
        env["SWIFT_BACKTRACE"] = "enable=no"
        environment = env
        var text = try String(contentsOfFile: config, encoding: .utf8)
        configure(&text)
        try text.write(toFile: config, atomically: true, encoding: .utf8)
    }

    func start(_ args: [String], log: String = "engine.log") throws -> ChildProcess {
        try ChildProcess(binary(), args, environment: environment, stderrPath: dir.sub(log))
    }

    /// Runs the binary to completion; returns its exit status.
    func run(_ args: [String], log: String = "engine.log") throws -> (Int32, String) {
        let p = try start(args, log: log)
        let out = p.readAll()
        let end = p.wait()
        return (end.exited ? end.code : 128 + end.code, out)
    }

    var expected: [String] { (try? String(contentsOfFile: dir.sub("expected.ndjson"), encoding: .utf8))?.split(separator: "\n").map(String.init) ?? [] }

    /// The `cloudtrail` member of each event in the file output, as exact bytes.
    func emitted() throws -> [String] {
        let out = dir.sub("out")
        var records: [String] = []
        let files = (FileManager.default.enumerator(atPath: out)?.allObjects as? [String] ?? []).sorted().filter {
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: out + "/" + $0, isDirectory: &isDir) && !isDir.boolValue
        }
        for name in files {
            for line in try String(contentsOfFile: out + "/" + name, encoding: .utf8).split(separator: "\n") {
                guard let start = line.range(of: ",\"cloudtrail\":"), let end = line.range(of: ",\"s3\":{", options: .backwards) else {
                    Issue.record("not an event: \(line.prefix(200))")
                    continue
                }
                records.append(String(line[start.upperBound..<end.lowerBound]))
            }
        }
        return records
    }

    /// GET requests moto logged per object key.
    func gets() -> [String: Int] {
        let log = (try? String(contentsOfFile: "/tmp/ctb-moto-\(moto.port).log", encoding: .utf8)) ?? ""
        var counts: [String: Int] = [:]
        for line in log.split(separator: "\n") where line.contains("\"GET /cloudtrail-demo-bucket/") {
            if let r = line.range(of: "GET /cloudtrail-demo-bucket/"), let end = line[r.upperBound...].firstIndex(of: " ") {
                counts[String(line[r.upperBound..<end]), default: 0] += 1
            }
        }
        return counts
    }

    /// Starts the daemon and SIGKILLs it 30–900 ms later, `rounds` times, calling `afterEach` after each
    /// kill; every round must end by the kill (the daemon never exits by itself). Returns the kills.
    func killAtRandomMoments(_ rounds: Int, afterEach: () throws -> Void = {}) throws -> Int {
        var rng = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        var kills = 0
        for round in 0..<rounds {
            let p = try start(["-c", config])
            usleep(UInt32.random(in: 30_000...900_000, using: &rng))
            p.kill()
            let end = p.wait()
            #expect(!end.exited, "round \(round): the engine exited by itself")
            kills += 1
            try afterEach()
        }
        return kills
    }

    func queueCount() throws -> Int {
        try python("count.py", """
            a = c.get_queue_attributes(QueueUrl=queue, AttributeNames=['All'])['Attributes']
            print(int(a['ApproximateNumberOfMessages']) + int(a['ApproximateNumberOfMessagesNotVisible']))
            """)
    }

    /// Receives up to `max` messages with `visibility` seconds and drops them, as a receiver SIGKILLed
    /// between ReceiveMessage and the commit journaling the answer does. Returns how many it took.
    func receiveAndDrop(max: Int, visibility: Int) throws -> Int {
        try python("hold.py", """
            r = c.receive_message(QueueUrl=queue, MaxNumberOfMessages=\(max), VisibilityTimeout=\(visibility))
            print(len(r.get('Messages', [])))
            """)
    }

    /// Runs `body` with `c` a boto3 SQS client of this stack and `queue` its queue's URL; its output as a number.
    private func python(_ name: String, _ body: String) throws -> Int {
        let script = """
            import boto3; c = boto3.client('sqs', endpoint_url='\(moto.url)', region_name='us-east-1')
            queue = open('\(dir.sub("queue_url"))').read()

            """ + body
        try script.write(toFile: dir.sub(name), atomically: true, encoding: .utf8)
        var env = environment
        env["PYTHONWARNINGS"] = "ignore"
        let p = try ChildProcess("/usr/bin/env", ["python3", dir.sub(name)], environment: env)
        let out = p.readAll()
        _ = p.wait()
        return Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }
}

@Suite("The engine end to end against moto", .serialized)
struct EngineTests {
    @Test(arguments: [false, true])
    func everyValidRecordOnceBadOnesQuarantined(noPurge: Bool) throws {
        let stack = try Stack(objects: 60, bad: true) { text in
            if noPurge { text = text.replacingOccurrences(of: "  workers: 2\n", with: "  workers: 2\n  no_purge: true\n") }
        }
        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        #expect(status == 0)
        let expected = stack.expected
        #expect(expected.count > 500)
        let got = try stack.emitted()
        #expect(got.count == expected.count, "exactly once")
        #expect(Set(got) == Set(expected), "byte-identical records")
        let (code, json) = try stack.run(["journal", "status", "-c", stack.config, "--json"])
        #expect(code == 0)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let quarantined = report["quarantined"] as? [[String: Any]] ?? []
        // Corrupt and malformed logs (the reason says at which byte), a 403 and a 404 from S3.
        let bad = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stack.dir.sub("expected_bad.json")))) as! [String: String]
        #expect(bad.count == 4)
        for (key, word) in bad {
            let q = quarantined.first { $0["key"] as? String == key }
            #expect(q != nil, "\(key) is quarantined")
            #expect(((q?["reason"] as? String) ?? "").contains(word), "the reason for \(key) says \(word): \(q?["reason"] ?? "-")")
        }
        #expect(quarantined.contains { ($0["reason"] as? String ?? "").hasPrefix("unrecognised message") })
        #expect(quarantined.contains { ($0["reason"] as? String ?? "").contains("input.max_receive_count is 10") }, "the poison message")
        #expect(!got.contains { $0.contains("\"poison\"") || $0.contains("\"denied\"") })
        // The queue ends empty, or (no_purge) still holds every message.
        let setup = try String(contentsOfFile: stack.dir.sub("setup.log"), encoding: .utf8)
        let published = Int(setup.components(separatedBy: " notifications")[0].split(separator: " ").last ?? "") ?? -1
        #expect(try stack.queueCount() == (noPurge ? published + 3 : 0), "\(published) notifications, an unrecognised, a poison and an S3 event message")
        // Skipped, not emitted: the digest (by its key), the AWS Config snapshot (by its key) and the
        // digest under a plain key (by its content), the last two named by the S3 event.
        let log = try String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)
        #expect(log.contains(", 3 skipped;"), "\(log.suffix(400))")
    }

    @Test func killedAtRandomMomentsLosesNoRecord() throws {
        let stack = try Stack(objects: 110, bad: false) { text in
            text = text.replacingOccurrences(of: "    filename: events.ndjson\n", with: "    filename: events.ndjson\n    bulk_max_size: 50\n")
            text = text.replacingOccurrences(of: "  workers: 2\n", with: "  workers: 2\n  max_receive_count: 0\n")
            text = text.replacingOccurrences(of: "  visibility_timeout: 30\n", with: "  visibility_timeout: 3\n")
        }
        var fetchedGets: [String: Int] = [:]  // GET count of objects whose fetch was committed, when it was
        // CTB_KILL_ROUNDS makes a longer run (scripts/kill-loop); the suite's default is 55.
        let rounds = Int(ProcessInfo.processInfo.environment["CTB_KILL_ROUNDS"] ?? "") ?? 55
        let kills = try stack.killAtRandomMoments(rounds) {
            // The journal opens after every kill; objects fetched so far must never be downloaded again.
            var options = Journal.Options()
            options.readOnly = true
            let journal: Journal
            do {
                journal = try Journal(path: stack.dir.sub("journal"), options: options)
            } catch let e as JournalError where e.code == .notADirectory {
                return  // killed before the daemon had created its journal (a loaded machine starts it slowly)
            }
            stack.moto.settle()  // the killed daemon's last GETs are logged first
            let fetched = try journal.objects().filter { $0.stage != .received }.map(\.ref.key)
            let counts = stack.gets()
            journal.close()
            for key in fetched where fetchedGets[key] == nil { fetchedGets[key] = counts[key] ?? 0 }
        }
        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        #expect(status == 0)
        let expected = stack.expected
        let got = try stack.emitted()
        #expect(Set(got) == Set(expected), "0 records lost")
        let duplicates = got.count - Set(got).count
        // At a kill, each of the file output's 2 emitters (`worker`) may have one delivered batch unacknowledged.
        #expect(duplicates <= kills * 2 * 50, "duplicates only from unacknowledged batches (\(duplicates) over \(kills) kills)")
        let finalGets = stack.gets()
        for (key, count) in fetchedGets {
            #expect(finalGets[key] ?? 0 == count, "\(key) was downloaded again after its fetch was committed")
        }
        #expect(fetchedGets.count > 0 && kills >= min(50, rounds))
        print("kill -9 loop: \(kills) kills, \(expected.count) records, \(duplicates) duplicates, \(fetchedGets.count) objects fetched before a kill")
        #expect(try stack.queueCount() == 0)
    }

    /// `input.role_arn`: the user may not read the logs itself, so every record arriving proves the
    /// engine assumed the role (STS AssumeRole, signed) and used its credentials for S3 and SQS.
    @Test func assumesInputRoleArn() throws {
        let stack = try Stack(objects: 12, bad: false, role: true)
        let role = try String(contentsOfFile: stack.dir.sub("role_arn"), encoding: .utf8)
        var text = try String(contentsOfFile: stack.config, encoding: .utf8)
        text = text.replacingOccurrences(of: "  workers: 2\n", with: "  workers: 2\n  role_arn: \(role)\n  external_id: trail-owner-says-so\n")
        try text.write(toFile: stack.config, atomically: true, encoding: .utf8)
        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        let log = (try? String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)) ?? ""
        #expect(status == 0, "\(log.suffix(800))")
        #expect(Set(try stack.emitted()) == Set(stack.expected) && !stack.expected.isEmpty, "\(log.suffix(800))")
        #expect(try stack.queueCount() == 0)
    }

    /// S3 answering 500 beyond the client's own retries: the object waits for a retry (its message
    /// handed back early) with its last error shown by `journal status`; a fault that clears in time
    /// loses nothing, one that persists is quarantined after `input.max_fetch_attempts`.
    @Test func aFailingDownloadIsRetriedVisiblyThenQuarantined() throws {
        let proxyPort = freePort()
        let stack = try Stack(objects: 9, bad: false)
        let proxy = try LocalServer(
            ["python3", Stack.repo.appendingPathComponent("Tests/AWSTests/Fixtures/fault_proxy.py").path, String(proxyPort), String(stack.moto.port)],
            port: proxyPort, name: "fault-proxy", installHint: "python3 is needed")
        defer { proxy.stop() }
        var text = try String(contentsOfFile: stack.config, encoding: .utf8)
        text = text.replacingOccurrences(of: "  endpoint: \(stack.moto.url)\n", with: "  endpoint: \(proxy.url)\n  max_fetch_attempts: 3\n")
        try text.write(toFile: stack.config, atomically: true, encoding: .utf8)
        let transient = "_0000000000000003.json.gz", permanent = "_0000000000000004.json.gz"
        _ = curl(proxy.url + "/__faults?fail=\(transient),\(permanent)")
        var env = stack.environment
        env["AWS_MAX_ATTEMPTS"] = "2"  // the client's own retries, as the AWS CLI reads them (default 8)
        let p = try ChildProcess(binary(), ["-c", stack.config, "--drain"], environment: env, stderrPath: stack.dir.sub("engine.log"))
        // While it runs: the failing object is listed under "retrying" with S3's error.
        var seen: [String: Any]?
        for _ in 0..<150 where seen == nil {
            usleep(200_000)
            let (_, json) = try stack.run(["journal", "status", "-c", stack.config, "--json"], log: "status.log")
            let report = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            seen = (report?["retrying"] as? [[String: Any]])?.first { ($0["key"] as? String ?? "").hasSuffix(transient) }
        }
        let retrying = try #require(seen, "the transient failure never showed in journal status")
        #expect((retrying["lastError"] as? String ?? "").contains("InternalError") && (retrying["attempts"] as? Int ?? 0) >= 1, "\(retrying)")
        _ = curl(proxy.url + "/__faults?fail=\(permanent)")  // S3 recovers for the first one
        _ = p.readAll()
        let end = p.wait()
        let log = (try? String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 0, "\(log.suffix(600))")
        #expect(log.contains("fetch failed; retrying") && !log.contains(" 0 returned,"), "messages were handed back for the retry")
        let (_, json) = try stack.run(["journal", "status", "-c", stack.config, "--json"], log: "status.log")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let quarantined = (report["quarantined"] as? [[String: Any]] ?? []).filter { $0["key"] != nil }
        #expect(quarantined.count == 1 && (quarantined.first?["key"] as? String ?? "").hasSuffix(permanent), "\(quarantined)")
        let faults = try JSONSerialization.jsonObject(with: Data(curl(proxy.url + "/__faults/stats").utf8)) as? [String: Int] ?? [:]
        #expect(faults[permanent] == 3 * 2, "3 fetch attempts of 2 requests each (AWS_MAX_ATTEMPTS): \(faults)")
        #expect((quarantined.first?["reason"] as? String ?? "").contains("InternalError") && quarantined.first?["attempts"] as? Int == 3, "\(quarantined)")
        #expect((report["retrying"] as? [Any] ?? [0]).isEmpty)
        // Every record but the quarantined object's, once.
        let perKey = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stack.dir.sub("records_per_key.json")))) as! [String: Int]
        let lost = try #require(perKey.first { $0.key.hasSuffix(permanent) }?.value)
        let got = try stack.emitted()
        #expect(lost > 0 && got.count == stack.expected.count - lost && Set(got).isSubset(of: Set(stack.expected)) && Set(got).count == got.count)
        #expect(try stack.queueCount() == 0)
    }

    /// A one-shot `--drain` run whose credentials SQS refuses ends with the error (exit 1) instead of
    /// retrying for ever, and consumes nothing.
    @Test func aDrainRunEndsOnAnAuthorizationError() throws {
        let stack = try Stack(objects: 3, bad: false)
        var env = stack.environment
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        let p = try ChildProcess(binary(), ["-c", stack.config, "--drain"], environment: env, stderrPath: stack.dir.sub("denied.log"))
        _ = p.readAll()
        let end = p.wait()
        let log = (try? String(contentsOfFile: stack.dir.sub("denied.log"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 1, "\(end): \(log.suffix(600))")
        #expect(log.contains("cloudtrailbeat: stopped: sqs ReceiveMessage failed: SignatureDoesNotMatch"), "\(log.suffix(600))")
        #expect(try stack.queueCount() > 0, "nothing consumed")
    }

    @Test func sigtermExitsZeroAndTheNextRunResumes() throws {
        let stack = try Stack(objects: 40, bad: false)
        let p = try stack.start(["-c", stack.config])
        usleep(1_500_000)
        let started = Date()
        p.kill(SIGTERM)
        let end = p.wait()
        #expect(end.exited && end.code == 0, "SIGTERM → exit 0 (\(end))")
        #expect(Date().timeIntervalSince(started) < 30, "within shutdown_timeout")
        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        #expect(status == 0)
        #expect(Set(try stack.emitted()) == Set(stack.expected))
    }
}

@Suite("The engine under load and scale-out", .serialized)
struct EngineScaleTests {
    @Test(arguments: ["0", "500"])
    func aSlowOutputOrDiskNeverLetsAMessageReappearWhileInFlight(delay: String) throws {
        let es = try fixtureServer("OutputsTests/Fixtures/es_server.py", ["0.8"], name: "es")
        // 4 s when commits are slowed (ten journaled receipts then outlast the timeout: the heartbeat must
        // hold messages from SQS's answer on); 9 s for the slow output alone. The heartbeat extends at a
        // third of the timeout, so a ChangeMessageVisibility call has 6 s to land: a loaded machine's
        // python moto once answered later than 2.7 s (at 4 s) and once, in a full local run, than 4 s
        // (at 6 s), and a message came back. A bulk request takes 0.8 s, so messages are still held well
        // past 3 s and must be extended (6–7 extensions on an idle machine).
        let timeout = delay == "0" ? 9 : 4
        let stack = try Stack(objects: 24, bad: false) { text in
            text = text.replacingOccurrences(of: "  visibility_timeout: 30\n", with: "  visibility_timeout: \(timeout)\n  max_receive_count: 0\n")
            text = text.replacingOccurrences(of: "output:\n", with: "output:\n  elasticsearch:\n    hosts: [\"\(es.url)\"]\n    bulk_max_size: 25\n")
        }
        // A slow disk too (debug builds: every commit waits first), so journaling a received batch
        // takes a while: the heartbeat must hold messages from the moment SQS hands them over.
        var env = stack.environment
        if delay != "0" { env["CLOUDTRAILBEAT_DEBUG_COMMIT_DELAY_MS"] = delay }
        let p = try ChildProcess(binary(), ["-c", stack.config, "--drain"], environment: env, stderrPath: stack.dir.sub("engine.log"))
        _ = p.readAll()
        let end = p.wait()
        #expect(end.exited && end.code == 0)
        // Every message was received exactly once (no redelivery while in flight): the engine reported
        // as many receipts as messages were published. (Before the heartbeat held messages from the
        // answer on, a 500 ms commit delay let the last of a journaled batch reappear.)
        let setup = try String(contentsOfFile: stack.dir.sub("setup.log"), encoding: .utf8)
        let published = Int(setup.components(separatedBy: " notifications")[0].split(separator: " ").last ?? "") ?? -1
        let stderr = try String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)
        #expect(stderr.contains("every journal commit waits \(delay) ms") == (delay != "0"), "the slow disk took effect (a debug build)")
        #expect(stderr.contains("SQS \(published) received,"), "no message came back while in flight: \(stderr.suffix(600))")
        #expect(stderr.contains(" visibility extensions;") && !stderr.contains(" 0 visibility extensions;"), "the heartbeat extended visibility")
        #expect(Set(try stack.emitted()) == Set(stack.expected), "the file output, beside the slow one, has every record")
    }

    /// `worker` is how many objects an output works on at once: the receiver never sees more bulk
    /// requests at a time than that, and sees that many when there is work for them.
    @Test(arguments: [1, 2])
    func anOutputHasAtMostWorkerObjectsInFlight(worker: Int) throws {
        let stack = try BackfillStack(objects: 40)
        let es = try fixtureServer("OutputsTests/Fixtures/es_server.py", ["0.15"], name: "es")
        let config = try stack.config("workers", output: """
              elasticsearch:
                hosts: ["\(es.url)"]
                bulk_max_size: 20
                worker: \(worker)

            """)
        #expect(try stack.run(["-c", config, "-b", stack.dir.sub("local")]) == 0)
        let stats = try esStats(es)
        let expected = try stack.expected()
        let docs = stats["docs"] as? [String: Any] ?? [:]
        #expect(stats["max_in_flight"] as? Int == worker, "bulk requests at once: \(stats["max_in_flight"] ?? "-")")
        #expect(docs.count == expected.count, "every record indexed once: \(docs.count) of \(expected.count)")
        #expect((stats["items"] as? [String])?.count == expected.count, "no record sent twice")
    }

    /// kill -9 while batches spanning many small objects are in flight (the receiver holds each bulk
    /// request 1.5 s): the next run delivers every record, and what reaches the receiver twice is at most
    /// the one batch each of the output's two batchers (`worker: 2`) had in flight: their objects'
    /// cursors had not moved.
    @Test func aKillDuringACrossObjectBatchLosesNothingAndResendsOnlyThatBatch() throws {
        let stack = try BackfillStack(objects: 120)
        let es = try fixtureServer("OutputsTests/Fixtures/es_server.py", ["1.5"], name: "es")
        let config = try stack.config("kill-batch", output: """
              elasticsearch:
                hosts: ["\(es.url)"]
                bulk_max_size: 40
                worker: 2

            """)
        let engine = try stack.start(["-c", config, "-b", stack.dir.sub("local")])
        // The first bulk requests answered; the next ones are then in the receiver's 1.5 s.
        let deadline = Date().addingTimeInterval(60)
        while (try esStats(es)["requests"] as? Int ?? 0) < 1 && Date() < deadline { usleep(20_000) }
        usleep(400_000)
        engine.kill()
        #expect(!engine.wait().exited, "killed, not finished")
        let first = try esStats(es)
        let firstItems = first["items"] as? [String] ?? []
        // A batcher sends what it has when nothing else is ready (it never waits to fill a batch).
        let answered = first["requests"] as? Int ?? 0
        #expect((1...2).contains(answered) && firstItems.count <= 40 * answered && firstItems.count > 4 * answered, "batches answered before the kill: \(answered) requests, \(firstItems.count) items")
        let docs = first["docs"] as? [String: [String: Any]] ?? [:]
        let objects = Set(firstItems.compactMap { id in docs.first { $0.key.hasSuffix("/" + id) }.flatMap { ($0.value["s3"] as? [String: Any])?["key"] as? String } })
        #expect(objects.count >= 3 * answered, "each batch spans several objects (1–4 records each): \(objects.count) in \(answered)")

        #expect(try stack.run(["-c", config, "-b", stack.dir.sub("local")]) == 0)
        let stats = try esStats(es)
        let expected = try stack.expected()
        let items = stats["items"] as? [String] ?? []
        #expect((stats["docs"] as? [String: Any])?.count == expected.count, "every record indexed: \((stats["docs"] as? [String: Any])?.count ?? 0) of \(expected.count)")
        let duplicates = items.count - Set(items).count
        #expect(duplicates <= 2 * 40, "only the batches in flight at the kill were sent again: \(duplicates) duplicates")
        #expect(Set(items).count == expected.count)
    }

    /// A spot interruption notice (IMDSv2 `spot/instance-action`) shuts the engine down gracefully:
    /// exit 0 before the work is done, and the next start finishes it with nothing lost.
    @Test func aSpotNoticeStopsGracefullyAndTheNextRunFinishes() throws {
        let stack = try BackfillStack(objects: 24)
        let es = try fixtureServer("OutputsTests/Fixtures/es_server.py", ["1"], name: "es")
        let notice = stack.dir.sub("notice.json")
        let imds = try fixtureServer("AWSTests/Fixtures/imds_server.py", [notice], name: "imds")
        let output = "  elasticsearch:\n    hosts: [\"\(es.url)\"]\n    bulk_max_size: 2\n"
        let config = try stack.config("spot", output: output, settings: "spot_interruption: true\n")
        var env = stack.env
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.url
        let p = try ChildProcess(binary(), ["-c", config, "-b", stack.dir.sub("local")], environment: env, stderrPath: stack.dir.sub("spot.log"))
        usleep(2_000_000)
        try #"{"action": "terminate", "time": "2026-11-29T12:00:00Z"}"#.write(toFile: notice, atomically: true, encoding: .utf8)
        _ = p.readAll()
        let end = p.wait()
        let log = (try? String(contentsOfFile: stack.dir.sub("spot.log"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 0, "a spot notice ends the run with exit 0: \(end)")
        #expect(log.contains("spot interruption notice") && log.contains("\"action\": \"terminate\""), "\(log.suffix(800))")
        let expected = try stack.expected()
        let before = try esStats(es)["docs"] as? [String: Any] ?? [:]
        #expect(before.count < expected.count, "it stopped before the work was done (\(before.count) of \(expected.count))")
        #expect((try esStats(imds)["polls"] as? Int ?? 0) >= 1, "the notice was polled with an IMDSv2 token")
        // The next start (no notice now) finishes from the journal.
        try FileManager.default.removeItem(atPath: notice)
        _ = try stack.config("spot", output: output)
        try esScript(es, #"{"delay": 0}"#)
        #expect(try stack.run(["-c", config, "-b", stack.dir.sub("local")]) == 0)
        let after = try esStats(es)["docs"] as? [String: Any] ?? [:]
        #expect(after.count == expected.count, "nothing lost: \(after.count) of \(expected.count)")
    }

    /// A receiver that never answers cannot hold a shutdown: SIGTERM ends the run with exit 0 (an HTTP
    /// request is cancelled at once; a blocking Logstash socket is cut off after `shutdown_timeout` and
    /// a 5 s last resort), and the next start delivers everything.
    @Test(arguments: ["elasticsearch", "logstash"])
    func aStuckReceiverCannotHoldAShutdown(output: String) throws {
        let stack = try BackfillStack(objects: 12)
        let stuck = output == "elasticsearch"
            ? try fixtureServer("OutputsTests/Fixtures/es_server.py", ["600"], name: "es")
            : try fixtureServer("OutputsTests/Fixtures/silent_server.py", name: "silent")
        let host = output == "elasticsearch" ? stuck.url : "127.0.0.1:\(stuck.port)"
        @discardableResult func write(_ host: String) throws -> String {
            try stack.config("stuck", output: "  \(output):\n    hosts: [\"\(host)\"]\n    bulk_max_size: 5\n", settings: "shutdown_timeout: 1s\n")
        }
        let config = try write(host)
        let p = try stack.start(["-c", config, "-b", stack.dir.sub("local")], log: "stuck.log")
        usleep(2_500_000)
        let signalled = Date()
        p.kill(SIGTERM)
        _ = p.readAll()
        let end = p.wait()
        let took = Date().timeIntervalSince(signalled)
        let log = (try? String(contentsOfFile: stack.dir.sub("stuck.log"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 0, "exit 0: \(end)")
        #expect(took < 20, "bounded by shutdown_timeout (1 s) and the 5 s last resort, not by the receiver: \(took) s")
        #expect(log.contains("graceful shutdown"), "\(log.suffix(800))")
        // An HTTP request is cancelled at once; a blocking socket needs the timeout.
        #expect(log.contains("shutdown_timeout") == (output == "logstash"), "\(log.suffix(800))")
        // A receiver that answers gets everything on the next start.
        let expected = try stack.expected()
        if output == "elasticsearch" {
            let es = try fixtureServer("OutputsTests/Fixtures/es_server.py", name: "es")
            try write(es.url)
            #expect(try stack.run(["-c", config, "-b", stack.dir.sub("local")]) == 0)
            #expect((try esStats(es)["docs"] as? [String: Any] ?? [:]).count == expected.count, "nothing lost")
        } else {
            let events = stack.dir.sub("lumberjack.log")
            let ls = try fixtureServer("OutputsTests/Fixtures/lumberjack_server.py", ["full", events], name: "lumberjack")
            try write("127.0.0.1:\(ls.port)")
            #expect(try stack.run(["-c", config, "-b", stack.dir.sub("local")]) == 0)
            var got = Set<String>()
            for line in try String(contentsOfFile: events, encoding: .utf8).split(separator: "\n") {
                guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let e = o["event"] as? [String: Any],
                    let ct = e["cloudtrail"], let d = try? JSONSerialization.data(withJSONObject: ct, options: [.sortedKeys]) else { continue }
                got.insert(String(decoding: d, as: UTF8.self))
            }
            #expect(got.count == expected.count, "nothing lost: \(got.count) of \(expected.count)")
        }
    }

    /// An output that is down: the run logs it, `journal status` names it with its error while the
    /// other output goes on, and once the receiver is up its events arrive and the failure is cleared.
    @Test func aFailingOutputIsShownInJournalStatusUntilItRecovers() throws {
        let stack = try BackfillStack(objects: 24)
        let port = freePort()  // nothing listens here yet
        let metrics = freePort()
        let config = try stack.config(
            "down", output: "  file:\n    path: \(stack.dir.sub("down"))/out\n  elasticsearch:\n    hosts: [\"http://127.0.0.1:\(port)\"]\n",
            settings: "http:\n  enabled: true\n  port: \(metrics)\n")
        let p = try stack.start(["-c", config, "-b", stack.dir.sub("local")], log: "down.log")
        func status(_ json: Bool) throws -> String {
            let s = try stack.start(["journal", "status", "-c", config] + (json ? ["--json"] : []), log: "status.log")
            defer { _ = s.wait() }
            return s.readAll()
        }
        var failing: [String: Any]?
        for _ in 0..<100 where failing == nil {
            usleep(200_000)
            let report = try? JSONSerialization.jsonObject(with: Data(try status(true).utf8)) as? [String: Any]
            failing = (report?["failingOutputs"] as? [[String: Any]])?.first { $0["output"] as? String == "elasticsearch" }
        }
        let record = try #require(failing, "the failing output never showed in journal status")
        #expect((record["lastError"] as? String ?? "").contains("127.0.0.1:\(port)"), "\(record)")
        let text = try status(false)
        #expect(text.contains("outputs    elasticsearch failing since "), "\(text)")
        let gauges = scrape(metrics)
        #expect(gauges["cloudtrailbeat_output_failing{output=\"elasticsearch\"}"] == 1 && gauges["cloudtrailbeat_output_failing{output=\"file\"}"] == 0, "\(gauges.filter { $0.key.contains("failing") })")
        // The file output is not held back meanwhile.
        let expected = try stack.expected()
        var filed = Set<String>()
        for _ in 0..<100 where filed != expected {
            filed = Set(try stack.emitted("down"))
            usleep(100_000)
        }
        #expect(filed == expected, "\(filed.count) of \(expected.count) in the file output")
        // The receiver comes up: everything arrives, the run ends, and the failure is gone.
        let es = try LocalServer(["python3", Stack.repo.appendingPathComponent("Tests/OutputsTests/Fixtures/es_server.py").path, String(port)],
                                 port: port, name: "es", installHint: "python3 is needed")
        defer { es.stop() }
        _ = p.readAll()
        let end = p.wait()
        let log = (try? String(contentsOfFile: stack.dir.sub("down.log"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 0, "\(end): \(log.suffix(600))")
        #expect(log.contains("output failing; its events wait in the journal") && log.contains("output delivers again"), "\(log.suffix(800))")
        #expect((try esStats(es)["docs"] as? [String: Any] ?? [:]).count == expected.count)
        #expect(try status(false).contains("outputs    no delivery failing"))
    }

    func esScript(_ es: LocalServer, _ json: String) throws {
        #expect(curl(es.url + "/_script", postJSON: json).contains("ok"))
    }

    func esStats(_ es: LocalServer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(curl(es.url + "/_test/stats").utf8)) as? [String: Any])
    }

    /// Messages a killed run received and never journaled are invisible for a visibility timeout, and
    /// the queue answers empty meanwhile: --drain waits for them instead of ending without them.
    @Test func drainWaitsForMessagesAKilledRunReceivedButNeverJournaled() throws {
        let stack = try Stack(objects: 30, bad: false) { text in
            text = text.replacingOccurrences(of: "  visibility_timeout: 30\n", with: "  visibility_timeout: 10\n")
        }
        let held = try stack.receiveAndDrop(max: 4, visibility: 10)
        #expect(held > 0, "the queue gave no message to hold")
        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        #expect(status == 0)
        let log = (try? String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("message(s) in flight in the queue"), "\(log.suffix(600))")
        #expect(Set(try stack.emitted()) == Set(stack.expected), "the held messages' records were shipped too")
        #expect(try stack.queueCount() == 0)
    }

    @Test func threeInstancesOneKilledRepeatedlyLoseNothing() throws {
        let stack = try Stack(objects: 90, bad: false) { text in
            text = text.replacingOccurrences(of: "  visibility_timeout: 30\n", with: "  visibility_timeout: 3\n  max_receive_count: 0\n")
        }
        // Three instances, each with its own journal and file output, on one queue.
        let base = try String(contentsOfFile: stack.config, encoding: .utf8)
        var configs: [String] = []
        for i in 0..<3 {
            let path = stack.dir.sub("instance\(i).yml")
            try base.replacingOccurrences(of: stack.dir.path + "/journal", with: stack.dir.path + "/journal\(i)")
                .replacingOccurrences(of: stack.dir.path + "/out", with: stack.dir.path + "/out/\(i)")
                .write(toFile: path, atomically: true, encoding: .utf8)
            configs.append(path)
        }
        let steady = [try stack.start(["-c", configs[1]]), try stack.start(["-c", configs[2]])]
        var rng = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        for _ in 0..<12 {
            let victim = try stack.start(["-c", configs[0]])
            usleep(UInt32.random(in: 100_000...700_000, using: &rng))
            victim.kill()
            _ = victim.wait()
        }
        for p in steady {
            p.kill(SIGTERM)
            #expect(p.wait().code == 0)
        }
        // Messages the killed instance held come back after their visibility timeout: --drain waits for
        // them (no sleep here: the first drain run must not end while they are away).
        for config in configs {
            let (status, _) = try stack.run(["-c", config, "--drain"])
            #expect(status == 0)
        }
        let got = try stack.emitted()
        #expect(Set(got) == Set(stack.expected), "0 records lost over three instances")
        #expect(try stack.queueCount() == 0)
    }
}

/// The metrics endpoint's samples on a loopback port, by name with labels.
func scrape(_ port: Int) -> [String: Double] {
    var values: [String: Double] = [:]
    for line in curl("http://127.0.0.1:\(port)/metrics").split(separator: "\n") where !line.hasPrefix("#") {
        let parts = line.split(separator: " ")
        if parts.count == 2, let v = Double(parts[1]) { values[String(parts[0])] = v }
    }
    return values
}

@Suite("Metrics endpoint", .serialized)
struct MetricsTests {
    func text(_ port: Int) -> String { curl("http://127.0.0.1:\(port)/metrics") }

    @Test func countersMoveAndGaugesMatchJournalStatus() throws {
        let port = freePort()
        let stack = try Stack(objects: 40, bad: true) { text in
            text += "http:\n  enabled: true\n  port: \(port)\n"
        }
        let engine = try stack.start(["-c", stack.config])
        defer {
            engine.kill(SIGTERM)
            _ = engine.wait()
        }
        let expected = stack.expected.count
        var seen: Set<Double> = []
        var last: [String: Double] = [:]
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            last = scrape(port)
            if let acked = last["cloudtrailbeat_output_records_acknowledged_total{output=\"file\"}"] {
                seen.insert(acked)
                if Int(acked) == expected, last["cloudtrailbeat_journal_messages{state=\"received\"}"] == 0,
                    last["cloudtrailbeat_journal_objects{stage=\"received\"}"] == 0
                {
                    break
                }
            }
            usleep(200_000)
        }
        #expect(Int(last["cloudtrailbeat_output_records_acknowledged_total{output=\"file\"}"] ?? -1) == expected)
        #expect(seen.count >= 2, "the counter moved during the run: \(seen.sorted())")
        #expect((last["cloudtrailbeat_sqs_messages_received_total"] ?? 0) > 0 && (last["cloudtrailbeat_s3_objects_fetched_total"] ?? 0) > 0)
        // The corrupt, malformed, denied (403) and missing (404) logs of --bad.
        let bad = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stack.dir.sub("expected_bad.json")))) as! [String: String]
        #expect(Int(last["cloudtrailbeat_s3_objects_quarantined_total"] ?? 0) == bad.count && bad.count == 4)
        // Let deletes and GC settle, then the journal gauges equal `journal status`.
        var stable: [String: Double] = [:]
        for _ in 0..<50 {
            usleep(300_000)
            let now = scrape(port).filter { $0.key.hasPrefix("cloudtrailbeat_journal_objects") || $0.key.hasPrefix("cloudtrailbeat_journal_messages") }
            if now == stable && now["cloudtrailbeat_journal_messages{state=\"complete\"}"] == 0 { break }
            stable = now
        }
        let (code, json) = try stack.run(["journal", "status", "-c", stack.config, "--json"])
        #expect(code == 0)
        let status = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        for (stage, n) in status["objects"] as? [String: Int] ?? [:] {
            #expect(stable["cloudtrailbeat_journal_objects{stage=\"\(stage)\"}"].map(Int.init) == n, "objects \(stage)")
        }
        for (state, n) in status["messages"] as? [String: Int] ?? [:] {
            #expect(stable["cloudtrailbeat_journal_messages{state=\"\(state)\"}"].map(Int.init) == n, "messages \(state)")
        }
        #expect(Int(scrape(port)["cloudtrailbeat_journal_quarantined"] ?? -1) == (status["quarantined"] as? [Any])?.count)
        // The fetch pool and the batches actually used: the same deliveries in both, and batches that span objects.
        let after = scrape(port)
        #expect(after["cloudtrailbeat_fetch_concurrency"] == 128 && after["cloudtrailbeat_fetches_in_flight"] == 0, "fetch gauges: \(after.filter { $0.key.contains("fetch") })")
        #expect(Int(after["cloudtrailbeat_journal_fetches_in_progress"] ?? -1) == status["fetchesInProgress"] as? Int)
        let records = (status["records"] as? [[String: Any]] ?? []).first { $0["output"] as? String == "file" } ?? [:]
        let deliveries = records["deliveries"] as? Int ?? 0
        #expect(deliveries > 0 && Int(after["cloudtrailbeat_output_deliveries_total{output=\"file\"}"] ?? -1) == deliveries)
        #expect(Int(after["cloudtrailbeat_output_delivery_objects_total{output=\"file\"}"] ?? -1) == records["deliveryObjects"] as? Int)
        #expect((after["cloudtrailbeat_output_last_batch_events{output=\"file\"}"] ?? 0) > 0 && (after["cloudtrailbeat_journal_commits_total"] ?? 0) > 0)
        // Small logs' records came from their fetch, and none is left in memory once all were read.
        let fromMemory = after["cloudtrailbeat_object_readings_total{from=\"memory\"}"] ?? 0
        #expect(fromMemory > 0 && after["cloudtrailbeat_decoded_bodies_bytes"] == 0, "\(after.filter { $0.key.contains("reading") || $0.key.contains("decoded") })")
        // Every metric says what it is: a HELP and a TYPE line each.
        let exposition = text(port)
        let names = Set(scrape(port).keys.map { String($0.prefix { $0 != "{" }) })
        #expect(names.count >= 15)
        for name in names {
            #expect(exposition.contains("# HELP \(name) ") && exposition.contains("# TYPE \(name) "), "\(name) has HELP and TYPE")
        }
    }
}
