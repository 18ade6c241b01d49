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
        try "input:\n  aws_region: us-east-1\n  endpoint: \(moto.url)\njournal:\n  path: \(dir.sub("journal"))\noutput:\n  console: {}\n"
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
