import Failures
import Foundation
import Journal
import Stages

/// `journal status` as text for people and as one JSON object for scripts.
public struct StatusReport: Sendable {
    public let status: JournalStatus
    public let now: Timestamp
    /// Integrity validation's counts and latest findings (nil: it never ran on this journal).
    public let integrity: IntegrityStatus?

    public init(_ status: JournalStatus, integrity: IntegrityStatus? = nil, now: Timestamp = Timestamp(Date().timeIntervalSince1970 * 1000)) {
        self.status = status
        self.now = now
        self.integrity = integrity.flatMap { $0.counts.isEmpty && $0.pendingLogs == 0 ? nil : $0 }
    }

    /// A finding as kept in the ledger (the record its event was made from).
    struct Finding: Codable {
        var kind: String
        var bucket: String
        var key: String
        var detail: String
        var digest: String
        var eventTime: String
        var account: String?
        var region: String?
        var trail: String?
    }

    struct JSONShape: Encodable {
        struct Quarantined: Encodable {
            var kind: String
            var bucket: String?
            var key: String?
            var version: String?
            var messageId: String?
            var reason: String
            var detail: String?
            var attempts: UInt32
            var firstSeen: String
            var lastSeen: String
        }
        struct Retrying: Encodable {
            var bucket: String
            var key: String
            var version: String
            var attempts: UInt32
            var lastError: String
            var lastAttempt: String
        }
        struct FailingOutput: Encodable {
            var output: String
            var lastError: String
            var since: String
            var updated: String
        }
        struct Backfill: Encodable {
            var job: String
            var partition: String
            var pass: UInt64
            var forced: Bool
            var lastKey: String?
            var listed: UInt64
            var listedBytes: UInt64
            var complete: Bool
            var updated: String
        }
        struct Disk: Encodable {
            var usedBytes: Int
            var mappedBytes: Int
            var fileBytes: Int
            var maxBytes: Int
            /// The smaller of maxBytes and what the filesystem can hold.
            var limitBytes: Int
            var filesystemFreeBytes: Int
        }
        var path: String
        var formatVersion: UInt32
        var objects: [String: Int]
        var messages: [String: Int]
        var quarantined: [Quarantined]
        /// Quarantine entries dropped, oldest first, past `journal.quarantine_max_entries`.
        var quarantineDropped: UInt64
        var retrying: [Retrying]
        var failingOutputs: [FailingOutput]
        /// `{"output","delivered","filtered","deliveries","deliveryObjects"}` per output since the journal
        /// was created: `delivered / deliveries` is the batch size used, `deliveryObjects / deliveries`
        /// the objects one delivery spanned.
        var records: [OutputRecords]
        /// Downloads started and not yet finished (the fetch pool's work in flight).
        var fetchesInProgress: Int
        var backfill: [Backfill]
        var oldestUnacknowledged: String?
        var oldestUnacknowledgedAgeSeconds: Double?
        var doneMarkers: Int
        var bodiesAwaitingGC: Int
        var storedBodyBytes: UInt64
        var bodyChunks: Int
        var disk: Disk
        /// `{"counts": {"digests_verified", "logs_verified", kind…}, "pendingLogs", "recent": [finding…]}`.
        var integrity: Integrity?
        struct Integrity: Encodable {
            var counts: [String: UInt64]
            var pendingLogs: Int
            var recent: [Finding]
        }
    }

    /// A backfill job's identity (`bucket|prefix|since|until[|enqueue]`) for people:
    /// `s3://bucket/prefix since 2026-11-01 until 2026-11-30 (enqueue)`, or the local copy's file URL.
    static func describe(job: String) -> String {
        let parts = job.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 4 else { return job }
        var s = (parts[0].contains("://") ? parts[0] : "s3://" + parts[0])
        if !parts[1].isEmpty { s += (s.hasSuffix("/") || parts[1].hasPrefix("/") ? "" : "/") + parts[1] }
        if !parts[2].isEmpty { s += " since \(parts[2])" }
        if !parts[3].isEmpty { s += " until \(parts[3])" }
        if parts.count > 4 && parts[4] == "enqueue" { s += " (enqueue)" }
        return s
    }

    /// One JSON object, keys sorted; includes `"quarantined": [{"bucket","key","reason",…}]` and
    /// `"retrying": [{"bucket","key","attempts","lastError",…}]` and `"failingOutputs": [{"output","lastError","since",…}]`.
    public func json() -> String {
        let s = status
        var objects: [String: Int] = [:]
        for stage in ObjectStage.allCases { objects[stage.description] = s.objectsByStage[stage] ?? 0 }
        var messages: [String: Int] = [:]
        for state in MessageState.State.allCases { messages[state.description] = s.messagesByState[state] ?? 0 }
        let shape = JSONShape(
            path: s.path, formatVersion: s.formatVersion, objects: objects, messages: messages,
            quarantined: s.quarantined.map {
                .init(
                    kind: $0.kind.description, bucket: $0.object?.bucket, key: $0.object?.key,
                    version: $0.object?.version, messageId: $0.messageID, reason: redactingUserinfo($0.reason),
                    detail: $0.detail.map { $0.utf8.count <= 1024 ? $0 : String(decoding: Array($0.utf8.prefix(1024)), as: UTF8.self) + "…" },
                    attempts: $0.attempts, firstSeen: Self.iso($0.firstSeen), lastSeen: Self.iso($0.lastSeen))
            },
            quarantineDropped: s.quarantineDropped,
            retrying: s.retrying.map {
                .init(
                    bucket: $0.ref.bucket, key: $0.ref.key, version: $0.ref.version, attempts: $0.attempts,
                    lastError: redactingUserinfo($0.lastError ?? ""), lastAttempt: Self.iso($0.updated))
            },
            failingOutputs: s.failingOutputs.map { .init(output: $0.output, lastError: redactingUserinfo($0.lastError), since: Self.iso($0.since), updated: Self.iso($0.updated)) },
            records: s.outputRecords,
            fetchesInProgress: s.fetchesInProgress,
            backfill: s.backfill.map {
                .init(
                    job: $0.job, partition: $0.partition, pass: $0.pass, forced: $0.forced, lastKey: $0.lastKey, listed: $0.listed,
                    listedBytes: $0.listedBytes, complete: $0.complete, updated: Self.iso($0.updated))
            },
            oldestUnacknowledged: s.oldestUnacknowledged.map(Self.iso),
            oldestUnacknowledgedAgeSeconds: s.oldestUnacknowledged.map { Double(max(0, now - $0)) / 1000 },
            doneMarkers: s.doneMarkers, bodiesAwaitingGC: s.bodiesAwaitingGC, storedBodyBytes: s.storedBodyBytes,
            bodyChunks: s.bodyChunks,
            disk: .init(
                usedBytes: s.disk.usedBytes, mappedBytes: s.disk.mappedBytes, fileBytes: s.disk.fileBytes,
                maxBytes: s.disk.maxBytes, limitBytes: s.disk.limitBytes, filesystemFreeBytes: s.disk.filesystemFreeBytes),
            integrity: integrity.map { .init(counts: $0.counts, pendingLogs: $0.pendingLogs, recent: Self.findings($0)) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(shape)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// A few aligned lines for a terminal.
    public func text() -> String {
        let s = status
        var lines: [String] = []
        lines.append("journal    \(s.path) (format \(s.formatVersion))")
        let stages = ObjectStage.allCases.map { "\($0) \(s.objectsByStage[$0] ?? 0)" }.joined(separator: ", ")
        lines.append("objects    \(stages)")
        let states = MessageState.State.allCases.map { "\($0) \(s.messagesByState[$0] ?? 0)" }.joined(separator: ", ")
        lines.append("messages   \(states)")
        if let oldest = s.oldestUnacknowledged {
            lines.append("oldest     \(Self.iso(oldest)) (\(Self.age(now - oldest)) ago, not yet acknowledged)")
        } else {
            lines.append("oldest     nothing unacknowledged")
        }
        lines.append(
            "disk       \(Self.bytes(s.disk.usedBytes)) used, \(Self.bytes(s.disk.fileBytes)) on disk, "
                + "\(Self.bytes(s.disk.mappedBytes)) mapped, max \(Self.bytes(s.disk.maxBytes))"
                + (s.disk.limitBytes < s.disk.maxBytes ? " (the disk holds only \(Self.bytes(s.disk.limitBytes)): the limit now)" : "")
                + "; filesystem \(Self.bytes(s.disk.filesystemFreeBytes)) free; "
                + "bodies \(Self.bytes(Int(s.storedBodyBytes))), \(s.bodiesAwaitingGC) awaiting GC")
        lines.append("done       \(s.doneMarkers) markers kept for redelivery detection")
        if s.backfill.isEmpty {
            lines.append("backfill   none")
        } else {
            for c in s.backfill where !c.partition.isEmpty {  // "" marks a job's discovery as done
                lines.append(
                    "backfill   \(Self.describe(job: c.job)) [\(c.partition)] pass \(c.pass)\(c.forced ? " (forced)" : "") \(c.complete ? "complete" : "listing") "
                        + "\(c.listed) objects, \(Self.bytes(Int(c.listedBytes))), last key \(c.lastKey ?? "-")")
            }
        }
        lines.append("fetching   \(s.fetchesInProgress) download\(s.fetchesInProgress == 1 ? "" : "s") in flight")
        for r in s.outputRecords {
            var line = "records    \(r.output): \(r.delivered) delivered, \(r.filtered) dropped by its filter"
            if r.deliveries > 0 {
                let d = Double(r.deliveries)
                line += String(format: "; %llu deliveries, %.1f events and %.1f objects each on average", r.deliveries, Double(r.delivered) / d, Double(r.deliveryObjects) / d)
            }
            lines.append(line)
        }
        if s.failingOutputs.isEmpty {
            lines.append("outputs    no delivery failing")
        } else {
            for o in s.failingOutputs {
                lines.append("outputs    \(o.output) failing since \(Self.iso(o.since)) (\(Self.age(now - o.since))): \(o.lastError)")
            }
        }
        if !s.retrying.isEmpty {
            lines.append("retrying   \(s.retrying.count) object(s) whose download failed:")
            for o in s.retrying {
                lines.append("  \(o.ref)")
                lines.append("    last error: \(o.lastError ?? "-") (attempts \(o.attempts), last \(Self.iso(o.updated)))")
            }
        }
        if s.quarantined.isEmpty {
            lines.append("quarantine empty")
        } else {
            lines.append("quarantine \(s.quarantined.count) item(s):")
            for q in s.quarantined {
                let what = q.object.map(\.description) ?? "message \(q.messageID ?? "?")"
                lines.append("  \(what)")
                lines.append("    reason: \(q.reason) (attempts \(q.attempts), last \(Self.iso(q.lastSeen)))")
            }
            lines.append("           once the cause is mended: cloudtrailbeat journal retry <s3://bucket/key | message id | --all>")
        }
        if s.quarantineDropped > 0 {
            lines.append("           \(s.quarantineDropped) older quarantine entries were dropped to keep it within journal.quarantine_max_entries")
        }
        if let i = integrity {
            let found = i.counts.filter { $0.key != "digests_verified" && $0.key != "logs_verified" }.sorted { $0.key < $1.key }
            lines.append(
                "integrity  \(i.counts["digests_verified"] ?? 0) digests and \(i.counts["logs_verified"] ?? 0) logs verified, \(i.pendingLogs) logs awaiting their digest; "
                    + (found.isEmpty ? "no findings" : "findings: " + found.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
            for f in Self.findings(i).prefix(20) {
                lines.append("  \(f.kind) s3://\(f.bucket)/\(f.key)")
                lines.append("    \(f.detail) (digest \(f.digest), \(f.eventTime))")
            }
        }
        // Keys, reasons and errors are outside text: escaped, each stays on its line (UntrustedText);
        // errors recorded by builds before URL passwords were masked at the source are masked here too.
        return lines.map { UntrustedText.escaped(redactingUserinfo($0)) }.joined(separator: "\n")
    }

    static func findings(_ i: IntegrityStatus) -> [Finding] {
        i.recent.compactMap { try? JSONDecoder().decode(Finding.self, from: Data($0.utf8)) }
    }

    static func iso(_ t: Timestamp) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date(timeIntervalSince1970: Double(t) / 1000))
    }

    static func age(_ ms: Int64) -> String {
        let s = max(0, ms / 1000)
        if s < 120 { return "\(s)s" }
        if s < 7200 { return "\(s / 60)m" }
        if s < 172_800 { return "\(s / 3600)h" }
        return "\(s / 86400)d"
    }

    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024 && u < units.count - 1 {
            v /= 1024
            u += 1
        }
        return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
    }
}

/// Opens a journal for inspection only (no writes, no owner lock).
public enum JournalInspector {
    /// The status of the journal at `path`, read-only (an engine may be running on it). `maxSize`
    /// (`journal.max_size`, when a configuration gave it) is what the disk line compares against.
    public static func status(path: String, maxSize: Int? = nil) throws -> StatusReport {
        var options = Journal.Options()
        options.readOnly = true
        if let maxSize { options.maxSize = maxSize }
        let journal = try Journal(path: path, options: options)
        defer { journal.close() }
        return StatusReport(try journal.status(), integrity: try journal.integrityStatus())
    }
}

/// Offline maintenance of a journal no engine is running on.
public enum JournalMaintenance {
    /// Runs garbage collection until nothing is left to free; takes the owner lock, so it refuses to
    /// run while a cloudtrailbeat process uses the journal. Done markers older than
    /// `doneRetentionSeconds` (`journal.done_retention`; default 7 days) expire.
    public static func collect(path: String, doneRetentionSeconds: Int? = nil, maxQuarantineEntries: Int? = nil) async throws -> GCResult {
        var options = Journal.Options()
        options.exclusive = true
        if let doneRetentionSeconds { options.doneRetention = Int64(doneRetentionSeconds) * 1000 }
        if let maxQuarantineEntries { options.maxQuarantineEntries = maxQuarantineEntries }
        let journal = try Journal(path: path, options: options)
        defer { journal.close() }
        var total = GCResult()
        while true {
            let pass = try await journal.collectGarbage(maxChunks: 4096)
            total.chunksFreed += pass.chunksFreed
            total.objectsRemoved += pass.objectsRemoved
            total.markersExpired += pass.markersExpired
            total.quarantineDropped += pass.quarantineDropped
            if !pass.moreWork { return total }
        }
    }
}

extension JournalMaintenance {
    /// What `journal retry` did.
    public struct RetryReport: Sendable {
        /// Objects put back to work.
        public var requeued = 0
        /// Objects left alone because they are still in progress.
        public var inProgress = 0
        /// Objects left alone because they finished since (a message's objects shipped before it was
        /// quarantined as poison).
        public var alreadyDone = 0
        /// Quarantine entries removed.
        public var cleared = 0
        /// Entries kept, each with why (a message still unrecognised, a body not kept whole).
        public var kept: [String] = []
        /// Selectors that matched no quarantine entry.
        public var unmatched: [String] = []

        mutating func add(_ r: RequeueResult) {
            requeued += r.requeued
            inProgress += r.inProgress
            alreadyDone += r.alreadyDone
            cleared += r.cleared
        }
    }

    /// Puts quarantined items back to work (no engine may be running: it takes the owner lock). An
    /// object goes back to `received`; a quarantined message's kept body is decoded again (a newer
    /// build may know its shape) and the objects it names are journaled — its entry is kept, with the
    /// reason, when it still names none. `selectors` are `s3://bucket/key`, a bare key, or a message id;
    /// `all` takes every entry. A message body passes the same gate as at receipt, with `maxKeys` the
    /// configuration's `input.max_keys_per_message` (its default without a configuration).
    public static func retry(path: String, selectors: [String], all: Bool, maxKeys: Int? = nil) async throws -> RetryReport {
        var options = Journal.Options()
        options.exclusive = true
        let journal = try Journal(path: path, options: options)
        defer { journal.close() }
        var report = RetryReport()
        let entries = try journal.quarantine()
        var chosen: [QuarantineEntry] = []
        if all {
            // Refused items (input.sns_signature, topics, buckets, accounts) are retried only by name:
            // --all is for mended causes, and a refusal is a decision, not a fault.
            chosen = entries.filter { !$0.reason.hasPrefix("refused: ") }
            report.kept += entries.filter { $0.reason.hasPrefix("refused: ") }.map {
                "\($0.object?.description ?? "message \($0.messageID ?? "?")"): \($0.reason) (name it to retry it)"
            }
        } else {
            for selector in selectors {
                let matches = entries.filter { Self.matches($0, selector) }
                if matches.isEmpty { report.unmatched.append(selector) }
                for m in matches where !chosen.contains(m) { chosen.append(m) }
            }
        }
        for entry in chosen {
            switch entry.kind {
            case .object:
                guard let ref = entry.object else { continue }
                let r = try await journal.requeue([DiscoveredObject(ref)], source: "retry", clearing: [entry.key], skipDone: true)
                report.add(r)
            case .message:
                let id = entry.messageID ?? "?"
                guard let body = entry.detail, !body.hasSuffix("…") || body.utf8.count <= 1024 else {
                    report.kept.append("message \(id): its body was not kept whole; redrive it from the queue's dead-letter queue")
                    continue
                }
                switch NotificationDecoder.decode(body, maxKeys: maxKeys ?? NotificationDecoder.defaultMaxKeys) {
                case .objects(let refs, _):
                    let objects = refs.map { DiscoveredObject(ObjectRef(bucket: $0.bucket, key: $0.key, version: $0.etag ?? $0.versionID ?? ""), size: $0.size) }
                    let r = try await journal.requeue(objects, source: "retry of message \(id)", clearing: [entry.key], skipDone: true)
                    report.add(r)
                case .nothingToDo:
                    report.cleared += try await journal.requeue([], source: "retry", clearing: [entry.key]).cleared
                case .unrecognised(let reason):
                    report.kept.append("message \(id): still unrecognised (\(reason))")
                }
            }
        }
        return report
    }

    /// `s3://bucket/key` (as `journal status` shows it, with or without `@version`; `file:///…` for a
    /// local copy) names an object; otherwise a bare key or a message id (which also selects the objects
    /// that message named).
    static func matches(_ entry: QuarantineEntry, _ selector: String) -> Bool {
        if let o = entry.object {
            let url = (o.bucket.contains("://") ? o.bucket : "s3://" + o.bucket) + "/" + o.key
            if selector == url || selector == o.description || selector == o.key { return true }
        }
        return entry.messageID == selector
    }
}
