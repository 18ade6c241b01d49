import AWS
import Failures
import Foundation
import Integrity
import Journal
import Logging
import Stages
import Synchronization

/// A digest object too large to be CloudTrail's: quarantined unchecked.
struct DigestTooLarge: Error, ClassifiedError {
    var message: String
    var description: String { message }
    var disposition: Disposition { .quarantine }
}

/// A local copy's file could not be read: quarantined with the reason (`journal retry` brings it
/// back once the file is readable).
struct LocalReadError: Error, ClassifiedError {
    var message: String
    var description: String { message }
    var disposition: Disposition { .quarantine }
}

/// The fetch pool: one dispatcher claims `received` objects (key order, none in a backoff) in one scan
/// for every free slot of `input.fetch_concurrency`, and runs each download as its own child task; it
/// looks again, while it has free slots, when a commit brings new work (a receipt, a listing, a failed
/// download back to wait), and while it has none, when a download gives its slot back (announced as
/// `released` once the claim is gone); after a second at most (a backoff ending). A download streams
/// its body into the journal while gunzipping, validating and counting records, and what a failure
/// leads to is decided in one place (``fetchFailed(_:_:_:head:)``, by the error's `Disposition`).
/// Invariants:
/// 1. An object is in `fetching` from its claim until its download's last commit returned; no two
///    downloads of one object overlap, and the claim is re-checked against the journal (another
///    download may have finished it after the scan's snapshot was taken).
/// 2. At most `fetch_concurrency` downloads run; each holds its own object's bytes only (a body is
///    streamed into the journal in chunks), so memory is bounded by that number, not by the backlog.
/// 3. A child's failure other than a full journal ends the pool (and the engine), as before.
final class Fetcher: StageComponent {
    private struct Pool {
        /// Objects claimed by a download (invariant 1).
        var fetching: Set<ObjectKey> = []
        /// Objects in a backoff, by when they may be tried again.
        var retryAfter: [ObjectRef: Date] = [:]
        /// Since when downloads have been waiting for room in the journal (nil: they are not).
        var downloadsPausedSince: Date?
        var lastPauseWarning = Date.distantPast
        var pauseWarned = false
    }

    /// The configuration, the journal, the tally and the logger every stage shares.
    let stage: StageContext
    let s3: S3Client?
    /// The queue (messages of an object in a backoff are handed back early); nil for a backfill.
    let sqs: SQSClient?
    let held: HeldMessages
    /// Small objects' records split at fetch, for the batchers (DecodedBodies.swift).
    let decodedBodies: DecodedBodies
    /// Checks digests as they arrive and hashes every log at fetch (`integrity.enabled`), when on.
    let digestCheck: DigestCheck?
    /// The backfill listing what is fetched, if any (a digest waits for its logs' listing).
    let backfill: Backfill?
    /// The local copy this run reads (`-b DIR`): the only origin read from disk. It is chosen by the
    /// command line, never by a name a message carries; every other bucket is an S3 bucket.
    let localCopy: LocalSource?
    private let pool = Mutex(Pool())

    /// `localCopy`: the local copy a backfill reads; by default the backfill's own source, when it is one.
    init(
        _ stage: StageContext, s3: S3Client?, sqs: SQSClient?, held: HeldMessages, decodedBodies: DecodedBodies, digestCheck: DigestCheck?, backfill: Backfill?,
        localCopy: LocalSource? = nil
    ) {
        self.stage = stage
        self.s3 = s3
        self.sqs = sqs
        self.held = held
        self.decodedBodies = decodedBodies
        self.digestCheck = digestCheck
        self.backfill = backfill
        self.localCopy = localCopy ?? backfill?.source as? LocalSource
    }

    /// Downloads in flight now (for the metrics).
    var inFlight: Int { pool.withLock { $0.fetching.count } }

    func run() async throws {
        let limit = config.input.fetchConcurrency
        var position = ObjectScanPosition()
        try await withThrowingDiscardingTaskGroup { group in
            while true {
                try Task.checkCancellation()
                // New work is an object becoming received; a free slot, a download's claim released (after
                // its last commit returned, so a commit alone would wake the dispatcher too early).
                let newWork = journal.changes.generation(.received)
                let slotFreed = journal.changes.generation(.released)
                let now = Date()
                let free = limit - pool.withLock { $0.fetching.count }
                let claimed = try journal.objects(in: [.received], limit: free, from: &position, skipping: { key in pool.withLock { $0.fetching.contains(key) } }) { o in
                    pool.withLock { s in (s.retryAfter[o.ref].map { $0 <= now } ?? true) && s.fetching.insert(o.ref.journalKey).inserted }
                }
                for object in claimed {
                    group.addTask {
                        defer {
                            self.pool.withLock { _ = $0.fetching.remove(object.ref.journalKey) }
                            self.journal.changes.announce(.released)
                        }
                        try await self.fetchClaimed(object.ref)
                    }
                }
                if claimed.count == free {
                    await journal.changes.wait(.released, since: slotFreed, timeout: 1)
                } else if claimed.isEmpty {
                    // A busy moment's listings pass first, so that one scan answers them.
                    await journal.changes.wait(.received, since: newWork, timeout: 1, pause: 0.002)
                }
            }
        }
    }

    /// Fetches a claimed object if it is still `received`.
    private func fetchClaimed(_ ref: ObjectRef) async throws {
        guard let current = try journal.object(ref), current.stage == .received else { return }
        do {
            try await fetch(current)
        } catch let e as JournalError where e.code == .full {
            // Nothing was committed; the object stays where it was and is claimed again once GC has
            // freed room (bodies stop at nine tenths of max_size, so GC and acknowledgements keep theirs).
            logger.debug("journal full: work waits for GC", metadata: ["object": "\(ref)", "error": "\(e)"])
            pool.withLock { $0.retryAfter[ref] = Date().addingTimeInterval(1) }
        }
    }

    private func fetch(_ object: ObjectState) async throws {
        let ref = object.ref
        let kind = ObjectClassifier.classify(key: ref.key)
        let local = localCopy.map { ref.bucket == $0.bucket } ?? false
        let checked = kind == .digest && digestCheck != nil && !local && s3 != nil
        if kind == .digest && !checked {
            _ = try await journal.complete(ref, note: "digest file: integrity data, not emitted")
            tally.count { $0.objectsSkipped += 1 }
            return
        }
        if kind == .other {
            _ = try await journal.complete(ref, note: "not a CloudTrail log (by its key); skipped")
            tally.count { $0.objectsSkipped += 1 }
            return
        }
        guard local || s3 != nil else { return }
        // What this instance may read (input.buckets, input.accounts): refused before any request.
        let policy = config.input.policy
        if let refusal = local ? policy.refusal(accountOf: ref.key) : policy.refusal(bucket: ref.bucket, key: ref.key) {
            tally.count { $0.refused[refusal.hasPrefix("bucket") ? "bucket" : "account", default: 0] += 1 }
            try await quarantine(ref, "refused: \(refusal)")
            return
        }
        if checked, let digestCheck {
            try await checkDigest(object, digestCheck)
            return
        }
        // A body no empty journal could hold never finds room, however long it waits: set aside at once
        // when S3's listing says so. A notification's size is not trusted for it (a forged message could
        // have a genuine log set aside unread); the body writer refuses such a body as it passes the bound.
        if object.source.hasPrefix("backfill:"), let size = object.size, let tooLarge = try journal.bodyTooLarge(size, "as listed") {
            try await quarantine(ref, "\(tooLarge)")
            return
        }
        let keyAccount = policy.accounts.isEmpty ? nil : SourcePolicy.account(inKey: ref.key)
        var recordTree = keyAccount == nil ? nil : RecordTree()  // only to read recipientAccountId
        var forged: String?
        let ticket = try await journal.startFetch(ref)
        let writer = journal.bodyWriter(ticket)
        let logKey = digestCheck == nil || kind != .log ? nil : LogKey(ref.key)
        let decoder = LogDecoder(maxObjectSize: UInt64(config.input.maxObjectSize), hashing: logKey != nil)
        var head: [UInt8] = []
        // A small log's records, for the batchers (DecodedBodies.swift); an object listed as large is not tried.
        var collector = kind == .log && (object.size ?? 0) <= UInt64(decodedBodies.maxObjectBytes) ? DecodedRecords.Collector(limit: decodedBodies.maxObjectBytes) : nil
        let onRecord: (RecordView) -> Void = { record in
            collector?.add(record)
            // A record for another account than the key's: a forged file (input.accounts).
            guard let keyAccount, forged == nil, recordTree?.parse(record.bytes) == true, let tree = recordTree else { return }
            let recipient = tree.member(RecordTree.root, "recipientAccountId").flatMap { tree.string($0) }
            forged = policy.refusal(recipientAccount: recipient, keyAccount: keyAccount, record: record.index)
        }
        do {
            let consume: ([UInt8]) async throws -> Void = { chunk in
                if head.count < 8192 { head += chunk.prefix(8192 - head.count) }
                try await writer.append(chunk)
                try decoder.push(chunk, onRecord)
            }
            if local {
                try await readLocal(localCopy!.root + "/" + ref.key, consume)
            } else {
                try await s3!.get(bucket: ref.bucket, key: ref.key, consume: consume)
            }
            let count = try decoder.finish(onRecord)
            if let forged {
                _ = try await journal.fetchFailed(ticket, error: forged)
                tally.count { $0.refused["account", default: 0] += 1 }
                try await quarantine(ref, "refused: \(forged)")
                return
            }
            // Integrity validation: the log's SHA-256 waits in the journal for the digest that lists it.
            let integrity = logKey.flatMap { k in
                decoder.contentSHA256.map {
                    IntegrityCommit.log(IntegrityLog(bucket: ref.bucket, key: ref.key, scope: k.scope.description, delivered: Timestamp(k.delivered.timeIntervalSince1970 * 1000), sha256: $0))
                }
            }
            // Before the commit that makes it `fetched`, so that the batchers it wakes find the records
            // (DecodedBodies' invariant 1); gone again unless that commit made it `fetched`.
            var kept = false
            if let records = collector?.records(count: count) {
                decodedBodies.add(records, body: ticket.bodyID)
                kept = true
            }
            let state: ObjectState
            do {
                state = try await writer.finish(recordCount: count, integrity: integrity)
            } catch {
                if kept { decodedBodies.remove(body: ticket.bodyID) }
                throw error
            }
            if kept && state.stage != .fetched { decodedBodies.remove(body: ticket.bodyID) }
            tally.count { c in
                c.objectsFetched += 1
                c.bytesDownloaded += Int(writer.bytesWritten)
            }
            let paused: Date? = pool.withLock { s in
                s.retryAfter[ref] = nil
                defer { s.downloadsPausedSince = nil; s.pauseWarned = false }
                return s.pauseWarned ? s.downloadsPausedSince : nil
            }
            if let paused {
                logger.info("downloads resume: the journal has room again", metadata: ["after": "\(Int(Date().timeIntervalSince(paused)))s"], source: LogStage.fetch.rawValue)
            }
            logger.debug("fetched", metadata: ["object": "\(ref)", "records": "\(count)", "stage": "\(state.stage)"], source: LogStage.fetch.rawValue)
        } catch {
            try await fetchFailed(ref, ticket, error, head: head)
        }
    }

    /// A digest object under `integrity.enabled` (DigestCheck.swift): downloaded with its metadata,
    /// checked, and stored as its findings, which the outputs then receive like any records; the verdict
    /// commits with them (the journal's invariant 10).
    private func checkDigest(_ object: ObjectState, _ check: DigestCheck) async throws {
        let ref = object.ref
        // Logs of its account and region delivered before it, still to be fetched here (or, in a backfill,
        // still to be listed), are hashed by their own fetch first, and the earlier digests of its chain
        // are checked first: the digest waits (no attempt counted) rather than download logs twice or
        // check its chain out of order.
        if let d = DigestKey(ref.key), let waitingFor = try digestWaitsFor(d, in: ref.bucket) {
            pool.withLock { $0.retryAfter[ref] = Date().addingTimeInterval(2) }
            logger.debug("digest waits for what comes before it", metadata: ["object": "\(ref)", "for": "\(waitingFor)"], source: LogStage.fetch.rawValue)
            return
        }
        let ticket = try await journal.startFetch(ref)
        do {
            var stored: [UInt8] = []
            let info = try await s3!.get(bucket: ref.bucket, key: ref.key) { chunk in
                guard stored.count + chunk.count <= 64 << 20 else {
                    throw DigestTooLarge(message: "a digest of more than 64 MiB is not CloudTrail's: not checked")
                }
                stored += chunk
            }
            let outcome = try await check.check(bucket: ref.bucket, key: ref.key, gzipped: stored, metadata: info.metadata)
            let writer = journal.bodyWriter(ticket)
            try await writer.append(outcome.body)
            _ = try await writer.finish(recordCount: UInt64(outcome.findings.count), integrity: .digest(outcome.verdict))
            tally.count { c in
                c.objectsFetched += 1
                c.bytesDownloaded += stored.count
                if outcome.valid { c.digestsVerified += 1 }
                c.logsVerified += outcome.verdict.verified.count
                for f in outcome.findings { c.integrityFindings[f.kind.rawValue, default: 0] += 1 }
            }
            pool.withLock { _ = $0.retryAfter.removeValue(forKey: ref) }
            for f in outcome.findings {
                logger.warning("integrity: \(f.kind)", metadata: ["object": "s3://\(f.bucket)/\(f.key)", "detail": "\(f.detail)", "digest": "\(ref)"], source: LogStage.fetch.rawValue)
            }
            logger.debug("digest checked", metadata: ["object": "\(ref)", "valid": "\(outcome.valid)", "logs": "\(outcome.verdict.verified.count)", "findings": "\(outcome.findings.count)"], source: LogStage.fetch.rawValue)
        } catch {
            try await fetchFailed(ref, ticket, error, head: [])
        }
    }

    /// What a digest must wait for (nil: nothing): its account and region's logs still being listed (a
    /// backfill) or still to be fetched, delivered before it; or an earlier digest of its chain unchecked.
    private func digestWaitsFor(_ d: DigestKey, in bucket: String) throws -> String? {
        if let backfill, let listing = try journal.cursors(job: backfill.job).first(where: { !$0.complete && $0.partition.hasPrefix(d.logsPrefix) }) {
            return "the listing of \(listing.partition)"
        }
        let log = try journal.firstObject(bucket: bucket, keyPrefix: d.logsPrefix, in: [.received]) { o in
            (LogKey(o.ref.key)?.delivered).map { $0 < d.end } ?? false
        }
        let digest = try log == nil ? journal.firstObject(bucket: bucket, keyPrefix: d.digestsPrefix, in: [.received]) { o in
            DigestKey(o.ref.key).map { $0.chain == d.chain && $0.end < d.end } ?? false
        } : nil
        return (log ?? digest).map { "\($0.ref)" }
    }

    /// What a failed fetch leads to, by the error's ``Disposition`` (Failures): `quarantine` sets the
    /// object aside with the reason; `retry` counts an attempt and backs off (quarantined once
    /// `max_fetch_attempts` are spent); `wait` (no credentials, a full journal) counts nothing and
    /// tries again later; `fatal` ends the engine.
    private func fetchFailed(_ ref: ObjectRef, _ ticket: FetchTicket, _ error: any Error, head: [UInt8]) async throws {
        let reason = "\(error)"
        switch Disposition.of(error) {
        case .quarantine:
            _ = try await journal.fetchFailed(ticket, error: reason)
            if let e = error as? SplitError, e.code == .notCloudTrailLog, ObjectClassifier.classify(head: (try? gunzipHead(head)) ?? head) == .digest {
                _ = try await journal.complete(ref, note: "digest file (by content): not emitted")
                tally.count { $0.objectsSkipped += 1 }
                return
            }
            switch error {
            case is SplitError: try await quarantine(ref, "invalid CloudTrail log: \(reason)")
            case is GunzipError: try await quarantine(ref, "corrupt gzip: \(reason)")
            default: try await quarantine(ref, reason)
            }
        case .retry:
            let state = try await journal.fetchFailed(ticket, error: reason)
            if state.attempts >= UInt32(config.input.maxFetchAttempts) {
                try await quarantine(ref, reason)
                return
            }
            let delay = min(300, pow(2, Double(state.attempts)))
            pool.withLock { $0.retryAfter[ref] = Date().addingTimeInterval(delay) }
            // Let the messages come back after the backoff rather than after their full visibility timeout.
            let returned = held.handBack(state.messages)
            for handle in returned { try? await sqs?.changeVisibility(handle, timeout: Int(delay)) }
            tally.count { $0.messagesReturned += returned.count }
            logger.warning("fetch failed; retrying", metadata: ["object": "\(ref)", "error": "\(reason)", "in": "\(delay)s"], source: LogStage.fetch.rawValue)
        case .wait where error is JournalError:
            _ = try? await journal.fetchFailed(ticket, error: reason)
            // Said once a minute at most: draining a backlog larger than the journal pauses and resumes
            // downloads at every GC pass.
            let first = pool.withLock { s in
                s.retryAfter[ref] = Date().addingTimeInterval(5)
                guard s.downloadsPausedSince == nil else { return false }
                s.downloadsPausedSince = Date()
                guard Date().timeIntervalSince(s.lastPauseWarning) > 60 else { return false }
                s.lastPauseWarning = Date()
                s.pauseWarned = true
                return true
            }
            if first {
                logger.warning(
                    "journal full: downloads wait until GC frees room (the last tenth is kept for acknowledgements and GC)",
                    metadata: ["limit": "\(StatusReport.bytes(journal.effectiveLimit()))", "used": "\(StatusReport.bytes((try? journal.diskUse().used) ?? 0))"],
                    source: LogStage.fetch.rawValue)
            }
            logger.debug("journal full: fetch postponed until GC frees space", metadata: ["object": "\(ref)"], source: LogStage.fetch.rawValue)
        case .wait:
            // Not the object's fault (no credentials): no attempt is counted against it. A one-shot run
            // (--drain, a backfill) must end: there it counts, and the object is quarantined after
            // max_fetch_attempts with the reason (`journal retry` brings it back).
            let state = try await journal.fetchFailed(ticket, error: reason, countAttempt: drain)
            if drain && state.attempts >= UInt32(config.input.maxFetchAttempts) {
                try await quarantine(ref, reason)
                return
            }
            pool.withLock { $0.retryAfter[ref] = Date().addingTimeInterval(10) }
            logger.warning("no credentials to fetch with; retrying in 10s", metadata: ["object": "\(ref)", "error": "\(reason)"], source: LogStage.fetch.rawValue)
        default:
            throw error
        }
    }

    /// Streams a local file (a backfill of a local copy) in 1 MiB chunks.
    private func readLocal(_ path: String, _ consume: ([UInt8]) async throws -> Void) async throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LocalReadError(message: "cannot read '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while true {
            var failure: Int32 = 0
            // Read straight into the chunk's own storage: no zero-fill, no copy.
            let chunk = [UInt8](unsafeUninitializedCapacity: 1 << 20) { buffer, count in
                var n = -1
                repeat { n = read(fd, buffer.baseAddress, buffer.count) } while n < 0 && errno == EINTR
                if n < 0 { failure = errno }
                count = max(0, n)
            }
            if failure != 0 { throw LocalReadError(message: "reading '\(path)': \(String(cString: strerror(failure)))") }
            if chunk.isEmpty { return }
            try await consume(chunk)
        }
    }

    private func gunzipHead(_ bytes: [UInt8]) throws -> [UInt8] {
        let g = Gunzip()
        var out: [UInt8] = []
        try bytes.withUnsafeBytes { try g.push($0) { out += $0 } }
        return out
    }

    /// Sets an object aside with the reason (the batchers call it too, for a body that no longer decodes).
    func quarantine(_ ref: ObjectRef, _ reason: String) async throws {
        _ = try await journal.quarantineObject(ref, reason: reason)
        tally.count { $0.objectsQuarantined += 1 }
        logger.warning("object quarantined", metadata: ["object": "\(ref)", "reason": "\(reason)"], source: LogStage.fetch.rawValue)
    }
}
