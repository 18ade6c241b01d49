import Codecs
import Foundation
import Outputs

// Declarative configuration sections.
//
// A section's table (``SectionSchema``) is the one list of its keys: what each takes (type and range),
// and where its value goes. Unknown-key errors and their suggestions, parsing, the error messages
// ("must be a whole number", "… is out of range (1–100000)") and the example configuration's check
// (DocsTests reads ``Config/known``, which includes every table's keys) all come from it. Defaults are
// not in the table: they are the settings struct's own initial values, given once, and a table only
// writes a field whose key is present.

/// One key of a section: its name, what it takes (for `config check` and the docs), and how its YAML
/// value is read into the settings.
struct Setting<Target> {
    let key: String
    /// What the key takes, in words ("a whole number, 1–100000").
    let accepts: String
    let read: (Reader, _ map: [String: Any], _ at: String, inout Target) throws -> Void

    static func string(_ key: String, _ path: WritableKeyPath<Target, String>) -> Setting {
        Setting(key: key, accepts: "a string") { r, m, at, t in if let v = try r.string(m, at, key) { t[keyPath: path] = v } }
    }
    static func string(_ key: String, _ path: WritableKeyPath<Target, String?>) -> Setting {
        Setting(key: key, accepts: "a string") { r, m, at, t in if let v = try r.string(m, at, key) { t[keyPath: path] = v } }
    }
    static func int(_ key: String, _ path: WritableKeyPath<Target, Int>, in range: ClosedRange<Int>) -> Setting {
        Setting(key: key, accepts: "a whole number, \(range.lowerBound)–\(range.upperBound)") { r, m, at, t in
            if let v = try r.int(m, at, key, in: range) { t[keyPath: path] = v }
        }
    }
    static func bool(_ key: String, _ path: WritableKeyPath<Target, Bool>) -> Setting {
        Setting(key: key, accepts: "true or false") { r, m, at, t in if let v = try r.bool(m, at, key) { t[keyPath: path] = v } }
    }
    static func seconds(_ key: String, _ path: WritableKeyPath<Target, Double>, in range: ClosedRange<Double>) -> Setting {
        Setting(key: key, accepts: "a duration, \(Reader.describe(range.lowerBound))–\(Reader.describe(range.upperBound))") { r, m, at, t in
            if let v = try r.seconds(m, at, key, in: range) { t[keyPath: path] = v }
        }
    }
    static func size(_ key: String, _ path: WritableKeyPath<Target, Int>, in range: ClosedRange<Int>) -> Setting {
        Setting(key: key, accepts: "a size, \(range.lowerBound)–\(range.upperBound) bytes") { r, m, at, t in
            guard let v = try r.size(m, at, key) else { return }
            guard range.contains(v) else { throw r.fail(r.join(at, key), "\(v) bytes is out of range (\(range.lowerBound)–\(range.upperBound))") }
            t[keyPath: path] = v
        }
    }
    /// A key read by the section's own code (a nested section, `codec`, `filter`): listed, so it is
    /// known, but its table entry does nothing.
    static func handled(_ key: String, _ accepts: String) -> Setting {
        Setting(key: key, accepts: accepts) { _, _, _, _ in }
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
        for (name, keys) in nested { k[at + "." + name] = keys }
        return k
    }

    /// Checks the section's keys against the table and reads every key present into `target`, in the
    /// table's order.
    func read(_ map: [String: Any], _ r: Reader, into target: inout Target) throws {
        try r.checkKeys(map, at: at, allowed: keys)
        for s in settings where map[s.key] != nil { try s.read(r, map, at, &target) }
    }
}

extension Config {
    /// `output.splunk`: the HEC output's own configuration and how many objects it works on at once.
    public struct SplunkSection: Sendable {
        public var output = SplunkHECOutput.Configuration()
        public var worker = 4
    }

    static var splunkSchema: SectionSchema<SplunkSection> {
        SectionSchema(
            at: "output.splunk",
            settings: [
                .handled("enabled", "true or false"),
                .string("url", \.output.url),
                .string("token", \.output.token),
                .string("index", \.output.index),
                .string("sourcetype", \.output.sourcetype),
                .string("source", \.output.source),
                .string("host", \.output.host),
                .int("bulk_max_size", \.output.bulkMaxSize, in: 1...100_000),
                .size("bulk_max_bytes", \.output.bulkMaxBytes, in: 1024...(800 << 20)),
                .int("worker", \.worker, in: 1...64),
                .int("compression_level", \.output.compressionLevel, in: 0...9),
                .bool("use_ack", \.output.useAck),
                .seconds("ack_timeout", \.output.ackTimeout, in: 1...86400),
                .seconds("ack_poll_interval", \.output.ackPollInterval, in: 0.01...60),
                .string("channel", \.output.channel),
                .seconds("timeout", \.output.timeout, in: 1...3600),
                .handled("ssl", "a mapping: certificate_authorities, verification_mode"),
                .handled("codec", "a codec (default raw)"),
                .handled("filter", "a record filter"),
            ],
            nested: ["ssl": ["enabled", "certificate_authorities", "verification_mode"]])
    }
}

extension Reader {
    /// `output.splunk`, read through its table; nil when disabled.
    func splunk(_ map: [String: Any], into c: inout Config) throws {
        let schema = Config.splunkSchema
        let at = schema.at
        guard try bool(map, at, "enabled") ?? true else { return }
        var s = Config.SplunkSection()
        try schema.read(map, self, into: &s)
        guard map["url"] != nil else { throw fail(join(at, "url"), "missing: the HTTP Event Collector's URL, e.g. https://splunk.example.com:8088") }
        guard let url = URL(string: s.output.url), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw fail(join(at, "url"), "'\(s.output.url)' is not an http(s) URL (e.g. https://splunk.example.com:8088)")
        }
        guard !s.output.token.isEmpty else { throw fail(join(at, "token"), "missing: the HEC token (e.g. ${SPLUNK_HEC_TOKEN})") }
        if let channel = s.output.channel, UUID(uuidString: channel) == nil {
            throw fail(join(at, "channel"), "'\(channel)' is not a GUID (HEC channels are, e.g. \(UUID().uuidString.lowercased()))")
        }
        if s.output.sourcetype?.isEmpty == true { s.output.sourcetype = nil }
        if let tls = try tls(map, at: at) {
            s.output.caFile = tls.caFile
            s.output.verifyTLS = tls.verify
        }
        c.splunk = s
        try shaping(map, output: "splunk", into: &c)
        // Splunk's add-on for AWS parses the record as CloudTrail wrote it (sourcetype aws:cloudtrail).
        if c.codecs["splunk"] == nil { c.codecs["splunk"] = CodecOptions(kind: .raw) }
    }
}

extension Config {
    /// `output.elasticsearch.ilm`: the index lifecycle policy the installed template names.
    static var ilmSchema: SectionSchema<ElasticsearchOutput.ILM> {
        /// A duration in Elasticsearch's units (`30d`, `12h`, `90s`).
        func esDuration(_ key: String, _ path: WritableKeyPath<ElasticsearchOutput.ILM, String>) -> Setting<ElasticsearchOutput.ILM> {
            Setting(key: key, accepts: "a duration, 1s–100y") { r, m, at, t in
                guard let s = try r.wholeSeconds(m, at, key, in: 1...(100 * 365 * 86400)) else { return }
                t[keyPath: path] = s % 86400 == 0 ? "\(s / 86400)d" : s % 3600 == 0 ? "\(s / 3600)h" : "\(s)s"
            }
        }
        return SectionSchema(
            at: "output.elasticsearch.ilm",
            settings: [
                .handled("enabled", "true or false"),
                .string("policy_name", \.policyName),
                Setting(key: "policy_file", accepts: "a JSON file holding {\"policy\": {\"phases\": …}}") { r, m, at, t in
                    guard let path = try r.string(m, at, "policy_file") else { return }
                    guard let data = FileManager.default.contents(atPath: path) else { throw r.fail(r.join(at, "policy_file"), "cannot read '\(path)'") }
                    guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let policy = json["policy"] as? [String: Any],
                        policy["phases"] is [String: Any]
                    else { throw r.fail(r.join(at, "policy_file"), "'\(path)' is not a lifecycle policy: expected {\"policy\": {\"phases\": {…}}}, the body of PUT _ilm/policy") }
                    t.policy = Array(data)
                },
                esDuration("rollover_max_age", \.rolloverMaxAge),
                Setting(key: "rollover_max_primary_shard_size", accepts: "a size, at least 1MiB") { r, m, at, t in
                    guard let bytes = try r.size(m, at, "rollover_max_primary_shard_size") else { return }
                    guard bytes >= 1 << 20 else { throw r.fail(r.join(at, "rollover_max_primary_shard_size"), "\(bytes) bytes is less than 1MiB") }
                    t.rolloverMaxPrimaryShardSize = bytes % (1 << 30) == 0 ? "\(bytes >> 30)gb" : bytes % (1 << 20) == 0 ? "\(bytes >> 20)mb" : "\(bytes)b"
                },
                Setting(key: "delete_after", accepts: "a duration; 0 keeps the indices") { r, m, at, t in
                    guard let s = try r.wholeSeconds(m, at, "delete_after", in: 0...(100 * 365 * 86400)) else { return }
                    t.deleteAfter = s == 0 ? nil : s % 86400 == 0 ? "\(s / 86400)d" : s % 3600 == 0 ? "\(s / 3600)h" : "\(s)s"
                },
                .bool("overwrite", \.overwrite),
            ])
    }
}

extension Reader {
    /// `output.elasticsearch.ilm`, read through its table; nil when absent or disabled. It needs the
    /// template (the policy is attached through it) and Elasticsearch (OpenSearch has ISM instead).
    func ilm(_ e: [String: Any], installTemplate: Bool, signed: Bool) throws -> ElasticsearchOutput.ILM? {
        let schema = Config.ilmSchema
        let at = schema.at
        guard let m = try section(e, "ilm", at: "output.elasticsearch"), try bool(m, at, "enabled") ?? true else { return nil }
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
