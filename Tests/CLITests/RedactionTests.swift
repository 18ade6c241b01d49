import Failures
import Foundation
import HTTP
import Outputs
import Testing
import TestSupport

@testable import Engine

#if canImport(Glibc)
import Glibc
#endif

/// A URL's password (`https://user:secret@host`) is masked wherever a URL becomes text: `test config`,
/// error messages, the log, what the journal records for `journal status`.
@Suite("URL passwords are masked", .serialized)
struct RedactionTests {
    @Test(arguments: [
        ("https://user:secret@es.example.com:9200", "https://user:***@es.example.com:9200"),
        ("https://token@es.example.com/", "https://***@es.example.com/"),
        ("'https://u:secret@h:1' is not a URL", "'https://u:***@h:1' is not a URL"),
        ("https://u:secret@h/_bulk answered HTTP 500: user@example.com", "https://u:***@h/_bulk answered HTTP 500: user@example.com"),
        ("[\"https://a:s1@h1:9200\", \"http://b:s2@[::1]:9200\"]", "[\"https://a:***@h1:9200\", \"http://b:***@[::1]:9200\"]"),
        ("http://u:p@ss,w'o)rd@h?x=a@b#f@g", "http://u:***@h?x=a@b#f@g"),
        ("https://es.example.com:9200/path@x", "https://es.example.com:9200/path@x"),
        ("s3://bucket/key@2x.json and no secret", "s3://bucket/key@2x.json and no secret"),
        ("nothing to see", "nothing to see"),
    ])
    func userinfoIsMaskedAndNothingElse(text: String, expected: String) {
        #expect(redactingUserinfo(text) == expected)
        #expect(redactingUserinfo(expected) == expected, "masking twice changes nothing more")
    }

    @Test func theErrorsThatQuoteURLsMaskThem() {
        let transport = HTTPTransportError(code: 7, message: "Failed to connect to https://u:secret@h", url: "https://u:secret@h:9200/_bulk?sig=x")
        #expect(!"\(transport)".contains("secret") && transport.url == "https://u:***@h:9200/_bulk", "\(transport)")
        let output = OutputError(output: "elasticsearch", message: "https://u:secret@h:9200: connection refused")
        #expect("\(output)" == "output elasticsearch: https://u:***@h:9200: connection refused")
        let config = ConfigError(file: "c.yml", key: "output.splunk.url", message: "'ftp://u:secret@h' is not an http(s) URL")
        #expect("\(config)" == "c.yml: output.splunk.url: 'ftp://u:***@h' is not an http(s) URL")
    }

    /// Elasticsearch at `https://user:secret@127.0.0.1:PORT` (a closed port): `test config`, `test
    /// output`, the run's log while it retries, and `journal status` (text and JSON) never show `secret`.
    @Test func aPasswordInAnOutputURLNeverShows() throws {
        let dir = TempDir("redaction")
        let logs = dir.sub("logs")
        try writeLog(logs + "/AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/26/111111111111_CloudTrail_us-east-1_20261126T0000Z_a.json.gz", tag: "a", count: 3)
        let port = freePort()
        let host = "https://shipper:secret@127.0.0.1:\(port)"
        let config = dir.sub("c.yml")
        try """
            journal:
              path: \(dir.sub("journal"))
            output:
              elasticsearch:
                hosts: ["\(host)"]
                timeout: 2
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let shown = "https://shipper:***@127.0.0.1:\(port)"

        let check = try run(["test", "config", "-c", config])
        #expect(check.status == 0 && check.stdout.contains(shown), "\(check.stdout)\(check.stderr)")
        #expect(!(check.stdout + check.stderr).contains("secret"), "\(check.stdout)\(check.stderr)")
        let probe = try run(["test", "output", "-c", config])
        #expect(probe.status == 1 && probe.stdout.contains(shown) && probe.stdout.contains("FAILED"), "\(probe.stdout)\(probe.stderr)")
        #expect(!(probe.stdout + probe.stderr).contains("secret"), "\(probe.stdout)\(probe.stderr)")

        // The run retries the closed port, logging it and recording it in the journal.
        let log = dir.sub("run.log")
        let engine = try ChildProcess(binary(), ["-c", config, "-b", logs, "--drain"], stderrPath: log)
        var status = ""
        let deadline = Date().addingTimeInterval(60)
        while !status.contains("failing since") && Date() < deadline {
            status = try run(["journal", "status", "--path", dir.sub("journal")]).stdout
            if !status.contains("failing since") { usleep(200_000) }
        }
        engine.kill(SIGTERM)
        let end = engine.wait()
        _ = engine.readAll()
        #expect(end.exited && end.code == 0, "\(end)")
        #expect(status.contains("elasticsearch failing since") && status.contains("***@127.0.0.1:\(port)"), "\(status)")
        let json = try run(["journal", "status", "--path", dir.sub("journal"), "--json"]).stdout
        #expect(json.contains("failingOutputs") && json.contains("***@127.0.0.1"), "\(json)")
        let logged = try String(contentsOfFile: log, encoding: .utf8)
        #expect(logged.contains("output failing") && logged.contains("***@127.0.0.1:\(port)"), "\(logged)")
        for (name, text) in [("status", status), ("status --json", json), ("the run's log", logged)] {
            #expect(!text.contains("secret"), "\(name): \(text)")
        }

        // A configuration error that quotes the URL masks it too.
        let bad = dir.sub("bad.yml")
        try "journal:\n  path: \(dir.sub("j2"))\noutput:\n  splunk:\n    url: \"ftp://hec:secret@127.0.0.1:\(port)\"\n    token: t\n"
            .write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try run(["test", "config", "-c", bad])
        #expect(refused.status == 1 && refused.stderr.contains("ftp://hec:***@127.0.0.1"), "\(refused.stderr)")
        #expect(!(refused.stdout + refused.stderr).contains("secret"), "\(refused.stderr)")
    }
}
