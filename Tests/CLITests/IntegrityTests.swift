import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Signed digest chains on moto (scripts/signed_trails.py: three trails, one of an organisation, a
/// backfill digest), tampered with as an attacker would, then `cloudtrailbeat verify` — checked against
/// what was done, and against `aws cloudtrail validate-logs` on the same bucket.
struct TrailsStack {
    let moto: LocalServer
    let keys: LocalServer
    let dir: TempDir
    var env: [String: String]
    static let script = Stack.repo.appendingPathComponent("scripts/signed_trails.py").path

    init(buckets: [(String, tamper: Bool)]) throws {
        dir = TempDir("integrity")
        let port = freePort()
        moto = try LocalServer(["moto_server", "-H", "127.0.0.1", "-p", String(port)], port: port, name: "moto", installHint: "pip install 'moto[server]' (scripts/setup)")
        for (bucket, tamper) in buckets {
            let log = dir.sub("setup-\(bucket).log")
            try #require(
                system("python3 '\(TrailsStack.script)' setup --endpoint \(moto.url) --bucket \(bucket) --dir '\(dir.sub(bucket))' \(tamper ? "--tamper" : "") > '\(log)' 2>&1") == 0,
                "signed_trails setup failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        let keysPort = freePort()
        keys = try LocalServer(
            ["python3", TrailsStack.script, "keys-server", "--dir", dir.sub(buckets[0].0), "--port", String(keysPort)], port: keysPort,
            name: "cloudtrail-keys", installHint: "python3 with cryptography (pip install 'moto[server]' brings it)")
        env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = "AKIAINTEGRITY"
        env["AWS_SECRET_ACCESS_KEY"] = "integrity"
        env["SWIFT_BACKTRACE"] = "enable=no"
        // verify needs AWS access only: no output, no journal.
        try "input:\n  aws_region: us-east-1\n  endpoint: \(moto.url)\n"
            .write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
    }

    /// Runs the binary; (exit code, stdout, stderr).
    func run(_ args: [String], executable: String = binary(), env extra: [String: String] = [:]) throws -> (Int32, String, String) {
        var environment = env
        for (k, v) in extra { environment[k] = v }
        let p = try ChildProcess(executable, args, environment: environment, stderrPath: dir.sub("stderr.log"))
        let out = p.readAll()
        let end = p.wait()
        return (end.exited ? end.code : 128 + end.code, out, (try? String(contentsOfFile: dir.sub("stderr.log"), encoding: .utf8)) ?? "")
    }

    func verify(_ bucket: String, _ more: [String] = [], keysFile: Bool = true, env extra: [String: String] = [:]) throws -> (Int32, [String: Any]) {
        let keys = keysFile ? ["--public-keys", dir.sub(bucket) + "/public-keys.json"] : []
        let (code, out, err) = try run(["verify", "-c", dir.sub("c.yml"), "-b", bucket, "--json"] + keys + more, env: extra)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "verify printed no JSON (exit \(code)): \(out) \(err)")
        return (code, json)
    }

    func expected(_ bucket: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.sub(bucket) + "/expected.json"))) as? [String: Any])
    }

    /// `{"digests": {…}, "logs": {…}}` with each list reduced to its sorted keys, for comparing.
    static func shape(_ report: [String: Any]) -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        for part in ["digests", "logs"] {
            for (k, v) in report[part] as? [String: Any] ?? [:] {
                if let list = v as? [Any] {
                    out[part, default: [:]][k] = list.map { ($0 as? [String: Any])?["key"] as? String ?? ($0 as? String ?? "?") }.sorted().joined(separator: "\n")
                } else {
                    out[part, default: [:]][k] = "\(v)"
                }
            }
        }
        return out
    }
}

/// The AWS CLI from PyPI in the virtual environment scripts/setup makes.
func awsCLI() throws -> String {
    let env = ProcessInfo.processInfo.environment
    let root = env["CLOUDTRAILBEAT_TOOLS"] ?? (env["HOME"] ?? "/root") + "/.cache/cloudtrailbeat"
    let aws = root + "/awscli/bin/aws"
    guard access(aws, X_OK) == 0 else { throw ServerError(message: "the AWS CLI is not installed at \(aws): run scripts/setup") }
    return aws
}

@Suite(.serialized) struct IntegrityVerifyTests {
    @Test func verifyNamesEachTamperingAndCountsTheRestValid() throws {
        let stack = try TrailsStack(buckets: [("tampered", true), ("intact", false)])
        let (code, report) = try stack.verify("tampered")
        #expect(code == 1, "findings exit 1")
        #expect(TrailsStack.shape(report) == TrailsStack.shape(try stack.expected("tampered")))
        // Every finding carries its reason and what the key says of account and region.
        let invalid = try #require(((report["digests"] as? [String: Any])?["invalid"] as? [[String: Any]])?.first)
        #expect(invalid["reason"] as? String == "signature verification failed")
        #expect(invalid["account"] as? String == "111111111111" && invalid["region"] as? String == "eu-west-1" && invalid["trail"] as? String == "main")

        // The same verdicts with the keys from ListPublicKeys (signed; the stand-in refuses unsigned calls).
        let (code2, viaAPI) = try stack.verify("tampered", keysFile: false, env: ["AWS_ENDPOINT_URL_CLOUDTRAIL": stack.keys.url])
        #expect(code2 == 1)
        #expect(TrailsStack.shape(viaAPI) == TrailsStack.shape(report))

        // An intact bucket verifies whole: exit 0, nothing listed as a problem.
        let (ok, clean) = try stack.verify("intact")
        #expect(ok == 0)
        #expect(TrailsStack.shape(clean) == TrailsStack.shape(try stack.expected("intact")))
        #expect((clean["logs"] as? [String: Any])?["valid"] as? Int == 37)

        // Another key (the intact bucket's) verifies none of the tampered bucket's digests.
        let (_, wrongKey) = try stack.verify("tampered", ["--public-keys", stack.dir.sub("intact") + "/public-keys.json"], keysFile: false)
        #expect((wrongKey["digests"] as? [String: Any])?["valid"] as? Int == 0)
        #expect(((wrongKey["digests"] as? [String: Any])?["invalid"] as? [[String: Any]])?.allSatisfy { ($0["reason"] as? String)?.hasPrefix("public key not found") == true } == true)

        // The window: a day with no digest and no log finds nothing; the trails' day finds everything.
        let (empty, none) = try stack.verify("tampered", ["--since", "2026-12-01"])
        #expect(empty == 0 && (none["digests"] as? [String: Any])?["valid"] as? Int == 0)
        let (_, day) = try stack.verify("tampered", ["--since", "2026-11-30", "--until", "2026-11-30"])
        #expect(TrailsStack.shape(day) == TrailsStack.shape(report))
    }

    @Test func verifyAgreesWithTheAWSCLIOnWhatItChecks() throws {
        let aws = try awsCLI()
        let stack = try TrailsStack(buckets: [("tampered", true)])
        // validate-logs checks one trail in one region; the organisation trail needs DescribeTrails and
        // Organizations, which the stand-ins lack: compare the account's two regional chains.
        var cliDigests: [String: String] = [:], cliLogs: [String: String] = [:]
        for region in ["us-east-1", "eu-west-1"] {
            let (code, out, err) = try stack.run(
                ["cloudtrail", "validate-logs", "--trail-arn", "arn:aws:cloudtrail:us-east-1:111111111111:trail/main",
                 "--start-time", "2026-11-30T00:00:00Z", "--end-time", "2026-11-30T23:59:59Z", "--s3-bucket", "tampered",
                 "--account-id", "111111111111", "--region", region, "--endpoint-url", stack.keys.url, "--verbose"],
                executable: aws, env: ["AWS_ENDPOINT_URL_S3": stack.moto.url])
            #expect(code == 1, "validate-logs finds the tampering in \(region): \(err.suffix(500))")
            // `Digest file<TAB>s3://bucket/key<TAB>valid` or `INVALID: reason` (also `(backfill) Digest file`, `Log file`).
            for line in (out + "\n" + err).split(separator: "\n") {
                let cols = line.split(separator: "\t").map(String.init)
                guard cols.count == 3, cols[1].hasPrefix("s3://tampered/") else { continue }
                let key = String(cols[1].dropFirst("s3://tampered/".count))
                if cols[0].hasSuffix("Digest file") { cliDigests[key] = cols[2] } else if cols[0] == "Log file" { cliLogs[key] = cols[2] }
            }
        }
        #expect(cliDigests.count == 9 && cliLogs.count >= 20, "validate-logs ran: \(cliDigests.count) digests, \(cliLogs.count) logs")
        let (_, ours) = try stack.verify("tampered", ["-p", "AWSLogs/111111111111/"])
        let d = ours["digests"] as? [String: Any] ?? [:], l = ours["logs"] as? [String: Any] ?? [:]
        func keys(_ list: Any?) -> Set<String> { Set((list as? [[String: Any]] ?? []).compactMap { $0["key"] as? String }) }
        #expect(d["valid"] as? Int == cliDigests.values.filter { $0 == "valid" }.count)
        #expect(keys(d["invalid"]) == Set(cliDigests.filter { $0.value.hasPrefix("INVALID") && $0.value != "INVALID: not found" }.keys))
        #expect(keys(d["missing"]) == Set(cliDigests.filter { $0.value == "INVALID: not found" }.keys))
        #expect(l["valid"] as? Int == cliLogs.values.filter { $0 == "valid" }.count)
        #expect(keys(l["modified"]) == Set(cliLogs.filter { $0.value == "INVALID: hash value doesn't match" }.keys))
        #expect(keys(l["missing"]) == Set(cliLogs.filter { $0.value == "INVALID: not found" }.keys))
    }

    @Test func verifyResumesFromItsStateWithoutFetchingTheLogsAgain() throws {
        let stack = try TrailsStack(buckets: [("intact", false)])
        let state = stack.dir.sub("verify.state")
        func logGets() -> Int {
            ((try? String(contentsOfFile: "/tmp/ctb-moto-\(stack.moto.port).log", encoding: .utf8)) ?? "")
                .split(separator: "\n").filter { $0.contains("\"GET /intact/") && $0.contains("/CloudTrail/") }.count
        }
        let (first, report) = try stack.verify("intact", ["--state", state])
        #expect(first == 0)
        let fetched = logGets()
        #expect(fetched == 37, "every listed log fetched once")
        // Interrupted mid-write: a torn last line is ignored, and the next run appends after it.
        let handle = try #require(FileHandle(forWritingAtPath: state))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("0123abcd".utf8))
        try handle.close()
        let (second, resumed) = try stack.verify("intact", ["--state", state])
        #expect(second == 0)
        #expect(logGets() == fetched, "no log fetched again")
        #expect(TrailsStack.shape(resumed) == TrailsStack.shape(report))
        let lines = try String(contentsOfFile: state, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 38 && lines.last == "", "37 whole lines, the torn one cut off")
    }

    @Test func usageAndConfigurationErrorsExitTwo() throws {
        let stack = try TrailsStack(buckets: [("tampered", false)])
        #expect(try stack.run(["verify", "-c", stack.dir.sub("c.yml")]).0 == 2, "no -b")
        #expect(try stack.run(["verify", "-c", stack.dir.sub("c.yml"), "-b", "tampered", "--since", "yesterday"]).0 == 2)
        #expect(try stack.run(["verify", "-c", stack.dir.sub("c.yml"), "-b", stack.dir.path]).0 == 2, "a local copy has no signatures")
        try "{\"keys\": []}".write(toFile: stack.dir.sub("bad-keys.json"), atomically: true, encoding: .utf8)
        let (code, _, err) = try stack.run(["verify", "-c", stack.dir.sub("c.yml"), "-b", "tampered", "--public-keys", stack.dir.sub("bad-keys.json")])
        #expect(code == 2 && err.contains("not a public key list"), "\(err)")
    }
}

extension TrailsStack {
    /// The findings `expected.json` of `bucket` implies, as "kind key".
    func wantedFindings(_ bucket: String) throws -> Set<String> {
        let expected = try self.expected(bucket)
        var want: Set<String> = []
        for (part, kinds) in [("digests", ["invalid": "digest_invalid", "missing": "digest_missing"]),
                              ("logs", ["modified": "log_modified", "missing": "log_missing", "not_covered": "log_not_covered"])] {
            for (name, kind) in kinds {
                for key in (expected[part] as? [String: Any])?[name] as? [String] ?? [] { want.insert("\(kind) \(key)") }
            }
        }
        return want
    }

    /// The CloudTrailIntegrity events in a file output's directory: "kind key" → the distinct events
    /// (time, digest, detail) shipped for it.
    func findingEvents(_ dir: String) throws -> [String: Set<String>] {
        var events: [String: Set<String>] = [:]
        for file in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            for line in try String(contentsOfFile: dir + "/" + file, encoding: .utf8).split(separator: "\n") {
                guard let e = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], e["type"] as? String == "CloudTrailIntegrity",
                    let i = e["integrity"] as? [String: Any], let kind = i["kind"] as? String, let key = i["key"] as? String
                else { continue }
                events["\(kind) \(key)", default: []].insert("\(e["@timestamp"] ?? "") \(i["digest"] ?? "") \(i["detail"] ?? "")")
            }
        }
        return events
    }
}

/// Continuous validation in queue mode: the same tampering, seen as notifications arrive (logs first,
/// then the late file's backfill digest, then the hour digests, as CloudTrail delivers them), with the
/// consumer killed at random moments while it checks the digests.
@Suite(.serialized) struct IntegrityLiveTests {
    @Test func eachFindingIsOneEventThroughKillsAndShowsInStatusAndMetrics() throws {
        var stack = try TrailsStack(buckets: [("trails", true)])
        let queueLog = stack.dir.sub("queue.log")
        try #require(
            system("""
                python3 -c "import boto3; print(boto3.client('sqs', endpoint_url='\(stack.moto.url)', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b').create_queue(QueueName='trail-events')['QueueUrl'])" > '\(queueLog)' 2>&1
                """) == 0)
        let queue = try String(contentsOfFile: queueLog, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let metrics = freePort()
        let config = stack.dir.sub("live.yml")
        func write(http: Bool) throws {
            try """
                input:
                  aws_region: us-east-1
                  endpoint: \(stack.moto.url)
                  sqs_url: \(queue)
                  wait_time: 1
                  visibility_timeout: 3
                integrity:
                  enabled: true
                journal:
                  path: \(stack.dir.sub("live-journal"))
                output:
                  file:
                    path: \(stack.dir.sub("out"))
                    bulk_max_size: 2
                http:
                  enabled: \(http)
                  port: \(metrics)

                """.write(toFile: config, atomically: true, encoding: .utf8)
        }
        try write(http: false)
        // The keys from ListPublicKeys (the stand-in refuses unsigned calls), as against AWS.
        stack.env["AWS_ENDPOINT_URL_CLOUDTRAIL"] = stack.keys.url
        func notify(_ kind: String) throws {
            let log = stack.dir.sub("notify.log")
            try #require(system("python3 '\(TrailsStack.script)' notify --endpoint \(stack.moto.url) --bucket trails --queue-url \(queue) --kind \(kind) > '\(log)' 2>&1") == 0,
                         "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        func status() throws -> [String: Any] {
            let (_, out, _) = try stack.run(["journal", "status", "-c", config, "--json"])
            return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "\(out)")
        }
        func drain() throws {
            let (code, _, err) = try stack.run(["-c", config, "--drain"])
            #expect(code == 0, "\(err.suffix(2000))")
            // A long poll cut short by the exit may still take a message on the server: let it lapse.
            sleep(2)
        }

        try notify("logs")
        try drain()
        let pending = (try status()["integrity"] as? [String: Any])?["pendingLogs"] as? Int
        #expect(pending == 37, "every fetched log's hash waits for its digest")
        try notify("backfill-digests")
        try drain()

        // The hour digests, with the consumer killed at random moments while it checks them.
        try notify("digests")
        var rng = SystemRandomNumberGenerator()
        var kills = 0
        // Every commit slowed (debug builds), so that a kill lands inside a check, between a digest's
        // fetch and its verdict, or inside the delivery of its findings.
        var slow = stack.env
        slow["CLOUDTRAILBEAT_DEBUG_COMMIT_DELAY_MS"] = "150"
        func verified() throws -> Int { ((try status()["integrity"] as? [String: Any])?["counts"] as? [String: Int])?["digests_verified"] ?? 0 }
        for _ in 0..<3 {
            let before = try verified()
            let p = try ChildProcess(binary(), ["-c", config], environment: slow, stderrPath: stack.dir.sub("killed-\(kills).log"))
            // Killed soon after this run's first verdict commits: inside the checks, whatever the
            // machine's speed (a fixed delay let a fast run finish all of them before the kill).
            let deadline = Date().addingTimeInterval(30)
            while try verified() == before && Date() < deadline { usleep(50_000) }
            usleep(UInt32.random(in: 0...100_000, using: &rng))
            p.kill(SIGKILL)
            _ = p.wait()
            kills += 1
        }
        let between = (try status()["integrity"] as? [String: Any])?["counts"] as? [String: Int] ?? [:]
        print("integrity kill -9: \(kills) kills; \(between["digests_verified"] ?? 0) of 11 digests verified before the last runs")
        #expect((between["digests_verified"] ?? 0) < 11, "the kills landed while digests were being checked")
        // Messages a killed consumer took but had not journaled come back after their 3 s visibility.
        sleep(4)
        try drain()
        try drain()

        // Exactly the findings the tampering implies: one event each (a replayed delivery repeats the same
        // event, with the same id — never a second finding of the same thing).
        let expected = try stack.expected("trails")
        let want = try stack.wantedFindings("trails")
        let events = try stack.findingEvents(stack.dir.sub("out"))
        #expect(Set(events.keys) == want, "kills: \(kills)")
        #expect(events.values.allSatisfy { $0.count == 1 }, "a finding raised twice: \(events.filter { $0.value.count > 1 })")

        // journal status: counted once each, every digest verified that should be, nothing left pending.
        let integrity = try #require(try status()["integrity"] as? [String: Any])
        let counts = integrity["counts"] as? [String: Int] ?? [:]
        for kind in ["digest_invalid", "digest_missing", "log_modified", "log_missing", "log_not_covered"] {
            #expect(counts[kind] == want.filter { $0.hasPrefix(kind + " ") }.count, "\(kind) in journal status")
        }
        #expect(counts["digests_verified"] == (expected["digests"] as? [String: Any])?["valid"] as? Int)
        #expect(counts["logs_verified"] == (expected["logs"] as? [String: Any])?["valid"] as? Int)
        #expect(integrity["pendingLogs"] as? Int == 0)
        #expect((integrity["recent"] as? [Any])?.count == want.count)

        // The metrics endpoint says the same (read from the journal's ledger, so across restarts).
        try write(http: true)
        stack.env["AWS_MAX_ATTEMPTS"] = "1"
        let engine = try ChildProcess(binary(), ["-c", config], environment: stack.env, stderrPath: stack.dir.sub("metrics.log"))
        defer {
            engine.kill(SIGTERM)
            _ = engine.wait()
        }
        var samples: [String: Double] = [:]
        for _ in 0..<100 where samples["cloudtrailbeat_integrity_findings_total{kind=\"log_not_covered\"}"] == nil {
            usleep(100_000)
            samples = scrape(metrics)
        }
        #expect(samples["cloudtrailbeat_integrity_findings_total{kind=\"log_not_covered\"}"] == Double(counts["log_not_covered"] ?? -1))
        #expect(samples["cloudtrailbeat_integrity_findings_total{kind=\"digest_missing\"}"] == 1)
        #expect(samples["cloudtrailbeat_integrity_digests_verified_total"] == Double(counts["digests_verified"] ?? -1))
        #expect(samples["cloudtrailbeat_integrity_logs_pending"] == 0)
    }

    /// A backfill (`-b bucket`) with integrity on lists the digests after the logs and reaches the same
    /// findings, each once.
    @Test func aBackfillFindsTheSameTampering() throws {
        let stack = try TrailsStack(buckets: [("trails", true)])
        let config = stack.dir.sub("backfill.yml")
        try """
            input:
              aws_region: us-east-1
              endpoint: \(stack.moto.url)
            integrity:
              enabled: true
              public_keys_file: \(stack.dir.sub("trails"))/public-keys.json
            journal:
              path: \(stack.dir.sub("backfill-journal"))
            output:
              file:
                path: \(stack.dir.sub("backfill-out"))

            """.write(toFile: config, atomically: true, encoding: .utf8)
        // The account's own trail, then the organisation trail under its prefix (a backfill takes one
        // trail prefix at a time).
        let (code, _, err) = try stack.run(["-c", config, "-b", "trails"])
        #expect(code == 0, "\(err.suffix(1500))")
        #expect(err.contains("integrity 8 digests and 20 logs verified, 7 findings"), "\(err.suffix(600))")
        let (orgCode, _, orgErr) = try stack.run(["-c", config, "-b", "trails", "-p", "org/"])
        #expect(orgCode == 0, "\(orgErr.suffix(1500))")
        #expect(orgErr.contains("integrity 3 digests and 9 logs verified, 4 findings"), "\(orgErr.suffix(600))")
        let events = try stack.findingEvents(stack.dir.sub("backfill-out"))
        #expect(Set(events.keys) == (try stack.wantedFindings("trails")))
        #expect(events.values.allSatisfy { $0.count == 1 })
        // Each listed log was fetched once: its digest waited for the log's own fetch.
        let gets = ((try? String(contentsOfFile: "/tmp/ctb-moto-\(stack.moto.port).log", encoding: .utf8)) ?? "")
            .split(separator: "\n").filter { $0.contains("\"GET /trails/") && $0.contains("/CloudTrail/") && $0.contains("\" 200 ") }
        #expect(gets.count == 37, "no log downloaded twice: \(gets.count) GETs")
    }
}
