import Failures
import Foundation
import HTTP

#if canImport(Glibc)
import Glibc
#endif

/// What `cloudtrailbeat test output` found at one destination of an output: each host is connected to
/// and authenticated against, as a delivery would, without sending an event.
public struct ProbeResult: Sendable, Equatable {
    /// The host (or path) probed.
    public var target: String
    public var ok: Bool
    /// What was found (server, version, cluster) or why it failed.
    public var detail: String

    /// A host's password (`https://user:pass@host`) is masked in `target` and `detail` (``redactingUserinfo(_:)``).
    public init(target: String, ok: Bool, detail: String) {
        self.target = redactingUserinfo(target)
        self.ok = ok
        self.detail = redactingUserinfo(detail)
    }
}

/// Outputs that can be probed. Every output here is; a test double need not be.
public protocol ProbingOutput: Output {
    /// Connects and authenticates to every configured destination; sends no event.
    func probe() async -> [ProbeResult]
}

extension ElasticsearchOutput: ProbingOutput {
    /// `GET /` on every host with the configured credentials: the cluster's name and version, or the
    /// refusal (401, 403) or transport error.
    public func probe() async -> [ProbeResult] {
        var results: [ProbeResult] = []
        for host in configuration.hosts {
            let base = host.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            do {
                let r = try await http.send(try await request(host: host, method: "GET", "/"), timeout: min(configuration.timeout, 30))
                let body = (try? JSONSerialization.jsonObject(with: Data(r.body))) as? [String: Any] ?? [:]
                switch r.status {
                case 200..<300:
                    let version = body["version"] as? [String: Any] ?? [:]
                    let distribution = (version["distribution"] as? String).map { $0 == "opensearch" ? "OpenSearch" : $0 } ?? "Elasticsearch"
                    let number = version["number"] as? String ?? "?"
                    let cluster = body["cluster_name"] as? String ?? "?"
                    results.append(.init(target: base, ok: true, detail: "connected and authenticated: \(distribution) \(number), cluster \(cluster)"))
                case 401, 403:
                    results.append(.init(target: base, ok: false, detail: "credentials refused (HTTP \(r.status)): \(Self.reason(body, r.body))"))
                default:
                    results.append(.init(target: base, ok: false, detail: "answered HTTP \(r.status): \(Self.reason(body, r.body))"))
                }
            } catch {
                results.append(.init(target: base, ok: false, detail: "\(error)"))
            }
        }
        return results
    }

    static func reason(_ json: [String: Any], _ raw: [UInt8]) -> String {
        if let e = json["error"] as? [String: Any], let r = e["reason"] as? String { return r }
        if let m = json["message"] as? String ?? json["Message"] as? String { return m }  // AWS's shape
        return String(decoding: raw.prefix(200), as: UTF8.self)
    }
}

extension LogstashOutput: ProbingOutput {
    /// A TCP connection (and TLS handshake, with the configured verification) to every host: what Beats'
    /// `test output` checks for Logstash, whose Lumberjack protocol has no authentication of its own.
    public func probe() async -> [ProbeResult] {
        let configuration = self.configuration
        let tls = self.tls
        return await probeEach(configuration.hosts, defaultPort: 5044) { host, port in
            let c = try TCPConnection(host: host, port: port, timeout: configuration.timeout, ioTimeout: configuration.timeout, tls: tls)
            return "connected" + (configuration.tls != nil ? ", TLS handshake done" : "") + " (\(c.peer))"
        }
    }
}

extension RedisOutput: ProbingOutput {
    /// Connects to every host, authenticates (`AUTH`), selects the database, and asks `PING` and the
    /// key's `TYPE` (a `list` key must be a list, or not exist yet).
    public func probe() async -> [ProbeResult] {
        let configuration = self.configuration
        let tls = self.tls
        return await probeEach(configuration.hosts, defaultPort: 6379) { host, port in
            let c = try TCPConnection(host: host, port: port, timeout: configuration.timeout, ioTimeout: configuration.timeout, tls: tls)
            func ask(_ args: [String]) throws -> String {
                try c.write(RedisOutput.command(args.map { Array($0.utf8) }))
                let line = String(decoding: try c.readLine(), as: UTF8.self)
                if line.hasPrefix("-") { throw TCPError("\(args[0]) refused: \(line.dropFirst())") }
                return String(line.dropFirst())
            }
            if let password = configuration.password { _ = try ask(["AUTH", password]) }
            if configuration.db != 0 { _ = try ask(["SELECT", String(configuration.db)]) }
            let pong = try ask(["PING"])
            var detail = "connected\(configuration.tls != nil ? " (TLS)" : "")\(configuration.password != nil ? ", authenticated" : ""), PING answered \(pong)"
            if configuration.datatype == "list" {
                let type = try ask(["TYPE", configuration.key])
                guard type == "list" || type == "none" else {
                    throw TCPError("the key '\(configuration.key)' holds a \(type), not a list: RPUSH would be refused")
                }
                detail += ", key '\(configuration.key)' is \(type == "none" ? "not created yet" : "a list")"
            }
            return detail
        }
    }
}

extension FileOutput: ProbingOutput {
    /// Creates, writes, fsyncs and removes a probe file in the output's directory.
    public func probe() async -> [ProbeResult] {
        let dir = configuration.path
        let probe = dir + "/.cloudtrailbeat-probe-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            return [.init(target: dir, ok: false, detail: "cannot create a file: \(String(cString: strerror(errno)))")]
        }
        defer { unlink(probe) }
        let wrote = Glibc.write(fd, "probe\n", 6) == 6 && fsync(fd) == 0
        let error = String(cString: strerror(errno))
        Glibc.close(fd)
        guard wrote else { return [.init(target: dir, ok: false, detail: "cannot write and fsync a file: \(error)")] }
        var fs = statvfs()
        let free = statvfs(dir, &fs) == 0 ? UInt64(fs.f_bavail) * UInt64(fs.f_frsize) : 0
        return [.init(target: dir, ok: true, detail: "writable, \(ByteCountFormatter.string(fromByteCount: Int64(free), countStyle: .binary)) free")]
    }
}

extension ConsoleOutput: ProbingOutput {
    public func probe() async -> [ProbeResult] {
        [.init(target: "stdout", ok: true, detail: "events are written to standard output")]
    }
}

/// Runs `check` for each host on a thread of its own (sockets block), collecting one result each.
func probeEach(_ hosts: [String], defaultPort: Int, _ check: @escaping @Sendable (String, Int) throws -> String) async -> [ProbeResult] {
    var results: [ProbeResult] = []
    for h in hosts {
        let (host, port) = splitHost(h, defaultPort: defaultPort)
        let lane = BlockingLane("cloudtrailbeat.probe")
        do {
            let detail = try await lane.run { try check(host, port) }
            results.append(.init(target: "\(host):\(port)", ok: true, detail: detail))
        } catch {
            results.append(.init(target: "\(host):\(port)", ok: false, detail: "\(error)"))
        }
    }
    return results
}

extension SplunkHECOutput: ProbingOutput {
    /// `GET /services/collector/health` (HEC's own health check, code 17 when healthy), then the token:
    /// an empty batch to the event endpoint is refused for its emptiness (code 5, "No data") only once
    /// the token, its channel and its index checks passed; with `use_ack`, an empty ack query proves
    /// acknowledgement is enabled on the token.
    public func probe() async -> [ProbeResult] {
        var details: [String] = []
        do {
            let health = Answer(try await http.send(HTTPRequest(method: "GET", url: healthEndpoint), timeout: min(configuration.timeout, 30)))
            guard health.status == 200 else { return [.init(target: endpoint, ok: false, detail: "HEC is not healthy: \(health.summary)")] }
            details.append("healthy")
            let empty = Answer(try await http.send(HTTPRequest(method: "POST", url: endpoint, headers: headers(contentType: true)), timeout: min(configuration.timeout, 30)))
            guard empty.code == 5 || (200..<300).contains(empty.status) else {
                return [.init(target: endpoint, ok: false, detail: "the token is refused: \(empty.summary)")]
            }
            details.append("token accepted")
            if configuration.useAck {
                let ack = Answer(
                    try await http.send(
                        HTTPRequest(method: "POST", url: ackEndpoint, headers: headers(contentType: true), body: Array("{\"acks\":[]}".utf8)),
                        timeout: min(configuration.timeout, 30)))
                guard (200..<300).contains(ack.status) else {
                    return [.init(target: endpoint, ok: false, detail: "indexer acknowledgement is not available for this token: \(ack.summary) (enable it on the token, or set use_ack: false)")]
                }
                details.append("indexer acknowledgement enabled")
            }
        } catch {
            return [.init(target: endpoint, ok: false, detail: "\(error)")]
        }
        return [.init(target: endpoint, ok: true, detail: details.joined(separator: ", "))]
    }
}
