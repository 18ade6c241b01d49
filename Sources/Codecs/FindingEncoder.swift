import Foundation
import Stages

/// Integrity findings as events (`type: CloudTrailIntegrity`), in each codec's own shape.
///
/// A digest object's stored body holds its findings as records (`{"type":"CloudTrailIntegrity",
/// "eventID","eventTime","kind","bucket","key","account","region","trail","detail","digest"}`), written
/// by the engine's digest check; this turns one into an output's event. Filters do not apply: they
/// select CloudTrail records, and a finding is not one to be filtered away. The id and time come from
/// the record (the digest's end), so a replayed finding is the same event.
public struct FindingEncoder {
    public let kind: CodecKind
    let bucket: String
    let key: String

    public init(options: CodecOptions, bucket: String, key: String) {
        kind = options.kind
        self.bucket = bucket
        self.key = key
    }

    public func encode(_ record: RecordView, to out: inout [UInt8]) -> EventInfo? {
        guard let f = try? JSONSerialization.jsonObject(with: Data(record.bytes)) as? [String: Any] else { return nil }
        func s(_ name: String) -> String? { f[name] as? String }
        let id = s("eventID") ?? EventBuilder.syntheticID(bucket: bucket, key: key, index: record.index)
        let time = s("eventTime") ?? "1970-01-01T00:00:00Z"
        let findingKind = s("kind") ?? "unknown"
        let uri = "s3://\(s("bucket") ?? "")/\(s("key") ?? "")"
        var event: [String: Any]
        switch kind {
        case .raw:
            event = f
        case .cloudtrail:
            var integrity = f
            for drop in ["type", "eventID", "eventTime"] { integrity[drop] = nil }
            event = ["@timestamp": time, "type": "CloudTrailIntegrity", "integrity": integrity, "s3": ["bucket": bucket, "key": key]]
        case .ecs, .elasticIntegration:
            event = [
                "@timestamp": time, "message": "\(findingKind): \(uri): \(s("detail") ?? "")",
                "event": ["kind": "alert", "category": ["file"], "type": ["info"], "action": findingKind, "outcome": "failure",
                          "reason": s("detail") ?? "", "id": id, "provider": "cloudtrailbeat", "dataset": "aws.cloudtrail_integrity"],
                "file": ["path": uri],
                "cloud": ["provider": "aws", "account": ["id": s("account") ?? ""], "region": s("region") ?? ""],
                "aws": ["s3": ["bucket": ["name": s("bucket") ?? "", "arn": "arn:aws:s3:::" + (s("bucket") ?? "")], "object": ["key": s("key") ?? ""]],
                        "cloudtrail": ["integrity": ["kind": findingKind, "trail": s("trail") ?? "", "digest": s("digest") ?? ""]]],
                "tags": ["cloudtrail_integrity"],
            ]
        case .ocsf:
            let millis = Array(time.utf8).withUnsafeBytes { RFC3339.millis($0) } ?? 0
            event = [
                "class_uid": 2004, "class_name": "Detection Finding", "category_uid": 2, "category_name": "Findings",
                "activity_id": 1, "activity_name": "Create", "type_uid": 200401, "type_name": "Detection Finding: Create",
                "severity_id": 4, "severity": "High", "status_id": 1, "status": "New", "time": millis,
                "message": s("detail") ?? "",
                "finding_info": ["uid": id, "title": "CloudTrail log file integrity: \(findingKind)", "desc": s("detail") ?? "", "types": [findingKind]],
                "resources": [["type": "AWS::S3::Object", "uid": uri, "name": s("key") ?? ""]],
                "cloud": ["provider": "AWS", "region": s("region") ?? "", "account": ["uid": s("account") ?? ""]],
                "metadata": ["version": "1.1.0", "uid": id, "product": ["name": "cloudtrailbeat", "vendor_name": "cloudtrailbeat"]],
            ]
        }
        guard let data = try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys, .withoutEscapingSlashes]) else { return nil }
        out.append(contentsOf: data)
        return EventInfo(id: id, timestampFallback: false, timestamp: Array(time.utf8))
    }
}
