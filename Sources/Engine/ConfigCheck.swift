import AWS
import Codecs
import Failures
import Foundation
import HTTP
import Outputs
import Stages

/// `cloudtrailbeat test config`: the configuration as the engine would use it — parsed, validated,
/// with the region and the credentials resolved — printed for people, secrets masked.
public enum ConfigCheck {
    public struct Report: Sendable {
        /// The effective settings, one `key: value` line each, secrets masked (URL passwords too).
        public var lines: [String]
        /// Problems that would stop a run (no region, no credentials), one sentence each.
        public var problems: [String]
    }

    /// Checks `c`; AWS is consulted only when the configuration needs it (queue mode, `role_arn`).
    public static func run(_ c: Config, environment: [String: String] = ProcessInfo.processInfo.environment) async -> Report {
        var lines = ["configuration: \(c.file)"]
        var problems: [String] = []
        func add(_ key: String, _ value: Any?) { if let value { lines.append("\(key): \(value)") } }
        add("path.data", c.dataPath)
        add("journal.path", c.journal.path)
        add("journal.max_size", StatusReport.bytes(c.journal.maxSize))
        add("journal.done_retention", "\(c.journal.doneRetentionSeconds)s")
        add("journal.quarantine_max_entries", "\(c.journal.maxQuarantineEntries)")
        if c.hasInputSection || c.input.sqsURL != nil {
            add("input.sqs_url", c.input.sqsURL)
            if let bucket = c.input.bucket {
                add("input.bucket_arn", "arn:aws:s3:::\(bucket) (bucket polling)")
                add("input.bucket_list_prefix", c.input.bucketListPrefix.isEmpty ? "(the whole bucket)" : c.input.bucketListPrefix)
                add("input.bucket_list_interval", "\(Int(c.input.bucketListInterval))s")
            }
            add("input.endpoint", c.input.endpoint)
            add("input.visibility_timeout", "\(c.input.visibilityTimeout)s")
            add("input.wait_time", "\(c.input.waitTime)s")
            add("input.workers", c.input.workers)
            add("input.max_receive_count", c.input.maxReceiveCount)
            let p = c.input.policy
            add("input.buckets", p.buckets.isEmpty ? "any" : p.buckets.joined(separator: ", "))
            add("input.accounts", p.accounts.isEmpty ? "any" : p.accounts.sorted().joined(separator: ", "))
            add("input.topics", p.topics.isEmpty ? "any (and messages sent straight to the queue)" : p.topics.sorted().joined(separator: ", "))
            add("input.sns_signature", c.input.verifySNSSignatures.map { "\($0)" } ?? "auto (\(c.verifiesSNSSignatures(environment: environment) ? "verified" : "not verified: the queue's endpoint is a loopback stand-in"))")
            add("input.max_keys_per_message", c.input.maxKeysPerMessage)
            add("input.leave_poison_to_dlq", c.input.leavePoisonToDLQ.map { "\($0)" } ?? "auto (left when the queue has a redrive policy)")
            add("input.profile", c.input.profile)
            add("input.role_arn", c.input.roleARN)
            add("input.external_id", c.input.externalID.map(mask))
        }
        add("filter", c.filter.map(describe))
        for name in c.outputNames {
            let codec = c.codec(forOutput: name)
            var text = "codec \(codec.kind.rawValue)\(codec.eventOriginal ? " (event.original)" : "")"
            if let f = c.filter(forOutput: name) { text += ", filter \(describe(f))" }
            switch name {
            case "file": text += ", path \(c.fileOutput!.path)"
            case "elasticsearch":
                let e = c.elasticsearch!
                text += ", hosts \(e.hosts), " + (e.dataStream.map { "data stream \($0.type)-\($0.dataset)-\($0.namespace)" } ?? "index \(e.index)")
                if let p = e.pipeline { text += ", pipeline \(p)" }
                if !e.path.isEmpty { text += ", path \(e.path)" }
                if e.compressionLevel > 0 { text += ", gzip level \(e.compressionLevel)" }
                if !e.headers.isEmpty { text += ", headers \(e.headers.keys.sorted().joined(separator: ", "))" }
                if let ilm = e.ilm {
                    text += ", ILM policy \(ilm.policyName)"
                    if ilm.policy != nil {
                        text += " (from policy_file)"
                    } else {
                        if e.dataStream != nil { text += ", rollover at \(ilm.rolloverMaxAge) or \(ilm.rolloverMaxPrimaryShardSize)" }
                        text += ilm.deleteAfter.map { ", deleted after \($0)" } ?? ", kept"
                    }
                    if ilm.overwrite { text += ", overwritten at start" }
                }
                if let a = e.awsAuth {
                    let named = e.hosts.first.flatMap(Bootstrap.awsHost)
                    text += ", SigV4 (\(a.service ?? named?.service ?? "es"), \(a.region ?? named?.region ?? "region of the input")"
                        + (a.roleARN.map { ", role \($0)" } ?? "") + ")"
                }
                if let u = e.username { text += ", username \(u), password \(e.password.map(mask) ?? "-")" }
                if let k = e.apiKey { text += ", api_key \(mask(k))" }
            case "logstash": text += ", hosts \(c.logstash!.hosts)"
            case "redis":
                let r = c.redis!
                text += ", hosts \(r.hosts), key \(r.key)" + (r.password.map { ", password \(mask($0))" } ?? "")
            case "splunk":
                let o = c.splunk!.output
                text += ", url \(o.url), token \(mask(o.token)), index \(o.index ?? "(the token's default)"), sourcetype \(o.sourcetype ?? "-")"
                text += o.useAck ? ", indexer acknowledgement (ack_timeout \(Reader.describe(o.ackTimeout)))" : ", no indexer acknowledgement (a 200 counts as delivered)"
                if o.compressionLevel > 0 { text += ", gzip level \(o.compressionLevel)" }
            default: break
            }
            if let tls = c.tls(forOutput: name) { text += ", \(tls.summary)" }
            lines.append("output.\(name): \(text)")
        }
        for (name, tls) in c.outputNames.compactMap({ n in c.tls(forOutput: n).map { (n, $0) } }) {
            do {
                _ = try TLSContext(tls, output: name)
            } catch {
                problems.append("\(error)")
            }
        }
        if c.input.sqsURL != nil || c.input.bucket != nil || c.input.roleARN != nil {
            let http = HTTPClient()
            do {
                let region = try await Bootstrap.region(c, http: http, environment: environment)
                lines.append("region: \(region)")
                let credentials = try await Bootstrap.credentialProvider(c, region: region, http: http, environment: environment).credentials()
                lines.append("credentials: \(credentials.source), access key \(mask(credentials.accessKeyID))")
            } catch {
                problems.append("\(error)")
            }
        }
        lines += c.warnings(environment: environment).map { "warning: \($0)" }
        // Hosts, URLs and endpoints may carry a password (`https://user:pass@host`): masked in every line.
        return Report(lines: lines.map(redactingUserinfo), problems: problems.map(redactingUserinfo))
    }

    /// The first four characters and a mask: enough to tell keys apart, not to use them.
    static func mask(_ secret: String) -> String {
        secret.count <= 4 ? "****" : String(secret.prefix(4)) + String(repeating: "*", count: min(12, secret.count - 4))
    }

    static func describe(_ f: RecordFilter) -> String {
        var parts: [String] = []
        if !f.include.isEmpty { parts.append("\(f.include.count) include rule(s)") }
        if !f.exclude.isEmpty { parts.append("\(f.exclude.count) exclude rule(s)") }
        if !f.dropFields.isEmpty { parts.append("drop_fields \(f.dropFields.map { $0.joined(separator: ".") })") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}

/// `cloudtrailbeat test output`: connect and authenticate to each configured output, as a run would,
/// and say what answered; no event is sent.
public enum OutputCheck {
    /// One line per destination (`output.<name> <target>: OK …` or `… FAILED …`), and whether all passed.
    public static func run(_ c: Config) async throws -> (lines: [String], ok: Bool) {
        let outputs = try Bootstrap.outputs(c)
        var lines: [String] = []
        var ok = true
        for output in outputs {
            defer { Task { await output.close() } }
            guard let probing = output as? any ProbingOutput else {
                lines.append("output.\(output.name): nothing to check")
                continue
            }
            for r in await probing.probe() {
                ok = ok && r.ok
                lines.append("output.\(output.name) \(r.target): \(r.ok ? "OK" : "FAILED") — \(r.detail)")
            }
        }
        if outputs.isEmpty {
            lines.append("no output is configured")
            ok = false
        }
        return (lines, ok)
    }
}
