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
