import AWS
import Failures
import Foundation
import Journal
import Logging
import SNSSignature
import Stages
import Synchronization

/// Whether quarantined messages are left in the queue (for its dead-letter queue) instead of deleted;
/// nil while `input.leave_poison_to_dlq: auto` has not yet learnt the queue's redrive policy: the
/// deleter holds quarantined messages meanwhile (neither deleted nor left). Set by the receiver,
/// read by the deleter.
final class PoisonPolicy: Sendable {
    private let state: Mutex<Bool?>
    init(_ leave: Bool?) { state = Mutex(leave) }
    var leave: Bool? { state.withLock { $0 } }
    func set(_ leave: Bool) { state.withLock { $0 = leave } }
    /// Sets it unless already decided.
    func setIfUndecided(_ leave: Bool) { state.withLock { if $0 == nil { $0 = leave } } }
}

/// The SQS receivers: `input.workers` long polls, each journaling its answer before anything acts on it,
/// and the answers to "did the queue answer empty?" and "is it quiet?" that --drain asks.
///
/// Invariants:
/// 1. A message is journaled (or quarantined in the journal) before any other stage sees it; it is
///    held (HeldMessages) from the answer on, so its visibility is kept while it waits for the commit.
/// 2. Intake stops while the journal holds `2 × fetch_concurrency` objects (at least `16 × workers`)
///    not yet finished, or is nearly full: what is received is bounded, whatever the queue's depth.
/// 3. `lastPollEmpty` is true only while the latest answer was empty: any message received clears it.
final class Receiver: StageComponent {
    private struct State {
        /// ReceiveMessage calls that failed in a row, across receivers (for the backoff and --drain).
        var failures = 0
        var lastPollEmpty = false
        var lastReceive = Date.distantPast
        /// When this run started: messages an earlier run received and never journaled (it was killed in
        /// between) are visible again at most one visibility timeout later (``queueQuiet()``).
        var startedAt = Date()
        /// The latest answer to "is the queue quiet?" (--drain), asked at most once a second.
        var quietCheck: (at: Date, quiet: Bool) = (.distantPast, false)
        var inFlightWarned = false
    }

    /// The configuration, the journal, the tally and the logger every stage shares.
    let stage: StageContext
    let sqs: SQSClient
    let held: HeldMessages
    let poison: PoisonPolicy
    /// Verifies SNS envelopes' signatures (`input.sns_signature`), when on.
    let snsVerifier: SNSSignatureVerifier?
    private let state = Mutex(State())

    init(_ stage: StageContext, sqs: SQSClient, held: HeldMessages, poison: PoisonPolicy, snsVerifier: SNSSignatureVerifier?) {
        self.stage = stage
        self.sqs = sqs
        self.held = held
        self.poison = poison
        self.snsVerifier = snsVerifier
    }

    /// The run starts now (for ``queueQuiet()``'s window).
    func started() { state.withLock { $0.startedAt = Date() } }

    /// Whether the latest receive answered empty, and when the latest non-empty answer came.
    var lastPoll: (empty: Bool, since: Date) { state.withLock { ($0.lastPollEmpty, $0.lastReceive) } }

    /// One receiver: long polls until `stopping()` says so (or the task is cancelled).
    func run(_ worker: Int, stopping: @Sendable () -> Bool) async throws {
        while !stopping() {
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
                let failures = state.withLock { s in
                    s.failures += 1
                    return s.failures
                }
                if drain && (permanent || failures >= 3 * config.input.workers) { throw e }
                let wait = min(300, pow(2, Double(min((failures - 1) / config.input.workers, 9))))
                if worker == 0 || failures == 1 {
                    logger.error(
                        "SQS ReceiveMessage failed; retrying in \(Int(wait))s", metadata: ["error": "\(e)", "failures": "\(failures)"],
                        source: LogStage.receive.rawValue)
                }
                try await Task.sleep(nanoseconds: UInt64(wait * Double.random(in: 0.8...1.0) * 1e9))
                continue
            }
            let recovered = state.withLock { s in
                defer { s.failures = 0 }
                return s.failures > 0
            }
            if recovered { logger.info("SQS ReceiveMessage answers again", source: LogStage.receive.rawValue) }
            if messages.isEmpty {
                state.withLock { $0.lastPollEmpty = true }
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
            state.withLock { s in
                s.lastPollEmpty = false
                s.lastReceive = answered
            }
            tally.count { $0.messagesReceived += messages.count }
            held.hold(messages, visibleAgainBy: clockStart.addingTimeInterval(Double(config.input.visibilityTimeout)))
            for m in messages {
                do {
                    try await handle(m)
                } catch let e as JournalError where e.code == .full {
                    // Not journaled: SQS shows the message again after its visibility timeout.
                    held.release([m.id])
                    logger.debug("journal full: message left to come back", metadata: ["message": "\(m.id)", "error": "\(e)"], source: LogStage.receive.rawValue)
                }
            }
        }
    }

    /// `input.leave_poison_to_dlq`: true or false as configured; `auto` (the default) asks the queue
    /// for its redrive policy, again every 30 s while it cannot be read (no credentials yet, a network
    /// error); meanwhile, and when `sqs:GetQueueAttributes` is denied, messages are left: a message that
    /// comes back costs a receive, a deleted one is gone for good.
    func decidePoisonHandling() async {
        guard config.input.leavePoisonToDLQ == nil else { return }
        var warned = false
        while !Task.isCancelled {
            do {
                let policy = try await sqs.attributes(["RedrivePolicy"])["RedrivePolicy"] ?? ""
                poison.set(!policy.isEmpty)
                if !policy.isEmpty {
                    logger.info("the queue has a dead-letter queue: quarantined messages are left for its redrive policy to move", metadata: ["redrivePolicy": "\(policy)"], source: LogStage.delete.rawValue)
                }
                return
            } catch let e as AWSError where e.isRetryable {
                poison.setIfUndecided(true)
                if !warned {
                    logger.warning("cannot read the queue's redrive policy yet; quarantined messages are left in the queue meanwhile", metadata: ["error": "\(e)"], source: LogStage.delete.rawValue)
                    warned = true
                }
                try? await Task.sleep(nanoseconds: 30_000_000_000)
            } catch is CancellationError {
                return
            } catch {
                poison.set(true)
                logger.warning("cannot read the queue's redrive policy (sqs:GetQueueAttributes); quarantined messages are left in the queue — set input.leave_poison_to_dlq to choose", metadata: ["error": "\(error)"], source: LogStage.delete.rawValue)
                return
            }
        }
    }

    /// Journals one message: quarantined (received too often, refused, unrecognised) or its objects.
    private func handle(_ m: SQSMessage) async throws {
        if config.input.maxReceiveCount > 0 && m.receiveCount >= UInt32(config.input.maxReceiveCount) {
            _ = try await journal.quarantineMessage(
                id: m.id, receiptHandle: m.receiptHandle, receiveCount: m.receiveCount,
                reason: "received \(m.receiveCount) times (input.max_receive_count is \(config.input.maxReceiveCount))", detail: m.body)
            tally.count { $0.messagesQuarantined += 1 }
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
            tally.count { c in
                c.messagesQuarantined += 1
                c.refused[refusal.setting, default: 0] += 1
            }
            logger.warning("message refused", metadata: ["message": "\(m.id)", "reason": "\(refusal.reason)"], source: LogStage.receive.rawValue)
            return
        }
        switch NotificationDecoder.decode(m.body, maxKeys: config.input.maxKeysPerMessage) {
        case .unrecognised(let reason):
            _ = try await journal.quarantineMessage(id: m.id, receiptHandle: m.receiptHandle, receiveCount: m.receiveCount, reason: "unrecognised message: \(reason)", detail: m.body)
            tally.count { $0.messagesQuarantined += 1 }
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

    /// Whether no message is in flight in the queue that may still come back to this run. A run killed
    /// between ReceiveMessage and the commit journaling its answer leaves those messages invisible for
    /// up to one visibility timeout (its heartbeat may have just extended them), and an empty receive
    /// meanwhile says nothing of them: --drain would end with them still in the queue. So, within one
    /// visibility timeout of this run's start, the queue is quiet only when
    /// `ApproximateNumberOfMessagesNotVisible` counts no more than the messages this run left there
    /// itself. After that window every such message was visible again, and receiving it is the receive
    /// loop's business. A queue whose attributes cannot be read (`sqs:GetQueueAttributes` denied, an
    /// outage) counts as quiet: the check is a refinement, not a new way to hang.
    func queueQuiet() async -> Bool {
        let now = Date()
        let timeout = Double(config.input.visibilityTimeout)
        let (windowEnd, cached) = state.withLock { s in (s.startedAt.addingTimeInterval(timeout + 1), s.quietCheck) }
        guard now < windowEnd else { return true }
        if now.timeIntervalSince(cached.at) < 1 { return cached.quiet }
        let left = held.leftInFlight(at: now)
        var quiet = true
        do {
            let attributes = try await sqs.attributes(["ApproximateNumberOfMessagesNotVisible"])
            let inFlight = Int(attributes["ApproximateNumberOfMessagesNotVisible"] ?? "") ?? 0
            if inFlight > left {
                quiet = false
                let warn = state.withLock { s in
                    defer { s.inFlightWarned = true }
                    return !s.inFlightWarned
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
        state.withLock { $0.quietCheck = (Date(), quiet) }
        return quiet
    }

}
