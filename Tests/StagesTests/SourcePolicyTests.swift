import Testing

@testable import Stages

@Suite("What an instance accepts to read")
struct SourcePolicyTests {
    @Test func accountsFromCloudTrailKeys() {
        #expect(SourcePolicy.account(inKey: "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/x.json.gz") == "123456789012")
        #expect(SourcePolicy.account(inKey: "trail/AWSLogs/o-abc123def4/210987654321/CloudTrail/eu-west-1/x.json.gz") == "210987654321")
        #expect(SourcePolicy.account(inKey: "AWSLogs/o-abc123def4/") == nil)
        #expect(SourcePolicy.account(inKey: "AWSLogs/12345/CloudTrail/x") == nil)
        #expect(SourcePolicy.account(inKey: "logs/x.json.gz") == nil)
    }

    @Test func bucketsAndAccountsTogether() {
        let p = SourcePolicy(buckets: ["org-trail-*", "audit"], accounts: ["123456789012"])
        let key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/x.json.gz"
        #expect(p.refusal(bucket: "org-trail-prod", key: key) == nil)
        #expect(p.refusal(bucket: "audit", key: key) == nil)
        #expect(p.refusal(bucket: "other", key: key) == "bucket 'other' is not in input.buckets")
        #expect(p.refusal(bucket: "audit", key: "AWSLogs/999999999999/CloudTrail/x.json.gz") == "account '999999999999' is not in input.accounts")
        // A local copy, or a listing of a bucket already accepted: the account alone.
        #expect(p.refusal(accountOf: key) == nil)
        #expect(p.refusal(accountOf: "AWSLogs/999999999999/CloudTrail/x.json.gz") != nil)
        #expect(p.refusal(recipientAccount: "999999999999", keyAccount: "123456789012", record: 3)?.contains("record 3") == true)
        #expect(p.refusal(recipientAccount: "123456789012", keyAccount: "123456789012", record: 3) == nil)
        #expect(SourcePolicy().refusal(bucket: "any", key: "anything") == nil && SourcePolicy().acceptsEverything)
    }

    @Test func topics() {
        let p = SourcePolicy(topics: ["arn:aws:sns:us-east-1:123456789012:trail"])
        #expect(p.refusal(topic: "arn:aws:sns:us-east-1:123456789012:trail") == nil)
        #expect(p.refusal(topic: "arn:aws:sns:us-east-1:123456789012:other") != nil)
        #expect(p.refusal(topic: nil) != nil, "not through SNS")
        #expect(NotificationDecoder.topicArn(#"{"Type":"Notification","TopicArn":"arn:x","Message":"{}"}"#) == "arn:x")
        #expect(NotificationDecoder.topicArn(#"{"s3Bucket":"b","s3ObjectKey":["k"]}"#) == nil)
    }
}

/// The gate every name a notification carries passes first (issue 31): S3's naming rules, keys without
/// control characters, and a bound on the objects one message may name.
@Suite("The name gate")
struct NameGateTests {
    @Test(arguments: [
        "file:///var/lib/trail", "ct-logs@127.0.0.1:8080#", "ct-logs/../other", "CT-Logs", "ab", String(repeating: "a", count: 64),
        "-ct-logs", "ct-logs-", "ct..logs", "192.168.1.10", "xn--bucket", "ct-logs-s3alias", "ct logs", "ct-logs\n", "",
    ])
    func notBucketNames(name: String) {
        #expect(S3Name.bucketProblem(name) != nil, "\(name) passed")
        let body = #"{"s3Bucket":"\#(name.replacingOccurrences(of: "\n", with: "\\n"))","s3ObjectKey":["AWSLogs/123456789012/CloudTrail/x.json.gz"]}"#
        guard case .unrecognised(let reason) = NotificationDecoder.decode(body) else {
            Issue.record("\(name): not refused")
            return
        }
        #expect(!reason.contains("\n"))
        #expect(SourcePolicy().refusal(bucket: name) != nil, "the policy accepts \(name) with no list")
        #expect(SourcePolicy(buckets: ["ct-logs*", "*"]).refusal(bucket: name) != nil, "a glob accepts \(name)")
    }

    @Test(arguments: ["ct-logs", "org-trail.prod-2026", "a1b", String(repeating: "a", count: 63), "1.2.3", "aws-cloudtrail-logs-123456789012-1a2b3c4d"])
    func bucketNames(name: String) {
        #expect(S3Name.bucketProblem(name) == nil)
        #expect(SourcePolicy(buckets: ["*"]).refusal(bucket: name) == nil)
    }

    @Test func keys() {
        #expect(S3Name.keyProblem("AWSLogs/123456789012/CloudTrail/us-east-1/2026/12/08/x.json.gz") == nil)
        #expect(S3Name.keyProblem("AWSLogs/123456789012/../../other/x.json.gz") == nil, "dot segments are a key's own business")
        #expect(S3Name.keyProblem("reports/é & ü.csv") == nil)
        #expect(S3Name.keyProblem("") == "is empty")
        #expect(S3Name.keyProblem(String(repeating: "k", count: 1025)) == "is 1025 bytes, more than S3's 1024")
        #expect(S3Name.keyProblem("a\nb") == "holds the control character U+000A")
        #expect(S3Name.keyProblem("a\u{1B}[2J") == "holds the control character U+001B")
        #expect(S3Name.keyProblem("a\u{0}b") == "holds the control character U+0000")
        #expect(S3Name.keyProblem("a\u{9B}b") == "holds the control character U+009B", "C1 CSI")
        #expect(S3Name.keyProblem("a\u{7F}b") != nil)
    }

    @Test func everyShapeIsGated() {
        let bad = "ct-logs@127.0.0.1:1#"
        let shapes = [
            #"{"s3Bucket":"\#(bad)","s3ObjectKey":["k"]}"#,
            #"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"\#(bad)"},"object":{"key":"k"}}}]}"#,
            #"{"source":"aws.s3","detail-type":"Object Created","detail":{"bucket":{"name":"\#(bad)"},"object":{"key":"k"}}}"#,
            #"{"Type":"Notification","TopicArn":"arn:aws:sns:us-east-1:123456789012:t","Message":"{\"s3Bucket\":\"\#(bad)\",\"s3ObjectKey\":[\"k\"]}"}"#,
            #"{"s3Bucket":"ct-logs","s3ObjectKey":["ok","bad\u001b[2Jkey"]}"#,
            #"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"ct-logs"},"object":{"key":"a%0Ab"}}}]}"#,
        ]
        for body in shapes {
            guard case .unrecognised(let reason) = NotificationDecoder.decode(body) else {
                Issue.record("not refused: \(body)")
                continue
            }
            #expect(!reason.unicodeScalars.contains(where: UntrustedText.isControl), "\(reason)")
        }
    }

    @Test func aMessageNamingTooManyObjectsIsRefusedWhole() {
        let keys = (0..<1800).map { "\"AWSLogs/123456789012/CloudTrail/us-east-1/2026/12/08/123456789012_CloudTrail_us-east-1_20261208T0000Z_\($0).json.gz\"" }
        let body = #"{"s3Bucket":"ct-logs","s3ObjectKey":[\#(keys.joined(separator: ","))]}"#
        #expect(body.utf8.count < NotificationDecoder.maxBodySize)
        #expect(NotificationDecoder.decode(body) == .unrecognised("the message names 1800 objects, more than input.max_keys_per_message (100)"))
        guard case .objects(let refs, _) = NotificationDecoder.decode(body, maxKeys: 2000) else {
            Issue.record("refused under a higher limit")
            return
        }
        #expect(refs.count == 1800)
        let hundred = #"{"s3Bucket":"ct-logs","s3ObjectKey":[\#(keys.prefix(100).joined(separator: ","))]}"#
        guard case .objects = NotificationDecoder.decode(hundred) else {
            Issue.record("100 keys refused by the default")
            return
        }
    }

    @Test func bucketPatterns() {
        #expect(S3Name.patternProblem("org-trail-*") == nil)
        #expect(S3Name.patternProblem("org-trail-[ab]?") == nil)
        #expect(S3Name.patternProblem("ct-logs") == nil)
        #expect(S3Name.patternProblem("CT-Logs") != nil)
        #expect(S3Name.patternProblem("ct-logs/AWSLogs") != nil)
        #expect(S3Name.patternProblem("ct-logs@*") != nil)
        #expect(S3Name.patternProblem("") != nil)
    }

    @Test func untrustedTextStaysOnItsLine() {
        #expect(UntrustedText.escaped("plain é") == "plain é")
        #expect(UntrustedText.escaped("a\nb\tc\r\u{1B}[2J\u{9B}") == "a\\nb\\tc\\r\\u{1B}[2J\\u{9B}")
    }
}
