import Foundation
import Testing

@testable import AWS
@testable import Engine
@testable import SNSSignature

/// Settings that decide whom the shipper trusts (issue 31): bucket patterns, the per-message bound,
/// SNS signatures on by default unless the queue is a loopback stand-in, and the certificate hosts.
@Suite("Trust settings")
struct TrustSettingsTests {
    let queue = "output:\n  console: {}\ninput:\n  sqs_url: https://sqs.us-east-1.amazonaws.com/123456789012/ct\n  aws_region: us-east-1\n"

    /// The error parsing `yaml` gives (as the Configuration suite reads it).
    func error(_ yaml: String) -> String { ConfigTests().error(yaml) }

    @Test func bucketPatternsAndNamesAreCheckedAtLoad() throws {
        #expect(error(queue + "  buckets: [\"ct-logs@*\"]").contains("input.buckets"))
        #expect(error(queue + "  buckets: [\"CT-Logs\"]").contains("/etc/cloudtrailbeat.yml"))
        #expect(error(queue + "  buckets: [\"org-trail-*\", \"audit.logs\"]") == "no error")
        #expect(error("output:\n  console: {}\ninput:\n  bucket_arn: arn:aws:s3:::Bad_Bucket\n").contains("is not an S3 bucket name"))
        #expect(error(queue + "  max_keys_per_message: 0").contains("input.max_keys_per_message"))
        #expect(try Config.parse(queue, file: "c.yml").input.maxKeysPerMessage == 100)
        #expect(try Config.parse(queue + "  max_keys_per_message: 500", file: "c.yml").input.maxKeysPerMessage == 500)
    }

    @Test func snsSignaturesAreVerifiedUnlessTheQueueIsALoopbackStandIn() throws {
        let c = try Config.parse(queue, file: "c.yml")
        #expect(c.verifiesSNSSignatures(environment: [:]))
        #expect(c.verifiesSNSSignatures(environment: ["AWS_ENDPOINT_URL_SQS": "https://vpce-0abc.sqs.us-east-1.vpce.amazonaws.com"]), "a VPC endpoint is AWS")
        #expect(c.verifiesSNSSignatures(environment: ["AWS_ENDPOINT_URL": "http://10.0.0.5:4566"]))
        #expect(!c.verifiesSNSSignatures(environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:5000"]))
        #expect(!c.verifiesSNSSignatures(environment: ["AWS_ENDPOINT_URL_SQS": "http://localhost:4566"]))
        #expect(!c.verifiesSNSSignatures(environment: ["AWS_ENDPOINT_URL_SQS": "http://[::1]:4566"]))
        let standIn = try Config.parse(queue + "  endpoint: http://127.0.0.9:5000\n", file: "c.yml")
        #expect(!standIn.verifiesSNSSignatures(environment: [:]))
        #expect(try Config.parse(queue + "  endpoint: http://127.0.0.9:5000\n  sns_signature: true\n", file: "c.yml").verifiesSNSSignatures(environment: [:]))
    }

    @Test func unverifiedTopicsAreAWarning() throws {
        let topics = queue + "  topics: [\"arn:aws:sns:us-east-1:123456789012:trail\"]\n"
        #expect(try Config.parse(topics, file: "c.yml").warnings(environment: [:]).isEmpty)
        let off = try Config.parse(topics + "  sns_signature: false\n", file: "c.yml").warnings(environment: [:])
        #expect(off.count == 1 && off[0].contains("input.topics is set but SNS signatures are not verified"))
        let local = try Config.parse(topics + "  endpoint: http://127.0.0.1:5000\n", file: "c.yml").warnings(environment: [:])
        #expect(local.count == 1 && local[0].contains("loopback"))
        #expect(try Config.parse(queue + "  sns_signature: false\n", file: "c.yml").warnings(environment: [:]).first?.contains("SNS signatures are not verified") == true)
    }

    @Test func theSigningCertificateHostIsOneRegionLabel() {
        let hosts = SNSSignatureSettings().certificateHosts
        func allowed(_ url: String) -> Bool { SignedEnvelope.urlRefusal(url, certificateHosts: hosts) == nil }
        #expect(allowed("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"))
        #expect(allowed("https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem"))
        #expect(allowed("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem"))
        #expect(!allowed("https://sns.s3.amazonaws.com/SimpleNotificationService-abc.pem"), "an S3 bucket anyone can own")
        #expect(!allowed("https://sns.evil.example.s3.amazonaws.com/x.pem"))
        #expect(!allowed("https://sns.s3-us-west-2.amazonaws.com/x.pem"), "S3's legacy regional endpoint with a bucket named sns")
        #expect(!allowed("https://sns.s3-website-us-east-1.amazonaws.com/x.pem"))
        #expect(!allowed("https://sns.us-east-1.evil.amazonaws.com/x.pem"))
        #expect(!allowed("https://sns.attacker-bucket-1.amazonaws.com/x.pem"), "one word before the number is no region")
        #expect(SignedEnvelope.hostMatches("127.0.0.1", "127.0.0.1"))
    }

    @Test func virtualHostAddressingOnlyForOneDNSLabel() {
        #expect(S3Client.isHostLabel("ct-logs"))
        #expect(!S3Client.isHostLabel("ct.logs"), "a dotted name goes path style, as the SDKs do")
        #expect(!S3Client.isHostLabel("ct-logs@127.0.0.1:1#"))
        #expect(!S3Client.isHostLabel("CT"))
    }
}
