import Foundation
import Testing

@testable import Engine
@testable import Outputs
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A fixture of Tests/OutputsTests/Fixtures (the protocol test servers) on a free port.
func outputsFixture(_ script: String, _ arguments: [String] = [], environment: [String: String] = [:], name: String) throws -> LocalServer {
    let port = freePort()
    let path = Stack.repo.appendingPathComponent("Tests/OutputsTests/Fixtures/\(script)").path
    return try LocalServer(["python3", path, String(port)] + arguments, port: port, environment: environment, name: name, installHint: "python3 is needed")
}

/// TLS as configured and as the real binary uses it: the `ssl` keys and the scheme rule, what `test
/// config` shows and warns about, host names checked through a private hosts file, a peer that resets.
@Suite("TLS through the configuration and the binary", .serialized)
struct TLSConfigTests {
    func config(_ yaml: String) throws -> Config { try Config.parse(yaml, file: "/etc/cloudtrailbeat.yml") }

    func error(_ yaml: String) -> String {
        do {
            _ = try config(yaml)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    /// `ssl.enabled: true` always means TLS: a host without a scheme gets https://, an http:// one is an
    /// error; without ssl (or with enabled: false) hosts are as written.
    @Test func anSSLSectionMakesHostsWithoutASchemeHTTPSAndRefusesHTTP() throws {
        let es = try config("output.elasticsearch: {hosts: [\"es1:9200\", \"https://es2:9200/\"], ssl.enabled: true}")
        #expect(es.elasticsearch?.hosts == ["https://es1:9200", "https://es2:9200/"] && es.elasticsearch?.tls == TLSSettings())
        #expect(try config("output.elasticsearch: {hosts: [\"es1:9200\"], ssl: {verification_mode: full}}").elasticsearch?.hosts == ["https://es1:9200"])
        #expect(try config("output.elasticsearch: {hosts: [\"es1:9200\"]}").elasticsearch?.hosts == ["es1:9200"])
        #expect(try config("output.elasticsearch: {hosts: [\"http://es1:9200\"], ssl.enabled: false}").elasticsearch?.hosts == ["http://es1:9200"])
        #expect(error("output.elasticsearch: {hosts: [\"es1:9200\", \"HTTP://es2:9200\"], ssl.enabled: true}")
            == "/etc/cloudtrailbeat.yml: output.elasticsearch.hosts: 'HTTP://es2:9200' is plain HTTP, yet ssl is configured (TLS on): write https:// or no scheme (https:// is then used), or set ssl.enabled: false")
        #expect(try config("output.splunk: {url: \"splunk:8088\", token: t, ssl.enabled: true}").splunk?.url == "https://splunk:8088")
        #expect(error("output.splunk: {url: \"http://splunk:8088\", token: t, ssl: {certificate_authorities: [/etc/ca.pem]}}").contains("output.splunk.url: 'http://splunk:8088' is plain HTTP, yet ssl is configured"))
        // And with -E, as the error says where the setting came from.
        do {
            _ = try Config.parse("output.elasticsearch.hosts: [\"http://es1:9200\"]", file: "c.yml", overrides: ["output.elasticsearch.ssl.enabled=true"])
            Issue.record("http:// with ssl.enabled from -E was accepted")
        } catch {
            #expect("\(error)".contains("is plain HTTP, yet ssl is configured"), "\(error)")
        }
    }

    /// Every key of `ssl`, on every output; a certificate needs its key; relative paths are resolved as
    /// the journal's are.
    @Test func theSSLKeysOfEveryOutput() throws {
        for output in ["elasticsearch", "logstash", "redis", "splunk"] {
            #expect(Config.known["output.\(output).ssl"] == ["enabled", "certificate_authorities", "verification_mode", "certificate", "key"], "\(output)")
        }
        let c = try config("""
            path.data: /var/lib/ctb
            output.logstash:
              hosts: [l:5044]
              ssl:
                certificate_authorities: [/etc/ca/one.pem, two.pem]
                certificate: client.pem
                key: /etc/ctb/client.key
                verification_mode: strict
            """)
        #expect(c.logstash?.tls == TLSSettings(certificateAuthorities: ["/etc/ca/one.pem", "/var/lib/ctb/two.pem"], verify: true, certificate: "/var/lib/ctb/client.pem", key: "/etc/ctb/client.key"))
        #expect(error("output.redis: {hosts: [r], ssl: {certificate: /c.pem}}") == "/etc/cloudtrailbeat.yml: output.redis.ssl.key: missing: a client certificate (ssl.certificate) needs its private key (ssl.key), and the key its certificate")
        #expect(error("output.splunk: {url: \"https://s:8088\", token: t, ssl: {key: /k.pem}}").contains("output.splunk.ssl.certificate: missing"))
        #expect(error("output.logstash: {hosts: [l], ssl: {certificate_authority: [/a.pem]}}").contains("output.logstash.ssl.certificate_authority: unknown key; did you mean 'output.logstash.ssl.certificate_authorities'?"))
    }

    /// `test config` shows each output's TLS, and warns of `verification_mode: none` and of credentials
    /// sent in plain text to another machine (not to a loopback address); a CA file that cannot be read
    /// is a problem (exit 1) naming it.
    @Test func testConfigShowsTLSAndWarns() throws {
        let dir = TempDir("tls-test-config")
        try """
            journal.path: \(dir.sub("journal"))
            output:
              logstash:
                hosts: ["logstash.example.com:5044"]
                ssl: {verification_mode: none}
              elasticsearch:
                hosts: ["http://es.example.com:9200", "http://127.0.0.1:9200", "https://es2.example.com:9200", "es3.example.com:9200"]
                username: elastic
                password: changeme
              redis:
                hosts: ["redis.example.com:6379", "localhost:6379", "[::1]:6379"]
                password: secret
              splunk: {url: "http://splunk.example.com:8088", token: t}
            """.write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
        let r = try run(["test", "config", "-c", dir.sub("c.yml")])
        #expect(r.status == 0, "\(r.stderr)")
        let warnings = r.stdout.split(separator: "\n").filter { $0.hasPrefix("warning: ") }.map(String.init)
        #expect(warnings == [
            "warning: output.logstash: ssl.verification_mode is none: the server's certificate and name are not checked, so anyone on the path can read and change what is sent",
            "warning: output.elasticsearch: the username and password go to http://es.example.com:9200 in plain HTTP: use https:// (or ssl, which makes a host without a scheme https)",
            "warning: output.elasticsearch: the username and password go to es3.example.com:9200 in plain HTTP: use https:// (or ssl, which makes a host without a scheme https)",
            "warning: output.splunk: the HEC token goes to http://splunk.example.com:8088 in plain HTTP: use https://",
            "warning: output.redis: the password goes to redis.example.com:6379 in plain text: configure ssl",
        ], "\(r.stdout)")
        #expect(r.stdout.contains("output.logstash: codec cloudtrail, hosts [\"logstash.example.com:5044\"], TLS (verification none (the server's certificate and name are not checked), the system's CAs)"), "\(r.stdout)")

        // A CA file that is not there: test config fails, naming it; so does a run.
        try """
            journal.path: \(dir.sub("journal"))
            output.redis:
              hosts: ["localhost:6379"]
              ssl.certificate_authorities: [\(dir.sub("missing.pem"))]
            """.write(toFile: dir.sub("missing.yml"), atomically: true, encoding: .utf8)
        let missing = try run(["test", "config", "-c", dir.sub("missing.yml")])
        #expect(missing.status == 1 && missing.stderr.contains("output redis: TLS: cannot load certificate authorities from '\(dir.sub("missing.pem"))'"), "\(missing.stdout)\(missing.stderr)")
        try FileManager.default.createDirectory(atPath: dir.sub("empty"), withIntermediateDirectories: true)
        let started = try run(["-c", dir.sub("missing.yml"), "-b", dir.sub("empty")])
        #expect(started.status != 0 && started.stderr.contains("cannot load certificate authorities from '\(dir.sub("missing.pem"))'"), "\(started.stderr)")
    }

    /// With `ssl.enabled: true` and hosts written without a scheme (as Filebeat users write them), every
    /// output's first bytes on the wire are a TLS ClientHello (16 03): never `GET`, `POST` or a RESP
    /// command, so never a password, token or API key in plain text. Through `test output` (the real
    /// binary) and deliveries.
    @Test func sslEnabledWithSchemeLessHostsNeverSendsAPlaintextByte() async throws {
        let dir = TempDir("tls-first-bytes")
        let names = ["elasticsearch", "splunk", "redis", "logstash"]
        let servers = try names.map { try outputsFixture("first_bytes_server.py", [dir.sub("\($0).log")], name: "first-bytes-\($0)") }
        defer { servers.forEach { $0.stop() } }
        try """
            journal.path: \(dir.sub("journal"))
            output:
              elasticsearch: {hosts: ["127.0.0.1:\(servers[0].port)"], username: elastic, password: changeme, timeout: 2, ssl.enabled: true}
              splunk: {url: "127.0.0.1:\(servers[1].port)", token: hec-token, timeout: 2, ssl.enabled: true}
              redis: {hosts: ["127.0.0.1:\(servers[2].port)"], password: secret, timeout: 2, ssl.enabled: true}
              logstash: {hosts: ["127.0.0.1:\(servers[3].port)"], timeout: 2, ssl.enabled: true}
            """.write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
        let shown = try run(["test", "config", "-c", dir.sub("c.yml")])
        #expect(shown.status == 0 && shown.stdout.contains("hosts [\"https://127.0.0.1:\(servers[0].port)\"]") && shown.stdout.contains("url https://127.0.0.1:\(servers[1].port)"), "\(shown.stdout)\(shown.stderr)")
        #expect(!shown.stdout.contains("warning:"), "\(shown.stdout)")
        let probed = try run(["test", "output", "-c", dir.sub("c.yml")])
        #expect(probed.status == 1 && probed.stdout.components(separatedBy: "FAILED").count - 1 == 4, "every server hangs up after the first bytes: \(probed.stdout)")
        // Deliveries, in process, through the outputs the configuration makes.
        let c = try Config.load(path: dir.sub("c.yml"))
        for output in try Bootstrap.outputs(c) {
            await #expect(throws: OutputError.self) { _ = try await output.deliver([OutputEvent(id: "e1", json: Array("{\"i\":1}".utf8))]) }
            await output.close()
        }
        for (name, server) in zip(names, servers) {
            let lines = ((try? String(contentsOfFile: dir.sub("\(name).log"), encoding: .utf8)) ?? "").split(separator: "\n")
            #expect(lines.count >= 2, "\(name) on \(server.port): \(lines)")
            for line in lines { #expect(line.hasPrefix("1603"), "\(name) sent \(line) (plain text: \(String(decoding: hex(line), as: UTF8.self)))") }
        }
    }

    func hex(_ s: Substring) -> [UInt8] {
        stride(from: 0, to: s.count - 1, by: 2).compactMap { i in UInt8(s.dropFirst(i).prefix(2), radix: 16) }
    }

    /// Host names made only of hex digits and dots (`bad.cafe`, `feed.de`), resolved through a private
    /// hosts file (a mount namespace of its own: `unshare -m`, as root, which CI is): a certificate for
    /// another name is refused by `test output` — the TCP outputs' OpenSSL and libcurl alike — and one
    /// for the name accepted.
    @Test func aHexOnlyHostNameIsCheckedAsANameThroughAPrivateHostsFile() throws {
        let ca = try TestCA()
        let dir = TempDir("tls-hosts")
        try "127.0.0.1 localhost\n127.0.0.1 bad.cafe feed.de\n".write(toFile: dir.sub("hosts"), atomically: true, encoding: .utf8)
        let other = try ca.issue("other", names: ["DNS:other.example", "IP:127.0.0.1"])
        let right = try ca.issue("right", names: ["DNS:bad.cafe", "DNS:feed.de"])
        for (identity, accepted) in [(other, false), (right, true)] {
            let lumberjack = try outputsFixture("lumberjack_server.py", ["full", dir.sub("lj.log"), identity.certificate, identity.key], name: "lumberjack-hosts")
            let es = try outputsFixture("es_server.py", environment: ["ES_TLS_CERT": identity.certificate, "ES_TLS_KEY": identity.key], name: "es-hosts")
            defer { lumberjack.stop(); es.stop() }
            try """
                journal.path: \(dir.sub("journal"))
                output:
                  logstash: {hosts: ["bad.cafe:\(lumberjack.port)", "feed.de:\(lumberjack.port)"], timeout: 5, ssl.certificate_authorities: [\(ca.certificate)]}
                  elasticsearch: {hosts: ["bad.cafe:\(es.port)"], timeout: 5, ssl.certificate_authorities: [\(ca.certificate)]}
                """.write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
            let p = try ChildProcess("/usr/bin/unshare", ["-m", "/bin/sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$1\" test output -c \"$2\"", dir.sub("hosts"), binary(), dir.sub("c.yml")],
                                     stderrPath: dir.sub("err"))
            let out = p.readAll()
            let end = p.wait()
            let err = (try? String(contentsOfFile: dir.sub("err"), encoding: .utf8)) ?? ""
            try #require(!err.contains("mount:") && !err.contains("unshare:"), "a private hosts file needs root (CI runs as root): \(err)")
            let lines = out.split(separator: "\n").filter { $0.hasPrefix("output.") }
            #expect(lines.count == 3, "\(out)\(err)")
            if accepted {
                #expect(end.exited && end.code == 0 && lines.allSatisfy { $0.contains(": OK — ") }, "\(out)\(err)")
            } else {
                #expect(end.exited && end.code == 1, "\(out)\(err)")
                #expect(lines.filter { $0.hasPrefix("output.logstash ") }.allSatisfy { $0.contains("FAILED") && $0.hasSuffix("failed: hostname mismatch") }, "\(out)")
                #expect(lines.contains { $0.hasPrefix("output.elasticsearch https://bad.cafe:\(es.port): FAILED") && $0.contains("(curl 60)") }, "\(out)")
            }
        }
    }

    /// The real binary, backfilling a local copy into Logstash over TLS, while the server resets the
    /// first two connections (RST after reading a window): it does not die of SIGPIPE (exit 141 before),
    /// it logs the failure, retries, and finishes with every record delivered.
    @Test func aPeerThatResetsDoesNotEndTheProcess() throws {
        let ca = try TestCA()
        let dir = TempDir("tls-reset-binary")
        let identity = try ca.issue("server", names: ["DNS:localhost"])
        let server = try outputsFixture("lumberjack_server.py", ["reset", dir.sub("lj.log"), identity.certificate, identity.key], name: "lumberjack-reset")
        defer { server.stop() }
        var expected: Set<String> = []
        for n in 0..<6 {
            let key = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/26/111111111111_CloudTrail_us-east-1_20261126T10\(n)0Z_reset\(n).json.gz"
            for record in try writeLog(dir.sub("copy/\(key)"), tag: "reset\(n)", count: 20) {
                let id = record.range(of: #""eventID":""#).map { record[$0.upperBound...].prefix { $0 != "\"" } }
                expected.insert(String(id ?? ""))
            }
        }
        try """
            journal.path: \(dir.sub("journal"))
            output.logstash:
              hosts: ["localhost:\(server.port)"]
              timeout: 5
              bulk_max_size: 40
              ssl.certificate_authorities: [\(ca.certificate)]
            """.write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
        let p = try ChildProcess(binary(), ["-c", dir.sub("c.yml"), "-b", dir.sub("copy")], environment: ["SWIFT_BACKTRACE": "enable=no"], stderrPath: dir.sub("run.log"))
        _ = p.readAll()
        let end = p.wait()
        let log = (try? String(contentsOfFile: dir.sub("run.log"), encoding: .utf8)) ?? ""
        #expect(end.exited && end.code == 0, "ended with \(end): \(log.suffix(1500))")
        #expect(log.contains("output failing") && log.contains("Connection reset by peer") && log.contains("output delivers again"), "\(log.suffix(1500))")
        let received = try String(contentsOfFile: dir.sub("lj.log"), encoding: .utf8).split(separator: "\n")
        #expect(received.filter { $0.contains("\"reset\"") }.count == 2)
        let ids = Set(received.compactMap { line -> String? in
            let entry = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            return ((entry?["event"] as? [String: Any])?["cloudtrail"] as? [String: Any])?["eventID"] as? String
        })
        #expect(ids == expected, "\(ids.count) of \(expected.count) records")
    }

    /// `verification_mode: none` is said at start, as a warning, by the run itself.
    @Test func verificationNoneIsAWarningAtStart() throws {
        let ca = try TestCA()
        let dir = TempDir("tls-none")
        let identity = try ca.issue("server", names: ["DNS:elsewhere.example"])
        let server = try outputsFixture("lumberjack_server.py", ["full", dir.sub("lj.log"), identity.certificate, identity.key], name: "lumberjack-none")
        defer { server.stop() }
        let key = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/26/111111111111_CloudTrail_us-east-1_20261126T1000Z_none.json.gz"
        let records = try writeLog(dir.sub("copy/\(key)"), tag: "none", count: 5)
        try """
            journal.path: \(dir.sub("journal"))
            output.logstash:
              hosts: ["localhost:\(server.port)"]
              ssl.verification_mode: none
            """.write(toFile: dir.sub("c.yml"), atomically: true, encoding: .utf8)
        let r = try run(["-c", dir.sub("c.yml"), "-b", dir.sub("copy")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("output.logstash: ssl.verification_mode is none: the server's certificate and name are not checked"), "\(r.stderr)")
        let received = try String(contentsOfFile: dir.sub("lj.log"), encoding: .utf8).split(separator: "\n").filter { $0.contains("\"event\"") }
        #expect(received.count == records.count, "an unverified server still gets the events (the operator's choice)")
    }
}
