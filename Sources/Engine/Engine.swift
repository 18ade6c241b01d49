import AWS
import Codecs
import Failures
import Foundation
import HTTP
import Integrity
import Journal
import Logging
import Outputs
import ServiceLifecycle
import SNSSignature
import Stages

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

/// The crash-safe queue pipeline. Every arrow is a committed journal transition:
///
/// SQS receive → `receive` (message and objects journaled before anything else) → fetch (download into
/// the journal while gunzipping, validating and counting records; up to `input.fetch_concurrency` at
/// once) → `finishFetch` → per output: batches filled from as many stored bodies as are ready, each from
/// that output's cursor (Batcher.swift), one `acknowledge` transaction per delivery for every object it
/// touched → all objects of a message finished → DeleteMessageBatch → `messagesDeleted`.
///
/// A restart resumes from the journal alone: fetched objects are never downloaded again, each output
/// resumes at its cursor, finished messages are deleted (an expired receipt handle is expected then).
///
/// `@unchecked Sendable`: every mutable field is read and written under `lock` (the claim sets, the
/// backoffs, the held receipt handles, the counters), except those set once before ``run()`` starts
/// (`backfill`, `snsVerifier`, `digestCheck`, `pollInterval`).
public final class Engine: Service, @unchecked Sendable {
    public struct Options: Sendable {
        /// Exit once a long poll returns no message and no journaled work is left.
        public var drain = false
        public init(drain: Bool = false) { self.drain = drain }
    }

    let config: Config
    let options: Options
    let journal: Journal
    let sqs: SQSClient?
    let s3: S3Client?
    let pumps: [OutputPump]
    let logger: Logger
    let http: HTTPClient
    /// A backfill walking existing logs (queue mode when nil).
    public var backfill: Backfill?
    let metrics = EngineMetrics()
    /// Small objects' records split at fetch, for the batchers (DecodedBodies.swift): 16 MiB at most.
    let decodedBodies: DecodedBodies

    /// The Prometheus text exposition of this engine (for the `http` endpoint).
    public func metricsText() -> String { metrics.render(engine: self) }

    private let lock = NSLock()
    private var stopping = false
    private var fetching: Set<ObjectKey> = []
    /// (output, object) pairs an emitter is working on.
    private var emitting: Set<EmitClaim> = []
    private struct EmitClaim: Hashable {
        var output: String
        var object: ObjectKey
    }
    private var retryAfter: [ObjectRef: Date] = [:]
    /// Messages this process holds in flight, by id: the receipt handle the heartbeat extends with, and
    /// the earliest moment SQS may make the message visible again (a conservative estimate).
    private var handles: [String: HeldMessage] = [:]
    private struct HeldMessage {
        var receiptHandle: String
        var visibleAgainBy: Date
    }
    private var lastPollEmpty = false
    /// Since when downloads have been waiting for room in the journal (nil: they are not). Under `lock`.
    private var downloadsPausedSince: Date?
    private var lastPauseWarning = Date.distantPast
    private var pauseWarned = false
    /// Verifies SNS envelopes' signatures (`input.sns_signature`), when on.
    public var snsVerifier: SNSSignatureVerifier?
    /// Checks digests as they arrive and hashes every log at fetch (`integrity.enabled`), when on.
    var digestCheck: DigestCheck?
    /// Bucket polling: the wait between listing passes of `backfill` (nil: one pass).
    public var pollInterval: Double?
    /// Whether quarantined messages are left in the queue (for its dead-letter queue) instead of deleted.
    /// Whether quarantined messages stay in the queue (for its DLQ); nil while `auto` has not yet
    /// learnt the queue's redrive policy: quarantined messages are held (neither deleted nor left).
    private var leavePoison: Bool? = false
    /// ReceiveMessage calls that failed in a row, across receivers (for the backoff and --drain).
    private var receiveFailures = 0
    private var lastReceive = Date.distantPast
    /// When this run started: messages an earlier run received and never journaled (it was killed in
    /// between) are visible again at most one visibility timeout later (Queue ends, below). Set in `work()`.
    private var startedAt = Date()
    /// Messages this run left in the queue (`no_purge`, poison for its DLQ) by id, with when SQS may
    /// show each again: they are in flight in the queue's count, but not for an earlier run. Under `lock`.
    private var leftInQueue: [String: Date] = [:]
    /// The latest answer to "is the queue quiet?" (--drain), asked at most once a second. Under `lock`.
    private var quietCheck: (at: Date, quiet: Bool) = (.distantPast, false)
    private var inFlightWarned = false
    /// What this run did. Under `lock`; read through ``counters``.
    private var tally = Counters()
    /// A copy of what this run did so far (for the metrics and the summary).
    public var counters: Counters { lock.withLock { tally } }
    /// Each output's latest delivery (events, objects it spanned), for the metrics. Under `lock`.
    private var lastBatch: [String: (events: Int, objects: Int)] = [:]
    /// Downloads in flight now and each output's latest batch, for the metrics.
    var pipelineGauges: (fetches: Int, batches: [String: (events: Int, objects: Int)]) { lock.withLock { (fetching.count, lastBatch) } }

    public struct Counters: Sendable {
        public var messagesReceived = 0
        public var messagesDeleted = 0
        public var messagesQuarantined = 0
        /// Messages handed back to the queue early (visibility set to a backoff after a retryable failure).
        public var messagesReturned = 0
        public var objectsFetched = 0
        public var objectsQuarantined = 0
        public var objectsSkipped = 0
        public var bytesDownloaded = 0
        public var visibilityExtensions = 0
        public var recordsAcknowledged: [String: Int] = [:]
        /// Records an output's filter dropped (acknowledged without being sent).
        public var recordsFiltered: [String: Int] = [:]
        /// Messages and objects refused by input.topics, input.buckets, input.accounts (by setting).
        public var refused: [String: Int] = [:]
        /// Integrity validation: findings by kind, digests and logs verified.
        public var integrityFindings: [String: Int] = [:]
        public var digestsVerified = 0
        public var logsVerified = 0
    }

    public init(config: Config, options: Options, journal: Journal, sqs: SQSClient?, s3: S3Client?, outputs: [any Output], http: HTTPClient, logger: Logger) {
        self.config = config
        self.options = options
        self.journal = journal
        self.sqs = sqs
        self.s3 = s3
        self.http = http
        self.logger = logger
        decodedBodies = DecodedBodies(capacity: 16 << 20, maxObjectBytes: 256 << 10, readers: outputs.count)
        let dead = DeadLetterFile(path: journal.path + "/dead-letter.ndjson")
        pumps = outputs.map { output in
            // A failing output is logged and recorded in the journal (for `journal status`) when it
            // starts failing or the error changes, and cleared when it delivers again.
            OutputPump(output: output, deadLetters: dead, minBackoff: 0.2, maxBackoff: 30) { [journal, logger] error in
                if let error {
                    logger.warning("output failing; its events wait in the journal and are retried", metadata: ["output": "\(output.name)", "error": "\(error)"], source: LogStage.emit.rawValue)
                } else {
                    logger.info("output delivers again", metadata: ["output": "\(output.name)"], source: LogStage.emit.rawValue)
                }
                do {
                    if let error { try await journal.outputFailing(output.name, error: error) } else { try await journal.outputRecovered(output.name) }
                } catch {
                    logger.warning("cannot record the output's state in the journal", metadata: ["output": "\(output.name)", "error": "\(error)"])
                }
            }
        }
    }

    /// Stops intake; in-flight work ends at its next checkpoint.
    public func stop() { lock.withLock { stopping = true } }
    var isStopping: Bool { lock.withLock { stopping } }

    /// Runs until stopped (or, with `drain`, until the queue and the journal are empty). In a
    /// `ServiceGroup`, graceful shutdown (SIGTERM, SIGINT, a spot notice) stops intake and lets in-flight
    /// work reach its next checkpoint; the journal resumes the rest on the next start.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await work()
        } onGracefulShutdown: { [self] in
            logger.info("graceful shutdown: intake stopped, in-flight work ends at its next checkpoint")
            stop()
        }
    }

    private func work() async throws {
        logger.info("cloudtrailbeat started", metadata: ["journal": "\(journal.path)", "outputs": "\(pumps.map(\.output.name))", "queue": "\(sqs?.queueURL ?? "-")"])
        lock.withLock { startedAt = Date() }
        try await journal.forgetOutputFailures()
        #if DEBUG
        if let delay = journal.debugCommitDelayMilliseconds {
            logger.warning("debug build: every journal commit waits \(delay) ms first (CLOUDTRAILBEAT_DEBUG_COMMIT_DELAY_MS)")
        }
        #endif
        // Until the queue's redrive policy is known, quarantined messages are held (never lost, and not
        // left before the answer says whether a DLQ takes them).
        let deciding = sqs != nil && backfill == nil
        lock.withLock { leavePoison = config.input.leavePoisonToDLQ ?? (deciding ? nil : true) }
        let policy = Task { if let sqs, backfill == nil { await decidePoisonHandling(sqs) } }
        defer { policy.cancel() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let backfill, let every = pollInterval {
                group.addTask { try await self.pollLoop(backfill, every: every) }
            } else if let backfill {
                let progress = BackfillProgress(journal: journal, job: backfill.job, logger: logger)
                group.addTask {
                    try await backfill.run()
                    if backfill.options.enqueue {
                        progress.summary()
                        return  // fan-out only: the fleet consuming the queue does the rest
                    }
                    let ticker = Task { await progress.run() }
                    defer { ticker.cancel() }
                    while try await !self.drained() { try await Task.sleep(nanoseconds: 20_000_000) }
                    progress.summary()
                    try await Task.sleep(nanoseconds: .max / 2)  // the watch loop ends the run
                }
            } else if sqs != nil {
                for worker in 0..<config.input.workers { group.addTask { try await self.receiveLoop(worker) } }
                group.addTask { try await self.deleteLoop() }
                group.addTask { try await self.heartbeatLoop() }
            }
            group.addTask { try await self.fetchLoop() }
            for pump in pumps { group.addTask { try await self.emitLoop(pump) } }
            group.addTask { try await self.gcLoop() }
            group.addTask { try await self.watchLoop() }
            // The first loop to return means: stop (drained or asked to); cancel the rest.
            _ = try await group.next()
            group.cancelAll()
            while let _ = try? await group.next() {}
        }
        for pump in pumps { await pump.output.close() }
        logger.info("cloudtrailbeat stopped: \(summary())")
    }

    /// What this run did, for people: `SQS 9 received, 8 deleted, …; S3 24 fetched (50.6 kB), …; file 402
    /// delivered, 0 filtered`. The SQS part only with a queue.
    func summary() -> String {
        let c = counters
        var parts: [String] = []
        if sqs != nil {
            parts.append(
                "SQS \(c.messagesReceived) received, \(c.messagesDeleted) deleted, \(c.messagesReturned) returned, "
                    + "\(c.messagesQuarantined) quarantined, \(c.visibilityExtensions) visibility extensions")
        }
        let bytes = StatusReport.bytes(c.bytesDownloaded)
        parts.append("\(sqs == nil && backfill != nil ? "objects" : "S3") \(c.objectsFetched) fetched (\(bytes)), \(c.objectsQuarantined) quarantined, \(c.objectsSkipped) skipped")
        for pump in pumps {
            let name = pump.output.name
            parts.append("\(name) \(c.recordsAcknowledged[name] ?? 0) delivered, \(c.recordsFiltered[name] ?? 0) filtered")
        }
        if digestCheck != nil {
            let found = c.integrityFindings.values.reduce(0, +)
            parts.append("integrity \(c.digestsVerified) digests and \(c.logsVerified) logs verified, \(found) finding\(found == 1 ? "" : "s")")
        }
        let commits = journal.changes.commits
        let objects = c.objectsFetched + c.objectsSkipped + c.objectsQuarantined
        parts.append("journal \(commits) commits" + (objects > 0 ? String(format: " (%.2f per object)", Double(commits) / Double(objects)) : ""))
        return parts.joined(separator: "; ")
    }

    // MARK: Watching for the end

    private func watchLoop() async throws {
        while true {
            try await Task.sleep(nanoseconds: 20_000_000)
            if isStopping {
                logger.info("stopping: intake stopped, in-flight work ends at its next checkpoint")
                return
            }
            if options.drain, try await drained() { return }
        }
    }

    /// --drain's end: the backfill listed everything (or the queue answered empty), no journaled work
    /// is left, and no message is still in flight in the queue from before this run.
    private func drained() async throws -> Bool {
        if pollInterval != nil { return false }  // the poll loop says when a --drain run is done
        if let backfill, !backfill.isFinished { return false }
        let (pollEmpty, since) = lock.withLock { (lastPollEmpty || sqs == nil || backfill != nil, lastReceive) }
        guard pollEmpty, Date().timeIntervalSince(since) > 0.2 else { return false }
        let pendingObjects = try journal.countObjects(in: [.received, .fetched, .emitting])
        let messages = try journal.messages()
        if pendingObjects == 0 && messages.isEmpty {
            if let sqs, backfill == nil, !(await queueQuiet(sqs)) { return false }
            logger.info(sqs == nil || backfill != nil
                ? "finished: every partition listed and every object shipped"
                : "drained: the queue answered empty and no journaled work is left")
            return true
        }
        return false
    }

    /// Whether no message is in flight in the queue that may still come back to this run. A run killed
    /// between ReceiveMessage and the commit journaling its answer leaves those messages invisible for
    /// up to one visibility timeout (its heartbeat may have just extended them), and an empty receive
    /// meanwhile says nothing of them: --drain would end with them still in the queue. So, within one
    /// visibility timeout of this run's start, the queue is quiet only when
    /// `ApproximateNumberOfMessagesNotVisible` counts no more than the messages this run left there
    /// itself. After that window every such message was visible again, and receiving it is the receive
    /// loop's business. A queue whose attributes cannot be read (`sqs:GetQueueAttributes` denied, an
    /// outage) counts as quiet: the check is a refinement, not a new way to hang.
    private func queueQuiet(_ sqs: SQSClient) async -> Bool {
        let now = Date()
        let timeout = Double(config.input.visibilityTimeout)
        let (windowEnd, cached, left) = lock.withLock {
            (startedAt.addingTimeInterval(timeout + 1), quietCheck, leftInQueue.values.filter { $0 > now }.count)
        }
        guard now < windowEnd else { return true }
        if now.timeIntervalSince(cached.at) < 1 { return cached.quiet }
        var quiet = true
        do {
            let attributes = try await sqs.attributes(["ApproximateNumberOfMessagesNotVisible"])
            let inFlight = Int(attributes["ApproximateNumberOfMessagesNotVisible"] ?? "") ?? 0
            if inFlight > left {
                quiet = false
                let warn = lock.withLock {
                    defer { inFlightWarned = true }
                    return !inFlightWarned
                }
                if warn {
                    logger.info(
                        "--drain: \(inFlight - left) message(s) in flight in the queue (held by an earlier run that stopped before journaling them, or by another consumer); waiting up to \(Int(windowEnd.timeIntervalSince(now)) + 1)s for them",
                        source: LogStage.receive.rawValue)
                }
            }
        } catch {
            logger.debug("--drain: the queue's in-flight count could not be read; not waiting for it", metadata: ["error": "\(error)"], source: LogStage.receive.rawValue)
        }
        lock.withLock { quietCheck = (Date(), quiet) }
        return quiet
    }

    // MARK: Bucket polling

    /// `input.bucket_arn` without a queue: a listing pass, then (once its objects are shipped) a wait of
    /// `bucket_list_interval`, then the next pass, which journals only what arrived since the previous
    /// one began. Each pass is a backfill pass, so a kill resumes it where it stopped.
    private func pollLoop(_ backfill: Backfill, every: Double) async throws {
        var failures = 0
        while !isStopping {
            do {
                try await backfill.run()
                failures = 0
            } catch let e as CancellationError {
                throw e
            } catch {
                // A refusal (access denied on a prefix), a full journal, an outage beyond the client's
                // retries: the daemon says so and lists again later, it does not end.
                if options.drain { throw error }
                failures += 1
                let wait = min(max(every, 1) * pow(2, Double(min(failures - 1, 6))), 3600)
                logger.error("bucket listing failed; listing again in \(Int(wait))s", metadata: ["error": "\(error)", "failures": "\(failures)"], source: LogStage.backfill.rawValue)
                try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
                continue
            }
            while try journal.countObjects(in: [.received, .fetched, .emitting]) > 0 {
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            let p = backfill.lastPass
            var line = "bucket listed (pass \(p.pass)): \(p.new) new object(s) journaled, \(p.earlier) listed by an earlier pass"
            if p.refused > 0 { line += ", \(p.refused) of accounts input.accounts does not list" }
            if options.drain {
                logger.info("\(line); finished (--drain)", source: LogStage.backfill.rawValue)
                return  // ends the run
            }
            logger.log(level: p.new > 0 ? .info : .debug, "\(line); next listing in \(Int(every))s", source: LogStage.backfill.rawValue)
            try await Task.sleep(nanoseconds: UInt64(every * 1e9))
        }
    }

    // MARK: Receiving

    private func receiveLoop(_ worker: Int) async throws {
        guard let sqs else { return }
        while !isStopping {
            try Task.checkCancellation()
            // Backpressure: bounded objects in flight, and no intake while the journal is near max_size.
            // Room for two rounds of the fetch pool: downloads never starve while messages are received.
            let generation = journal.changes.generation(.finished)
            let pending = try journal.countObjects(in: [.received, .fetched, .emitting])
            if try pending >= max(config.input.workers * 16, 2 * config.input.fetchConcurrency) || journal.nearlyFull() {
                // Room comes from objects finishing and GC freeing pages; counting scans the objects.
                await journal.changes.wait(.finished, since: generation, timeout: 0.5, pause: 0.02)
                continue
            }
            let messages: [SQSMessage]
            let requested = Date()
            do {
                messages = try await sqs.receive(max: config.input.numQueueFetch, waitSeconds: config.input.waitTime, visibilityTimeout: config.input.visibilityTimeout)
            } catch let e where Disposition.of(e) != .fatal {
                // A one-shot --drain run cannot finish without the queue: an error no retry can mend (a
                // refused credential or policy, a queue that does not exist, a request SQS rejects: what
                // would quarantine an object) ends it at once, and a network or server error or missing
                // credentials after a few rounds. A daemon waits for it to be fixed, backing off
                // exponentially (1 s doubling to 5 min) and saying what it waits for.
                let permanent = Disposition.of(e) == .quarantine
                let failures = lock.withLock {
                    receiveFailures += 1
                    return receiveFailures
                }
                if options.drain && (permanent || failures >= 3 * config.input.workers) { throw e }
                let wait = min(300, pow(2, Double(min((failures - 1) / config.input.workers, 9))))
                if worker == 0 || failures == 1 {
                    logger.error(
                        "SQS ReceiveMessage failed; retrying in \(Int(wait))s", metadata: ["error": "\(e)", "failures": "\(failures)"],
                        source: LogStage.receive.rawValue)
                }
                try await Task.sleep(nanoseconds: UInt64(wait * Double.random(in: 0.8...1.0) * 1e9))
                continue
            }
            let recovered = lock.withLock {
                defer { receiveFailures = 0 }
                return receiveFailures > 0
            }
            if recovered { logger.info("SQS ReceiveMessage answers again", source: LogStage.receive.rawValue) }
            if messages.isEmpty {
                lock.withLock { lastPollEmpty = true }
                if config.input.sleepTime > 0 { try await Task.sleep(nanoseconds: UInt64(config.input.sleepTime * 1e9)) }
                continue
            }
            // SQS started each message's visibility clock somewhere between the request and the answer.
            // A long poll answers as soon as a message arrives, so a second before the answer (or the
            // request, if later) is a safe start for the heartbeat's deadline.
            let answered = Date()
            let clockStart = max(requested, answered.addingTimeInterval(-1))
            // The heartbeat keeps them invisible from now on, not only once each is journaled: journaling
            // ten messages may wait on other commits. Every message ends with its handle dropped, by the
            // delete loop (once complete, quarantined or left alone) or by a fetch backoff.
            let deadline = clockStart.addingTimeInterval(Double(config.input.visibilityTimeout))
            lock.withLock {
                lastPollEmpty = false
                lastReceive = answered
                tally.messagesReceived += messages.count
                for m in messages { handles[m.id] = HeldMessage(receiptHandle: m.receiptHandle, visibleAgainBy: deadline) }
            }
            for m in messages {
                do {
                    try await handle(m)
                } catch let e as JournalError where e.code == .full {
                    // Not journaled: SQS shows the message again after its visibility timeout.
                    lock.withLock { _ = handles.removeValue(forKey: m.id) }
                    logger.debug("journal full: message left to come back", metadata: ["message": "\(m.id)", "error": "\(e)"], source: LogStage.receive.rawValue)
                }
            }
        }
    }

    /// `input.leave_poison_to_dlq`: true or false as configured; `auto` (the default) asks the queue
    /// for its redrive policy, again every 30 s while it cannot be read (no credentials yet, a network
    /// error); meanwhile, and when `sqs:GetQueueAttributes` is denied, messages are left: a message that
    /// comes back costs a receive, a deleted one is gone for good.
    private func decidePoisonHandling(_ sqs: SQSClient) async {
        guard config.input.leavePoisonToDLQ == nil else { return }
        var warned = false
        while !Task.isCancelled {
            do {
                let policy = try await sqs.attributes(["RedrivePolicy"])["RedrivePolicy"] ?? ""
                lock.withLock { leavePoison = !policy.isEmpty }
                if !policy.isEmpty {
                    logger.info("the queue has a dead-letter queue: quarantined messages are left for its redrive policy to move", metadata: ["redrivePolicy": "\(policy)"], source: LogStage.delete.rawValue)
                }
                return
            } catch let e as AWSError where e.isRetryable {
                lock.withLock { if leavePoison == nil { leavePoison = true } }
                if !warned {
                    logger.warning("cannot read the queue's redrive policy yet; quarantined messages are left in the queue meanwhile", metadata: ["error": "\(e)"], source: LogStage.delete.rawValue)
                    warned = true
                }
                try? await Task.sleep(nanoseconds: 30_000_000_000)
            } catch is CancellationError {
                return
            } catch {
                lock.withLock { leavePoison = true }
                logger.warning("cannot read the queue's redrive policy (sqs:GetQueueAttributes); quarantined messages are left in the queue — set input.leave_poison_to_dlq to choose", metadata: ["error": "\(error)"], source: LogStage.delete.rawValue)
                return
            }
        }
    }

    private func handle(_ m: SQSMessage) async throws {
        if config.input.maxReceiveCount > 0 && m.receiveCount >= UInt32(config.input.maxReceiveCount) {
            _ = try await journal.quarantineMessage(
                id: m.id, receiptHandle: m.receiptHandle, receiveCount: m.receiveCount,
                reason: "received \(m.receiveCount) times (input.max_receive_count is \(config.input.maxReceiveCount))", detail: m.body)
            lock.withLock { tally.messagesQuarantined += 1 }
            logger.warning("poison message quarantined", metadata: ["message": "\(m.id)", "receiveCount": "\(m.receiveCount)"], source: LogStage.receive.rawValue)
            return
        }
        // Who sent it: a verified SNS signature (input.sns_signature), a listed topic (input.topics).
        let refusal: (setting: String, reason: String)? =
            if let verifier = snsVerifier, let r = await verifier.refusal(m.body) { ("signature", r) }
            else if let r = config.input.policy.refusal(topic: NotificationDecoder.topicArn(m.body)) { ("topic", r) }
            else { nil }
        if let refusal {
            _ = try await journal.quarantineMessage(id: m.id, receiptHandle: m.receiptHandle, receiveCount: m.receiveCount, reason: "refused: \(refusal.reason)", detail: m.body)
            lock.withLock {
                tally.messagesQuarantined += 1
                tally.refused[refusal.setting, default: 0] += 1
            }
            logger.warning("message refused", metadata: ["message": "\(m.id)", "reason": "\(refusal.reason)"], source: LogStage.receive.rawValue)
            return
        }
        switch NotificationDecoder.decode(m.body) {
        case .unrecognised(let reason):
            _ = try await journal.quarantineMessage(id: m.id, receiptHandle: m.receiptHandle, receiveCount: m.receiveCount, reason: "unrecognised message: \(reason)", detail: m.body)
            lock.withLock { tally.messagesQuarantined += 1 }
            logger.warning("unrecognised message quarantined", metadata: ["message": "\(m.id)", "reason": "\(reason)"], source: LogStage.receive.rawValue)
        case .nothingToDo(let reason):
            _ = try await journal.receive(ReceivedMessage(id: m.id, receiptHandle: m.receiptHandle, receiveCount: m.receiveCount, objects: []))
            logger.debug("nothing to do", metadata: ["message": "\(m.id)", "reason": "\(reason)"], source: LogStage.receive.rawValue)
        case .objects(let refs, let shape):
            let objects = refs.map { DiscoveredObject(ObjectRef(bucket: $0.bucket, key: $0.key, version: $0.etag ?? $0.versionID ?? ""), size: $0.size) }
            _ = try await journal.receive(ReceivedMessage(id: m.id, receiptHandle: m.receiptHandle, receiveCount: m.receiveCount, objects: objects))
            logger.debug("received", metadata: ["message": "\(m.id)", "shape": "\(shape)", "objects": "\(objects.count)"], source: LogStage.receive.rawValue)
        }
    }

    // MARK: Fetching

    /// The fetch pool: one dispatcher claims `received` objects (key order, none in a backoff) in one
    /// scan for every free slot of `input.fetch_concurrency`, and runs each download as its own child
    /// task; it looks again when a commit changes the journal (a fetch ending, a receipt, a listing), or
    /// after a second (a backoff ending). Invariants:
    /// 1. An object is in `fetching` from its claim until its download's last commit returned; no two
    ///    downloads of one object overlap, and the claim is re-checked against the journal (another
    ///    download may have finished it after the scan's snapshot was taken).
    /// 2. At most `fetch_concurrency` downloads run; each holds its own object's bytes only (a body is
    ///    streamed into the journal in chunks), so memory is bounded by that number, not by the backlog.
    /// 3. A child's failure other than a full journal ends the pool (and the engine), as before.
    private func fetchLoop() async throws {
        let limit = config.input.fetchConcurrency
        var position = ObjectScanPosition()
        try await withThrowingDiscardingTaskGroup { group in
            while true {
                try Task.checkCancellation()
                // New work is an object becoming received; a free slot, a download ending (its last
                // commit touches one of the three).
                let newWork = journal.changes.generation(.received)
                let slotFreed = journal.changes.generation([.received, .fetched, .finished])
                let now = Date()
                let free = limit - lock.withLock { fetching.count }
                let claimed = try journal.objects(in: [.received], limit: free, from: &position, skipping: { key in lock.withLock { fetching.contains(key) } }) { o in
                    lock.withLock { (retryAfter[o.ref].map { $0 <= now } ?? true) && fetching.insert(o.ref.journalKey).inserted }
                }
                for object in claimed {
                    group.addTask {
                        defer { self.lock.withLock { _ = self.fetching.remove(object.ref.journalKey) } }
                        try await self.fetchClaimed(object.ref)
                    }
                }
                if claimed.count == free {
                    await journal.changes.wait([.received, .fetched, .finished], since: slotFreed, timeout: 1)
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
            lock.withLock { retryAfter[ref] = Date().addingTimeInterval(1) }
        }
    }

    private func fetch(_ object: ObjectState) async throws {
        let ref = object.ref
        let kind = ObjectClassifier.classify(key: ref.key)
        let checked = kind == .digest && digestCheck != nil && !ref.bucket.hasPrefix("file://") && s3 != nil
        if kind == .digest && !checked {
            _ = try await journal.complete(ref, note: "digest file: integrity data, not emitted")
            lock.withLock { tally.objectsSkipped += 1 }
            return
        }
        if kind == .other {
            _ = try await journal.complete(ref, note: "not a CloudTrail log (by its key); skipped")
            lock.withLock { tally.objectsSkipped += 1 }
            return
        }
        let local = ref.bucket.hasPrefix("file://")
        guard local || s3 != nil else { return }
        // What this instance may read (input.buckets, input.accounts): refused before any request.
        let policy = config.input.policy
        if let refusal = local ? policy.refusal(accountOf: ref.key) : policy.refusal(bucket: ref.bucket, key: ref.key) {
            lock.withLock { tally.refused[refusal.hasPrefix("bucket") ? "bucket" : "account", default: 0] += 1 }
            try await quarantine(ref, "refused: \(refusal)")
            return
        }
        if checked, let digestCheck {
            try await checkDigest(object, digestCheck)
            return
        }
        let keyAccount = policy.accounts.isEmpty ? nil : SourcePolicy.account(inKey: ref.key)
        var recordTree = keyAccount == nil ? nil : RecordTree()  // only to read recipientAccountId
        var forged: String?
        let ticket = try await journal.startFetch(ref)
        let writer = journal.bodyWriter(ticket)
        let logKey = digestCheck == nil || kind != .log ? nil : LogKey(ref.key)
        let decoder = LogDecoder(hashing: logKey != nil)
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
                try await readLocal(String(ref.bucket.dropFirst("file://".count)) + "/" + ref.key, consume)
            } else {
                try await s3!.get(bucket: ref.bucket, key: ref.key, consume: consume)
            }
            let count = try decoder.finish(onRecord)
            if let forged {
                _ = try await journal.fetchFailed(ticket, error: forged)
                lock.withLock { tally.refused["account", default: 0] += 1 }
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
            let paused: Date? = lock.withLock {
                tally.objectsFetched += 1
                tally.bytesDownloaded += Int(writer.bytesWritten)
                retryAfter[ref] = nil
                defer { downloadsPausedSince = nil; pauseWarned = false }
                return pauseWarned ? downloadsPausedSince : nil
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
            lock.withLock { retryAfter[ref] = Date().addingTimeInterval(2) }
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
            lock.withLock {
                tally.objectsFetched += 1
                tally.bytesDownloaded += stored.count
                retryAfter[ref] = nil
                if outcome.valid { tally.digestsVerified += 1 }
                tally.logsVerified += outcome.verdict.verified.count
                for f in outcome.findings { tally.integrityFindings[f.kind.rawValue, default: 0] += 1 }
            }
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
                lock.withLock { tally.objectsSkipped += 1 }
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
            lock.withLock { retryAfter[ref] = Date().addingTimeInterval(delay) }
            // Let the messages come back after the backoff rather than after their full visibility timeout.
            let held = lock.withLock { state.messages.compactMap { id in handles.removeValue(forKey: id)?.receiptHandle } }
            for handle in held { try? await sqs?.changeVisibility(handle, timeout: Int(delay)) }
            lock.withLock { tally.messagesReturned += held.count }
            logger.warning("fetch failed; retrying", metadata: ["object": "\(ref)", "error": "\(reason)", "in": "\(delay)s"], source: LogStage.fetch.rawValue)
        case .wait where error is JournalError:
            _ = try? await journal.fetchFailed(ticket, error: reason)
            // Said once a minute at most: draining a backlog larger than the journal pauses and resumes
            // downloads at every GC pass.
            let first = lock.withLock {
                retryAfter[ref] = Date().addingTimeInterval(5)
                guard downloadsPausedSince == nil else { return false }
                downloadsPausedSince = Date()
                guard Date().timeIntervalSince(lastPauseWarning) > 60 else { return false }
                lastPauseWarning = Date()
                pauseWarned = true
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
            let state = try await journal.fetchFailed(ticket, error: reason, countAttempt: options.drain)
            if options.drain && state.attempts >= UInt32(config.input.maxFetchAttempts) {
                try await quarantine(ref, reason)
                return
            }
            lock.withLock { retryAfter[ref] = Date().addingTimeInterval(10) }
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

    private func quarantine(_ ref: ObjectRef, _ reason: String) async throws {
        _ = try await journal.quarantineObject(ref, reason: reason)
        lock.withLock { tally.objectsQuarantined += 1 }
        logger.warning("object quarantined", metadata: ["object": "\(ref)", "reason": "\(reason)"], source: LogStage.fetch.rawValue)
    }

    // MARK: Emitting

    /// Runs the output's `worker` batchers (Batcher.swift): each claims objects in key order and fills
    /// every delivery from as many as are ready, so an output works on up to `worker` batches at once
    /// (each object's records stay in order).
    private func emitLoop(_ pump: OutputPump) async throws {
        let name = pump.output.name
        let workers = config.workers(forOutput: name)
        let due: @Sendable (ObjectState) -> Bool = { o in o.cursor(name) < (o.recordCount ?? 0) }
        let hooks = Batcher.Hooks(
            claim: { [self] n, records, position in
                // The first objects (in key order: for CloudTrail's keys, account, region, then time) with
                // records this output has not acknowledged and no other batcher holds, re-read after the
                // claim (another batcher may have finished one since the scan).
                let held = { [self] (key: ObjectKey) in lock.withLock { emitting.contains(EmitClaim(output: name, object: key)) } }
                var taken = 0
                let claimed = try journal.objects(in: [.fetched, .emitting], limit: n, from: &position, skipping: held, enough: { taken >= records }) { o in
                    guard lock.withLock({ due(o) && emitting.insert(EmitClaim(output: name, object: o.ref.journalKey)).inserted }) else { return false }
                    taken += Int((o.recordCount ?? 0) - o.cursor(name))
                    return true
                }
                return try claimed.compactMap { o in
                    if let current = try journal.object(o.ref), due(current) { return current }
                    lock.withLock { _ = emitting.remove(EmitClaim(output: name, object: o.ref.journalKey)) }
                    return nil
                }
            },
            release: { [self] ref in lock.withLock { _ = emitting.remove(EmitClaim(output: name, object: ref.journalKey)) } },
            quarantine: { [self] ref, reason in try await quarantine(ref, reason) },
            counted: { [self] events, filtered, objects in
                lock.withLock {
                    tally.recordsAcknowledged[name, default: 0] += events
                    if filtered > 0 { tally.recordsFiltered[name, default: 0] += filtered }
                    if events > 0 { lastBatch[name] = (events, objects) }
                }
            },
            decoded: { [decodedBodies] body in decodedBodies.take(body: body) })
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    try await Batcher(
                        pump: pump, journal: self.journal, options: self.config.codec(forOutput: name), filter: self.config.filter(forOutput: name),
                        logger: self.logger, hooks: hooks
                    ).run()
                }
            }
            try await group.waitForAll()
        }
    }

    // MARK: Deleting and visibility

    private func deleteLoop() async throws {
        guard let sqs else { return }
        while true {
            try Task.checkCancellation()
            let generation = journal.changes.generation(.finished)
            let ready = try journal.messages(in: [.complete, .quarantined])
            if ready.isEmpty {
                await journal.changes.wait(.finished, since: generation, timeout: 1)
                continue
            }
            let leavePoison = lock.withLock { self.leavePoison }
            // Quarantined messages wait while `auto` has not learnt the redrive policy yet.
            let undecided = leavePoison == nil && !config.input.noPurge
            if undecided && ready.contains(where: { $0.state == .quarantined }) { try await Task.sleep(nanoseconds: 100_000_000) }
            // Up to eight DeleteMessageBatch calls at once: with SQS tens of milliseconds away, one at a
            // time would bound deletes at a few hundred messages a second.
            let groups = stride(from: 0, to: ready.count, by: 10).map { Array(ready[$0..<min(ready.count, $0 + 10)]) }
            try await withThrowingTaskGroup(of: Void.self) { running in
                for (n, group) in groups.enumerated() {
                    if n >= 8 { try await running.next() }
                    running.addTask { try await self.deleteGroup(group, leavePoison: leavePoison, undecided: undecided, sqs: sqs) }
                }
                try await running.waitForAll()
            }
        }
    }

    /// Deletes (or leaves, by `input.no_purge` and the poison policy) up to ten finished messages, then
    /// forgets them in the journal.
    private func deleteGroup(_ group: [MessageState], leavePoison: Bool?, undecided: Bool, sqs: SQSClient) async throws {
        var forget: [String] = []
        var left: [String] = []
        let toDelete = group.filter { m in
            if undecided && m.state == .quarantined { return false }
            let keep = config.input.noPurge || (m.state == .quarantined && leavePoison == true)
            if keep { left.append(m.id) }
            return !keep
        }
        if !left.isEmpty {
            // Not deleted: it shows again after its visibility timeout (and, with a redrive
            // policy, goes to the dead-letter queue after the policy's receives).
            logger.debug("messages left in the queue", metadata: ["messages": "\(left)"], source: LogStage.delete.rawValue)
            forget += left
            if options.drain {
                // Until when each may stay invisible: its deadline, plus SQS's clock starting up to a second
                // after the estimate's start. Only --drain asks; expired entries go as new ones come.
                let now = Date(), timeout = Double(config.input.visibilityTimeout)
                lock.withLock {
                    if leftInQueue.count > 1000 { leftInQueue = leftInQueue.filter { $0.value > now } }
                    for id in left { leftInQueue[id] = (handles[id]?.visibleAgainBy ?? now.addingTimeInterval(timeout)).addingTimeInterval(2) }
                }
            }
        }
        if !toDelete.isEmpty {
            do {
                let failures = try await sqs.deleteBatch(toDelete.map(\.receiptHandle))
                for (i, m) in toDelete.enumerated() {
                    if let f = failures.first(where: { $0.id == "\(i)" }) {
                        if f.isInvalidReceipt {
                            // Expected after downtime: the message comes back, is recognised as done, and is deleted then.
                            logger.info("receipt handle expired; the message will be deleted on redelivery", metadata: ["message": "\(m.id)"], source: LogStage.delete.rawValue)
                            forget.append(m.id)
                        } else {
                            logger.warning("SQS delete failed; retrying", metadata: ["message": "\(m.id)", "code": "\(f.code)"], source: LogStage.delete.rawValue)
                        }
                    } else {
                        forget.append(m.id)
                    }
                }
                lock.withLock { tally.messagesDeleted += toDelete.count - failures.count }
            } catch let e as AWSError {
                logger.warning("SQS DeleteMessageBatch failed", metadata: ["error": "\(e)"], source: LogStage.delete.rawValue)
                try await Task.sleep(nanoseconds: 1_000_000_000)
            }
        }
        if !forget.isEmpty {
            logger.debug("messages done", metadata: ["messages": "\(forget)"], source: LogStage.delete.rawValue)
            do {
                try await journal.messagesDeleted(forget)
            } catch let e as JournalError where e.code == .full {
                // Deleted in SQS but not yet forgotten here: done again (harmlessly) once there is room.
                logger.debug("journal full: forgetting deleted messages waits", metadata: ["error": "\(e)"], source: LogStage.delete.rawValue)
                try await Task.sleep(nanoseconds: 1_000_000_000)
                return
            }
            lock.withLock { for id in forget { handles[id] = nil } }
        }
    }

    /// Keeps every message this process holds invisible until it is deleted (or handed back). Each
    /// message has its own deadline (when SQS could show it again); it is extended once a third of its
    /// timeout has passed, so two thirds remain for the ChangeMessageVisibilityBatch call to land. The
    /// loop ticks at a tenth of the timeout (0.2–5 s), and a slow call shifts no other deadline: each
    /// new deadline counts from the moment its own request was sent.
    private func heartbeatLoop() async throws {
        guard let sqs else { return }
        let timeout = Double(config.input.visibilityTimeout)
        let tick = min(5, max(0.2, timeout / 10))
        while true {
            try await Task.sleep(nanoseconds: UInt64(tick * 1e9))
            let now = Date()
            let due = lock.withLock {
                handles.filter { $0.value.visibleAgainBy.timeIntervalSince(now) < timeout * 2 / 3 }
                    .map { (id: $0.key, handle: $0.value.receiptHandle) }
            }
            for group in stride(from: 0, to: due.count, by: 10).map({ Array(due[$0..<min(due.count, $0 + 10)]) }) {
                let sent = Date()
                do {
                    let failures = try await sqs.changeVisibilityBatch(group.map { ($0.handle, config.input.visibilityTimeout) })
                    logger.debug("visibility extended", metadata: ["messages": "\(group.count - failures.count)", "timeout": "\(config.input.visibilityTimeout)s"], source: LogStage.visibility.rawValue)
                    lock.withLock {
                        tally.visibilityExtensions += group.count - failures.count
                        for (i, entry) in group.enumerated() {
                            // The handle may have been replaced (redelivery) or dropped meanwhile.
                            guard handles[entry.id]?.receiptHandle == entry.handle else { continue }
                            if let f = failures.first(where: { $0.id == "\(i)" }) {
                                if f.isInvalidReceipt { handles[entry.id] = nil }
                            } else {
                                handles[entry.id]?.visibleAgainBy = sent.addingTimeInterval(timeout)
                            }
                        }
                    }
                } catch {
                    logger.warning("visibility extension failed", metadata: ["error": "\(error)"], source: LogStage.visibility.rawValue)
                }
            }
        }
    }

    private func gcLoop() async throws {
        var wasFull: Date?
        // A disk that is nearly full flaps: GC frees pages, commits pass, the disk fills again within a
        // second. Each episode is a warning (and its end an info line) at most once a minute; episodes
        // in between are debug lines. The `journal_full` gauge shows every one.
        var lastWarning = Date.distantPast
        var warned = false
        var lastLedgerCollection = Date.distantPast
        while true {
            try await Task.sleep(nanoseconds: 1_000_000_000)
            let full = journal.fullState.since
            if full != nil, wasFull == nil {
                let disk = journal.diskLimit()
                warned = Date().timeIntervalSince(lastWarning) >= 60
                if warned { lastWarning = Date() }
                logger.log(
                    level: warned ? .warning : .debug,
                    "journal full: writes wait for GC or for space on its disk; intake is paused, nothing is lost",
                    metadata: ["limit": "\(StatusReport.bytes(journal.effectiveLimit()))", "max_size": "\(StatusReport.bytes(config.journal.maxSize))",
                               "filesystemFree": "\(StatusReport.bytes(disk.free))", "used": "\(StatusReport.bytes((try? journal.diskUse().used) ?? 0))"])
            } else if full == nil, let since = wasFull {
                logger.log(
                    level: warned ? .info : .debug, "journal has room again",
                    metadata: ["after": "\(Int(Date().timeIntervalSince(since)))s", "filesystemFree": "\(StatusReport.bytes(journal.diskLimit().free))"])
            }
            wasFull = full
            do {
                var pass: GCResult
                repeat {
                    try Task.checkCancellation()
                    pass = try await journal.collectGarbage(maxChunks: 1024)
                    if pass.quarantineDropped > 0 {
                        logger.warning(
                            "quarantine past journal.quarantine_max_entries: the entries seen longest ago were dropped (a flood of forged or broken messages?)",
                            metadata: ["dropped": "\(pass.quarantineDropped)", "max": "\(config.journal.maxQuarantineEntries)"])
                    }
                } while pass.moreWork
                if digestCheck != nil, Date().timeIntervalSince(lastLedgerCollection) >= 60 {
                    lastLedgerCollection = Date()
                    let dropped = try await journal.collectIntegrity()
                    if dropped > 0 {
                        logger.info("integrity: ledger entries past integrity.retention dropped (logs whose digest never came)", metadata: ["dropped": "\(dropped)"])
                    }
                }
            } catch let e as JournalError where e.code == .full {
                logger.debug("journal full: garbage collection retries", metadata: ["error": "\(e)"])
            }
        }
    }
}

