import Foundation
import HTTP
import Testing
import TestSupport

@testable import Outputs

#if canImport(Glibc)
import Glibc
#endif

/// A Lumberjack server over TLS (Fixtures/lumberjack_server.py) presenting `identity`.
func lumberjackTLS(_ mode: String, _ identity: (certificate: String, key: String), log: String) throws -> LocalServer {
    let port = freePort()
    return try LocalServer(["python3", fixture("lumberjack_server.py"), String(port), mode, log, identity.certificate, identity.key],
                           port: port, name: "lumberjack-tls", installHint: "python3 is needed")
}

/// The Elasticsearch stand-in over HTTPS, presenting `identity`; with `clientCA`, it requires a client
/// certificate signed by that CA.
func elasticsearchTLS(_ identity: (certificate: String, key: String), clientCA: String? = nil) throws -> LocalServer {
    let port = freePort()
    var environment = ["ES_TLS_CERT": identity.certificate, "ES_TLS_KEY": identity.key]
    if let clientCA { environment["ES_TLS_CLIENT_CA"] = clientCA }
    return try LocalServer(["python3", fixture("es_server.py"), String(port)], port: port, environment: environment, name: "es-tls", installHint: "python3 is needed")
}

/// TLS with a test CA: names made only of hex digits are names, addresses are verified as addresses,
/// every CA file counts, client certificates (mutual TLS), and a peer that resets.
@Suite("TLS: names, addresses, CAs, client certificates, resets")
struct TLSTests {
    /// Issue 31: `feed.de` and `bad.cafe` were taken for IP addresses by their characters. Parsing
    /// (inet_pton) decides now.
    @Test func hostsMadeOfHexDigitsAndDotsAreNamesNotAddresses() {
        for name in ["bad.cafe", "feed.de", "cafe", "dead.beef.ad", "1.2.3", "01.02.03.04.05", "localhost", "::1.example"] {
            #expect(PeerName(name) == .name(name), "\(name)")
        }
        for address in ["127.0.0.1", "10.0.0.255", "::1", "dead:beef::1", "fe80::1:2"] {
            #expect(PeerName(address) == .address(address), "\(address)")
        }
        #expect(PeerName("[::1]") == .address("::1"))
        #expect(PeerName(url: "https://user@bad.cafe:9200/es") == .name("bad.cafe"))
        #expect(PeerName(url: "[::1]:6379") == .address("::1") && PeerName(url: "http://[::1]:9200/") == .address("::1"))
        #expect(PeerName(url: "127.0.0.2:5044").isLoopback && PeerName(url: "http://localhost:9200").isLoopback && PeerName(url: "[::1]:1").isLoopback)
        #expect(!PeerName(url: "http://bad.cafe:9200").isLoopback && !PeerName(url: "10.0.0.1:6379").isLoopback && !PeerName(url: "128.0.0.1").isLoopback)
        #expect(splitHost("[::1]:6379", defaultPort: 1) == ("::1", 6379) && splitHost("bad.cafe", defaultPort: 5044) == ("bad.cafe", 5044))
    }

    /// A session for `bad.cafe` is verified as a name, over a socket connected to 127.0.0.1 (no resolver
    /// involved): a certificate for another name is refused, one for bad.cafe accepted. Before, the name
    /// was set as an IP address, that failed unchecked, and any certificate of a trusted CA passed.
    @Test func aHexOnlyNameIsVerifiedAsAName() async throws {
        let ca = try TestCA()
        let dir = TempDir("tls-hexname")
        let other = try lumberjackTLS("full", try ca.issue("other", names: ["DNS:other.example", "IP:127.0.0.1"]), log: dir.sub("other.log"))
        let right = try lumberjackTLS("full", try ca.issue("cafe", names: ["DNS:bad.cafe", "DNS:feed.de"]), log: dir.sub("cafe.log"))
        defer { other.stop(); right.stop() }
        let context = try TLSContext(TLSSettings(certificateAuthorities: [ca.certificate]), output: "test")
        for name in ["bad.cafe", "feed.de"] {
            let socket = try TCPConnection(host: "127.0.0.1", port: other.port, timeout: 5, ioTimeout: 5)
            #expect { _ = try TLSSession(fd: socket.fd, host: name, context: context) } throws: {
                "\($0)" == "TLS handshake with \(name) failed: hostname mismatch"
            }
            let good = try TCPConnection(host: "127.0.0.1", port: right.port, timeout: 5, ioTimeout: 5)
            _ = try TLSSession(fd: good.fd, host: name, context: context)
        }
    }

    /// Connecting to 127.0.0.1, only a certificate naming that address passes: one for 127.0.0.2, or one
    /// with DNS names only (bad.cafe), is refused, through the Logstash output.
    @Test func anAddressIsVerifiedAgainstTheCertificatesAddresses() async throws {
        let ca = try TestCA()
        let dir = TempDir("tls-ipsan")
        var config = LogstashOutput.Configuration()
        config.timeout = 5
        config.tls = TLSSettings(certificateAuthorities: [ca.certificate])
        for (file, names, accepted) in [("ip2", ["IP:127.0.0.2"], false), ("dns", ["DNS:bad.cafe"], false), ("ip1", ["IP:127.0.0.1"], true)] {
            let server = try lumberjackTLS("full", try ca.issue(file, names: names), log: dir.sub("\(file).log"))
            defer { server.stop() }
            config.hosts = ["127.0.0.1:\(server.port)"]
            if accepted {
                #expect(try await LogstashOutput(config).deliver(events(0..<3)).handled == 3)
            } else {
                await #expect { _ = try await LogstashOutput(config).deliver(events(0..<3)) } throws: {
                    "\($0)".contains("TLS handshake with 127.0.0.1 failed: IP address mismatch")
                }
                #expect(!FileManager.default.fileExists(atPath: dir.sub("\(file).log")), "nothing reached \(names)")
            }
        }
    }

    /// Every `certificate_authorities` file is trusted (not only the first), by the TCP outputs (OpenSSL)
    /// and the HTTP ones (libcurl, the files as one bundle); a CA not listed is not.
    @Test func everyCertificateAuthorityFileIsTrusted() async throws {
        let first = try TestCA("first CA"), second = try TestCA("second CA")
        let dir = TempDir("tls-cas")
        let byFirst = try lumberjackTLS("full", try first.issue("a", names: ["DNS:localhost"]), log: dir.sub("a.log"))
        let bySecond = try lumberjackTLS("full", try second.issue("b", names: ["DNS:localhost"]), log: dir.sub("b.log"))
        let esBySecond = try elasticsearchTLS(try second.issue("es", names: ["DNS:localhost"]))
        defer { byFirst.stop(); bySecond.stop(); esBySecond.stop() }
        var logstash = LogstashOutput.Configuration()
        logstash.timeout = 5
        logstash.tls = TLSSettings(certificateAuthorities: [first.certificate, second.certificate])
        var es = ElasticsearchOutput.Configuration()
        es.hosts = ["localhost:\(esBySecond.port)"]  // no scheme: https, since TLS is configured
        es.timeout = 5
        es.tls = logstash.tls
        for server in [byFirst, bySecond] {
            logstash.hosts = ["localhost:\(server.port)"]
            #expect(try await LogstashOutput(logstash).deliver(events(0..<2)).handled == 2)
        }
        #expect(try await ElasticsearchOutput(es).deliver(events(0..<2)).handled == 2)
        // The second CA alone: the first one's server is refused; the first alone: the second's are.
        logstash.tls = TLSSettings(certificateAuthorities: [second.certificate])
        logstash.hosts = ["localhost:\(byFirst.port)"]
        await #expect { _ = try await LogstashOutput(logstash).deliver(events(0..<1)) } throws: { "\($0)".contains("unable to get local issuer certificate") }
        es.tls = TLSSettings(certificateAuthorities: [first.certificate])
        let refused = await #expect(throws: OutputError.self) { _ = try await ElasticsearchOutput(es).deliver(events(2..<3)) }
        #expect(refused?.retryable == true && "\(refused!)".contains("SSL"), "\(String(describing: refused))")
        // A CA file that cannot be read: a configuration error when the output is made.
        logstash.tls = TLSSettings(certificateAuthorities: [first.certificate, dir.sub("missing.pem")])
        let missing = #expect(throws: OutputError.self) { _ = try LogstashOutput(logstash) }
        #expect(missing?.code == .configuration && missing?.message.contains("cannot load certificate authorities from '\(dir.sub("missing.pem"))'") == true)
    }

    /// Mutual TLS: a real redis-server with `--tls-auth-clients yes`, and the Elasticsearch stand-in
    /// requiring a client certificate, take deliveries with `certificate` and `key`, and refuse the
    /// same output without them.
    @Test func clientCertificatesForServersThatRequireThem() async throws {
        let ca = try TestCA()
        let dir = TempDir("tls-mtls")
        let server = try ca.issue("server", names: ["DNS:localhost", "IP:127.0.0.1"])
        let client = try ca.issue("client", names: ["DNS:cloudtrailbeat.client"])
        let port = freePort()
        let redis = try LocalServer(
            ["redis-server", "--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1", "--dir", dir.path, "--save", "",
             "--tls-cert-file", server.certificate, "--tls-key-file", server.key, "--tls-ca-cert-file", ca.certificate, "--tls-auth-clients", "yes"],
            port: port, name: "redis-mtls", installHint: "apt-get install redis-server (Debian's is built with TLS)")
        let es = try elasticsearchTLS(server, clientCA: ca.certificate)
        defer { redis.stop(); es.stop() }

        var r = RedisOutput.Configuration()
        r.hosts = ["localhost:\(port)"]
        r.key = "mtls"
        r.tls = TLSSettings(certificateAuthorities: [ca.certificate], certificate: client.certificate, key: client.key)
        #expect(try await RedisOutput(r).deliver(events(0..<25)).handled == 25)
        var e = ElasticsearchOutput.Configuration()
        e.hosts = ["https://127.0.0.1:\(es.port)"]
        e.timeout = 5
        e.tls = r.tls
        #expect(try await ElasticsearchOutput(e).deliver(events(0..<5)).handled == 5)
        let probe = try await ElasticsearchOutput(e).probe()
        #expect(probe.count == 1 && probe[0].ok, "\(probe)")

        // Without the client certificate: refused by both servers.
        r.tls?.certificate = nil
        r.tls?.key = nil
        await #expect(throws: OutputError.self) { _ = try await RedisOutput(r).deliver(events(25..<26)) }
        e.tls = r.tls
        await #expect(throws: OutputError.self) { _ = try await ElasticsearchOutput(e).deliver(events(5..<6)) }
        let cli = try #require(LocalServer.which("redis-cli"), "redis-cli missing: apt-get install redis-tools")
        let p = try ChildProcess(cli, ["--tls", "--cacert", ca.certificate, "--cert", client.certificate, "--key", client.key, "-h", "localhost", "-p", String(port), "LLEN", "mtls"])
        let count = p.readAll().trimmingCharacters(in: .whitespacesAndNewlines)
        _ = p.wait()
        #expect(count == "25")

        // A key that is not the certificate's, a certificate without its key, an encrypted key: each a
        // configuration error when the output is made, naming the file.
        let stranger = try ca.issue("stranger", names: ["DNS:stranger"])
        r.tls = TLSSettings(certificateAuthorities: [ca.certificate], certificate: client.certificate, key: stranger.key)
        let mismatch = #expect(throws: OutputError.self) { _ = try RedisOutput(r) }
        #expect(mismatch?.code == .configuration && mismatch?.message.contains("'\(stranger.key)' is not the private key of '\(client.certificate)'") == true, "\(String(describing: mismatch))")
        r.tls = TLSSettings(certificate: client.certificate)
        #expect(throws: OutputError.self) { _ = try ElasticsearchOutput(e.with(tls: r.tls)) }
        let openssl = try #require(LocalServer.which("openssl"))
        #expect(system("\(openssl) pkey -in \(client.key) -aes256 -passout pass:secret -out \(dir.sub("encrypted.key")) 2>/dev/null") == 0)
        r.tls = TLSSettings(certificate: client.certificate, key: dir.sub("encrypted.key"))
        let encrypted = #expect(throws: OutputError.self) { _ = try RedisOutput(r) }
        #expect(encrypted?.message.contains("it is encrypted") == true, "\(String(describing: encrypted))")
    }

    /// A server that resets the connection (RST, SO_LINGER 0) after reading a window: the delivery fails,
    /// is retried on a new connection, and every event arrives; the process lives on.
    @Test func aPeerThatResetsIsAFailedDeliveryThatIsRetried() async throws {
        let ca = try TestCA()
        let dir = TempDir("tls-reset")
        let server = try lumberjackTLS("reset", try ca.issue("server", names: ["DNS:localhost"]), log: dir.sub("log"))
        defer { server.stop() }
        var config = LogstashOutput.Configuration()
        config.hosts = ["localhost:\(server.port)"]
        config.timeout = 5
        config.bulkMaxSize = 50
        config.tls = TLSSettings(certificateAuthorities: [ca.certificate])
        let failures = Failures()
        let pump = OutputPump(output: try LogstashOutput(config), deadLetters: nil, minBackoff: 0.02, maxBackoff: 0.1) { error in
            if let error { failures.append(error) }
        }
        try await pump.deliver(events(0..<200)) { _ in }
        let log = try String(contentsOfFile: dir.sub("log"), encoding: .utf8)
        #expect(log.components(separatedBy: "\"reset\"").count - 1 == 2, "two resets: \(log.suffix(300))")
        let received = log.split(separator: "\n").compactMap { line -> Int? in
            let entry = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            return ((entry?["event"] as? [String: Any])?["cloudtrail"] as? [String: Any])?["i"] as? Int
        }
        #expect(Set(received) == Set(0..<200))
        #expect(pump.retries >= 2 && failures.all.contains { $0.contains("Connection reset by peer") }, "\(failures.all)")
    }
}

/// What an output pump's health callback heard.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ s: String) { lock.withLock { items.append(s) } }
    var all: [String] { lock.withLock { items } }
}

extension ElasticsearchOutput.Configuration {
    func with(tls: TLSSettings?) -> Self {
        var c = self
        c.tls = tls
        return c
    }
}
