// Continuous log-file validation (`integrity.enabled`): a digest object, when the fetch stage reaches
// it, is checked here instead of being skipped, and its findings become its records.
//
// Invariants:
// 1. A check reads the world (S3, the public keys, the journal's ledger) and returns a verdict and the
//    findings' records; it writes nothing. The engine commits both in the digest object's `fetched`
//    transition (the journal's invariant 10), so a kill -9 at any instant either repeats a check from
//    the ledger as it was, or finds its findings already queued for every output — never lost, never
//    raised twice (a replayed delivery resends the same events, with the same ids).
// 2. A finding's id and time come from the digest (its key, its end time) and what the finding names,
//    so the same tampering seen again is the same event.
// 3. Failures that may pass (S3 or ListPublicKeys unreachable, throttled) throw and the fetch is retried
//    like any download; what the bytes say (a digest that is not gzip, a bad signature) is a finding,
//    never a quarantine: a forged digest must be reported, not set aside.
// 4. Logs listed by no digest are reported only from a digest whose predecessor this journal verified
//    (or the first of its chain), so digests checked out of order cannot report the logs an earlier,
//    not yet checked, digest lists.
// The key cache is the one piece of shared state: a Mutex (Synchronization) over regions' key sets.
import AWS
import Crypto
import Foundation
import Integrity
import Journal
import Logging
import Stages
import Synchronization

/// CloudTrail's public keys by region: fetched once and again when a digest names a key not yet seen
/// (CloudTrail rotates them), kept in the journal (a restart or a CloudTrail outage does not stop the
/// checks), or read from files.
final class PublicKeyCache: Sendable {
    private let fixed: PublicKeySet?
    private let fetch: @Sendable (String, Date, Date) async throws -> [[UInt8]]
    private let journal: Journal?
    private let cache = Mutex<[String: (keys: PublicKeySet, at: Date)]>([:])

    init(fixed: PublicKeySet?, journal: Journal?, fetch: @escaping @Sendable (String, Date, Date) async throws -> [[UInt8]]) {
        self.fixed = fixed
        self.journal = journal
        self.fetch = fetch
    }

    /// The keys of `region` that should hold `fingerprint` for a digest ending at `time`.
    func keys(region: String, fingerprint: String, time: Date) async throws -> PublicKeySet {
        if let fixed { return fixed }
        if let hit = cache.withLock({ $0[region] }), hit.keys.key(fingerprint: fingerprint) != nil || Date().timeIntervalSince(hit.at) < 60 {
            return hit.keys
        }
        var keys = PublicKeySet()
        if let stored = try journal?.cachedPublicKeys(region: region) {
            keys = (try? PublicKeySet(pages: stored.pages, source: "the journal's copy")) ?? PublicKeySet()
            if keys.key(fingerprint: fingerprint) != nil {
                remember(region, keys)
                return keys
            }
        }
        // A month around the digest covers rotations on either side.
        let pages = try await fetch(region, time.addingTimeInterval(-30 * 86400), max(time, Date()).addingTimeInterval(3600))
        keys.merge(try PublicKeySet(pages: pages, source: "ListPublicKeys in \(region)"))
        try await journal?.cachePublicKeys(region: region, pages: pages)
        remember(region, keys)
        return keys
    }

    private func remember(_ region: String, _ keys: PublicKeySet) {
        cache.withLock { c in
            var merged = keys
            if let old = c[region]?.keys { merged.merge(old) }
            c[region] = (merged, Date())
        }
    }
}

struct DigestCheck: Sendable {
    let s3: S3Client
    let journal: Journal
    let keys: PublicKeyCache
    /// Requests in flight for one digest's logs.
    var concurrency = 8
    /// How long before a digest's hour a log must have been delivered for that digest to report it as
    /// listed by none: CloudTrail lists a late file in a backfill digest, after the hour's own.
    static let notCoveredGrace: TimeInterval = 3600

    struct Outcome {
        /// `{"Records":[finding, …]}`: the digest object's body as stored.
        var body: [UInt8]
        var findings: [Finding]
        var verdict: IntegrityVerdict
        var valid: Bool
    }

    /// Checks the digest `key` of `bucket`, given its stored bytes and S3 metadata.
    func check(bucket: String, key: String, gzipped: [UInt8], metadata: [String: String]) async throws -> Outcome {
        var verdict = IntegrityVerdict(bucket: bucket, key: key)
        var findings: [Finding] = []
        var body: DigestBody?
        var object: DigestObject?
        do {
            let o = try DigestObject.fromStored(bucket: bucket, key: key, gzipped: gzipped, metadata: metadata)
            object = o
            body = try o.body()
        } catch {
            findings.append(Finding(kind: .digestInvalid, bucket: bucket, key: key, detail: "invalid format: \(error)"))
        }
        if let o = object, let b = body {
            let region = DigestKey(key)?.scope.region ?? ""
            let end = TrailKeys.isoDate(b.digestEndTime) ?? Date()
            let keySet = try await keys.keys(region: region, fingerprint: b.digestPublicKeyFingerprint, time: o.backfillGenerationTimestamp.flatMap(TrailKeys.isoDate) ?? end)
            if let reason = Audit.verdict(o, b, keys: keySet) {
                findings.append(Finding(kind: .digestInvalid, bucket: bucket, key: key, detail: reason))
                body = nil
            }
        }
        // Remembered valid or not: its successor must not report an invalid one a second time.
        verdict.seen = object.map { IntegrityDigestSeen(sha256: Hex.decode($0.sha256) ?? [], signature: $0.signature ?? "", valid: body != nil) }
        guard object != nil, let body else { return finish(verdict, findings, valid: false, bucket: bucket, key: key, endTime: nil) }

        // The link to the previous digest: it must exist and be the one this digest recorded.
        var predecessorVerified = body.previousDigestS3Object == nil
        if let previous = body.previousDigestS3Object {
            let previousBucket = body.previousDigestS3Bucket ?? bucket
            if let seen = try journal.digestSeen(bucket: previousBucket, key: previous) {
                // Checked here already: an invalid one was reported then.
                predecessorVerified = seen.valid
                if seen.valid, let recorded = body.previousDigestHashValue, recorded.lowercased() != Hex.encode(seen.sha256) {
                    findings.append(Finding(kind: .digestInvalid, bucket: previousBucket, key: previous, detail: "its SHA-256 is not the one \(key) recorded"))
                }
            } else {
                switch try await s3.uncompressedSHA256(bucket: previousBucket, key: previous).0 {
                case .missing:
                    findings.append(Finding(kind: .digestMissing, bucket: previousBucket, key: previous, detail: "not found: \(key) names it as its previous digest"))
                case .hash(let h):
                    if let recorded = body.previousDigestHashValue, recorded.lowercased() != h {
                        findings.append(Finding(kind: .digestInvalid, bucket: previousBucket, key: previous, detail: "its SHA-256 is not the one \(key) recorded"))
                    }
                case .unreadable(let why):
                    findings.append(Finding(kind: .digestInvalid, bucket: previousBucket, key: previous, detail: "invalid format (\(why)); \(key) names it as its previous digest"))
                }
            }
        }

        // Each listed log: the hash this instance took at fetch, or else fetched now.
        let listed = body.logFiles
        let observed = try await concurrentMap(listed, limit: concurrency) { log -> (LogObservation, Bool) in
            if let pending = try journal.pendingLog(bucket: log.s3Bucket, key: log.s3Object) { return (.hash(Hex.encode(pending.sha256)), true) }
            return (try await s3.uncompressedSHA256(bucket: log.s3Bucket, key: log.s3Object).0, false)
        }
        for (log, (seen, _)) in zip(listed, observed) {
            if let f = Audit.log(bucket: log.s3Bucket, key: log.s3Object, expected: log.hashValue.lowercased(), digest: key, seen) {
                findings.append(f)
                verdict.settled.append((log.s3Bucket, log.s3Object))
            } else {
                verdict.verified.append((log.s3Bucket, log.s3Object))
            }
        }

        // Logs fetched here, delivered more than `notCoveredGrace` before this digest's hour, that no
        // digest listed (the grace leaves room for a late file's backfill digest).
        if predecessorVerified, let d = DigestKey(key), !d.backfill, let start = TrailKeys.isoDate(body.digestStartTime) {
            let listedKeys = Set(listed.map { $0.s3Bucket + "/" + $0.s3Object })
            let before = Timestamp((start.timeIntervalSince1970 - DigestCheck.notCoveredGrace) * 1000)
            for log in try journal.pendingLogs(scope: d.scope.description, deliveredBefore: before)
            where !listedKeys.contains(log.bucket + "/" + log.key) {
                findings.append(Finding(kind: .logNotCovered, bucket: log.bucket, key: log.key, detail: "listed by no valid digest, though \(key), of an hour well after its delivery, was checked"))
                verdict.notCovered.append((log.bucket, log.key))
            }
        }
        return finish(verdict, findings, valid: true, bucket: bucket, key: key, endTime: body.digestEndTime)
    }

    private func finish(_ verdict: IntegrityVerdict, _ findings: [Finding], valid: Bool, bucket: String, key: String, endTime: String?) -> Outcome {
        var verdict = verdict
        var records: [[UInt8]] = []
        // The digest's end, from its body or else its key: a finding's time (and so its event's) is stable.
        let time = endTime ?? DigestKey(key).map { ISO8601DateFormatter().string(from: $0.end) } ?? "1970-01-01T00:00:00Z"
        for f in findings.sorted() {
            let id = Hex.encode(SHA256.hash(data: Array("\(bucket)/\(key)\u{0}\(f.kind)\u{0}\(f.bucket)/\(f.key)".utf8)).prefix(16))
            var o: [String: Any] = [
                "type": "CloudTrailIntegrity", "eventID": id, "eventTime": time, "kind": f.kind.rawValue,
                "bucket": f.bucket, "key": f.key, "detail": f.detail, "digest": "s3://\(bucket)/\(key)",
            ]
            o["account"] = f.account
            o["region"] = f.region
            o["trail"] = f.trail ?? DigestKey(key)?.trail
            let json = Array((try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data())
            records.append(json)
            verdict.findings.append((f.kind.rawValue, json))
        }
        var body = Array("{\"Records\":[".utf8)
        for (i, r) in records.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            body += r
        }
        body += Array("]}".utf8)
        return Outcome(body: body, findings: findings.sorted(), verdict: verdict, valid: valid)
    }
}
