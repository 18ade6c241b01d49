import AWS
import Failures
import Foundation
import Journal
import Logging
import Stages

#if canImport(Glibc)
import Glibc
#endif

/// Where a backfill lists and reads objects: an S3 bucket, or a local copy (`aws s3 sync`).
public protocol BackfillSource: Sendable {
    /// The bucket name used in object identities (`file:///abs/path` for a local copy).
    var bucket: String { get }
    func list(prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int) async throws -> S3ListPage
    /// The source's own clock (the one that dates `lastModified`), in ms since the epoch; read when a
    /// pass begins, it is the next pass's horizon.
    func now(prefix: String) async throws -> Timestamp
    /// How much older than a pass's horizon an object must be dated to count as listed by an earlier
    /// pass (the clock's granularity), in ms. Younger ones are still checked against done markers.
    var clockAllowance: Timestamp { get }
}

public struct S3Source: BackfillSource {
    public let client: S3Client
    public let bucket: String
    public func list(prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int) async throws -> S3ListPage {
        try await client.list(bucket: bucket, prefix: prefix, delimiter: delimiter, startAfter: startAfter, maxKeys: maxKeys)
    }

    /// S3's clock from a one-key listing's `Date` header; without one (an S3-compatible store that does
    /// not send it), this host's clock less 15 minutes, so that a skew cannot hide a new object.
    public func now(prefix: String) async throws -> Timestamp {
        let page = try await client.list(bucket: bucket, prefix: prefix, maxKeys: 1)
        guard let t = page.serverTime else { return Timestamp(Date().timeIntervalSince1970 * 1000) - 15 * 60 * 1000 }
        return Timestamp(t.timeIntervalSince1970 * 1000)
    }

    /// `LastModified` and `Date` have whole seconds: two of them.
    public var clockAllowance: Timestamp { 2000 }
}

/// A local directory read as a bucket: keys are paths relative to the root, in S3's (byte) order.
///
/// A page costs the directories on the way to `startAfter` and the entries it returns, not the whole
/// tree: directories are walked in key order (a directory sorts as its name plus `/`), subtrees wholly
/// before `startAfter` are skipped, and the walk stops once the page is full.
public struct LocalSource: BackfillSource {
    public let root: String
    public var bucket: String { "file://" + root }
    /// Files are dated by this host's own clock, but by the kernel's coarse tick (at most 10 ms
    /// behind): a tenth of a second.
    public var clockAllowance: Timestamp { 100 }
    public func now(prefix: String) async throws -> Timestamp { Timestamp(Date().timeIntervalSince1970 * 1000) }

    public init(root: String) {
        self.root = URL(fileURLWithPath: root).standardizedFileURL.path
    }

    public func list(prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int) async throws -> S3ListPage {
        var walk = LocalWalk(root: root, prefix: prefix, delimiter: delimiter, after: startAfter ?? "", limit: maxKeys)
        // Start in the directory the prefix names; every key below it is a candidate.
        _ = walk.visit(prefix.contains("/") ? String(prefix[..<prefix.lastIndex(of: "/")!]) : "")
        return S3ListPage(objects: walk.objects, commonPrefixes: walk.prefixes, isTruncated: walk.truncated, nextContinuationToken: nil)
    }
}

/// One page of a `LocalSource` listing.
struct LocalWalk {
    let root: String
    let prefix: String
    let delimiter: String?
    let after: String
    let limit: Int
    var objects: [S3ListPage.Entry] = []
    var prefixes: [String] = []
    var truncated = false

    /// S3's order: the keys' UTF-8 bytes (memcmp: a local directory's entries are sorted at every page).
    static func precedes(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let n = min(x.count, y.count)
                let c = n == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, n)
                return c != 0 ? c < 0 : x.count < y.count
            }
        }
    }

    /// Adds a key or a common prefix; false once the page is full (there is more: truncated).
    private mutating func add(key: String? = nil, commonPrefix: String? = nil) -> Bool {
        if let commonPrefix, prefixes.last == commonPrefix { return true }
        if objects.count + prefixes.count == limit {
            truncated = true
            return false
        }
        if let commonPrefix { prefixes.append(commonPrefix) }
        if let key {
            // Last modified: when the file arrived here (its inode's change time), not the modification
            // time `aws s3 sync` copies from S3, so a repeat pass finds files synced since the last one.
            var st = stat()
            let found = stat(root + "/" + key, &st) == 0
            let seconds = { (t: timespec) in Double(t.tv_sec) + Double(t.tv_nsec) / 1e9 }
            let arrived = found ? max(seconds(st.st_ctim), seconds(st.st_mtim)) : 0
            objects.append(.init(key: key, size: found ? UInt64(st.st_size) : 0, etag: "",
                                 lastModified: found ? Date(timeIntervalSince1970: arrived) : nil))
        }
        return true
    }

    /// The common prefix `key` rolls into under the delimiter, if any.
    private func rollUp(_ key: String) -> String? {
        guard let delimiter, key.hasPrefix(prefix) else { return nil }
        let rest = key.dropFirst(prefix.count)
        guard let d = rest.range(of: delimiter) else { return nil }
        return prefix + rest[..<d.upperBound]
    }

    /// Visits `dir` (relative to the root) in key order; false once the page is full.
    mutating func visit(_ dir: String) -> Bool {
        for (key, isDirectory) in LocalWalk.entries(root: root, dir: dir) {
            if isDirectory {
                // Every key below starts with `key` (which ends in "/").
                guard key.hasPrefix(prefix) || prefix.hasPrefix(key) else { continue }
                if let cp = rollUp(key) {  // the whole subtree rolls into it
                    if LocalWalk.precedes(after, cp), !add(commonPrefix: cp) { return false }
                    continue
                }
                if !LocalWalk.precedes(after, key) && !after.hasPrefix(key) { continue }  // all of it is before startAfter
                if !visit(String(key.dropLast())) { return false }
            } else {
                guard key.hasPrefix(prefix) else { continue }
                if let cp = rollUp(key) {
                    if LocalWalk.precedes(after, cp), !add(commonPrefix: cp) { return false }
                    continue
                }
                if LocalWalk.precedes(after, key), !add(key: key) { return false }
            }
        }
        return true
    }

    /// A directory's entries as keys (directories with a trailing "/"), in byte order.
    static func entries(root: String, dir: String) -> [(key: String, isDirectory: Bool)] {
        let path = dir.isEmpty ? root : root + "/" + dir
        guard let stream = opendir(path) else { return [] }
        defer { closedir(stream) }
        var out: [(key: String, isDirectory: Bool)] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            let key = dir.isEmpty ? name : dir + "/" + name
            var isDirectory = Int32(entry.pointee.d_type) == Int32(DT_DIR)
            if Int32(entry.pointee.d_type) == Int32(DT_UNKNOWN) || Int32(entry.pointee.d_type) == Int32(DT_LNK) {
                var flag: ObjCBool = false
                isDirectory = FileManager.default.fileExists(atPath: root + "/" + key, isDirectory: &flag) && flag.boolValue
            }
            out.append((isDirectory ? key + "/" : key, isDirectory))
        }
        return out.sorted { precedes($0.key, $1.key) }
    }
}

/// A resumable walk over existing logs. Partitions (account × region, or account × region × day with a
/// window) are discovered once and stored as journal cursors; each listing page's objects and the
/// partition's new cursor commit in one transaction, so a kill -9 resumes exactly: never from zero,
/// never skipping a key.
public final class Backfill: @unchecked Sendable {
    public struct Options: Sendable {
        public var prefix = ""
        public var since: Date?
        public var until: Date?
        public var force = false
        /// Send notifications to the queue instead of processing (fan-out over a fleet).
        public var enqueue = false
        public var pageSize = 1000
        /// Bucket polling (`input.bucket_list_interval`): a pass lists each CloudTrail partition from the
        /// day before the previous pass began, not from its first day (CloudTrail writes new files under
        /// the day they are delivered).
        public var polling = false
        public var workers = 4
        /// Pause listing while this many objects wait in the journal (the CLI sets four rounds of
        /// `input.fetch_concurrency`, so the next page is listed while the current one is fetched).
        public var maxPending = 256
        /// `input.accounts` (and `input.buckets`): objects of other accounts are not journaled nor sent.
        public var policy = SourcePolicy()
        /// List the `CloudTrail-Digest` partitions too (`integrity.enabled`): digests are checked as they come.
        public var digests = false
        public init() {}
    }

    let source: any BackfillSource
    let options: Options
    let journal: Journal
    let sqs: SQSClient?
    let logger: Logger
    public let job: String
    private let lock = NSLock()
    public private(set) var listCalls = 0
    private var finished = false

    public init(source: any BackfillSource, options: Options, journal: Journal, sqs: SQSClient?, logger: Logger) {
        self.source = source
        self.options = options
        self.journal = journal
        self.sqs = sqs
        self.logger = logger
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withFullDate]
        job = "\(source.bucket)|\(options.prefix)|\(options.since.map(f.string) ?? "")|\(options.until.map(f.string) ?? "")\(options.enqueue ? "|enqueue" : "")"
    }

    public var isFinished: Bool { lock.withLock { finished } }

    private func list(_ prefix: String, delimiter: String? = nil, startAfter: String? = nil) async throws -> S3ListPage {
        try await retrying("ListObjectsV2 \(prefix)") {
            self.lock.withLock { self.listCalls += 1 }
            return try await self.source.list(prefix: prefix, delimiter: delimiter, startAfter: startAfter, maxKeys: self.options.pageSize)
        }
    }

    /// Runs `body` until it succeeds or fails with what no retry mends: an error the client already
    /// retried that may still pass later (network, 5xx, throttling, no credentials for now) waits
    /// 2 s, doubling to 5 min, and is logged — a multi-day backfill outlives an outage instead of
    /// ending in it (a one-shot run gives up after eight waits, about eight minutes, resumable).
    /// Refusals (access denied, no such bucket) end the run at once, resumable.
    private func retrying<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        var failures = 0
        while true {
            do {
                return try await body()
            } catch let e where [.retry, .wait].contains(Disposition.of(e)) && (options.polling || failures < 8) {
                // A daemon (bucket polling) waits for ever; a one-shot run gives up after about 8 minutes.
                failures += 1
                let wait = min(300, pow(2, Double(min(failures, 9))))
                logger.warning("\(what) failed; retrying in \(Int(wait))s", metadata: ["error": "\(e)", "failures": "\(failures)"], source: LogStage.backfill.rawValue)
                try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
            }
        }
    }

    /// Every common prefix under `prefix` (following pages).
    private func children(_ prefix: String) async throws -> [String] {
        var out: [String] = []
        var after: String?
        while true {
            let page = try await list(prefix, delimiter: "/", startAfter: after)
            out += page.commonPrefixes
            guard page.isTruncated, let last = (page.commonPrefixes + page.objects.map(\.key)).max() else { return out }
            after = last
        }
    }

    /// The partitions to list: `…/CloudTrail[-Insight]/<region>/` (and day prefixes with a window).
    func discover() async throws -> [String] {
        let prefix = options.prefix
        var regions: [String] = []
        if let range = prefix.range(of: "AWSLogs/") {
            // A prefix inside the layout: list it as one partition, narrowed by the window if it names a region.
            let rest = prefix[range.upperBound...].split(separator: "/", omittingEmptySubsequences: false)
            if rest.contains(where: { $0 == "CloudTrail" || $0 == "CloudTrail-Insight" }) && rest.count >= 3 && prefix.hasSuffix("/") {
                regions = [prefix]
            } else if rest.count <= 1 || (rest.count == 2 && rest[0].hasPrefix("o-")) {
                regions = try await regionsUnder(accountsRoot: prefix)
            } else {
                return [prefix]
            }
        } else {
            let root = prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/"
            let top = try await children(root)
            if top.contains(root + "AWSLogs/") {
                regions = try await regionsUnder(accountsRoot: root + "AWSLogs/")
            } else {
                return [prefix]  // not the CloudTrail layout: one flat partition
            }
        }
        guard let since = options.since else { return regions }
        let until = options.until ?? Date()
        var out: [String] = []
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        for region in regions {
            var day = cal.startOfDay(for: since)
            while day <= until {
                let c = cal.dateComponents([.year, .month, .day], from: day)
                out.append(region + String(format: "%04d/%02d/%02d/", c.year!, c.month!, c.day!))
                day = cal.date(byAdding: .day, value: 1, to: day)!
            }
        }
        return out
    }

    /// accounts (and org ids) → services → regions.
    private func regionsUnder(accountsRoot: String) async throws -> [String] {
        var regions: [String] = []
        var accounts: [String] = []
        let root = accountsRoot.hasSuffix("/") ? accountsRoot : accountsRoot + "/"
        let isOrgRoot = root.split(separator: "/").last?.hasPrefix("o-") ?? false
        for child in try await children(root) {
            let name = child.dropFirst(root.count).dropLast()
            if name.hasPrefix("o-") && !isOrgRoot { accounts += try await children(child) } else { accounts.append(child) }
        }
        for account in accounts {
            for service in try await children(account) {
                let name = service.dropFirst(account.count).dropLast()
                // Digests carry no records: listed only for integrity validation.
                guard name == "CloudTrail" || name == "CloudTrail-Insight" || (options.digests && name == "CloudTrail-Digest") else { continue }
                regions += try await children(service)
            }
        }
        return regions.sorted(by: Backfill.walkedBefore)
    }

    /// The order partitions are walked in: key order, but digests (listed for integrity validation) after
    /// every log, so that each digest finds the logs it lists journaled and waits for their fetch rather
    /// than download them a second time.
    static func walkedBefore(_ a: String, _ b: String) -> Bool {
        (a.contains("/CloudTrail-Digest/") ? 1 : 0, a) < (b.contains("/CloudTrail-Digest/") ? 1 : 0, b)
    }

    /// What the last completed pass found: objects journaled (or enqueued), objects skipped as listed
    /// by an earlier pass, and objects of accounts `input.accounts` does not list.
    public private(set) var lastPass = (pass: UInt64(0), new: UInt64(0), earlier: UInt64(0), refused: UInt64(0))

    /// The partition of a flat listing of the whole bucket (a prefix of "" is the job's marker).
    static let wholeBucket = "*"

    /// Lists every partition to its end, journaling what it finds (or enqueueing it).
    ///
    /// A job whose every partition is listed already starts a new pass: partitions are discovered again
    /// (new accounts, regions, days) and each is listed again from its start, journaling only objects
    /// modified since that partition's listing began in the previous pass (S3's clock, read from the
    /// first page's `Date`), and, within the clock allowance, not marked done. With `force`, every
    /// object is journaled again, finished or not, whether GC collected it or not; a forced pass
    /// interrupted by a kill goes on forced when run again (with `--force` or without), and a new one
    /// begins only once it finished.
    public func run() async throws {
        lock.withLock { finished = false }
        var cursors = try journal.cursors(job: job)
        var marker = cursors.first { $0.partition == "" }
        let partitions = cursors.filter { $0.partition != "" }
        let finishedBefore = marker?.complete == true && partitions.allSatisfy(\.complete)
        let resumeForced = marker?.forced == true && !finishedBefore
        if (options.force && !resumeForced) || (finishedBefore && !resumeForced) {
            // A new pass, committed in one transaction: every partition rewound, its horizon set.
            let previous = marker ?? BackfillCursor(job: job, partition: "", pass: 0)
            // The pass's own start: the source's clock when the previous pass began (journals from before
            // passes kept no such time: their discovery commit, less a quarter of an hour for the skew).
            let began = previous.started > 0 ? previous.started : previous.updated - 15 * 60 * 1000
            let forced = options.force
            let next = BackfillCursor(job: job, partition: "", pass: previous.pass + 1, horizon: forced ? 0 : began, forced: forced)
            try await journal.saveCursors(
                [next] + partitions.map {
                    BackfillCursor(job: job, partition: $0.partition, pass: next.pass,
                                   horizon: forced ? 0 : ($0.started > 0 ? $0.started : began), forced: forced)
                })
            cursors = try journal.cursors(job: job)
            marker = cursors.first { $0.partition == "" }
        }
        let pass = marker?.pass ?? 1
        let horizon = marker?.horizon ?? 0
        let forced = marker?.forced ?? options.force
        if marker?.complete != true {
            // Before anything is listed: every object dated before this was there for this pass to see.
            let started = try await retrying("reading the source's clock") { try await source.now(prefix: options.prefix) }
            let partitions = try await discover().map { $0.isEmpty ? Backfill.wholeBucket : $0 }
            for p in partitions where !cursors.contains(where: { $0.partition == p }) {
                _ = try await journal.saveListing(BackfillCursor(job: job, partition: p, pass: pass, horizon: horizon, forced: forced), discovered: [])
            }
            _ = try await journal.saveListing(
                BackfillCursor(job: job, partition: "", listed: UInt64(partitions.count), complete: true, pass: pass, horizon: horizon,
                               started: started, forced: forced),
                discovered: [])
            cursors = try journal.cursors(job: job)
            logger.info(
                "backfill: partitions discovered",
                metadata: ["job": "\(StatusReport.describe(job: job))", "partitions": "\(partitions.count)", "pass": "\(pass)"]
                    .merging(horizon > 0 ? ["newSince": "\(Date(timeIntervalSince1970: Double(horizon) / 1000).formatted(.iso8601))"] : [:]) { a, _ in a },
                source: LogStage.backfill.rawValue)
        }
        let open = cursors.filter { $0.partition != "" && !$0.complete }.sorted { Backfill.walkedBefore($0.partition, $1.partition) }
        lock.withLock {
            skippedEarlier = 0
            refusedAccounts = 0
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            var iterator = open.makeIterator()
            for _ in 0..<max(1, options.workers) {
                guard let c = iterator.next() else { break }
                group.addTask { try await self.walk(c) }
            }
            while try await group.next() != nil {
                if let c = iterator.next() { group.addTask { try await self.walk(c) } }
            }
        }
        let listed = try journal.cursors(job: job).filter { $0.partition != "" }.reduce(0) { $0 + $1.listed }
        lock.withLock {
            lastPass = (pass, listed, skippedEarlier, refusedAccounts)
            finished = true
        }
    }

    private var skippedEarlier: UInt64 = 0
    private var refusedAccounts: UInt64 = 0

    /// Whether an object listed in a pass with `horizon` was there when the previous pass listed (so it
    /// was journaled then, or deliberately skipped). Objects without a date are never skipped here.
    static func listedEarlier(_ lastModified: Date?, horizon: Timestamp, allowance: Timestamp) -> Bool {
        guard horizon > 0, let lastModified else { return false }
        return Timestamp(lastModified.timeIntervalSince1970 * 1000) < horizon - allowance
    }

    /// Where a polling pass starts listing a CloudTrail partition (`…/CloudTrail/<region>/`): after
    /// the day before the horizon (less the clock allowance), since CloudTrail writes a file under the
    /// day it delivers it. Nil for anything else (lists from the start).
    static func pollingStart(partition: String, horizon: Timestamp, allowance: Timestamp) -> String? {
        guard horizon > 0, partition.hasSuffix("/") else { return nil }
        let parts = partition.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[parts.count - 3] == "CloudTrail" || parts[parts.count - 3] == "CloudTrail-Insight" else { return nil }
        let day = Date(timeIntervalSince1970: Double(horizon - allowance) / 1000 - 86400)
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        let c = cal.dateComponents([.year, .month, .day], from: day)
        return partition + String(format: "%04d/%02d/%02d", c.year!, c.month!, c.day!)  // sorts before that day's keys
    }

    private func walk(_ start: BackfillCursor) async throws {
        var cursor = start
        let prefix = cursor.partition == Backfill.wholeBucket ? "" : cursor.partition
        if options.polling, cursor.lastKey == nil, let from = Backfill.pollingStart(partition: prefix, horizon: cursor.horizon, allowance: source.clockAllowance) {
            cursor.lastKey = from
        }
        while !cursor.complete {
            try Task.checkCancellation()
            if !options.enqueue {
                // Backpressure: bounded objects in flight, and no listing while the journal is near max_size.
                while true {
                    let generation = journal.changes.generation(.finished)
                    guard try journal.countObjects(in: [.received, .fetched, .emitting]) >= options.maxPending || journal.nearlyFull() else { break }
                    // Woken by objects finishing or GC freeing pages, at most every 20 ms (counting scans the objects).
                    await journal.changes.wait(.finished, since: generation, timeout: 0.5, pause: 0.02)
                    try Task.checkCancellation()
                }
            }
            // The partition's own start in this pass, by the source's clock: the next pass's horizon. A
            // local copy's clock is read before its first page; S3's is the first page's `Date`.
            let localStart = cursor.started == 0 && source is LocalSource ? try await source.now(prefix: prefix) : nil
            let page = try await list(prefix, startAfter: cursor.lastKey)
            if cursor.started == 0 {
                if let localStart {
                    cursor.started = localStart
                } else if let t = page.serverTime {
                    cursor.started = Timestamp(t.timeIntervalSince1970 * 1000)
                } else {
                    cursor.started = try await source.now(prefix: options.prefix)  // no Date: this host's clock less 15 min
                }
            }
            let listedNow = page.objects.filter { !$0.key.hasSuffix("/") }
            let fresh = listedNow.filter { !Backfill.listedEarlier($0.lastModified, horizon: cursor.horizon, allowance: source.clockAllowance) }
            let objects = fresh.filter { options.policy.refusal(accountOf: $0.key) == nil }
            lock.withLock {
                skippedEarlier += UInt64(listedNow.count - fresh.count)
                refusedAccounts += UInt64(fresh.count - objects.count)
            }
            let before = cursor
            cursor.lastKey = page.objects.last?.key ?? cursor.lastKey
            cursor.listed += UInt64(objects.count)
            cursor.listedBytes += objects.reduce(0) { $0 + $1.size }
            cursor.complete = !page.isTruncated
            if options.enqueue, let sqs {
                // Several keys per message, ten messages per batch; the cursor moves only after SQS took them.
                let bodies = stride(from: 0, to: objects.count, by: 10).map { i -> String in
                    let keys = objects[i..<min(objects.count, i + 10)].map(\.key)
                    let data = try! JSONSerialization.data(withJSONObject: ["s3Bucket": source.bucket, "s3ObjectKey": keys], options: [.withoutEscapingSlashes])
                    return String(decoding: data, as: UTF8.self)
                }
                let failed = try await sqs.sendBatch(bodies)
                if let f = failed.first { throw AWSError(kind: .server, code: f.failure.code, message: f.failure.message, requestID: nil, status: nil, service: "sqs", operation: "SendMessageBatch") }
                _ = try await journal.saveListing(cursor, discovered: [])
            } else {
                let discovered = objects.map { DiscoveredObject(ObjectRef(bucket: source.bucket, key: $0.key, version: $0.etag), size: $0.size) }
                do {
                    _ = try await journal.saveListing(cursor, discovered: discovered, force: cursor.forced)
                } catch let e as JournalError where e.code == .full {
                    // The page was not journaled: list it again once GC has freed room.
                    logger.debug("journal full: the page is listed again later", metadata: ["partition": "\(cursor.partition)", "error": "\(e)"], source: LogStage.backfill.rawValue)
                    cursor = before
                    try await Task.sleep(nanoseconds: 1_000_000_000)
                    continue
                }
            }
            logger.debug("page listed", metadata: ["partition": "\(cursor.partition)", "objects": "\(objects.count)", "after": "\(cursor.lastKey ?? "")", "complete": "\(cursor.complete)"], source: LogStage.backfill.rawValue)
        }
    }
}

/// Progress of a backfill: a live line on a terminal, otherwise a log line every few seconds.
final class BackfillProgress: @unchecked Sendable {
    let journal: Journal
    let job: String
    let logger: Logger
    let started = Date()
    let tty = isatty(2) != 0

    init(journal: Journal, job: String, logger: Logger) {
        self.journal = journal
        self.job = job
        self.logger = logger
    }

    func line() -> String {
        let cursors = (try? journal.cursors(job: job).filter { $0.partition != "" }) ?? []
        let listed = cursors.reduce(0) { $0 + $1.listed }
        let bytes = cursors.reduce(0) { $0 + $1.listedBytes }
        let pending = (try? journal.countObjects(in: [.received, .fetched, .emitting])) ?? 0
        let done = max(0, Int(listed) - pending)
        let elapsed = Date().timeIntervalSince(started)
        // A rate (and an ETA) only once there is a second of history to speak for it.
        let rate = elapsed >= 1 ? Double(done) / elapsed : nil
        let complete = cursors.filter(\.complete).count
        var line = String(format: "backfill: %d/%d partitions listed, %llu objects listed (%.1f MB), %d done",
                          complete, cursors.count, listed, Double(bytes) / 1e6, done)
        if let rate { line += String(format: ", %.1f objects/s", rate) }
        if let rate, rate > 0, complete == cursors.count, pending > 0 { line += String(format: ", ETA %.0fs", Double(pending) / rate) }
        return line
    }

    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: tty ? 500_000_000 : 5_000_000_000)
            if tty {
                FileHandle.standardError.write(Data(("\r\u{1b}[K" + line()).utf8))
            } else {
                logger.info("\(line())", source: LogStage.backfill.rawValue)
            }
        }
    }

    func summary() {
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        logger.info("\(line()) — finished in \(String(format: "%.1f", Date().timeIntervalSince(started)))s", source: LogStage.backfill.rawValue)
    }
}
