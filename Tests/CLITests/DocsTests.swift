import Foundation
import Testing
import TestSupport
import Yams

@testable import Engine

@Suite("Shipped documents are valid")
struct DocsTests {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    func text(_ path: String) throws -> String { try String(contentsOf: repo.appendingPathComponent(path), encoding: .utf8) }

    @Test func iamPolicyAndKibanaObjectsAreJSON() throws {
        let policy = try #require(try JSONSerialization.jsonObject(with: Data(text("docs/deploy/iam-policy.json").utf8)) as? [String: Any])
        let actions = (policy["Statement"] as? [[String: Any]] ?? []).flatMap { $0["Action"] as? [String] ?? [] }
        for needed in ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:SendMessage", "s3:GetObject", "s3:ListBucket", "kms:Decrypt"] {
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
            let scope = section.isEmpty ? example : (sections[section] ?? "")
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
