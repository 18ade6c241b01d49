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
import Synchronization

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
/// The stages are components, each owning its state behind a `Mutex` (with its invariants at the top
/// of its file): Receiver, Fetcher (the fetch pool), Emitter (each output's batchers), MessageDeleter,
/// VisibilityKeeper (with HeldMessages, the receipt handles held), Collector (GC). The engine only
/// composes them, runs them as one task group and says when a run is over. They hand work to each
/// other through the journal alone, woken by its commits (JournalChanges); what they share besides is
/// explicit: HeldMessages (receiver, fetcher, deleter, keeper), PoisonPolicy (receiver, deleter), the
/// Tally (counts) and DecodedBodies (fetcher to batchers).
public final class Engine: Service, Sendable {
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
    let backfill: Backfill?
    /// Checks digests as they arrive and hashes every log at fetch (`integrity.enabled`), when on.
    let digestCheck: DigestCheck?
    /// Bucket polling: the wait between listing passes of `backfill` (nil: one pass).
    let pollInterval: Double?
    let metrics = EngineMetrics()
    /// Small objects' records split at fetch, for the batchers (DecodedBodies.swift): 16 MiB at most.
    let decodedBodies: DecodedBodies
    let tally = Tally()
    /// The stages (nil where this kind of run has none: no queue, no receivers, deleter or keeper).
    let receiver: Receiver?
    let fetcher: Fetcher
    let emitter: Emitter
    let deleter: MessageDeleter?
    let keeper: VisibilityKeeper?
    let collector: Collector
    private let stopping = Mutex(false)

    /// The Prometheus text exposition of this engine (for the `http` endpoint).
    public func metricsText() -> String { metrics.render(engine: self) }

    /// A copy of what this run did so far (for the metrics and the summary).
    public var counters: Counters { tally.counters }
    /// Downloads in flight now and each output's latest batch, for the metrics.
    var pipelineGauges: (fetches: Int, batches: [String: (events: Int, objects: Int)]) { (fetcher.inFlight, tally.lastBatches) }

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

    /// `backfill`: a backfill walking existing logs (queue mode when nil), polled every `pollInterval`
    /// seconds if given (bucket polling); `snsVerifier` checks SNS envelopes' signatures
    /// (`input.sns_signature`); `digestCheck` validates integrity (`integrity.enabled`).
    init(
        config: Config, options: Options, journal: Journal, sqs: SQSClient?, s3: S3Client?, outputs: [any Output], http: HTTPClient, logger: Logger,
        backfill: Backfill? = nil, pollInterval: Double? = nil, snsVerifier: SNSSignatureVerifier? = nil, digestCheck: DigestCheck? = nil
    ) {
        self.config = config
        self.options = options
        self.journal = journal
        self.sqs = sqs
        self.s3 = s3
        self.http = http
        self.logger = logger
        self.backfill = backfill
        self.pollInterval = pollInterval
        self.digestCheck = digestCheck
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
        // Until the queue's redrive policy is known, quarantined messages are held (never lost, and not
        // left before the answer says whether a DLQ takes them).
        let queue = backfill == nil ? sqs : nil
        let poison = PoisonPolicy(config.input.leavePoisonToDLQ ?? (queue != nil ? nil : true))
        let held = HeldMessages()
        let stage = StageContext(config: config, drain: options.drain, journal: journal, tally: tally, logger: logger)
        receiver = queue.map { Receiver(stage, sqs: $0, held: held, poison: poison, snsVerifier: snsVerifier) }
        deleter = queue.map { MessageDeleter(stage: stage, sqs: $0, held: held, poison: poison) }
        keeper = queue.map { VisibilityKeeper(stage: stage, sqs: $0, held: held) }
        let fetcher = Fetcher(stage, s3: s3, sqs: sqs, held: held, decodedBodies: decodedBodies, digestCheck: digestCheck, backfill: backfill)
        self.fetcher = fetcher
        emitter = Emitter(stage, decodedBodies: decodedBodies) { ref, reason in try await fetcher.quarantine(ref, reason) }
        collector = Collector(stage: stage, integrity: digestCheck != nil)
    }

    /// Stops intake; in-flight work ends at its next checkpoint.
    public func stop() { stopping.withLock { $0 = true } }
    var isStopping: Bool { stopping.withLock { $0 } }

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
        receiver?.started()
        try await journal.forgetOutputFailures()
        #if DEBUG
        if let delay = journal.debugCommitDelayMilliseconds {
            logger.warning("debug build: every journal commit waits \(delay) ms first (CLOUDTRAILBEAT_DEBUG_COMMIT_DELAY_MS)")
        }
        #endif
        // Learns the queue's redrive policy in the background, retrying until SQS answers (PoisonPolicy).
        let policy = Task { await receiver?.decidePoisonHandling() }
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
            } else if let receiver, let deleter, let keeper {
                for worker in 0..<config.input.workers { group.addTask { try await receiver.run(worker) { self.isStopping } } }
                group.addTask { try await deleter.run() }
                group.addTask { try await keeper.run() }
            }
            group.addTask { try await self.fetcher.run() }
            for pump in pumps { group.addTask { try await self.emitter.run(pump) } }
            group.addTask { try await self.collector.run() }
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
        let (pollEmpty, since) = receiver?.lastPoll ?? (true, .distantPast)
        guard pollEmpty, Date().timeIntervalSince(since) > 0.2 else { return false }
        let pendingObjects = try journal.countObjects(in: [.received, .fetched, .emitting])
        let messages = try journal.messages()
        if pendingObjects == 0 && messages.isEmpty {
            if let receiver, !(await receiver.queueQuiet()) { return false }
            logger.info(sqs == nil || backfill != nil
                ? "finished: every partition listed and every object shipped"
                : "drained: the queue answered empty and no journaled work is left")
            return true
        }
        return false
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
}
