import Codecs
import Failures
import Foundation
import Outputs
import SNSSignature
import Stages
import Yams

/// A configuration error: it names the file and the key, says what is wrong, and suggests a fix.
public struct ConfigError: Error, CustomStringConvertible {
    public var file: String
    public var key: String?
    public var message: String
    /// The file, the key and the message; a URL quoted in the message loses its password
    /// (``redactingUserinfo(_:)``).
    public var description: String {
        if let key { return "\(file): \(key): \(redactingUserinfo(message))" }
        return "\(file): \(redactingUserinfo(message))"
    }
}

/// cloudtrailbeat's configuration (YAML), compatible with the original's keys.
public struct Config: Sendable {
    public struct Input: Sendable {
        public var sqsURL: String?
        public var region: String?
        public var numQueueFetch = 10
        public var sleepTime = 0.0
        public var noPurge = false
        public var endpoint: String?
        public var pathStyle: Bool?
        public var visibilityTimeout = 300
        public var maxReceiveCount = 10
        public var workers = 4
        /// `fetch_concurrency`: downloads in flight at once, independent of `workers` (a far-away bucket
        /// needs many in flight to fill its link; each small object holds only its own bytes).
        public var fetchConcurrency = 128
        public var waitTime = 20
        /// Whether quarantined messages stay in the queue for its redrive policy to move to the
        /// dead-letter queue; nil (`auto`, the default): when the queue has a redrive policy.
        public var leavePoisonToDLQ: Bool?
        public var profile: String?
        public var roleARN: String?
        public var externalID: String?
        public var maxFetchAttempts = 5
        /// `max_keys_per_message`: a message naming more objects is refused whole (one quarantine entry):
        /// no notification AWS sends comes near it, a forged one would cost a signed GET per key.
        public var maxKeysPerMessage = NotificationDecoder.defaultMaxKeys
        /// `max_object_size`: the most bytes one object may hold uncompressed; past it (a zip bomb) the
        /// object is quarantined. 4 GiB: ten times the largest CloudTrail files (a few hundred MB
        /// uncompressed), four times the 1 GiB object the benchmarks ship, and a bomb stops after a few
        /// seconds of one core (memory is bounded by streaming whatever the size).
        public var maxObjectSize = 4 << 30
        /// Bucket polling instead of a queue (`bucket_arn`, as Filebeat's aws-s3 input): the bucket's name.
        public var bucket: String?
        /// `bucket_list_prefix`: where in the bucket to list.
        public var bucketListPrefix = ""
        /// `bucket_list_interval`: how long to wait between listings, in seconds.
        public var bucketListInterval = 120.0
        /// `buckets`, `accounts`, `topics`: what this instance accepts to read (empty: everything).
        public var policy = SourcePolicy()
        /// `sns_signature`: verify SNS envelopes' signatures; nil (`auto`): unless an endpoint points
        /// at a stand-in (whose signatures are fake).
        public var verifySNSSignatures: Bool?
        /// `sns_certificate_hosts`, `sns_trusted_ca`.
        public var snsSignature = SNSSignatureSettings()
    }
    public struct JournalSection: Sendable {
        public var path = "data/journal"
        public var maxSize = 4 << 30
        public var doneRetentionSeconds = 7 * 24 * 3600
        /// `quarantine_max_entries`: past it, GC drops the oldest entries (0 keeps every one).
        public var maxQuarantineEntries = 10_000
    }
    /// `integrity:` — CloudTrail log-file validation (docs/integrity.md).
    public struct IntegritySection: Sendable {
        /// `enabled`: verify digests as they arrive (queue mode, bucket polling, backfill) and emit findings.
        public var enabled = false
        /// `public_keys_file`: what `aws cloudtrail list-public-keys` printed, instead of calling ListPublicKeys.
        public var publicKeysFile: String?
        /// `retention`: how long a fetched log's hash waits for the digest that lists it, in seconds.
        public var retentionSeconds = 2 * 86400
    }
    public struct ConsoleSection: Sendable { public var pretty = false }
    public struct AWSAuthSection: Sendable, Equatable {
        /// Nil: from the host name (`….<region>.es.amazonaws.com`), else as `input.aws_region` resolves.
        public var region: String?
        /// `es` or `aoss`; nil: `aoss` for a host under `.aoss.amazonaws.com`, else `es`.
        public var service: String?
        public var roleARN: String?
        public var externalID: String?
    }
    /// The metrics endpoint (`http.enabled`, `http.host`, `http.port`).
    public struct MetricsEndpoint: Sendable, Equatable {
        public var enabled = false
        public var host = "127.0.0.1"
        public var port = 5066
    }
    public struct Logging: Sendable {
        public var level = "info"
        /// Debug lines only from these stages (`SelectorLogHandler.stages`); empty: all.
        public var selectors: [String] = []
        /// One JSON object per log line (`@timestamp`, `log.level`, `message`, the stage, metadata).
        public var json = false
    }

    public var file: String
    /// `path.data`: what relative `journal.path` and `output.file.path` are resolved against (default:
    /// the configuration file's directory, so a journal never depends on the working directory).
    public var dataPath: String?
    public var input = Input()
    public var journal = JournalSection()
    public var integrity = IntegritySection()
    public var fileOutput: OutputSection<FileOutput.Configuration>?
    public var console: ConsoleSection?
    public var elasticsearch: ElasticsearchSection?
    public var logstash: OutputSection<LogstashOutput.Configuration>?
    public var redis: OutputSection<RedisOutput.Configuration>?
    public var splunk: SplunkSection?
    public var logging = Logging()
    public var shutdownTimeout = 30.0
    public var http = MetricsEndpoint()
    public var spotInterruption = false
    public var hasInputSection = false
    /// `output.<name>.codec`, by output name (an output without one uses `cloudtrail`).
    public var codecs: [String: CodecOptions] = [:]
    /// `filter:` at the top level: every output's, unless the output has its own.
    public var filter: RecordFilter?
    /// `output.<name>.filter`: replaces the top-level filter for that output (`filter: {}` ships all).
    public var outputFilters: [String: RecordFilter] = [:]

    /// The codec of an output's events.
    public func codec(forOutput name: String) -> CodecOptions { codecs[name] ?? CodecOptions() }

    /// The filter an output applies (its own, else the top-level one); nil when it ships every record.
    public func filter(forOutput name: String) -> RecordFilter? {
        let f = outputFilters[name] ?? filter
        return f?.isEmpty == true ? nil : f
    }

    /// An output's TLS settings (nil: none configured, or `ssl.enabled: false`).
    public func tls(forOutput name: String) -> TLSSettings? {
        switch name {
        case "elasticsearch": elasticsearch?.tls
        case "logstash": logstash?.tls
        case "redis": redis?.tls
        case "splunk": splunk?.tls
        default: nil
        }
    }

    /// How many objects an output emits at once (`worker`); the console keeps one, in order, for people.
    public func workers(forOutput name: String) -> Int {
        switch name {
        case "file": fileOutput?.worker ?? 1
        case "elasticsearch": elasticsearch?.worker ?? 1
        case "logstash": logstash?.worker ?? 1
        case "redis": redis?.worker ?? 1
        case "splunk": splunk?.worker ?? 1
        default: 1
        }
    }

    /// Every key the configuration accepts, for unknown-key errors and suggestions: the keys of every
    /// section's table (``SectionSchema``, ConfigSchema.swift).
    /// Worked out once: every key check reads it.
    static let known: [String: Set<String>] = schemaKeys.reduce(into: [:]) { all, keys in all.merge(keys) { a, b in a.union(b) } }

    /// Loads and validates a YAML file, with `-E key=value` overrides applied on top.
    ///
    /// - Parameter requireOutput: false for commands that ship nothing (`verify` needs only `input`).
    public static func load(path: String, overrides: [String] = [], requireOutput: Bool = true) throws -> Config {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError(file: path, key: nil, message: "cannot read the configuration file")
        }
        return try parse(text, file: path, overrides: overrides, requireOutput: requireOutput)
    }

    /// Parses and validates a configuration. `overrides` are Beats-style `-E` settings: `key=value`
    /// with a dotted key (`output.elasticsearch.hosts`) and a YAML value (`["h:9200"]`, `true`,
    /// `30s`), each replacing what the file says. An error about an overridden key says so.
    public static func parse(_ text: String, file: String, overrides: [String] = [], requireOutput: Bool = true) throws -> Config {
        let set = try overrides.map { o -> (key: String, value: Any) in
            guard let eq = o.firstIndex(of: "="), eq != o.startIndex else {
                throw ConfigError(file: file, key: nil, message: "-E '\(o)': expected key=value (e.g. -E output.elasticsearch.hosts=[\"h:9200\"])")
            }
            let raw = String(o[o.index(after: eq)...])
            let value: Any = raw.isEmpty ? "" : ((try? YAMLLoading.load(raw)) ?? nil) ?? raw
            return (String(o[..<eq]).trimmingCharacters(in: .whitespaces), value)
        }
        do {
            return try parse(text, file: file, set: set, requireOutput: requireOutput)
        } catch var e as ConfigError {
            if let key = e.key, let o = set.first(where: { key == $0.key || key.hasPrefix($0.key + ".") || $0.key.hasPrefix(key + ".") }) {
                e.message += " (set by -E \(o.key))"
            }
            throw e
        }
    }

    static func parse(_ text: String, file: String, set overrides: [(key: String, value: Any)], requireOutput: Bool = true) throws -> Config {
        let root: Any?
        do {
            root = try YAMLLoading.load(text)
        } catch {
            throw ConfigError(file: file, key: nil, message: "not valid YAML: \(error)")
        }
        var c = Config(file: file)
        guard let map = root as? [String: Any] ?? (root == nil ? [:] : nil) else {
            throw ConfigError(file: file, key: nil, message: "the top level must be a mapping of sections (input, journal, output, logging)")
        }
        let r = Reader(file: file)
        var flat = try r.expandDotted(map, at: "")
        for o in overrides { r.merge(&flat, try r.expandDotted([o.key: o.value], at: "")) }
        try rootSchema.read(flat, r, into: &c)
        if let input = try r.section(flat, "input") {
            c.hasInputSection = true
            try inputSchema.read(input, r, into: &c.input)
            if c.input.bucket != nil && c.input.sqsURL != nil {
                throw ConfigError(file: file, key: "input.bucket_arn", message: "give input.sqs_url (notifications) or input.bucket_arn (bucket polling), not both")
            }
            if let url = c.input.sqsURL, URL(string: url)?.scheme == nil {
                throw ConfigError(file: file, key: "input.sqs_url", message: "'\(url)' is not a URL (expected https://sqs.<region>.amazonaws.com/<account>/<queue>)")
            }
        }
        if let j = try r.section(flat, "journal") { try journalSchema.read(j, r, into: &c.journal) }
        if let i = try r.section(flat, "integrity") { try integritySchema.read(i, r, into: &c.integrity) }
        if let out = try r.section(flat, "output") {
            try outputSchema.read(out, r, into: &c)
            c.fileOutput = try r.output(out, "file", fileSchema, OutputSection(FileOutput.Configuration(path: ""), worker: 2), into: &c)
            c.console = try r.output(out, "console", consoleSchema, ConsoleSection(), into: &c)
            if var e = try r.output(out, "elasticsearch", elasticsearchSchema, ElasticsearchSection(), into: &c) {
                try r.elasticsearchDestination(out["elasticsearch"] as? [String: Any] ?? [:], into: &e)
                c.elasticsearch = e
            }
            c.logstash = try r.output(out, "logstash", logstashSchema, OutputSection(LogstashOutput.Configuration(), worker: 2), into: &c)
            c.redis = try r.output(out, "redis", redisSchema, OutputSection(RedisOutput.Configuration(), worker: 2), into: &c)
            if var s = try r.output(out, "splunk", splunkSchema, SplunkSection(SplunkHECOutput.Configuration(), worker: 4), into: &c) {
                try r.checkSplunk(&s)
                c.splunk = s
                // Splunk's add-on for AWS parses the record as CloudTrail wrote it (sourcetype aws:cloudtrail).
                if c.codecs["splunk"] == nil { c.codecs["splunk"] = CodecOptions(kind: .raw) }
            }
        }
        if let l = try r.section(flat, "logging") { try loggingSchema.read(l, r, into: &c.logging) }
        if let h = try r.section(flat, "http") {
            c.http.enabled = true  // a metrics section turns the endpoint on unless it says otherwise
            try httpSchema.read(h, r, into: &c.http)
        }
        if flat.keys.contains("filter") { c.filter = try r.filter(flat["filter"]!, at: "filter") }
        if let p = try r.section(flat, "path") { try pathSchema.read(p, r, into: &c) }
        // Relative paths: against path.data, else the configuration file's directory (not the working
        // directory, which is / under systemd and anything at all for `journal status`).
        let here = URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
        let base = URL(
            fileURLWithPath: c.dataPath ?? URL(fileURLWithPath: file, relativeTo: here).deletingLastPathComponent().path, isDirectory: true, relativeTo: here)
        func resolve(_ path: String) -> String {
            path.hasPrefix("/") ? path : URL(fileURLWithPath: path, relativeTo: base).standardizedFileURL.path
        }
        c.journal.path = resolve(c.journal.path)
        if let f = c.integrity.publicKeysFile {
            let path = resolve(f)
            c.integrity.publicKeysFile = path
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw ConfigError(file: file, key: "integrity.public_keys_file", message: "cannot read '\(path)'")
            }
        }
        if let f = c.fileOutput { c.fileOutput?.path = resolve(f.path) }
        func resolve(_ tls: TLSSettings?) -> TLSSettings? {
            guard var t = tls else { return nil }
            t.certificateAuthorities = t.certificateAuthorities.map(resolve)
            t.certificate = t.certificate.map(resolve)
            t.key = t.key.map(resolve)
            return t
        }
        let tls = (c.elasticsearch?.output.tls, c.logstash?.output.tls, c.redis?.output.tls, c.splunk?.output.tls)
        c.elasticsearch?.output.tls = resolve(tls.0)
        c.logstash?.output.tls = resolve(tls.1)
        c.redis?.output.tls = resolve(tls.2)
        c.splunk?.output.tls = resolve(tls.3)
        if requireOutput && c.outputNames.isEmpty {
            throw ConfigError(file: file, key: "output", message: "no output is configured: add output.file, output.console, output.elasticsearch, output.logstash, output.redis or output.splunk")
        }
        return c
    }

    /// The names of the configured outputs (their journal cursors).
    public var outputNames: [String] {
        var n: [String] = []
        if fileOutput != nil { n.append("file") }
        if console != nil { n.append("console") }
        if elasticsearch != nil { n.append("elasticsearch") }
        if logstash != nil { n.append("logstash") }
        if redis != nil { n.append("redis") }
        if splunk != nil { n.append("splunk") }
        return n
    }
}

/// Typed access to a YAML mapping, with errors that name the file and the full key.
struct Reader {
    let file: String
    var environment: [String: String] = ProcessInfo.processInfo.environment

    func fail(_ key: String, _ message: String) -> ConfigError { ConfigError(file: file, key: key, message: message) }
    func join(_ at: String, _ key: String) -> String { at.isEmpty ? key : "\(at).\(key)" }

    /// Turns `output.file.path: x` style keys into nested mappings.
    func expandDotted(_ map: [String: Any], at: String) throws -> [String: Any] {
        var out: [String: Any] = [:]
        for (k, v) in map {
            let parts = k.split(separator: ".").map(String.init)
            var value = v
            if let m = v as? [String: Any] { value = try expandDotted(m, at: join(at, k)) }
            if parts.count > 1 {
                var nested: [String: Any] = [parts.last!: value]
                for p in parts.dropFirst().dropLast().reversed() { nested = [p: nested] }
                let head = parts[0]
                if var existing = out[head] as? [String: Any] {
                    merge(&existing, nested)
                    out[head] = existing
                } else {
                    out[head] = nested
                }
            } else if var existing = out[k] as? [String: Any], let m = value as? [String: Any] {
                merge(&existing, m)
                out[k] = existing
            } else {
                out[k] = value
            }
        }
        return out
    }

    func merge(_ a: inout [String: Any], _ b: [String: Any]) {
        for (k, v) in b {
            if var x = a[k] as? [String: Any], let y = v as? [String: Any] {
                merge(&x, y)
                a[k] = x
            } else {
                a[k] = v
            }
        }
    }

    func checkKeys(_ map: [String: Any], at: String, allowed: Set<String>? = nil) throws {
        let allowed = allowed ?? Config.known[at] ?? []
        for key in map.keys.sorted() where !allowed.contains(key) {
            let suggestion = allowed.min { distance($0, key) < distance($1, key) }
            var message = "unknown key"
            if let s = suggestion, distance(s, key) <= max(2, key.count / 3) { message += "; did you mean '\(join(at, s))'?" }
            else { message += "; known keys here: \(allowed.sorted().joined(separator: ", "))" }
            throw fail(join(at, key), message)
        }
    }

    /// What `output.elasticsearch` needs beyond its table: a data stream (its naming rules), extra
    /// headers, SigV4, the lifecycle policy, and the checks that span keys.
    func elasticsearchDestination(_ e: [String: Any], into s: inout Config.ElasticsearchSection) throws {
        let at = "output.elasticsearch"
        if e.keys.contains("data_stream") {
            let d = try section(e, "data_stream", at: at) ?? [:]
            try checkKeys(d, at: join(at, "data_stream"))
            guard !e.keys.contains("index") else {
                throw fail(join(at, "index"), "cannot be set with output.elasticsearch.data_stream: a data stream is named <type>-<dataset>-<namespace>")
            }
            var stream = Config.DataStreamSection()
            // Elastic's naming rules: lowercase, no '-' in type and dataset, none of \ / * ? " < > | , # : or spaces.
            for (key, keyPath) in [("type", \Config.DataStreamSection.type), ("dataset", \.dataset), ("namespace", \.namespace)] {
                guard let value = try string(d, join(at, "data_stream"), key) else { continue }
                let forbidden = Set("\\/*?\"<>|,#: ")
                guard !value.isEmpty, value.count <= 100, value == value.lowercased(), !value.contains(where: { forbidden.contains($0) }),
                    key == "namespace" || !value.contains("-")
                else {
                    throw fail(join(join(at, "data_stream"), key), "'\(value)' is not a valid \(key): lowercase, at most 100 characters, none of \\ / * ? \" < > | , # : or spaces\(key == "namespace" ? "" : ", and no '-'")")
                }
                stream[keyPath: keyPath] = value
            }
            s.dataStream = stream
        }
        s.hosts = try urls(s.hosts, tls: s.tls != nil, at: join(at, "hosts"))
        if let p = s.pipeline, p.isEmpty { throw fail(join(at, "pipeline"), "must name an ingest pipeline") }
        if let h = e["headers"], !(h is NSNull) {
            guard let m = h as? [String: Any] else { throw fail(join(at, "headers"), "must be a mapping of header names to values") }
            for name in m.keys.sorted() {
                guard let v = try string(m, join(at, "headers"), name) else { throw fail(join(join(at, "headers"), name), "must be a string") }
                guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) }), !v.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                    throw fail(join(join(at, "headers"), name), "is not a valid header")
                }
                s.headers[name] = v
            }
        }
        if let a = try section(e, "aws_auth", at: at), try bool(a, join(at, "aws_auth"), "enabled") ?? true {
            let auth = join(at, "aws_auth")
            try checkKeys(a, at: auth)
            var settings = Config.AWSAuthSection()
            settings.region = try string(a, auth, "region")
            settings.service = try string(a, auth, "service")
            if let service = settings.service, service != "es" && service != "aoss" {
                throw fail(join(auth, "service"), "'\(service)' is not one of es (Amazon OpenSearch Service), aoss (OpenSearch Serverless)")
            }
            settings.roleARN = try string(a, auth, "role_arn")
            settings.externalID = try string(a, auth, "external_id")
            if s.username != nil || s.apiKey != nil {
                throw fail(auth, "cannot be combined with output.elasticsearch.\(s.apiKey != nil ? "api_key" : "username"): a request carries one Authorization")
            }
            s.awsAuth = settings
        }
        s.ilm = try ilm(e, installTemplate: s.installTemplate, signed: s.awsAuth != nil)
    }

    /// An output's `codec` and `filter`.
    func shaping(_ map: [String: Any], output name: String, into c: inout Config) throws {
        let at = "output.\(name)"
        if let v = map["codec"], !(v is NSNull) { c.codecs[name] = try codec(v, at: join(at, "codec")) }
        if map.keys.contains("filter") { c.outputFilters[name] = try filter(map["filter"]!, at: join(at, "filter")) }
    }

    /// `codec: ecs`, or `codec: {ecs: {event_original: true}}` (Beats' form, with options).
    func codec(_ value: Any, at: String) throws -> CodecOptions {
        let kinds = CodecKind.allCases.map(\.rawValue)
        func kind(_ s: String, _ key: String) throws -> CodecKind {
            guard let k = CodecKind(rawValue: s) else {
                let near = kinds.min { distance($0, s) < distance($1, s) }.map { distance($0, s) <= 2 ? "; did you mean '\($0)'?" : "" } ?? ""
                throw fail(key, "'\(s)' is not a codec: one of \(kinds.joined(separator: ", "))\(near)")
            }
            return k
        }
        if let s = value as? String { return CodecOptions(kind: try kind(s, at)) }
        guard let m = value as? [String: Any], m.count == 1, let (name, options) = m.first else {
            throw fail(at, "must be one of \(kinds.joined(separator: ", ")), or a mapping with one of them as its only key")
        }
        var result = CodecOptions(kind: try kind(name, join(at, name)))
        if options is NSNull { return result }
        guard let o = options as? [String: Any] else { throw fail(join(at, name), "must be a mapping of the codec's options") }
        let allowed: Set<String> = result.kind == .ecs ? ["event_original"] : []
        for key in o.keys.sorted() where !allowed.contains(key) {
            throw fail(join(join(at, name), key), allowed.isEmpty ? "unknown key: the \(name) codec has no options" : "unknown key; known keys here: \(allowed.sorted().joined(separator: ", "))")
        }
        result.eventOriginal = try bool(o, join(at, name), "event_original") ?? false
        return result
    }

    /// `filter: {include: [rules], exclude: [rules], drop_fields: [paths]}`; null or `{}` ships everything.
    func filter(_ value: Any, at: String) throws -> RecordFilter {
        if value is NSNull { return RecordFilter() }
        guard let m = value as? [String: Any] else { throw fail(at, "must be a mapping with include, exclude and drop_fields") }
        let allowed = Config.known["filter"]!
        for key in m.keys.sorted() where !allowed.contains(key) {
            let near = allowed.min { distance($0, key) < distance($1, key) }!
            throw fail(join(at, key), distance(near, key) <= 2 ? "unknown key; did you mean '\(join(at, near))'?" : "unknown key; known keys here: \(allowed.sorted().joined(separator: ", "))")
        }
        func rules(_ key: String) throws -> [[String: [String]]] {
            guard let v = m[key], !(v is NSNull) else { return [] }
            let here = join(at, key)
            guard let list = v as? [Any] else { throw fail(here, "must be a list of rules, each a mapping of record fields to values (e.g. - {eventSource: kms.amazonaws.com, eventName: Decrypt})") }
            return try list.enumerated().map { i, item in
                let ruleAt = "\(here)[\(i)]"
                guard let rule = item as? [String: Any], !rule.isEmpty else { throw fail(ruleAt, "must be a mapping of record fields to values or lists of values") }
                var out: [String: [String]] = [:]
                for (field, v) in rule {
                    try recordField(field, at: join(ruleAt, field))
                    let values = try (v as? [Any] ?? [v]).map { try scalar($0, at: join(ruleAt, field)) }
                    guard !values.isEmpty else { throw fail(join(ruleAt, field), "must list at least one value") }
                    out[field] = values
                }
                return out
            }
        }
        let drop = try strings(m, at, "drop_fields") ?? []
        for path in drop { try recordField(path, at: join(at, "drop_fields")) }
        return RecordFilter(include: try rules("include"), exclude: try rules("exclude"), dropFields: drop)
    }

    /// A record field path (`userIdentity.type`): its first name must be a CloudTrail record field.
    func recordField(_ path: String, at: String) throws {
        let first = String(path.split(separator: ".", omittingEmptySubsequences: false).first ?? "")
        guard !path.isEmpty, !path.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty) else {
            throw fail(at, "'\(path)' is not a field path (names joined by dots)")
        }
        guard RecordFilter.recordFields.contains(first) else {
            let near = RecordFilter.recordFields.min { distance($0, first) < distance($1, first) }!
            let hint = distance(near, first) <= max(2, first.count / 3) ? "; did you mean '\(near)'?" : ""
            throw fail(at, "'\(first)' is not a CloudTrail record field\(hint)")
        }
    }

    private func scalar(_ v: Any, at: String) throws -> String {
        if let b = v as? Bool { return b ? "true" : "false" }
        if let n = v as? Int { return String(n) }
        if let s = v as? String { return try expandEnvironment(s, at: at) }
        if let d = v as? Double { return String(d) }
        throw fail(at, "values must be strings, numbers or true/false")
    }

    /// `ssl: {enabled, certificate_authorities, verification_mode, certificate, key}`; nil when absent
    /// or disabled. A section present turns TLS on unless it says `enabled: false` (as in Beats).
    func tls(_ map: [String: Any], at: String) throws -> TLSSettings? {
        guard let ssl = try section(map, "ssl", at: at) else { return nil }
        let here = join(at, "ssl")
        try checkKeys(ssl, at: here)
        guard try bool(ssl, here, "enabled") ?? true else { return nil }
        var t = TLSSettings()
        t.certificateAuthorities = try strings(ssl, here, "certificate_authorities") ?? []
        if t.certificateAuthorities.contains(where: \.isEmpty) { throw fail(join(here, "certificate_authorities"), "an empty file name") }
        if let mode = try string(ssl, here, "verification_mode") {
            guard ["full", "strict", "certificate", "none"].contains(mode) else {
                throw fail(join(here, "verification_mode"), "'\(mode)' is not one of full, strict, certificate, none")
            }
            t.verify = mode != "none"
        }
        t.certificate = try string(ssl, here, "certificate")
        t.key = try string(ssl, here, "key")
        if (t.certificate == nil) != (t.key == nil) {
            let missing = t.certificate == nil ? "certificate" : "key"
            throw fail(join(here, missing), "missing: a client certificate (ssl.certificate) needs its private key (ssl.key), and the key its certificate")
        }
        for (key, value) in [("certificate", t.certificate), ("key", t.key)] where value?.isEmpty == true {
            throw fail(join(here, key), "an empty file name")
        }
        return t
    }

    /// An HTTP output's URLs under its TLS settings: with TLS on, a URL without a scheme gets
    /// `https://` and an `http://` one is refused (it would send in plain text what was asked to go
    /// over TLS, credentials included).
    func urls(_ urls: [String], tls: Bool, at key: String) throws -> [String] {
        try urls.map { url in
            guard let u = TLSSettings.url(url, tls: tls) else {
                throw fail(key, "'\(url)' is plain HTTP, yet ssl is configured (TLS on): write https:// or no scheme (https:// is then used), or set ssl.enabled: false")
            }
            return u
        }
    }

    func section(_ map: [String: Any], _ key: String, at: String = "") throws -> [String: Any]? {
        guard let v = map[key] else { return nil }
        if v is NSNull { return [:] }
        guard let m = v as? [String: Any] else { throw fail(join(at, key), "must be a mapping") }
        return m
    }

    func string(_ map: [String: Any], _ at: String, _ key: String) throws -> String? {
        guard let v = map[key], !(v is NSNull) else { return nil }
        if let s = v as? String { return try expandEnvironment(s, at: join(at, key)) }
        if let n = v as? Int { return String(n) }
        throw fail(join(at, key), "must be a string")
    }

    /// `${VAR}` and `${VAR:default}` from the environment, as Beats allow. An unset variable without a
    /// default is an error naming it (`${VAR:}` is an explicit empty default), never a silent empty
    /// string: an empty password or journal path is a surprise nobody wants.
    func expandEnvironment(_ s: String, at key: String) throws -> String {
        guard s.contains("${") else { return s }
        var out = ""
        var rest = Substring(s)
        while let start = rest.range(of: "${") {
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw fail(key, "'${' without a closing '}' in \"\(s)\"")
            }
            out += rest[..<start.lowerBound]
            let inner = rest[start.upperBound..<end]
            let parts = inner.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            guard !name.isEmpty else { throw fail(key, "'${}' names no environment variable") }
            if let value = environment[name] {
                out += value
            } else if parts.count > 1 {
                out += parts[1]
            } else {
                throw fail(key, "the environment variable \(name) is not set (write ${\(name):default} for a default, ${\(name):} for an empty one)")
            }
            rest = rest[rest.index(after: end)...]
        }
        return out + rest
    }

    func strings(_ map: [String: Any], _ at: String, _ key: String) throws -> [String]? {
        guard let v = map[key], !(v is NSNull) else { return nil }
        if let s = v as? String { return [try expandEnvironment(s, at: join(at, key))] }
        guard let list = v as? [Any] else { throw fail(join(at, key), "must be a list of strings") }
        return try list.map {
            guard let s = $0 as? String else { throw fail(join(at, key), "must be a list of strings") }
            return try expandEnvironment(s, at: join(at, key))
        }
    }

    func bool(_ map: [String: Any], _ at: String, _ key: String, orAuto: Bool = false) throws -> Bool? {
        guard let v = map[key], !(v is NSNull) else { return nil }
        if let b = v as? Bool { return b }
        if let s = v as? String, ["true", "false"].contains(s.lowercased()) { return s.lowercased() == "true" }
        throw fail(join(at, key), orAuto ? "must be true, false or auto" : "must be true or false")
    }

    func int(_ map: [String: Any], _ at: String, _ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = map[key], !(v is NSNull) else { return nil }
        guard let n = v as? Int ?? (v as? String).flatMap(Int.init) else { throw fail(join(at, key), "must be a whole number") }
        guard range.contains(n) else { throw fail(join(at, key), "\(n) is out of range (\(range.lowerBound)–\(range.upperBound))") }
        return n
    }

    /// Bytes: a number, or `512MiB`, `4GiB`, `100MB`, `64k`.
    func size(_ map: [String: Any], _ at: String, _ key: String) throws -> Int? {
        guard let v = map[key], !(v is NSNull) else { return nil }
        if let n = v as? Int { return n }
        guard let s = v as? String else { throw fail(join(at, key), "must be a size such as 4GiB") }
        let units: [(String, Int)] = [("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40), ("kb", 1000), ("mb", 1_000_000), ("gb", 1_000_000_000),
                                      ("tb", 1_000_000_000_000), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("b", 1)]
        let lower = s.lowercased().replacingOccurrences(of: " ", with: "")
        for (suffix, factor) in units where lower.hasSuffix(suffix) {
            if let n = Double(lower.dropLast(suffix.count)), n >= 0 { return Int(n * Double(factor)) }
        }
        if let n = Int(lower) { return n }
        throw fail(join(at, key), "'\(s)' is not a size (use bytes, or units like 512MiB, 4GiB)")
    }

    /// Seconds: a number (bare numbers are seconds), or a duration with a unit: `500ms`, `30s`,
    /// `1.5s`, `5m`, `12h`, `7d`.
    func seconds(_ map: [String: Any], _ at: String, _ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = map[key], !(v is NSNull) else { return nil }
        let here = join(at, key)
        let value: Double
        if let n = v as? Int {
            value = Double(n)
        } else if let d = v as? Double {
            value = d
        } else if let s = v as? String, let parsed = Reader.parseDuration(try expandEnvironment(s, at: here)) {
            value = parsed
        } else {
            throw fail(here, "'\(v)' is not a duration (a number of seconds, or 500ms, 30s, 5m, 12h, 7d)")
        }
        guard range.contains(value) else {
            throw fail(here, "\(Reader.describe(value)) is out of range (\(Reader.describe(range.lowerBound))–\(Reader.describe(range.upperBound)))")
        }
        return value
    }

    /// Whole seconds (``seconds(_:_:_:in:)`` that must be a whole number of seconds).
    func wholeSeconds(_ map: [String: Any], _ at: String, _ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let s = try seconds(map, at, key, in: Double(range.lowerBound)...Double(range.upperBound)) else { return nil }
        guard s == s.rounded() else { throw fail(join(at, key), "\(Reader.describe(s)) is not a whole number of seconds") }
        return Int(s)
    }

    /// A duration in whole seconds, without a range (`journal.done_retention`).
    func duration(_ map: [String: Any], _ at: String, _ key: String) throws -> Int? {
        try wholeSeconds(map, at, key, in: 0...Int(Int32.max))
    }

    /// `"90"`, `"90s"`, `"1.5m"`, `"500ms"`, `"12h"`, `"7d"` in seconds; nil when not a duration.
    static func parseDuration(_ text: String) -> Double? {
        let s = text.trimmingCharacters(in: .whitespaces).lowercased()
        for (unit, factor) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)] where s.hasSuffix(unit) {
            if let n = Double(s.dropLast(unit.count).trimmingCharacters(in: .whitespaces)), n >= 0, n.isFinite { return n * factor }
        }
        if let n = Double(s), n >= 0, n.isFinite { return n }
        return nil
    }

    /// `7d`, `12h`, or seconds.
    static func describe(wholeSeconds s: Int) -> String {
        s > 0 && s % 86400 == 0 ? "\(s / 86400)d" : s > 0 && s % 3600 == 0 ? "\(s / 3600)h" : "\(s)s"
    }

    /// `10MiB`, `512KiB`, or bytes.
    static func describe(bytes: Int) -> String {
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] where bytes > 0 && bytes % (1 << shift) == 0 { return "\(bytes >> shift)\(unit)" }
        return "\(bytes)"
    }

    static func describe(_ seconds: Double) -> String {
        seconds == seconds.rounded() && abs(seconds) < 1e15 ? "\(Int(seconds))s" : "\(seconds)s"
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
func distance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var row = Array(0...b.count)
    for i in 1...a.count {
        var previous = row[0]
        row[0] = i
        for j in 1...b.count {
            let old = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
            previous = old
        }
    }
    return row[b.count]
}
