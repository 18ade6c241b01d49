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
        // Over the key's bytes, without splitting it into strings: this runs for every object, twice.
        var key = key
        return key.withUTF8 { k -> ObjectKind? in
            if k.last == UInt8(ascii: "/") { return .other }
            // Component ranges, split at "/".
            var parts: [Range<Int>] = []
            parts.reserveCapacity(12)
            var from = 0
            for i in 0..<k.count where k[i] == UInt8(ascii: "/") {
                parts.append(from..<i)
                from = i + 1
            }
            parts.append(from..<k.count)
            func equals(_ r: Range<Int>, _ text: StaticString) -> Bool {
                r.count == text.utf8CodeUnitCount && (0..<r.count).allSatisfy { k[r.lowerBound + $0] == text.utf8Start[$0] }
            }
            if let root = parts.lastIndex(where: { equals($0, "AWSLogs") }) {
                var i = root + 1
                if i < parts.count, parts[i].count >= 2, k[parts[i].lowerBound] == UInt8(ascii: "o"), k[parts[i].lowerBound + 1] == UInt8(ascii: "-") { i += 1 }
                i += 1  // the account
                if i < parts.count - 1 {
                    if equals(parts[i], "CloudTrail") { return .log }
                    if equals(parts[i], "CloudTrail-Digest") { return .digest }
                    if equals(parts[i], "CloudTrail-Insight") { return .insight }
                    return .other
                }
            }
            let file = UnsafeBufferPointer(rebasing: k[parts[parts.count - 1]])
            func contains(_ text: StaticString) -> Bool {
                let n = text.utf8CodeUnitCount
                guard file.count >= n else { return false }
                return (0...(file.count - n)).contains { at in (0..<n).allSatisfy { file[at + $0] == text.utf8Start[$0] } }
            }
            if contains("_CloudTrail-Digest_") { return .digest }
            if contains("_CloudTrail-Insight_") { return .insight }
            if contains("_CloudTrail_") { return .log }
            return nil
        }
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
