import Foundation

/// One problem integrity validation found.
public struct Finding: Sendable, Hashable, Comparable {
    public struct Kind: RawRepresentable, Sendable, Hashable, Comparable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// A digest whose format, place, key or signature does not hold.
        public static let digestInvalid = Kind(rawValue: "digest_invalid")
        /// A digest its successor names that is not in the bucket: a gap in the chain.
        public static let digestMissing = Kind(rawValue: "digest_missing")
        /// A log whose uncompressed SHA-256 is not the one a valid digest recorded.
        public static let logModified = Kind(rawValue: "log_modified")
        /// A log a valid digest lists that is not in the bucket.
        public static let logMissing = Kind(rawValue: "log_missing")
        /// A log in the bucket that no valid digest lists, though its hour's digest arrived.
        public static let logNotCovered = Kind(rawValue: "log_not_covered")
        public static let all: [Kind] = [.digestInvalid, .digestMissing, .logModified, .logMissing, .logNotCovered]
        public var description: String { rawValue }
        public static func < (a: Kind, b: Kind) -> Bool { a.rawValue < b.rawValue }
    }
    public var kind: Kind
    public var bucket: String
    public var key: String
    public var detail: String

    public init(kind: Kind, bucket: String, key: String, detail: String) {
        self.kind = kind
        self.bucket = bucket
        self.key = key
        self.detail = detail
    }

    public static func < (a: Finding, b: Finding) -> Bool { (a.kind, a.bucket, a.key) < (b.kind, b.bucket, b.key) }

    /// Account, region and trail as the key names them (nil parts when it does not).
    public var account: String? { DigestKey(key)?.scope.account ?? LogKey(key)?.scope.account }
    public var region: String? { DigestKey(key)?.scope.region ?? LogKey(key)?.scope.region }
    public var trail: String? { DigestKey(key)?.trail }
}

/// A digest as loaded, before its verdict.
public enum DigestLoad: Sendable {
    case loaded(DigestObject)
    /// It could not be read as a digest (not gzip, metadata missing): the reason.
    case unreadable(String)
}

/// What became of a log a valid digest lists.
public enum LogObservation: Sendable, Equatable {
    /// The SHA-256 (hex) of its uncompressed bytes.
    case hash(String)
    case missing
    /// Present but not readable (not gzip): the reason.
    case unreadable(String)
}

/// A digest that passed every check: what the log checks need of it.
public struct ValidDigest: Sendable {
    public var bucket: String
    public var key: String
    public var body: DigestBody
    public var sha256: String
    public var signature: String
}

/// The verdicts of one validation run (the `verify` command's answer).
public struct AuditReport: Sendable {
    public var validDigests: [ValidDigest] = []
    public var validLogs = 0
    public var findings: [Finding] = []
    public init() {}

    public func findings(_ kind: Finding.Kind) -> [Finding] { findings.filter { $0.kind == kind }.sorted() }
    public var isClean: Bool { findings.isEmpty }

    /// `{"digests": {"valid", "invalid", "missing"}, "logs": {"valid", "modified", "missing", "not_covered"}}`.
    public func json() -> [UInt8] {
        func list(_ kind: Finding.Kind) -> [[String: Any]] {
            findings(kind).map { f in
                var o: [String: Any] = ["bucket": f.bucket, "key": f.key, "reason": f.detail]
                if let a = f.account { o["account"] = a }
                if let r = f.region { o["region"] = r }
                if let t = f.trail { o["trail"] = t }
                return o
            }
        }
        let object: [String: Any] = [
            "digests": ["valid": validDigests.count, "invalid": list(.digestInvalid), "missing": list(.digestMissing)],
            "logs": ["valid": validLogs, "modified": list(.logModified), "missing": list(.logMissing), "not_covered": list(.logNotCovered)],
        ]
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }
}

/// The checks, as pure functions of what was loaded (invariants 1–4 at the top of `Digest.swift`).
public enum Audit {
    /// Verdicts on a set of digests. `listed` holds every digest key the bucket has in the window (to tell
    /// a missing predecessor from one outside it); `keys` gives a region's public keys; `since`: links to
    /// digests that end before it are not followed.
    public static func digests(_ loads: [String: DigestLoad], bucket: String, keys: (String) -> PublicKeySet, since: Date?) -> (valid: [ValidDigest], findings: [Finding]) {
        var valid: [String: ValidDigest] = [:]
        var findings: [Finding] = []
        var parsed: [String: (DigestObject, DigestBody)] = [:]
        for (key, load) in loads.sorted(by: { $0.key < $1.key }) {
            switch load {
            case .unreadable(let reason):
                findings.append(Finding(kind: .digestInvalid, bucket: bucket, key: key, detail: reason))
            case .loaded(let object):
                let body: DigestBody
                do { body = try object.body() } catch {
                    findings.append(Finding(kind: .digestInvalid, bucket: bucket, key: key, detail: "\(error)"))
                    continue
                }
                if let reason = verdict(object, body, keys: keys(DigestKey(key)?.scope.region ?? "")) {
                    findings.append(Finding(kind: .digestInvalid, bucket: bucket, key: key, detail: reason))
                    continue
                }
                parsed[key] = (object, body)
                valid[key] = ValidDigest(bucket: bucket, key: key, body: body, sha256: object.sha256, signature: object.signature ?? "")
            }
        }
        // Links: each valid digest's predecessor must exist and be the one it recorded.
        for (key, (_, body)) in parsed.sorted(by: { $0.key < $1.key }) {
            guard let previous = body.previousDigestS3Object, (body.previousDigestS3Bucket ?? bucket) == bucket else { continue }
            if let since, let end = DigestKey(previous)?.end, end < since { continue }  // before the window
            if loads[previous] == nil {
                findings.append(Finding(kind: .digestMissing, bucket: bucket, key: previous, detail: "not found: \(key) names it as its previous digest"))
                continue
            }
            guard let (prevObject, _) = parsed[previous], valid[previous] != nil else { continue }  // already invalid
            if let recorded = body.previousDigestHashValue, recorded.lowercased() != prevObject.sha256 {
                valid[previous] = nil
                findings.append(Finding(kind: .digestInvalid, bucket: bucket, key: previous, detail: "its SHA-256 is not the one \(key) recorded"))
            } else if let recorded = body.previousDigestSignature, recorded.lowercased() != (prevObject.signature ?? "").lowercased() {
                valid[previous] = nil
                findings.append(Finding(kind: .digestInvalid, bucket: bucket, key: previous, detail: "its signature is not the one \(key) recorded"))
            }
        }
        return (valid.values.sorted { $0.key < $1.key }, findings)
    }

    /// Why one digest is not valid on its own (format, place, key, signature); nil when it is.
    public static func verdict(_ object: DigestObject, _ body: DigestBody, keys: PublicKeySet) -> String? {
        if body.digestS3Bucket != object.bucket || body.digestS3Object != object.key {
            return "has been moved from its original location (s3://\(body.digestS3Bucket)/\(body.digestS3Object))"
        }
        if DigestKey(object.key)?.backfill == true, object.backfillGenerationTimestamp == nil {
            return "invalid format: a backfill digest without x-amz-meta-backfill-generation-timestamp"
        }
        return DigestSignature.check(object, body, keys: keys)
    }

    /// The logs valid digests list, each once (the first digest to list it wins; sorted).
    public static func listedLogs(_ valid: [ValidDigest]) -> [(bucket: String, key: String, hash: String, digest: String)] {
        var seen: Set<String> = []
        var out: [(bucket: String, key: String, hash: String, digest: String)] = []
        for d in valid {
            for log in d.body.logFiles where seen.insert(log.s3Bucket + "/" + log.s3Object).inserted {
                out.append((log.s3Bucket, log.s3Object, log.hashValue.lowercased(), d.key))
            }
        }
        return out.sorted { ($0.bucket, $0.key) < ($1.bucket, $1.key) }
    }

    /// The verdict on one listed log.
    public static func log(bucket: String, key: String, expected: String, digest: String, _ seen: LogObservation) -> Finding? {
        switch seen {
        case .hash(let h) where h.lowercased() == expected: return nil
        case .hash: return Finding(kind: .logModified, bucket: bucket, key: key, detail: "hash value doesn't match the one \(digest) recorded")
        case .missing: return Finding(kind: .logMissing, bucket: bucket, key: key, detail: "not found: \(digest) lists it")
        case .unreadable(let why): return Finding(kind: .logModified, bucket: bucket, key: key, detail: "invalid format (\(why)); \(digest) lists it")
        }
    }

    /// Logs in the bucket no valid digest lists, though a valid digest of their scope began after they
    /// were delivered (so their hour's digest arrived).
    public static func notCovered(logsInBucket: [String], bucket: String, valid: [ValidDigest]) -> [Finding] {
        let listed = Set(valid.flatMap { d in d.body.logFiles.filter { $0.s3Bucket == bucket }.map(\.s3Object) })
        var latestStart: [TrailScope: Date] = [:]
        for d in valid where !(DigestKey(d.key)?.backfill ?? true) {
            guard let scope = DigestKey(d.key)?.scope, let start = TrailKeys.isoDate(d.body.digestStartTime) else { continue }
            latestStart[scope] = max(latestStart[scope] ?? start, start)
        }
        return logsInBucket.filter { !listed.contains($0) }.sorted().compactMap { key in
            guard let log = LogKey(key), let start = latestStart[log.scope], log.delivered < start else { return nil }
            return Finding(kind: .logNotCovered, bucket: bucket, key: key, detail: "no valid digest lists it, though its scope's digests go on after it was delivered")
        }
    }
}
