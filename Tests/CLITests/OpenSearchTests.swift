import AWS
import Foundation
import HTTP
import Outputs
import Testing
import TestSupport

@testable import Engine

/// The Elasticsearch output towards Amazon OpenSearch Service / Serverless (SigV4) and Elastic's AWS
/// integration (data stream, ingest pipeline), against the stand-in in OutputsTests/Fixtures/es_server.py,
/// which checks signatures the way AWS does, in Python, independently of the Swift signer.
@Suite("Amazon OpenSearch (SigV4) and Elastic data streams")
struct OpenSearchTests {
    func stats(_ es: LocalServer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(curl(es.url + "/_test/stats").utf8)) as? [String: Any])
    }

    func events(_ n: Int) -> [OutputEvent] {
        (0..<n).map { i in
            OutputEvent(id: "ev-\(i)", json: Array(#"{"@timestamp":"2026-11-28T22:07:\#(String(format: "%02d", i % 60)).000Z","message":"{\"eventID\":\"ev-\#(i)\"}"}"#.utf8))
        }
    }

    /// Serverless (`aoss`, which requires `x-amz-content-sha256`), gzip bodies, a path prefix, extra
    /// headers, a data stream with its template, and an ingest pipeline: every request (template and
    /// bulk) signed, every document in the data stream's backing index, through the pipeline.
    @Test func signedGzippedIntoADataStreamThroughAPipeline() async throws {
        let es = try fixtureServer("OutputsTests/Fixtures/es_server.py", [], name: "es")
        _ = curl(es.url + "/_script", postJSON: #"""
            {"sigv4": {"region": "eu-west-1", "service": "aoss", "keys": {"AKIASTATIC": "static-secret"}},
             "prefix": "/search", "pipelines": {"cloudtrail-enrich": {"set": {"enriched": true}}}}
            """#)
        var config = ElasticsearchOutput.Configuration()
        config.hosts = [es.url]
        config.path = "/search/"
        config.dataStream = ElasticsearchOutput.DataStream()
        config.pipeline = "cloudtrail-enrich"
        config.compressionLevel = 6
        config.headers = ["X-Tenant": "security"]
        config.installTemplate = true
        config.templateName = "cloud trail"  // a name that must be percent-encoded: AWS encodes the path twice
        config.bulkMaxSize = 10
        config.signer = SigV4RequestSigner(
            credentials: StaticCredentialProvider(Credentials(accessKeyID: "AKIASTATIC", secretAccessKey: "static-secret")), region: "eu-west-1", service: "aoss")
        let output = try ElasticsearchOutput(config)
        var handled = 0
        let batch = events(25)
        while handled < batch.count {
            handled += try await output.deliver(Array(batch[handled...].prefix(10))).handled
        }
        let s = try stats(es)
        #expect((s["refused"] as? [String]) == [], "\(s["refused"] ?? "")")
        let docs = try #require(s["docs"] as? [String: [String: Any]])
        #expect(docs.count == 25)
        #expect(docs.keys.allSatisfy { $0.hasPrefix(".ds-logs-aws.cloudtrail-default-") }, "\(docs.keys.sorted().prefix(3))")
        #expect(docs.values.allSatisfy { $0["enriched"] as? Bool == true }, "every document went through the pipeline")
        let signed = try #require(s["signed"] as? [[String: Any]])
        #expect(signed.count == 4 && signed.allSatisfy { $0["service"] as? String == "aoss" && $0["akid"] as? String == "AKIASTATIC" })
        #expect(signed.map { $0["path"] as? String ?? "" }.contains("/search/_index_template/cloud%20trail"))
        #expect((s["pipeline"] as? [String]) == Array(repeating: "cloudtrail-enrich", count: 3))
        #expect((s["encodings"] as? [String])?.count == 4 && (s["encodings"] as? [String])?.allSatisfy { $0 == "gzip" } == true)
        #expect((s["headers"] as? [[String: String]])?.allSatisfy { $0["x-tenant"] == "security" } == true)
        let template = try #require((s["templates"] as? [String: Any])?["cloud trail"] as? [String: Any])
        #expect(template["index_patterns"] as? [String] == ["logs-aws.cloudtrail-default"] && template["data_stream"] is [String: Any])

        // The data stream takes `create` only, as Elasticsearch's does: an `index` op is refused (the
        // output sends `create` alone). Unsigned, the same request is not even read.
        let indexOp = HTTPRequest(
            method: "POST", url: es.url + "/search/_bulk", headers: [("Content-Type", "application/x-ndjson")],
            body: Array("{\"index\":{\"_index\":\"logs-aws.cloudtrail-default\",\"_id\":\"x\"}}\n{\"@timestamp\":\"2026-11-28T00:00:00Z\"}\n".utf8))
        #expect(try await HTTPClient().send(indexOp).status == 403)
        let signedOp = try SigV4RequestSigner.sign(
            indexOp, credentials: Credentials(accessKeyID: "AKIASTATIC", secretAccessKey: "static-secret"), region: "eu-west-1", service: "aoss", date: Date())
        let answer = try await HTTPClient().send(signedOp)
        #expect(answer.status == 200 && String(decoding: answer.body, as: UTF8.self).contains("only write ops with an op_type of create are allowed in data streams"))

        // A wrong secret: AWS's answer, a delivery error (retried), nothing written.
        var wrong = config
        wrong.installTemplate = false
        wrong.signer = SigV4RequestSigner(
            credentials: StaticCredentialProvider(Credentials(accessKeyID: "AKIASTATIC", secretAccessKey: "not-it")), region: "eu-west-1", service: "aoss")
        let refusal = await #expect(throws: OutputError.self) { _ = try await ElasticsearchOutput(wrong).deliver(events(1)) }
        #expect(refusal?.message.contains("HTTP 403") == true && refusal?.message.contains("signature we calculated does not match") == true, "\(String(describing: refusal))")
        // Signed for the wrong service: refused as well.
        var es2 = config
        es2.signer = SigV4RequestSigner(
            credentials: StaticCredentialProvider(Credentials(accessKeyID: "AKIASTATIC", secretAccessKey: "static-secret")), region: "eu-west-1", service: "es")
        await #expect(throws: OutputError.self) { _ = try await ElasticsearchOutput(es2).deliver(events(1)) }
        #expect(try stats(es)["docs"] as? [String: Any] != nil && (try stats(es)["docs"] as? [String: Any])?.count == 25)
        await output.close()
    }

    /// Through the binary, from the configuration: a backfill of moto's bucket shipped to a stand-in of
    /// Amazon OpenSearch Service, with credentials from the environment and `aws_auth.role_arn` assumed
    /// through moto's STS. The stand-in looks the temporary secret up in moto, as AWS asks IAM, and
    /// requires the signed session token. `test output` signs its probe too.
    @Test func theBinaryShipsWithAnAssumedRoleAndItsSessionToken() throws {
        let stack = try Stack(objects: 6, bad: false, role: true)
        let es = try fixtureServer("OutputsTests/Fixtures/es_server.py", [], name: "es")
        _ = curl(es.url + "/_script", postJSON: #"{"sigv4": {"region": "us-east-1", "service": "es", "moto": "\#(stack.moto.url)"}}"#)
        let role = try String(contentsOfFile: stack.dir.sub("role_arn"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        var text = try String(contentsOfFile: stack.config, encoding: .utf8)
        text = text.replacingOccurrences(of: "input:\n", with: "input:\n  role_arn: \(role)\n")
        text = text.replacingOccurrences(of: "output:\n", with: """
            output:
              elasticsearch:
                hosts: ["\(es.url)"]
                data_stream: {namespace: ci}
                codec: elastic_integration
                compression_level: 1
                aws_auth:
                  role_arn: \(role)

            """)
        try text.write(toFile: stack.config, atomically: true, encoding: .utf8)

        let (status, _) = try stack.run(["-c", stack.config, "--drain"])
        #expect(status == 0, "\((try? String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8))?.suffix(1500) ?? "")")
        let s = try stats(es)
        #expect((s["refused"] as? [String]) == [], "\(s["refused"] ?? "")")
        let docs = try #require(s["docs"] as? [String: [String: Any]])
        #expect(docs.count == stack.expected.count && !docs.isEmpty, "\(docs.count) of \(stack.expected.count)")
        #expect(docs.keys.allSatisfy { $0.hasPrefix(".ds-logs-aws.cloudtrail-ci-") })
        // The integration's shape: each record, as shipped to the file output, is a document's `message`.
        let messages = Set(docs.values.compactMap { $0["message"] as? String })
        #expect(messages == Set(stack.expected), "every record once, untouched")
        let signed = try #require(s["signed"] as? [[String: Any]])
        #expect(!signed.isEmpty && signed.allSatisfy { $0["token"] as? Bool == true && ($0["akid"] as? String)?.hasPrefix("ASIA") == true },
                "signed with the role's temporary credentials: \(signed.prefix(2))")

        let probe = try stack.run(["test", "output", "-c", stack.config], log: "probe.log")
        #expect(probe.0 == 0 && probe.1.contains("output.elasticsearch \(es.url): OK — connected and authenticated: Elasticsearch 8.15.0"), "\(probe.1)")
        // The wrong region: the probe says what AWS said.
        try text.replacingOccurrences(of: "      role_arn: \(role)\n", with: "      role_arn: \(role)\n      region: eu-west-1\n")
            .write(toFile: stack.config, atomically: true, encoding: .utf8)
        let bad = try stack.run(["test", "output", "-c", stack.config], log: "probe-bad.log")
        #expect(bad.0 == 1 && bad.1.contains("FAILED — credentials refused (HTTP 403): Credential should be scoped to a valid region"), "\(bad.1)")
    }
}
