import Foundation
import Testing
import TestSupport
import Yams

#if canImport(Glibc)
import Glibc
#endif

@testable import Engine

@Suite("Shipped documents are valid")
struct DocsTests {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    func text(_ path: String) throws -> String { try String(contentsOf: repo.appendingPathComponent(path), encoding: .utf8) }

    @Test func iamPolicyAndKibanaObjectsAreJSON() throws {
        let policy = try #require(try JSONSerialization.jsonObject(with: Data(text("docs/deploy/iam-policy.json").utf8)) as? [String: Any])
        let actions = (policy["Statement"] as? [[String: Any]] ?? []).flatMap { $0["Action"] as? [String] ?? [] }
        for needed in ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:SendMessage", "s3:GetObject", "s3:ListBucket", "kms:Decrypt", "cloudtrail:ListPublicKeys"] {
            #expect(actions.contains(needed), "\(needed) is in the IAM policy")
        }
        for line in try text("docs/deploy/kibana-saved-objects.ndjson").split(separator: "\n") {
            #expect(try JSONSerialization.jsonObject(with: Data(line.utf8)) is [String: Any])
        }
    }

    @Test func cloudFormationTemplateParsesAndLints() throws {
        let yaml = try text("docs/deploy/cloudformation.yaml")
        let template = try #require(try Yams.load(yaml: yaml) as? [String: Any])
        let resources = try #require(template["Resources"] as? [String: Any])
        let types = Set(resources.values.compactMap { ($0 as? [String: Any])?["Type"] as? String })
        #expect(types.isSuperset(of: ["AWS::CloudTrail::Trail", "AWS::S3::Bucket", "AWS::SNS::Topic", "AWS::SQS::Queue", "AWS::SNS::Subscription"]))
        let lint = try #require(LocalServer.which("cfn-lint"), "cfn-lint missing: pip install cfn-lint (scripts/setup does it)")
        let p = try ChildProcess(lint, [repo.appendingPathComponent("docs/deploy/cloudformation.yaml").path])
        let out = p.readAll()
        let end = p.wait()
        #expect(end.exited && end.code == 0, "cfn-lint: \(out)")
    }

    @Test func theExampleConfigurationLoads() throws {
        let c = try Config.parse(try text("cloudtrailbeat.example.yml"), file: "cloudtrailbeat.example.yml")
        #expect(c.input.sqsURL != nil && c.fileOutput != nil && c.journal.maxSize == 4 << 30)
    }

    /// The example claims to show every default: with every commented-out line put back, each value it
    /// shows for a setting that has a default is that default (hosts, paths, names and secrets have none).
    @Test func theExampleShowsTheRealDefaults() throws {
        var lines: [String] = []
        for raw in try text("cloudtrailbeat.example.yml").split(separator: "\n", omittingEmptySubsequences: false) {
            var line = String(raw)
            var markers = 0
            while let r = line.range(of: "# "), line[..<r.lowerBound].allSatisfy({ $0 == " " }) {
                line.removeSubrange(r)
                markers += 1
            }
            // Put back commented-out settings (`key: value`, `- item`), not prose. A setting commented
            // twice (`#   # api_key:`) is an alternative with no default (api_key or username, an index
            // or a data stream): left out.
            let body = line.trimmingCharacters(in: .whitespaces)
            // bucket_arn is the alternative to sqs_url (one or the other): it has no default to compare.
            let setting = !body.hasPrefix("bucket_arn:") && markers <= 1
                && (body.hasPrefix("- ") || body.range(of: #"^[A-Za-z_][A-Za-z0-9_.]*:( |$)"#, options: .regularExpression) != nil)
            lines.append(setting ? line : "")
        }
        setenv("ES_PASSWORD", "example", 1)
        setenv("REDIS_PASSWORD", "example", 1)
        setenv("SPLUNK_HEC_TOKEN", "example", 1)
        let shown = try Config.parse(lines.joined(separator: "\n"), file: "cloudtrailbeat.example.yml (uncommented)")
        let defaults = try Config.parse("""
            input: {sqs_url: "https://sqs.us-east-1.amazonaws.com/1/q"}
            output:
              file: {path: x}
              console: {}
              elasticsearch: {hosts: [h]}
              logstash: {hosts: [h]}
              redis: {hosts: [h]}
              splunk: {url: "https://h:8088", token: t}
            """, file: "defaults")
        var mismatches: [String] = []
        func compare(_ section: String, _ a: Any?, _ b: Any?, skip: Set<String>) {
            guard let a, let b else { return mismatches.append("\(section): missing") }
            let expected = Dictionary(uniqueKeysWithValues: Mirror(reflecting: b).children.compactMap { c in c.label.map { ($0, "\(c.value)") } })
            for child in Mirror(reflecting: a).children {
                guard let label = child.label, !skip.contains(label) else { continue }
                if "\(child.value)" != expected[label] { mismatches.append("\(section).\(label): the example shows \(child.value), the default is \(expected[label] ?? "-")") }
            }
        }
        compare("input", shown.input, defaults.input, skip: ["sqsURL", "region", "endpoint", "pathStyle", "profile", "roleARN", "externalID", "policy", "snsSignature"])
        compare("journal", shown.journal, defaults.journal, skip: ["path"])
        /// An output's section: its output's configuration, and `worker`.
        func compareOutput<S: OutputSettings>(_ section: String, _ a: S?, _ b: S?, skip: Set<String>) {
            compare(section, a?.output, b?.output, skip: skip)
            if a?.worker != b?.worker { mismatches.append("\(section).worker: the example shows \(a?.worker ?? -1), the default is \(b?.worker ?? -1)") }
        }
        compareOutput("output.file", shown.fileOutput, defaults.fileOutput, skip: ["path"])
        compare("output.console", shown.console, defaults.console, skip: [])
        compareOutput("output.elasticsearch", shown.elasticsearch, defaults.elasticsearch, skip: ["hosts", "username", "password", "apiKey", "tls"])
        compareOutput("output.logstash", shown.logstash, defaults.logstash, skip: ["hosts", "tls"])
        compareOutput("output.redis", shown.redis, defaults.redis, skip: ["hosts", "password", "tls"])
        compareOutput("output.splunk", shown.splunk, defaults.splunk, skip: ["url", "token", "index", "tls"])
        #expect(shown.codec(forOutput: "splunk") == defaults.codec(forOutput: "splunk"))
        compare("logging", shown.logging, defaults.logging, skip: [])
        #expect(shown.shutdownTimeout == defaults.shutdownTimeout && shown.spotInterruption == defaults.spotInterruption)
        #expect("\(shown.http)" == "\(defaults.http)", "http: \(shown.http) vs \(defaults.http)")
        #expect(shown.codec(forOutput: "file") == defaults.codec(forOutput: "file"), "the file output's codec shown is the default")
        #expect(mismatches == [], "\(mismatches.joined(separator: "\n"))")
    }

    /// The example claims to list every key: each key the parser accepts appears in it, under its section.
    @Test func theExampleConfigurationNamesEveryKey() throws {
        let example = try text("cloudtrailbeat.example.yml")
        // The example's lines with comment markers removed ("  #   hosts:" → "    hosts:"), grouped under the
        // top-level section or output they follow.
        var sections: [String: String] = [:]
        var current = ""
        for raw in example.split(separator: "\n") {
            var line = String(raw)
            while let r = line.range(of: "# "), line[..<r.lowerBound].allSatisfy({ $0 == " " }) { line.removeSubrange(r) }
            let indent = line.prefix { $0 == " " }.count
            let key = line.trimmingCharacters(in: .whitespaces).split(separator: ":").first.map(String.init) ?? ""
            if indent == 0 && line.contains(":") { current = key }
            if indent == 2 && (current == "output" || current.hasPrefix("output.")) && Config.known["output"]!.contains(key) { current = "output." + key }
            sections[current, default: ""] += line + "\n"
        }
        for (section, keys) in Config.known where !section.contains(".ssl") && !section.hasSuffix(".template") {
            // A section inside an output (output.elasticsearch.aws_auth) is looked for in that output's lines.
            let scope = section.isEmpty ? example : (sections[section] ?? sections[section.split(separator: ".").prefix(2).joined(separator: ".")] ?? "")
            for key in keys {
                if section == "output" {
                    #expect(sections["output." + key] != nil, "cloudtrailbeat.example.yml does not show 'output.\(key)'")
                    continue
                }
                #expect(scope.contains(" \(key):") || scope.contains("\n\(key):") || scope.hasPrefix("\(key):") || scope.contains(".\(key):"),
                        "cloudtrailbeat.example.yml does not show '\(section.isEmpty ? "" : section + ".")\(key)'")
            }
        }
    }
}
