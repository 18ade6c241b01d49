import Foundation
import HTTP

/// Elasticsearch (and OpenSearch) `_bulk` with `create` and `_id` = event id, so replays are idempotent.
///
/// Per item: 2xx and 409 (already there) are delivered; 429 and 5xx are retried; other 4xx go to the
/// dead-letter file with the server's reason. A whole-request 429/5xx or network error is retried (on
/// the next host); 413 splits the batch. Basic auth, an API key, or a request signer (SigV4 for Amazon
/// OpenSearch Service and Serverless); TLS through libcurl with verification on (CA files, a client
/// certificate: ``TLSSettings``). An index, or a data stream (`create` is the only operation a data
/// stream takes, which is the only one this output sends); an ingest pipeline; gzip request bodies;
/// extra headers; a path prefix behind a proxy. An index lifecycle policy the installed template names.
public final class ElasticsearchOutput: Output, @unchecked Sendable {
    /// A data stream named `<type>-<dataset>-<namespace>` (Elastic's naming scheme).
    public struct DataStream: Sendable, Equatable {
        public var type: String = "logs"
        public var dataset: String = "aws.cloudtrail"
        public var namespace: String = "default"
        public init(type: String = "logs", dataset: String = "aws.cloudtrail", namespace: String = "default") {
            self.type = type
            self.dataset = dataset
            self.namespace = namespace
        }
        public var name: String { "\(type)-\(dataset)-\(namespace)" }
    }

    /// An index lifecycle (ILM) policy, installed before the template that names it.
    public struct ILM: Sendable, Equatable {
        public var policyName = "cloudtrailbeat"
        /// The policy as `PUT _ilm/policy/<name>` takes it (`{"policy": {"phases": …}}`); nil: the one
        /// ``defaultPolicy(dataStream:)`` builds from the settings below.
        public var policy: [UInt8]?
        /// Hot-phase rollover (data streams only: a daily index has no alias to roll over).
        public var rolloverMaxAge = "30d"
        public var rolloverMaxPrimaryShardSize = "50gb"
        /// When indices are deleted, counted from their rollover (or creation); nil keeps them.
        public var deleteAfter: String?
        /// Replace a policy of that name that already exists (default: leave it as it is, since an
        /// administrator may have tuned it).
        public var overwrite = false
        public init() {}

        /// The policy body: a hot phase (rollover for a data stream), and a delete phase when
        /// ``deleteAfter`` is set.
        public func defaultPolicy(dataStream: Bool) -> [UInt8] {
            var phases: [String: Any] = [:]
            let hot: [String: Any] = dataStream
                ? ["rollover": ["max_age": rolloverMaxAge, "max_primary_shard_size": rolloverMaxPrimaryShardSize], "set_priority": ["priority": 100]]
                : ["set_priority": ["priority": 100]]
            phases["hot"] = ["min_age": "0ms", "actions": hot]
            if let deleteAfter { phases["delete"] = ["min_age": deleteAfter, "actions": ["delete": [String: Any]()]] }
            let body: [String: Any] = ["policy": ["_meta": ["managed_by": "cloudtrailbeat"], "phases": phases]]
            return (try? Array(JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]))) ?? []
        }
    }

    public struct Configuration: Sendable {
        public var hosts: [String] = ["http://127.0.0.1:9200"]
        /// `%{+yyyy.MM.dd}` (and `yyyy`, `MM`, `dd` alone) are replaced from the event's `@timestamp`.
        /// Not used with a data stream.
        public var index: String = "cloudtrail-%{+yyyy.MM.dd}"
        /// Ship into this data stream instead of `index`.
        public var dataStream: DataStream?
        /// The ingest pipeline every document goes through (the bulk request's `pipeline` parameter).
        public var pipeline: String?
        /// A path before every endpoint (`/es` for `https://proxy/es/_bulk`).
        public var path: String = ""
        /// gzip level of request bodies (1–9; 0 sends them as they are).
        public var compressionLevel: Int = 0
        /// Extra headers on every request.
        public var headers: [String: String] = [:]
        public var bulkMaxSize: Int = 1600
        public var bulkMaxBytes: Int = 10 << 20
        public var username: String?
        public var password: String?
        public var apiKey: String?
        /// Signs every request (template install, probe and bulk) just before it is sent.
        public var signer: (any HTTPRequestSigner)?
        /// TLS settings (an `ssl` section not disabled): hosts without a scheme are `https://` then,
        /// and `http://` ones are refused. Nil: as each host's scheme says, with the system's CAs.
        public var tls: TLSSettings?
        public var timeout: Double = 90
        /// Install the index template (``ElasticsearchOutput/template``) at start-up.
        public var installTemplate = false
        public var templateName = "cloudtrailbeat"
        /// With ``installTemplate``: a lifecycle policy for the indices (or the data stream's backing
        /// indices), which the template names.
        public var ilm: ILM?
        public init() {}
    }

    public let name = "elasticsearch"
    public let configuration: Configuration
    public var maxBatch: Int { configuration.bulkMaxSize }
    let http: HTTPClient
    /// Authentication and extra headers of every request.
    let headers: [(String, String)]
    private let lock = NSLock()
    private var hostIndex = 0
    private var templateInstalled = false

    public init(_ configuration: Configuration) throws {
        guard !configuration.hosts.isEmpty else { throw OutputError(output: "elasticsearch", code: .configuration, message: "no hosts") }
        var configuration = configuration
        configuration.hosts = try configuration.hosts.map { host in
            guard let url = TLSSettings.url(host, tls: configuration.tls != nil) else {
                throw OutputError(output: "elasticsearch", code: .configuration, message: "'\(host)' is plain HTTP, yet TLS is configured (ssl): write https:// or no scheme")
            }
            return url
        }
        self.configuration = configuration
        headers = Self.headers(configuration)
        var http = HTTPClient.Configuration()
        try http.apply(configuration.tls, output: "elasticsearch")
        http.maxConcurrent = 4
        self.http = HTTPClient(configuration: http)
    }

    /// The index template that maps CloudTrail safely: the free-form objects are `flattened` (no mapping
    /// explosion, no 32 766-byte keyword limit), with a non-indexed text copy of `requestParameters`.
    public static var template: String {
        guard let url = Bundle.module.url(forResource: "cloudtrail-index-template", withExtension: "json"),
            let text = try? String(contentsOf: url, encoding: .utf8)
        else { return "{}" }
        return text
    }

    /// The template this output installs: ``template``, for the data stream when one is configured
    /// (its name as the only pattern, and `data_stream: {}` so that the first write creates it).
    /// With ILM, its `index.lifecycle.name` names the policy.
    var installedTemplate: [UInt8] {
        guard configuration.dataStream != nil || configuration.ilm != nil,
            var json = (try? JSONSerialization.jsonObject(with: Data(Self.template.utf8))) as? [String: Any]
        else { return Array(Self.template.utf8) }
        if let stream = configuration.dataStream {
            json["index_patterns"] = [stream.name]
            json["data_stream"] = [String: Any]()
        }
        if let ilm = configuration.ilm {
            var template = json["template"] as? [String: Any] ?? [:]
            var settings = template["settings"] as? [String: Any] ?? [:]
            settings["index.lifecycle.name"] = ilm.policyName
            template["settings"] = settings
            json["template"] = template
        }
        return (try? Array(JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))) ?? Array(Self.template.utf8)
    }

    /// Authentication and the configured extra headers (no Content-Type), worked out once.
    static func headers(_ configuration: Configuration) -> [(String, String)] {
        var h: [(String, String)] = []
        if let apiKey = configuration.apiKey {
            h.append(("Authorization", "ApiKey \(apiKey)"))
        } else if let user = configuration.username {
            let token = Data("\(user):\(configuration.password ?? "")".utf8).base64EncodedString()
            h.append(("Authorization", "Basic \(token)"))
        }
        for (name, value) in configuration.headers.sorted(by: { $0.key < $1.key }) { h.append((name, value)) }
        return h
    }

    /// The request as it goes out to `host`: the path prefix, the body gzip'd when asked, signed last.
    func request(
        host: String, method: String, _ endpoint: String, query: [(String, String)] = [], contentType: String? = nil, body: [UInt8] = []
    ) async throws -> HTTPRequest {
        let base = host.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let prefix = configuration.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        var url = base + (prefix.isEmpty ? "" : "/" + prefix) + endpoint
        if !query.isEmpty {
            url += "?" + query.map { Self.queryEncode($0.0) + "=" + Self.queryEncode($0.1) }.joined(separator: "&")
        }
        var h: [(String, String)] = []
        if let contentType { h.append(("Content-Type", contentType)) }
        var payload = body
        if configuration.compressionLevel > 0 && !body.isEmpty {
            payload = Deflate.gzip(body, level: Int32(configuration.compressionLevel))
            h.append(("Content-Encoding", "gzip"))
        }
        var r = HTTPRequest(method: method, url: url, headers: h + headers, body: payload)
        if let signer = configuration.signer {
            do {
                r = try await signer.sign(r)
            } catch {
                throw OutputError(output: name, message: "cannot sign the request to \(base): \(error)")
            }
        }
        return r
    }

    /// Percent-encodes everything but RFC 3986's unreserved characters.
    static func queryEncode(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")) ?? s
    }

    func indexName(_ event: OutputEvent) -> String {
        if let stream = configuration.dataStream { return stream.name }
        var index = configuration.index
        guard index.contains("%{") else { return index }
        let date = event.datePattern ?? ("1970", "01", "01")
        index = index.replacingOccurrences(of: "%{+yyyy.MM.dd}", with: "\(date.year).\(date.month).\(date.day)")
        index = index.replacingOccurrences(of: "%{+yyyy.MM}", with: "\(date.year).\(date.month)")
        index = index.replacingOccurrences(of: "%{+yyyy}", with: "\(date.year)")
        return index
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if ch.value < 0x20 { out += String(format: "\\u%04x", ch.value) } else { out.unicodeScalars.append(ch) }
            }
        }
        return out
    }

    private func host() -> String {
        lock.withLock { configuration.hosts[hostIndex % configuration.hosts.count] }
    }

    private func failover() { lock.withLock { hostIndex += 1 } }

    private func installTemplateIfNeeded() async throws {
        guard configuration.installTemplate, !lock.withLock({ templateInstalled }) else { return }
        if let ilm = configuration.ilm { try await installPolicy(ilm) }
        let host = host()
        let r = try await setUp(
            "installing the index template", on: host,
            try await request(
                host: host, method: "PUT", "/_index_template/" + Self.queryEncode(configuration.templateName), contentType: "application/json",
                body: installedTemplate))
        guard (200..<300).contains(r.status) else {
            throw OutputError(output: name, message: "installing the index template answered HTTP \(r.status): \(String(decoding: r.body.prefix(500), as: UTF8.self))")
        }
        lock.withLock { templateInstalled = true }
    }

    /// Sends a set-up request (template, policy) to `host`; a transport error moves to the next host
    /// and says what was being done.
    private func setUp(_ doing: String, on host: String, _ request: HTTPRequest) async throws -> HTTPResponse {
        do {
            return try await http.send(request, timeout: configuration.timeout)
        } catch let e as HTTPTransportError {
            failover()
            throw OutputError(output: name, message: "\(doing) on \(host): \(e.message)")
        }
    }

    /// Puts the lifecycle policy, unless one of that name exists and ``ILM/overwrite`` is off.
    private func installPolicy(_ ilm: ILM) async throws {
        let host = host()
        let endpoint = "/_ilm/policy/" + Self.queryEncode(ilm.policyName)
        if !ilm.overwrite {
            let existing = try await setUp("installing the lifecycle policy", on: host, try await request(host: host, method: "GET", endpoint))
            if (200..<300).contains(existing.status) { return }
            guard existing.status == 404 else {
                throw OutputError(output: name, message: "reading lifecycle policy '\(ilm.policyName)' answered HTTP \(existing.status): \(String(decoding: existing.body.prefix(500), as: UTF8.self))")
            }
        }
        let body = ilm.policy ?? ilm.defaultPolicy(dataStream: configuration.dataStream != nil)
        let r = try await setUp("installing the lifecycle policy", on: host, try await request(host: host, method: "PUT", endpoint, contentType: "application/json", body: body))
        guard (200..<300).contains(r.status) else {
            throw OutputError(
                output: name, code: r.status == 400 ? .configuration : .unavailable,
                message: "installing lifecycle policy '\(ilm.policyName)' answered HTTP \(r.status): \(String(decoding: r.body.prefix(500), as: UTF8.self))")
        }
    }

    public func deliver(_ batch: [OutputEvent]) async throws -> DeliveryReport {
        guard !batch.isEmpty else { return DeliveryReport(handled: 0) }
        try await installTemplateIfNeeded()
        // Respect the byte limit: send the longest prefix that fits.
        var bytes = 0
        var count = 0
        for e in batch {
            let size = e.json.count + e.id.count + 64
            if count > 0 && bytes + size > configuration.bulkMaxBytes { break }
            bytes += size
            count += 1
        }
        return try await bulk(Array(batch[..<count]))
    }

    private func bulk(_ batch: [OutputEvent]) async throws -> DeliveryReport {
        var body: [UInt8] = []
        body.reserveCapacity(batch.reduce(0) { $0 + $1.json.count + 100 })
        for e in batch {
            body += Array("{\"create\":{\"_index\":\"\(ElasticsearchOutput.escape(indexName(e)))\",\"_id\":\"\(ElasticsearchOutput.escape(e.id))\"}}\n".utf8)
            body += e.json
            body.append(0x0a)
        }
        let host = host()
        let base = host.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let request = try await request(
            host: host, method: "POST", "/_bulk", query: configuration.pipeline.map { [("pipeline", $0)] } ?? [],
            contentType: "application/x-ndjson", body: body)
        let response: HTTPResponse
        do {
            response = try await http.send(request, timeout: configuration.timeout)
        } catch let e as HTTPTransportError {
            failover()
            throw OutputError(output: name, message: "\(base): \(e.message)")
        }
        if response.status == 413 {
            guard batch.count > 1 else {
                return DeliveryReport(handled: 1, deadLetters: [DeadLetter(index: 0, reason: "HTTP 413: the event alone is larger than the server accepts")])
            }
            // Split: deliver the first half; the caller sends the rest next.
            return try await bulk(Array(batch[..<(batch.count / 2)]))
        }
        guard (200..<300).contains(response.status) else {
            let text = String(decoding: response.body.prefix(500), as: UTF8.self)
            if response.status == 429 || response.status >= 500 {
                if response.status >= 500 { failover() }
                throw OutputError(output: name, message: "\(base)/_bulk answered HTTP \(response.status): \(text)")
            }
            throw OutputError(output: name, message: "\(base)/_bulk answered HTTP \(response.status): \(text)", retryable: true)
        }
        guard let report = ElasticsearchOutput.bulkReport(response.body, count: batch.count) else {
            throw OutputError(output: name, message: "\(base)/_bulk answered an unreadable body")
        }
        return report
    }

    /// What a `_bulk` answer says of a batch of `count` create actions: items handled (created, or
    /// 409 already there), dead letters (other 4xx), and where to retry from (the first 429, 5xx or
    /// unreadable item). Nil when the body is not a bulk answer for `count` items.
    static func bulkReport(_ body: [UInt8], count: Int) -> DeliveryReport? {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let items = json["items"] as? [[String: Any]], items.count == count
        else { return nil }
        var dead: [DeadLetter] = []
        for (i, item) in items.enumerated() {
            let result = (item["create"] ?? item["index"] ?? item.values.first) as? [String: Any] ?? [:]
            let status = result["status"] as? Int ?? 0
            if (200..<300).contains(status) || status == 409 { continue }
            if status == 429 || status >= 500 || status == 0 {
                // Retry from the first item that must be retried; what came before is handled.
                return DeliveryReport(handled: i, deadLetters: dead)
            }
            let error = result["error"] as? [String: Any]
            let reason = "HTTP \(status): \(error?["type"] as? String ?? "error"): \(error?["reason"] as? String ?? "no reason given")"
            dead.append(DeadLetter(index: i, reason: reason))
        }
        return DeliveryReport(handled: count, deadLetters: dead)
    }

    public func close() async { http.shutdown() }
}
