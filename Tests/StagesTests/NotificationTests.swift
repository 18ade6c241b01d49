import Foundation
import Testing

@testable import Stages

@Suite("Notification decoding")
struct NotificationTests {
    func objects(_ n: DecodedNotification) -> [ObjectReference] {
        if case .objects(let refs, _) = n { return refs }
        Issue.record("expected objects, got \(n)")
        return []
    }

    func sns(_ message: String) -> String {
        let escaped = String(data: try! JSONSerialization.data(withJSONObject: [message], options: [.fragmentsAllowed]), encoding: .utf8)!.dropFirst().dropLast()
        return #"{"Type":"Notification","MessageId":"5b0b7d2f","TopicArn":"arn:aws:sns:us-east-1:123456789012:ct-topic","Message":"# + escaped
            + #","Timestamp":"2026-11-28T22:07:49.050Z","SignatureVersion":"1","Signature":"abc","SigningCertURL":"https://x","UnsubscribeURL":"https://y"}"#
    }

    @Test func snsCloudTrailNotificationWithEveryKey() {
        let body = sns(#"{"s3Bucket":"trail-bucket","s3ObjectKey":["AWSLogs/1/CloudTrail/us-east-1/2026/11/28/a.json.gz","AWSLogs/1/CloudTrail/us-east-1/2026/11/28/b.json.gz"]}"#)
        let n = NotificationDecoder.decode(body)
        #expect(objects(n).map(\.key) == ["AWSLogs/1/CloudTrail/us-east-1/2026/11/28/a.json.gz", "AWSLogs/1/CloudTrail/us-east-1/2026/11/28/b.json.gz"])
        #expect(objects(n).allSatisfy { $0.bucket == "trail-bucket" })
        if case .objects(_, let shape) = n { #expect(shape == "sns/cloudtrail") }
    }

    @Test func messageIDSpellingAndSubject() {
        let body = #"{"Type":"Notification","MessageID":"x","Subject":"s","TopicArn":"t","MessageAttributes":{},"Message":"{\"s3Bucket\":\"ct-logs\",\"s3ObjectKey\":[\"k\"]}"}"#
        #expect(objects(NotificationDecoder.decode(body)) == [ObjectReference(bucket: "ct-logs", key: "k")])
    }

    @Test func validationMessageIsNothingToDo() {
        #expect(NotificationDecoder.decode(sns("CloudTrail validation message.")) == .nothingToDo("CloudTrail validation message"))
    }

    @Test func rawDelivery() {
        let n = NotificationDecoder.decode(#"{"s3Bucket":"ct-logs","s3ObjectKey":["k1","k2","k3"]}"#)
        #expect(objects(n).map(\.key) == ["k1", "k2", "k3"])
    }

    @Test(arguments: [
        ("AWSLogs/123/CloudTrail/us-west-2/2026/11/28/a+b.json.gz", "AWSLogs/123/CloudTrail/us-west-2/2026/11/28/a b.json.gz"),
        ("AWSLogs%2F123%2FCloudTrail%2Fx.json.gz", "AWSLogs/123/CloudTrail/x.json.gz"),
        ("a%2Bb%20c+d", "a+b c d"),
        ("caf%C3%A9", "café"),
    ])
    func s3EventKeysAreFormURLDecoded(raw: String, decoded: String) {
        let body = #"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-west-2","eventTime":"2026-11-28T22:07:49.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"mybucket","arn":"arn:aws:s3:::mybucket"},"object":{"key":""# + raw + #"","size":1024,"eTag":"\"d41d8cd9\"","versionId":"v1","sequencer":"0055AED6DCD90281E5"}}}]}"#
        let refs = objects(NotificationDecoder.decode(body))
        #expect(refs == [ObjectReference(bucket: "mybucket", key: decoded, etag: "d41d8cd9", versionID: "v1", size: 1024, sequencer: "0055AED6DCD90281E5")])
    }

    /// Found by the `notification` fuzz target (Fuzz/Regressions/notification/): an EventBridge event
    /// naming an empty key was taken as an object (a GET of the bucket's root). Every shape now refuses
    /// an empty bucket or key, as the CloudTrail shape did.
    @Test func anEmptyBucketOrKeyIsUnrecognisedInEveryShape() throws {
        let found = try Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/Regressions/notification/eventbridge-empty-key.json"))
        let bodies = [
            String(decoding: found, as: UTF8.self),
            #"{"source":"aws.s3","detail-type":"Object Created","detail":{"bucket":{"name":""},"object":{"key":"k"}}}"#,
            #"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"ct-logs"},"object":{"key":""}}}]}"#,
            #"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":""},"object":{"key":"k"}}}]}"#,
            #"{"s3Bucket":"ct-logs","s3ObjectKey":[""]}"#,
        ]
        for body in bodies {
            guard case .unrecognised(let why) = NotificationDecoder.decode(body) else {
                Issue.record("taken: \(body)")
                continue
            }
            #expect(why.contains("empty bucket or key"), "\(why)")
        }
    }

    @Test func s3EventOnlyObjectCreatedCounts() {
        let removed = #"{"Records":[{"eventVersion":"2.3","eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"ct-logs"},"object":{"key":"k"}}}]}"#
        guard case .nothingToDo(let why) = NotificationDecoder.decode(removed) else { Issue.record("expected nothing to do"); return }
        #expect(why.contains("ObjectRemoved:Delete"))
        let mixed = #"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"ct-logs"},"object":{"key":"k"}}},{"eventSource":"aws:s3","eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"ct-logs"},"object":{"key":"k2"}}}]}"#
        #expect(objects(NotificationDecoder.decode(mixed)).map(\.key) == ["k2"])
    }

    @Test func snsWrappedS3Event() {
        let inner = #"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"ct-logs"},"object":{"key":"x%2Fy"}}}]}"#
        let n = NotificationDecoder.decode(sns(inner))
        #expect(objects(n) == [ObjectReference(bucket: "ct-logs", key: "x/y")])
        if case .objects(_, let shape) = n { #expect(shape == "sns/s3-event") }
    }

    @Test func s3TestEvent() {
        let body = #"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-28T22:07:49.000Z","Bucket":"b","RequestId":"r","HostId":"h"}"#
        #expect(NotificationDecoder.decode(body) == .nothingToDo("S3 test event"))
        #expect(NotificationDecoder.decode(sns(body)) == .nothingToDo("S3 test event"))
    }

    @Test(arguments: ["etag", "eTag"])
    func eventBridgeObjectCreated(field: String) {
        let body = #"{"version":"0","id":"1","detail-type":"Object Created","source":"aws.s3","account":"111122223333","time":"2026-11-28T22:07:49Z","region":"ca-central-1","resources":["arn:aws:s3:::bucket"],"detail":{"version":"0","bucket":{"name":"bucket"},"object":{"key":"AWSLogs/1/CloudTrail/a b.json.gz","size":5,""# + field + #"":"b1946ac9","version-id":"null","sequencer":"617f08299329d189"},"reason":"PutObject"}}"#
        #expect(objects(NotificationDecoder.decode(body)) == [ObjectReference(bucket: "bucket", key: "AWSLogs/1/CloudTrail/a b.json.gz", etag: "b1946ac9", size: 5, sequencer: "617f08299329d189")])
    }

    @Test(arguments: [
        ("not json at all", "not JSON"),
        ("[1,2,3]", "array"),
        ("\"a string\"", "string"),
        ("{\"hello\":\"world\"}", "no known notification"),
        ("{\"Type\":\"Notification\",\"TopicArn\":\"t\",\"Message\":\"{not json\"}", "SNS Message is not JSON"),
        ("{\"Type\":\"Notification\",\"TopicArn\":\"t\"}", "without a Message"),
        ("{\"s3Bucket\":\"ct-logs\",\"s3ObjectKey\":[1]}", "other than strings"),
        ("{\"Records\":[{\"eventSource\":\"aws:s3\",\"eventName\":\"ObjectCreated:Put\"}]}", "lacks s3.bucket.name"),
        ("{\"Records\":[{\"eventSource\":\"aws:sqs\",\"eventName\":\"x\"}]}", "not aws:s3"),
        ("", "not JSON"),
        ("\u{0}\u{1}\u{2}", "not JSON"),
    ])
    func garbageIsUnrecognisedWithAReason(body: String, reason: String) {
        guard case .unrecognised(let why) = NotificationDecoder.decode(body) else {
            Issue.record("\(body) was not unrecognised")
            return
        }
        #expect(why.contains(reason), "\(why)")
    }

    @Test func hugeBodyIsUnrecognised() {
        let body = "{\"s3Bucket\":\"ct-logs\",\"s3ObjectKey\":[\"" + String(repeating: "k", count: 300_000) + "\"]}"
        guard case .unrecognised(let why) = NotificationDecoder.decode(body) else { Issue.record("accepted"); return }
        #expect(why.contains("more than SQS"))
    }
}

@Suite("Object classification")
struct ClassifierTests {
    @Test(arguments: [
        ("AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/123456789012_CloudTrail_us-east-1_20261128T2205Z_abcdefghijklmnop.json.gz", ObjectKind.log),
        ("prefix/AWSLogs/o-abc123/123456789012/CloudTrail/eu-west-1/2026/11/28/x.json.gz", .log),
        ("AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2026/11/28/123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20261128T220500Z.json.gz", .digest),
        ("AWSLogs/o-abc/123456789012/CloudTrail-Digest/us-east-1/2026/11/28/d.json.gz", .digest),
        ("AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2026/11/28/i.json.gz", .insight),
        ("AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/28/lb.log.gz", .other),
        ("AWSLogs/123456789012/CloudTrail/", .other),
        ("flat/123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20261128T220500Z.json.gz", .digest),
        ("flat/123456789012_CloudTrail_us-east-1_20261128T2205Z_x.json.gz", .log),
    ])
    func byKeyLayout(key: String, kind: ObjectKind) {
        #expect(ObjectClassifier.classify(key: key) == kind)
    }

    @Test func byContentShapeWhenTheKeySaysNothing() {
        #expect(ObjectClassifier.classify(key: "export/file1.json", head: Array(#"{"Records":[{"eventVersion":"1.08"}]}"#.utf8)) == .log)
        #expect(ObjectClassifier.classify(key: "export/file2.json", head: Array(#"{"awsAccountId":"1","digestStartTime":"2026","logFiles":[]}"#.utf8)) == .digest)
        #expect(ObjectClassifier.classify(key: "export/file3.json", head: Array(#"{"Records":[{"eventType":"AwsCloudTrailInsight"}]}"#.utf8)) == .insight)
        #expect(ObjectClassifier.classify(key: "export/file4.txt", head: Array("hello".utf8)) == .other)
    }
}
