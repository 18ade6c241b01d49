import AWS
import Crypto
import Foundation
import Integrity
import Logging
import Stages
import Synchronization

/// `cloudtrailbeat verify`: CloudTrail's log-file validation over a whole bucket — every account,
/// region and trail at once — with many requests in flight.
///
/// It lists `…/CloudTrail-Digest/<region>/` and `…/CloudTrail/<region>/` of every account under the
/// prefix (only the days of the window), loads every digest in the window with its metadata, checks
/// signatures and links (Integrity's `Audit`), then fetches each log a valid digest lists and compares
/// the SHA-256 of its uncompressed bytes. Memory: one digest's JSON per digest (they are small); log
/// bodies are hashed as they stream and never kept.
public struct Verify: Sendable {
    public struct Options: Sendable {
        public var prefix = ""
        /// Logs delivered from this day on; digests ending from it on (nil: everything).
        public var since: Date?
        /// Logs delivered up to this moment (nil: now); digests up to a day later, for the logs that spill over.
        public var until: Date?
        /// Requests in flight.
        public var concurrency = 32
        /// `--state FILE`: the hashes of logs already fetched, appended as they are taken; a run that
        /// finds the file resumes (those logs are not fetched again).
        public var statePath: String?
        public init() {}
    }

    public let s3: S3Client
    public let bucket: String
    public let options: Options
    /// The public keys of a region (from a file, or `ListPublicKeys` in that region).
    public let publicKeys: @Sendable (_ region: String, _ from: Date, _ to: Date) async throws -> PublicKeySet
    let progress: @Sendable (String) -> Void

    public init(s3: S3Client, bucket: String, options: Options, publicKeys: @escaping @Sendable (String, Date, Date) async throws -> PublicKeySet, progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.s3 = s3
        self.bucket = bucket
        self.options = options
        self.publicKeys = publicKeys
        self.progress = progress
    }

    /// What one run saw, beyond the verdicts: for the summary and the benchmark.
    public struct Counts: Sendable {
        public var digestsListed = 0
        public var logsListed = 0
        public var logsFetched = 0
        public var bytesFetched: UInt64 = 0
    }

    public func run() async throws -> (AuditReport, Counts) {
        var counts = Counts()
        let partitions = try await discover()
        var digestKeys: [String] = []
        var logKeys: [String] = []
        let dayBefore = options.since.map { $0.addingTimeInterval(-86400) }
        let dayAfter = (options.until ?? Date()).addingTimeInterval(86400)
        for partition in partitions {
            for key in try await listWindow(partition, from: dayBefore, to: dayAfter) {
                if let d = DigestKey(key) {
                    if let since = options.since, d.end < since { continue }
                    if d.end > dayAfter { continue }
                    digestKeys.append(key)
                } else if let l = LogKey(key) {
                    if let since = options.since, l.delivered < since { continue }
                    if let until = options.until, l.delivered > until { continue }
                    logKeys.append(key)
                }
            }
        }
        counts.digestsListed = digestKeys.count
        counts.logsListed = logKeys.count
        progress("verify: \(digestKeys.count) digests, \(logKeys.count) logs listed")

        // Digests, with their metadata.
        let loads = try await concurrentMap(digestKeys, limit: options.concurrency) { key -> (String, DigestLoad) in
            var body: [UInt8] = []
            let info = try await s3.get(bucket: bucket, key: key) { body += $0 }
            do {
                return (key, .loaded(try DigestObject.fromStored(bucket: bucket, key: key, gzipped: body, metadata: info.metadata)))
            } catch {
                return (key, .unreadable("invalid format: \(error)"))
            }
        }
        var byKey: [String: DigestLoad] = [:]
        for (k, l) in loads { byKey[k] = l }
        // Keys of every region that has digests, for the digests' span (backfill ones by their generation time).
        var spans: [String: (Date, Date)] = [:]
        for (key, load) in byKey {
            guard let d = DigestKey(key) else { continue }
            var t = d.end
            if case .loaded(let o) = load, let g = o.backfillGenerationTimestamp.flatMap(TrailKeys.isoDate) { t = g }
            let s = spans[d.scope.region] ?? (t, t)
            spans[d.scope.region] = (min(s.0, t), max(s.1, t))
        }
        var keys: [String: PublicKeySet] = [:]
        for (region, span) in spans.sorted(by: { $0.key < $1.key }) {
            keys[region] = try await publicKeys(region, span.0.addingTimeInterval(-7200), span.1.addingTimeInterval(7200))
        }
        var (valid, findings) = Audit.digests(byKey, bucket: bucket, keys: { keys[$0] ?? PublicKeySet() }, since: options.since)
        progress("verify: \(valid.count) of \(digestKeys.count) digests valid; checking the logs they list")

        // Each log a valid digest lists: hashed as it streams.
        let listed = Audit.listedLogs(valid)
        let state = try options.statePath.map(VerifyState.init)
        if let state, state.count > 0 { progress("verify: resuming: \(state.count) logs hashed by an earlier run are not fetched again") }
        let observed = try await concurrentMap(listed, limit: options.concurrency) { log -> (LogObservation, UInt64) in
            if let hash = state?.hash(bucket: log.bucket, key: log.key) { return (.hash(hash), 0) }
            let seen = try await s3.uncompressedSHA256(bucket: log.bucket, key: log.key)
            if case .hash(let h) = seen.0 { try state?.record(bucket: log.bucket, key: log.key, hash: h) }
            return seen
        }
        try state?.close()
        var report = AuditReport()
        for (log, (seen, bytes)) in zip(listed, observed) {
            counts.bytesFetched += bytes
            if seen != .missing && bytes > 0 { counts.logsFetched += 1 }
            if let f = Audit.log(bucket: log.bucket, key: log.key, expected: log.hash, digest: log.digest, seen) { findings.append(f) } else { report.validLogs += 1 }
        }
        findings += Audit.notCovered(logsInBucket: logKeys, bucket: bucket, valid: valid)
        report.validDigests = valid
        report.findings = findings.sorted()
        return (report, counts)
    }

    /// `…/AWSLogs/[o-…/]account/{CloudTrail,CloudTrail-Digest}/region/` under the prefix.
    func discover() async throws -> [String] {
        var roots: [String] = []
        var queue = [(options.prefix.range(of: "AWSLogs/").map { String(options.prefix[..<$0.lowerBound]) } ?? options.prefix, 0)]
        while let (p, depth) = queue.popLast() {
            for child in try await children(p) {
                if child.hasSuffix("/AWSLogs/") || child == "AWSLogs/" { roots.append(child) } else if depth < 3 { queue.append((child, depth + 1)) }
            }
        }
        var regions: [String] = []
        for root in roots.sorted() {
            var accounts: [String] = []
            for child in try await children(root) {
                if child.dropFirst(root.count).hasPrefix("o-") { accounts += try await children(child) } else { accounts.append(child) }
            }
            for account in accounts {
                for service in try await children(account) {
                    let name = service.dropFirst(account.count).dropLast()
                    guard name == "CloudTrail" || name == "CloudTrail-Digest" else { continue }
                    regions += try await children(service)
                }
            }
        }
        // A prefix that goes below AWSLogs/ keeps the partitions it names (or that name it).
        return regions.filter { $0.hasPrefix(options.prefix) || options.prefix.hasPrefix($0) }.sorted()
    }

    func children(_ prefix: String) async throws -> [String] {
        var out: [String] = []
        var token: String?
        repeat {
            let page = try await s3.list(bucket: bucket, prefix: prefix, delimiter: "/", continuationToken: token)
            out += page.commonPrefixes
            token = page.isTruncated ? page.nextContinuationToken : nil
        } while token != nil
        return out
    }

    /// Keys of a region partition whose day lies in the window (`region/YYYY/MM/DD/…`).
    func listWindow(_ partition: String, from: Date?, to: Date) async throws -> [String] {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy/MM/dd"
        let last = partition + f.string(from: to) + "/\u{10FFFF}"
        var keys: [String] = []
        var token: String?
        let startAfter = from.map { partition + f.string(from: $0) }
        repeat {
            let page = try await s3.list(bucket: bucket, prefix: partition, startAfter: token == nil ? startAfter : nil, continuationToken: token)
            for o in page.objects {
                if o.key > last { return keys }
                keys.append(o.key)
            }
            token = page.isTruncated ? page.nextContinuationToken : nil
        } while token != nil
        return keys
    }
}

extension Verify {
    /// The readable summary: counts, then every finding with its reason.
    public static func summary(_ report: AuditReport, _ counts: Counts, seconds: Double) -> String {
        var lines: [String] = []
        let digestsBad = report.findings(.digestInvalid).count + report.findings(.digestMissing).count
        let logsBad = report.findings.count - digestsBad
        lines.append("\(report.validDigests.count)/\(report.validDigests.count + digestsBad) digest files valid" + (digestsBad > 0 ? ", \(digestsBad) INVALID or missing" : ""))
        lines.append("\(report.validLogs)/\(report.validLogs + logsBad) log files valid" + (logsBad > 0 ? ", \(logsBad) modified, missing or not covered" : ""))
        for f in report.findings.sorted() {
            lines.append("\(f.kind)\ts3://\(f.bucket)/\(f.key)\t\(f.detail)")
        }
        let objects = counts.digestsListed + counts.logsFetched
        lines.append(String(format: "%d objects (%d digests, %d logs fetched, %.1f MiB) in %.1f s: %.0f objects/s", objects, counts.digestsListed, counts.logsFetched, Double(counts.bytesFetched) / 1048576, seconds, Double(objects) / max(seconds, 0.001)))
        return lines.joined(separator: "\n")
    }
}

/// `verify --state FILE`: one line per log hashed (`<sha256> <bucket>/<key>`), appended as hashes are
/// taken and synced every 256 lines, so an interrupted run resumes without fetching those logs again.
/// A torn last line (a kill mid-write) is ignored. The lock guards the table and the file together.
final class VerifyState: Sendable {
    private struct Table {
        var hashes: [String: String] = [:]
        var unsynced = 0
        var handle: FileHandle
    }
    private let table: Mutex<Table>

    init(path: String) throws {
        if !FileManager.default.fileExists(atPath: path), !FileManager.default.createFile(atPath: path, contents: nil) {
            throw ConfigError(file: path, key: "--state", message: "cannot create '\(path)'")
        }
        guard let data = FileManager.default.contents(atPath: path), let handle = FileHandle(forWritingAtPath: path) else {
            throw ConfigError(file: path, key: "--state", message: "cannot read and write '\(path)'")
        }
        // Whole lines only: a torn last one (a kill mid-write) is cut off, so it cannot swallow the next.
        let whole = data.lastIndex(of: 0x0a).map { $0 + 1 } ?? 0
        var hashes: [String: String] = [:]
        for line in data.prefix(whole).split(separator: 0x0a) where line.count > 66 && line[line.startIndex + 64] == 0x20 {
            let hash = String(decoding: line.prefix(64), as: UTF8.self)
            guard Hex.decode(hash)?.count == 32 else { continue }
            hashes[String(decoding: line.dropFirst(65), as: UTF8.self)] = hash
        }
        try handle.truncate(atOffset: UInt64(whole))
        try handle.seekToEnd()
        table = Mutex(Table(hashes: hashes, handle: handle))
    }

    var count: Int { table.withLock { $0.hashes.count } }

    func hash(bucket: String, key: String) -> String? { table.withLock { $0.hashes[bucket + "/" + key] } }

    func record(bucket: String, key: String, hash: String) throws {
        try table.withLock { t in
            t.hashes[bucket + "/" + key] = hash
            try t.handle.write(contentsOf: Data("\(hash) \(bucket)/\(key)\n".utf8))
            t.unsynced += 1
            if t.unsynced >= 256 {
                try t.handle.synchronize()
                t.unsynced = 0
            }
        }
    }

    func close() throws {
        try table.withLock { t in
            try t.handle.synchronize()
            try t.handle.close()
        }
    }
}

extension S3Client {
    /// The SHA-256 of an object's uncompressed bytes, hashed as they stream (nothing kept), and the
    /// bytes fetched; `.missing` on 404, `.unreadable` when it is not gzip.
    func uncompressedSHA256(bucket: String, key: String) async throws -> (LogObservation, UInt64) {
        var hasher = SHA256()
        let gunzip = Gunzip()
        var bytes: UInt64 = 0
        do {
            try await get(bucket: bucket, key: key) { chunk in
                bytes += UInt64(chunk.count)
                try chunk.withUnsafeBytes { try gunzip.push($0) { hasher.update(bufferPointer: $0) } }
            }
            try gunzip.finish { hasher.update(bufferPointer: $0) }
            return (.hash(Hex.encode(hasher.finalize())), bytes)
        } catch let e as AWSError where e.status == 404 {
            return (.missing, bytes)
        } catch let e as GunzipError {
            return (.unreadable("\(e)"), bytes)
        }
    }
}

/// `transform` over `items` with at most `limit` running at once; results in the items' order.
func concurrentMap<T: Sendable, R: Sendable>(_ items: [T], limit: Int, _ transform: @escaping @Sendable (T) async throws -> R) async throws -> [R] {
    try await withThrowingTaskGroup(of: (Int, R).self) { group in
        var results = [R?](repeating: nil, count: items.count)
        var next = 0
        for _ in 0..<min(limit, items.count) {
            let i = next
            group.addTask { (i, try await transform(items[i])) }
            next += 1
        }
        while let (i, r) = try await group.next() {
            results[i] = r
            if next < items.count {
                let j = next
                group.addTask { (j, try await transform(items[j])) }
                next += 1
            }
        }
        return results.map { $0! }
    }
}
