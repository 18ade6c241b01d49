import Codecs
import Foundation
import Outputs
import SNSSignature
import Stages

// Declarative configuration sections.
//
// A section's table (``SectionSchema``) is the one list of its keys: what each takes (type and range),
// and where its value goes. Unknown-key errors and their suggestions, parsing, the error messages
// ("must be a whole number", "… is out of range (1–100000)") and the example configuration's checks
// (DocsTests reads ``Config/known``, made of every table's keys, and compares the example's values with
// the defaults) all come from it. Defaults are not in the tables: they are the settings' own initial
// values, given once — for an output, in the output's own `Configuration`, which its section holds
// as it is, so Bootstrap hands it over without copying fields. A table writes a field only when its
// key is present; checks that span several keys follow the table in the section's reader.

/// One key of a section: its name, what it takes (for the docs and `config check`), and how its YAML
/// value is read into the settings.
struct Setting<Target> {
    let key: String
    /// What the key takes, in words ("a whole number, 1–100000").
    let accepts: String
    /// The setting's value in `Target`, as the configuration writes it (for the key reference); nil
    /// for keys without one place to read it back.
    var value: ((Target) -> String?)? = nil
    /// For a key without a default: what the error says when it is missing (or null, or an empty list).
    var missing: String? = nil
    let read: (Reader, _ map: [String: Any], _ at: String, inout Target) throws -> Void

    init(key: String, accepts: String, value: ((Target) -> String?)? = nil, read: @escaping (Reader, [String: Any], String, inout Target) throws -> Void) {
        self.key = key
        self.accepts = accepts
        self.value = value
        self.read = read
    }

    static func string(_ key: String, _ path: WritableKeyPath<Target, String>) -> Setting {
        Setting(key: key, accepts: "a string", value: { $0[keyPath: path].isEmpty ? "\"\"" : $0[keyPath: path] }) { r, m, at, t in if let v = try r.string(m, at, key) { t[keyPath: path] = v } }
    }
    static func string(_ key: String, _ path: WritableKeyPath<Target, String?>) -> Setting {
        Setting(key: key, accepts: "a string", value: { $0[keyPath: path] }) { r, m, at, t in if let v = try r.string(m, at, key) { t[keyPath: path] = v } }
    }
    static func strings(_ key: String, _ path: WritableKeyPath<Target, [String]>) -> Setting {
        Setting(key: key, accepts: "a list of strings", value: { "[" + $0[keyPath: path].joined(separator: ", ") + "]" }) { r, m, at, t in if let v = try r.strings(m, at, key) { t[keyPath: path] = v } }
    }
    /// A string that must be one of `values` (`shown` lists them in the error, when it should differ).
    static func oneOf(_ key: String, _ path: WritableKeyPath<Target, String>, _ values: [String], shown: [String]? = nil) -> Setting {
        Setting(key: key, accepts: "one of \((shown ?? values).joined(separator: ", "))", value: { $0[keyPath: path] }) { r, m, at, t in
            guard let v = try r.string(m, at, key) else { return }
            guard values.contains(v) else { throw r.fail(r.join(at, key), "'\(v)' is not one of \((shown ?? values).joined(separator: ", "))") }
            t[keyPath: path] = v
        }
    }
    static func int(_ key: String, _ path: WritableKeyPath<Target, Int>, in range: ClosedRange<Int>) -> Setting {
        Setting(key: key, accepts: "a whole number, \(range.lowerBound)–\(range.upperBound)", value: { "\($0[keyPath: path])" }) { r, m, at, t in
            if let v = try r.int(m, at, key, in: range) { t[keyPath: path] = v }
        }
    }
    static func int32(_ key: String, _ path: WritableKeyPath<Target, Int32>, in range: ClosedRange<Int>) -> Setting {
        Setting(key: key, accepts: "a whole number, \(range.lowerBound)–\(range.upperBound)", value: { "\($0[keyPath: path])" }) { r, m, at, t in
            if let v = try r.int(m, at, key, in: range) { t[keyPath: path] = Int32(v) }
        }
    }
    static func bool(_ key: String, _ path: WritableKeyPath<Target, Bool>) -> Setting {
        Setting(key: key, accepts: "true or false", value: { "\($0[keyPath: path])" }) { r, m, at, t in if let v = try r.bool(m, at, key) { t[keyPath: path] = v } }
    }
    /// `true`, `false` or `auto` (nil).
    static func boolOrAuto(_ key: String, _ path: WritableKeyPath<Target, Bool?>) -> Setting {
        Setting(key: key, accepts: "true, false or auto", value: { $0[keyPath: path].map { "\($0)" } ?? "auto" }) { r, m, at, t in
            guard (m[key] as? String)?.lowercased() != "auto" else { return t[keyPath: path] = nil }
            if let v = try r.bool(m, at, key, orAuto: true) { t[keyPath: path] = v }
        }
    }
    static func seconds(_ key: String, _ path: WritableKeyPath<Target, Double>, in range: ClosedRange<Double>) -> Setting {
        Setting(key: key, accepts: "a duration, \(Reader.describe(range.lowerBound))–\(Reader.describe(range.upperBound))", value: { Reader.describe($0[keyPath: path]) }) { r, m, at, t in
            if let v = try r.seconds(m, at, key, in: range) { t[keyPath: path] = v }
        }
    }
    static func wholeSeconds(_ key: String, _ path: WritableKeyPath<Target, Int>, in range: ClosedRange<Int>) -> Setting {
        Setting(key: key, accepts: "a whole number of seconds, \(range.lowerBound)–\(range.upperBound)", value: { Reader.describe(wholeSeconds: $0[keyPath: path]) }) { r, m, at, t in
            if let v = try r.wholeSeconds(m, at, key, in: range) { t[keyPath: path] = v }
        }
    }
    static func size(_ key: String, _ path: WritableKeyPath<Target, Int>, in range: ClosedRange<Int>? = nil) -> Setting {
        Setting(key: key, accepts: range.map { "a size, \($0.lowerBound)–\($0.upperBound) bytes" } ?? "a size", value: { Reader.describe(bytes: $0[keyPath: path]) }) { r, m, at, t in
            guard let v = try r.size(m, at, key) else { return }
            if let range, !range.contains(v) { throw r.fail(r.join(at, key), "\(v) bytes is out of range (\(range.lowerBound)–\(range.upperBound))") }
            t[keyPath: path] = v
        }
    }
    /// `ssl: {enabled, certificate_authorities, verification_mode, certificate, key}` of an output.
    static func tls(_ path: WritableKeyPath<Target, TLSSettings?>) -> Setting {
        Setting(key: "ssl", accepts: "a mapping: enabled, certificate_authorities, verification_mode, certificate, key") { r, m, at, t in
            t[keyPath: path] = try r.tls(m, at: at)
        }
    }
    /// A key read by the section's own code (`enabled`, a nested section, `codec`, `filter`): listed,
    /// so it is known, but its entry does nothing. `shown` is its default in the key reference.
    static func handled(_ key: String, _ accepts: String, shown: String? = nil) -> Setting {
        Setting(key: key, accepts: accepts, value: shown.map { v in { _ in v } }) { _, _, _, _ in }
    }

    /// The same setting, without a default: the section is refused without it (`hint` says what to
    /// give), and the key reference shows it as required.
    func required(_ hint: String) -> Setting {
        var s = Setting(key: key, accepts: accepts, value: { _ in "(required)" }, read: read)
        s.missing = hint
        return s
    }
}

/// The table of one section.
struct SectionSchema<Target> {
    /// Where the section is (`output.splunk`).
    let at: String
    let settings: [Setting<Target>]
    /// Nested sections' own keys (`ssl` → `certificate_authorities`, `verification_mode`).
    var nested: [String: Set<String>] = [:]

    var keys: Set<String> { Set(settings.map(\.key)) }

    /// The section's entries for ``Config/known``.
    var known: [String: Set<String>] {
        var k = [at: keys]
        for (name, keys) in nested { k[at.isEmpty ? name : at + "." + name] = keys }
        return k
    }

    /// One line per key: `at.key: value — what it takes`, the value as `initial` holds it (the default
    /// when `initial` is the section's starting point).
    func reference(_ initial: Target) -> [String] {
        settings.map { s in
            let value = s.value.map { $0(initial) ?? "-" }
            return "\(at.isEmpty ? s.key : at + "." + s.key)\(value.map { ": " + $0 } ?? "") — \(s.accepts)"
        }
    }

    /// Checks the section's keys against the table, reads every key present into `target`, in the
    /// table's order, then refuses the section when a required key is missing.
    func read(_ map: [String: Any], _ r: Reader, into target: inout Target) throws {
        try r.checkKeys(map, at: at, allowed: keys)
        for s in settings where map[s.key] != nil { try s.read(r, map, at, &target) }
        for s in settings {
            guard let hint = s.missing else { continue }
            let v = map[s.key]
            if v == nil || v is NSNull || (v as? [Any])?.isEmpty == true { throw r.fail(r.join(at, s.key), "missing: \(hint)") }
        }
    }
}

/// A section that holds an output's own configuration: `c.elasticsearch?.hosts` reads the output's.
@dynamicMemberLookup
public protocol OutputSettings: Sendable {
    associatedtype Output: Sendable
    var output: Output { get set }
    /// How many objects the output works on at once (`worker`).
    var worker: Int { get set }
}

extension OutputSettings {
    public subscript<T>(dynamicMember path: WritableKeyPath<Output, T>) -> T {
        get { output[keyPath: path] }
        set { output[keyPath: path] = newValue }
    }
}

/// `output.file`, `output.logstash`, `output.redis`, `output.splunk`.
public struct OutputSection<Output: Sendable>: OutputSettings {
    public var output: Output
    public var worker: Int
    public init(_ output: Output, worker: Int) {
        self.output = output
        self.worker = worker
    }
}

extension Config {
    /// `output.elasticsearch`: the output's configuration, its `worker`, and `aws_auth` (the signer is
    /// built from it at start, with the input's credential chain).
    public struct ElasticsearchSection: OutputSettings {
        public var output = ElasticsearchOutput.Configuration()
        public var worker = 2
        /// `aws_auth:` — sign every request with SigV4 (Amazon OpenSearch Service and Serverless).
        public var awsAuth: AWSAuthSection?
    }
    public typealias DataStreamSection = ElasticsearchOutput.DataStream
    public typealias SplunkSection = OutputSection<SplunkHECOutput.Configuration>

    /// The keys of every output's `ssl` section.
    static let sslKeys: Set<String> = ["enabled", "certificate_authorities", "verification_mode", "certificate", "key"]

    /// The top level.
    static var rootSchema: SectionSchema<Config> {
        SectionSchema(
            at: "",
            settings: [
                .handled("input", "a mapping"), .handled("journal", "a mapping"), .handled("integrity", "a mapping"), .handled("output", "a mapping"),
                .handled("logging", "a mapping"), .handled("http", "a mapping"), .handled("filter", "a record filter"), .handled("path", "a mapping"),
                .seconds("shutdown_timeout", \.shutdownTimeout, in: 0...86400),
                .bool("spot_interruption", \.spotInterruption),
            ],
            nested: ["path": ["data"], "filter": ["include", "exclude", "drop_fields"], "http": ["enabled", "host", "port"]])
    }

    static var inputSchema: SectionSchema<Input> {
        SectionSchema(
            at: "input",
            settings: [
                .string("sqs_url", \.sqsURL),
                .string("aws_region", \.region),
                .int("num_queue_fetch", \.numQueueFetch, in: 1...10),
                .seconds("sleep_time", \.sleepTime, in: 0...86400),
                .bool("no_purge", \.noPurge),
                .string("endpoint", \.endpoint),
                Setting(key: "path_style", accepts: "true or false", value: { $0.pathStyle.map { "\($0)" } ?? "auto (path style for an endpoint)" }) { r, m, at, t in t.pathStyle = try r.bool(m, at, "path_style") },
                .wholeSeconds("visibility_timeout", \.visibilityTimeout, in: 2...43200),
                .int("max_receive_count", \.maxReceiveCount, in: 0...1000),
                .int("workers", \.workers, in: 1...64),
                .int("fetch_concurrency", \.fetchConcurrency, in: 1...1024),
                .wholeSeconds("wait_time", \.waitTime, in: 0...20),
                .boolOrAuto("leave_poison_to_dlq", \.leavePoisonToDLQ),
                .string("profile", \.profile),
                .string("role_arn", \.roleARN),
                .string("external_id", \.externalID),
                .int("max_fetch_attempts", \.maxFetchAttempts, in: 1...100),
                .int("max_keys_per_message", \.maxKeysPerMessage, in: 1...10_000),
                Setting(key: "max_object_size", accepts: "a size, at least 1MiB", value: { Reader.describe(bytes: $0.maxObjectSize) }) { r, m, at, t in
                    guard let size = try r.size(m, at, "max_object_size") else { return }
                    guard size >= 1 << 20 else {
                        throw r.fail(r.join(at, "max_object_size"), "\(size) bytes is less than the minimum, 1 MiB (CloudTrail files of a few minutes of a busy account hold hundreds of MB)")
                    }
                    t.maxObjectSize = size
                },
                Setting(key: "buckets", accepts: "a list of bucket names or patterns") { r, m, at, t in
                    let buckets = try r.strings(m, at, "buckets") ?? []
                    for b in buckets {
                        if let problem = S3Name.patternProblem(b) {
                            throw r.fail(r.join(at, "buckets"), "'\(b)' \(problem) (e.g. my-trail-bucket, org-trail-*)")
                        }
                    }
                    t.policy.buckets = buckets
                },
                Setting(key: "accounts", accepts: "a list of 12-digit account IDs") { r, m, at, t in
                    let accounts = try r.strings(m, at, "accounts") ?? []
                    for a in accounts where a.count != 12 || !a.allSatisfy({ $0.isASCII && $0.isNumber }) {
                        throw r.fail(r.join(at, "accounts"), "'\(a)' is not an AWS account ID (12 digits; quote it in YAML)")
                    }
                    t.policy.accounts = Set(accounts)
                },
                Setting(key: "topics", accepts: "a list of SNS topic ARNs") { r, m, at, t in
                    let topics = try r.strings(m, at, "topics") ?? []
                    for topic in topics where !(topic.hasPrefix("arn:") && topic.split(separator: ":").count == 6 && topic.contains(":sns:")) {
                        throw r.fail(r.join(at, "topics"), "'\(topic)' is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)")
                    }
                    t.policy.topics = Set(topics)
                },
                .boolOrAuto("sns_signature", \.verifySNSSignatures),
                Setting(key: "sns_certificate_hosts", accepts: "a list of host names") { r, m, at, t in
                    guard let hosts = try r.strings(m, at, "sns_certificate_hosts") else { return }
                    guard !hosts.isEmpty else { throw r.fail(r.join(at, "sns_certificate_hosts"), "empty: no signing certificate could be fetched") }
                    t.snsSignature.certificateHosts = hosts
                },
                Setting(key: "sns_trusted_ca", accepts: "a PEM file") { r, m, at, t in t.snsSignature.trustedCAFile = try r.string(m, at, "sns_trusted_ca") },
                Setting(key: "bucket_arn", accepts: "arn:aws:s3:::<bucket>, s3://<bucket>[/prefix] or a bucket name") { r, m, at, t in
                    guard let arn = try r.string(m, at, "bucket_arn") else { return }
                    // arn:aws:s3:::name (any partition), or s3://name, or the bare name.
                    let name = arn.hasPrefix("arn:") ? String(arn.split(separator: ":", omittingEmptySubsequences: false).last ?? "")
                        : arn.hasPrefix("s3://") ? String(arn.dropFirst(5).split(separator: "/").first ?? "") : arn
                    let isARN = !arn.hasPrefix("arn:") || (arn.split(separator: ":", omittingEmptySubsequences: false).count == 6 && arn.contains(":s3:::"))
                    guard isARN else {
                        throw r.fail(r.join(at, "bucket_arn"), "'\(arn)' is not an S3 bucket ARN (expected arn:aws:s3:::<bucket>)")
                    }
                    if let problem = S3Name.bucketProblem(name) {
                        throw r.fail(r.join(at, "bucket_arn"), "'\(name)' is not an S3 bucket name: \(problem)")
                    }
                    t.bucket = name
                    // s3://bucket/prefix names the prefix too, unless bucket_list_prefix does (it comes next).
                    if arn.hasPrefix("s3://"), let slash = arn.dropFirst(5).firstIndex(of: "/") {
                        t.bucketListPrefix = String(arn[arn.index(after: slash)...])
                    }
                },
                .string("bucket_list_prefix", \.bucketListPrefix),
                .seconds("bucket_list_interval", \.bucketListInterval, in: 1...86400),
            ])
    }

    static var journalSchema: SectionSchema<JournalSection> {
        SectionSchema(
            at: "journal",
            settings: [
                .string("path", \.path),
                Setting(key: "max_size", accepts: "a size, at least 16MiB", value: { Reader.describe(bytes: $0.maxSize) }) { r, m, at, t in
                    guard let size = try r.size(m, at, "max_size") else { return }
                    guard size >= 16 << 20 else {
                        throw r.fail(r.join(at, "max_size"), "\(size) bytes is less than the minimum, 16 MiB (a tenth is kept for acknowledgements and GC, and bodies are stored in 128 KiB chunks)")
                    }
                    t.maxSize = size
                },
                .wholeSeconds("done_retention", \.doneRetentionSeconds, in: 0...Int(Int32.max)),
                .int("quarantine_max_entries", \.maxQuarantineEntries, in: 0...10_000_000),
            ])
    }

    static var integritySchema: SectionSchema<IntegritySection> {
        SectionSchema(
            at: "integrity",
            settings: [
                .bool("enabled", \.enabled),
                .wholeSeconds("retention", \.retentionSeconds, in: 3600...(90 * 86400)),
                // Relative to path.data (or the file's directory), like journal.path; read when used.
                Setting(key: "public_keys_file", accepts: "a JSON file, as `aws cloudtrail list-public-keys` prints it") { r, m, at, t in
                    t.publicKeysFile = try r.string(m, at, "public_keys_file")
                },
            ])
    }

    static var loggingSchema: SectionSchema<Logging> {
        SectionSchema(
            at: "logging",
            settings: [
                .oneOf("level", \.level, ["trace", "debug", "info", "notice", "warning", "error", "critical"], shown: ["debug", "info", "warning", "error"]),
                Setting(key: "selectors", accepts: "a list of stages, or *") { r, m, at, t in
                    let selectors = try r.strings(m, at, "selectors") ?? []
                    for name in selectors where name != "*" && !SelectorLogHandler.stages.contains(name.lowercased()) {
                        throw r.fail(r.join(at, "selectors"), "'\(name)' is not a stage: \(SelectorLogHandler.stages.joined(separator: ", ")) or *")
                    }
                    t.selectors = selectors
                },
                .bool("json", \.json),
            ])
    }

    static var httpSchema: SectionSchema<MetricsEndpoint> {
        SectionSchema(at: "http", settings: [.bool("enabled", \.enabled), .string("host", \.host), .int("port", \.port, in: 0...65535)])
    }

    static var pathSchema: SectionSchema<Config> {
        SectionSchema(at: "path", settings: [.string("data", \.dataPath)])
    }

    /// Which outputs there are (each its own section).
    static var outputSchema: SectionSchema<Config> {
        SectionSchema(at: "output", settings: ["file", "console", "elasticsearch", "logstash", "redis", "splunk"].map { .handled($0, "a mapping") })
    }

    /// `enabled`, `worker`, `codec` and `filter` of an output's section.
    static func outputCommon<S: OutputSettings>(worker: ClosedRange<Int> = 1...16) -> [Setting<S>] {
        [
            .handled("enabled", "true or false", shown: "true"), .int("worker", \.worker, in: worker),
            .handled("codec", "a codec: cloudtrail, ecs, ocsf, elastic_integration, raw"), .handled("filter", "a record filter"),
        ]
    }

    static var fileSchema: SectionSchema<OutputSection<FileOutput.Configuration>> {
        SectionSchema(
            at: "output.file",
            settings: outputCommon() + [
                .string("path", \.output.path).required("the directory to write NDJSON files to"),
                .string("filename", \.output.filename),
                .int("rotate_every_kb", \.output.rotateEveryKB, in: 1...Int(Int32.max)),
                .int("number_of_files", \.output.numberOfFiles, in: 1...1024),
                .int("bulk_max_size", \.output.maxBatch, in: 1...100_000),
            ])
    }

    static var consoleSchema: SectionSchema<ConsoleSection> {
        SectionSchema(
            at: "output.console",
            settings: [
                .handled("enabled", "true or false", shown: "true"), .bool("pretty", \.pretty),
                .handled("codec", "a codec: cloudtrail, ecs, ocsf, elastic_integration, raw", shown: "cloudtrail"), .handled("filter", "a record filter"),
            ])
    }

    static var elasticsearchSchema: SectionSchema<ElasticsearchSection> {
        SectionSchema(
            at: "output.elasticsearch",
            settings: outputCommon() + [
                .strings("hosts", \.output.hosts).required("e.g. [\"https://localhost:9200\"]"),
                .string("index", \.output.index),
                .int("bulk_max_size", \.output.bulkMaxSize, in: 1...100_000),
                .size("bulk_max_bytes", \.output.bulkMaxBytes),
                .string("username", \.output.username),
                .string("password", \.output.password),
                .string("api_key", \.output.apiKey),
                .seconds("timeout", \.output.timeout, in: 1...3600),
                .tls(\.output.tls),
                Setting(key: "template", accepts: "a mapping: enabled") { r, m, at, t in
                    guard let template = try r.section(m, "template", at: at) else { return }
                    try r.checkKeys(template, at: r.join(at, "template"))
                    t.output.installTemplate = try r.bool(template, r.join(at, "template"), "enabled") ?? false
                },
                .handled("data_stream", "a mapping: type, dataset, namespace"),
                .string("pipeline", \.output.pipeline),
                .string("path", \.output.path),
                .int("compression_level", \.output.compressionLevel, in: 0...9),
                .handled("headers", "a mapping of header names to values"),
                .handled("aws_auth", "a mapping: enabled, region, service, role_arn, external_id"),
                .handled("ilm", "a mapping (see output.elasticsearch.ilm)"),
            ],
            nested: [
                "data_stream": ["type", "dataset", "namespace"], "aws_auth": ["enabled", "region", "service", "role_arn", "external_id"],
                "ssl": Config.sslKeys, "template": ["enabled"],
            ])
    }

    static var logstashSchema: SectionSchema<OutputSection<LogstashOutput.Configuration>> {
        SectionSchema(
            at: "output.logstash",
            settings: outputCommon() + [
                .strings("hosts", \.output.hosts).required("e.g. [\"localhost:5044\"]"),
                .bool("loadbalance", \.output.loadbalance),
                .int("bulk_max_size", \.output.bulkMaxSize, in: 1...100_000),
                .int32("compression_level", \.output.compressionLevel, in: 0...9),
                .seconds("timeout", \.output.timeout, in: 1...3600),
                .tls(\.output.tls),
            ],
            nested: ["ssl": Config.sslKeys])
    }

    static var redisSchema: SectionSchema<OutputSection<RedisOutput.Configuration>> {
        SectionSchema(
            at: "output.redis",
            settings: outputCommon() + [
                .strings("hosts", \.output.hosts).required("e.g. [\"localhost:6379\"]"),
                .string("key", \.output.key),
                .oneOf("datatype", \.output.datatype, ["list", "channel"]),
                .string("password", \.output.password),
                .int("db", \.output.db, in: 0...1024),
                .seconds("timeout", \.output.timeout, in: 0.1...3600),
                .int("bulk_max_size", \.output.maxBatch, in: 1...100_000),
                .tls(\.output.tls),
            ],
            nested: ["ssl": Config.sslKeys])
    }

    static var splunkSchema: SectionSchema<SplunkSection> {
        SectionSchema(
            at: "output.splunk",
            settings: outputCommon(worker: 1...64) + [
                .string("url", \.output.url).required("the HTTP Event Collector's URL, e.g. https://splunk.example.com:8088"),
                .string("token", \.output.token).required("the HEC token (e.g. ${SPLUNK_HEC_TOKEN})"),
                .string("index", \.output.index),
                .string("sourcetype", \.output.sourcetype),
                .string("source", \.output.source),
                .string("host", \.output.host),
                .int("bulk_max_size", \.output.bulkMaxSize, in: 1...100_000),
                .size("bulk_max_bytes", \.output.bulkMaxBytes, in: 1024...(800 << 20)),
                .int("compression_level", \.output.compressionLevel, in: 0...9),
                .bool("use_ack", \.output.useAck),
                .seconds("ack_timeout", \.output.ackTimeout, in: 1...86400),
                .seconds("ack_poll_interval", \.output.ackPollInterval, in: 0.01...60),
                .string("channel", \.output.channel),
                .seconds("timeout", \.output.timeout, in: 1...3600),
                .tls(\.output.tls),
            ],
            nested: ["ssl": Config.sslKeys])
    }

    /// `output.elasticsearch.ilm`: the index lifecycle policy the installed template names.
    static var ilmSchema: SectionSchema<ElasticsearchOutput.ILM> {
        // Elasticsearch's duration units (`30d`, `12h`, `90s`) are the ones `describe(wholeSeconds:)` writes.
        SectionSchema(
            at: "output.elasticsearch.ilm",
            settings: [
                .handled("enabled", "true or false", shown: "true"),
                .string("policy_name", \.policyName),
                Setting(key: "policy_file", accepts: "a JSON file holding {\"policy\": {\"phases\": …}}") { r, m, at, t in
                    guard let path = try r.string(m, at, "policy_file") else { return }
                    guard let data = FileManager.default.contents(atPath: path) else { throw r.fail(r.join(at, "policy_file"), "cannot read '\(path)'") }
                    guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let policy = json["policy"] as? [String: Any],
                        policy["phases"] is [String: Any]
                    else { throw r.fail(r.join(at, "policy_file"), "'\(path)' is not a lifecycle policy: expected {\"policy\": {\"phases\": {…}}}, the body of PUT _ilm/policy") }
                    t.policy = Array(data)
                },
                Setting(key: "rollover_max_age", accepts: "a duration, 1s–100y", value: { $0.rolloverMaxAge }) { r, m, at, t in
                    if let s = try r.wholeSeconds(m, at, "rollover_max_age", in: 1...(100 * 365 * 86400)) { t.rolloverMaxAge = Reader.describe(wholeSeconds: s) }
                },
                Setting(key: "rollover_max_primary_shard_size", accepts: "a size, at least 1MiB", value: { $0.rolloverMaxPrimaryShardSize }) { r, m, at, t in
                    guard let bytes = try r.size(m, at, "rollover_max_primary_shard_size") else { return }
                    guard bytes >= 1 << 20 else { throw r.fail(r.join(at, "rollover_max_primary_shard_size"), "\(bytes) bytes is less than 1MiB") }
                    t.rolloverMaxPrimaryShardSize = bytes % (1 << 30) == 0 ? "\(bytes >> 30)gb" : bytes % (1 << 20) == 0 ? "\(bytes >> 20)mb" : "\(bytes)b"
                },
                Setting(key: "delete_after", accepts: "a duration; 0 keeps the indices", value: { $0.deleteAfter ?? "0" }) { r, m, at, t in
                    guard let s = try r.wholeSeconds(m, at, "delete_after", in: 0...(100 * 365 * 86400)) else { return }
                    t.deleteAfter = s == 0 ? nil : Reader.describe(wholeSeconds: s)
                },
                .bool("overwrite", \.overwrite),
            ])
    }

    /// Every key of every table with its default and what it takes: `test config --keys`.
    public static var keyReference: [String] {
        let root = Config(file: "")
        return rootSchema.reference(root) + inputSchema.reference(Input()) + journalSchema.reference(JournalSection())
            + integritySchema.reference(IntegritySection())
            + httpSchema.reference(MetricsEndpoint()) + pathSchema.reference(root) + loggingSchema.reference(Logging()) + outputSchema.reference(root)
            + fileSchema.reference(OutputSection(FileOutput.Configuration(path: ""), worker: 2)) + consoleSchema.reference(ConsoleSection())
            + elasticsearchSchema.reference(ElasticsearchSection()) + ilmSchema.reference(ElasticsearchOutput.ILM())
            + logstashSchema.reference(OutputSection(LogstashOutput.Configuration(), worker: 2))
            + redisSchema.reference(OutputSection(RedisOutput.Configuration(), worker: 2))
            + splunkSchema.reference(SplunkSection(SplunkHECOutput.Configuration(), worker: 4))
    }

    /// Every table's keys: what ``known`` is made of.
    static var schemaKeys: [[String: Set<String>]] {
        [rootSchema.known, inputSchema.known, journalSchema.known, integritySchema.known, loggingSchema.known, outputSchema.known, fileSchema.known, consoleSchema.known,
         elasticsearchSchema.known, ilmSchema.known, logstashSchema.known, redisSchema.known, splunkSchema.known]
    }
}

extension Reader {
    /// An output's section when present and enabled (`enabled` defaults to true there): read through
    /// its table from `initial`, with `codec` and `filter`.
    func output<S>(_ out: [String: Any], _ name: String, _ schema: SectionSchema<S>, _ initial: S, into c: inout Config) throws -> S? {
        guard out.keys.contains(name) else { return nil }
        let m = try section(out, name, at: "output") ?? [:]
        try checkKeys(m, at: schema.at, allowed: schema.keys)
        guard try bool(m, schema.at, "enabled") ?? true else { return nil }
        var s = initial
        try schema.read(m, self, into: &s)
        try shaping(m, output: name, into: &c)
        return s
    }

    /// The checks of `output.splunk` that span keys, once its table was read.
    func checkSplunk(_ s: inout Config.SplunkSection) throws {
        let at = Config.splunkSchema.at
        s.output.url = try urls([s.output.url], tls: s.output.tls != nil, at: join(at, "url"))[0]
        guard let url = URL(string: s.output.url), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw fail(join(at, "url"), "'\(s.output.url)' is not an http(s) URL (e.g. https://splunk.example.com:8088)")
        }
        guard !s.output.token.isEmpty else { throw fail(join(at, "token"), "missing: the HEC token (e.g. ${SPLUNK_HEC_TOKEN})") }
        if let channel = s.output.channel, UUID(uuidString: channel) == nil {
            throw fail(join(at, "channel"), "'\(channel)' is not a GUID (HEC channels are, e.g. \(UUID().uuidString.lowercased()))")
        }
        if s.output.sourcetype?.isEmpty == true { s.output.sourcetype = nil }
    }

    /// `output.elasticsearch.ilm`, read through its table; nil when absent or disabled. It needs the
    /// template (the policy is attached through it) and Elasticsearch (OpenSearch has ISM instead).
    func ilm(_ e: [String: Any], installTemplate: Bool, signed: Bool) throws -> ElasticsearchOutput.ILM? {
        let schema = Config.ilmSchema
        let at = schema.at
        guard let m = try section(e, "ilm", at: "output.elasticsearch") else { return nil }
        try checkKeys(m, at: at, allowed: schema.keys)
        guard try bool(m, at, "enabled") ?? true else { return nil }
        var ilm = ElasticsearchOutput.ILM()
        try schema.read(m, self, into: &ilm)
        guard !ilm.policyName.isEmpty else { throw fail(join(at, "policy_name"), "must name a policy") }
        guard installTemplate else {
            throw fail(at, "the policy is attached through the index template: set output.elasticsearch.template.enabled: true (or name the policy in a template of your own)")
        }
        guard !signed else {
            throw fail(at, "Amazon OpenSearch Service and Serverless have no ILM (OpenSearch uses Index State Management): manage retention there with an ISM policy")
        }
        return ilm
    }
}
