/// What an S3 object under a CloudTrail prefix is.
public enum ObjectKind: String, Sendable, CaseIterable {
    /// A log file: `{"Records":[…]}`.
    case log
    /// A digest file (integrity validation): no records; never emitted as a broken log.
    case digest
    /// A CloudTrail Insights file (records of `eventType` `AwsCloudTrailInsight`).
    case insight
    /// Anything else (a folder marker, another service's file).
    case other
}

/// Classifies objects by their key layout, falling back to the content's shape.
public enum ObjectClassifier {
    /// From the key alone; nil when the layout does not say.
    ///
    /// `[prefix/]AWSLogs/<account>/<CloudTrail|CloudTrail-Digest|CloudTrail-Insight>/<region>/YYYY/MM/DD/<file>`,
    /// also with an organisation id (`AWSLogs/o-…/<account>/…`).
    public static func classify(key: String) -> ObjectKind? {
        if key.hasSuffix("/") { return .other }
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        if let root = parts.lastIndex(of: "AWSLogs") {
            var i = root + 1
            if i < parts.count, parts[i].hasPrefix("o-") { i += 1 }
            i += 1  // the account
            if i < parts.count - 1 {
                switch parts[i] {
                case "CloudTrail": return .log
                case "CloudTrail-Digest": return .digest
                case "CloudTrail-Insight": return .insight
                default: return .other
                }
            }
        }
        let file = parts.last.map(String.init) ?? key
        if file.contains("_CloudTrail-Digest_") { return .digest }
        if file.contains("_CloudTrail-Insight_") { return .insight }
        if file.contains("_CloudTrail_") { return .log }
        return nil
    }

    /// From the key, or else from the first uncompressed bytes of the body.
    public static func classify(key: String, head: some Collection<UInt8>) -> ObjectKind {
        classify(key: key) ?? classify(head: head)
    }

    /// From the first uncompressed bytes of the body alone.
    public static func classify(head: some Collection<UInt8>) -> ObjectKind {
        let text = String(decoding: head.prefix(8192), as: UTF8.self)
        if text.contains("\"Records\"") {
            return text.contains("AwsCloudTrailInsight") ? .insight : .log
        }
        if text.contains("\"digestStartTime\"") || text.contains("\"digestPublicKeyFingerprint\"") || text.contains("\"logFiles\"") {
            return .digest
        }
        return .other
    }
}
