import AWS
import Foundation
import Logging
import Synchronization

/// The SQS messages this process holds in flight, by id, and the visibility keeper that keeps them so.
///
/// Invariants:
/// 1. A message is held from the answer of the ReceiveMessage that brought it until the deleter forgets
///    it (deleted, or left in the queue), a fetch backoff hands it back early, or its journaling failed
///    (a full journal: SQS shows it again after its timeout). Every message received ends one of these
///    ways, so the map holds no more than the messages in flight.
/// 2. Each held message's `visibleAgainBy` is never later than the moment SQS could show it again: its
///    clock starts no later than the answer (a second before it, or the request if later), and an
///    extension counts from the moment its own request was sent.
/// 3. An extension lands only on the handle it was sent for: a handle replaced (redelivery) or dropped
///    meanwhile is left alone.
/// 4. Messages left in the queue by this run (`no_purge`, poison for a DLQ) are remembered, for
///    --drain only, until they may be visible again; the record is pruned as new ones come.
final class HeldMessages: Sendable {
    struct Held {
        var receiptHandle: String
        /// The earliest moment SQS may make the message visible again (a conservative estimate).
        var visibleAgainBy: Date
    }

    private struct State {
        var held: [String: Held] = [:]
        /// Messages left in the queue by this run, with when SQS may show each again (invariant 4).
        var left: [String: Date] = [:]
    }

    private let state = Mutex(State())

    /// Holds messages just received, visible again by `deadline` (invariant 2).
    func hold(_ messages: [SQSMessage], visibleAgainBy deadline: Date) {
        state.withLock { s in
            for m in messages { s.held[m.id] = Held(receiptHandle: m.receiptHandle, visibleAgainBy: deadline) }
        }
    }

    /// Stops holding these messages (deleted, left, expired, or not journaled).
    func release(_ ids: [String]) {
        state.withLock { s in
            for id in ids { s.held[id] = nil }
        }
    }

    /// Stops holding these messages and returns their receipt handles (to hand them back early).
    func handBack(_ ids: [String]) -> [String] {
        state.withLock { s in ids.compactMap { s.held.removeValue(forKey: $0)?.receiptHandle } }
    }

    /// Held messages SQS may show again within `margin` seconds of `now`.
    func due(at now: Date, margin: Double) -> [(id: String, handle: String)] {
        state.withLock { s in
            s.held.filter { $0.value.visibleAgainBy.timeIntervalSince(now) < margin }.map { (id: $0.key, handle: $0.value.receiptHandle) }
        }
    }

    /// The outcome of one ChangeMessageVisibilityBatch sent at `sent`: extended entries are visible
    /// again `timeout` seconds after it; an expired handle is dropped (invariant 3).
    func extended(_ entries: [(id: String, handle: String)], failures: [SQSBatchFailure], sent: Date, timeout: Double) {
        state.withLock { s in
            for (i, entry) in entries.enumerated() {
                guard s.held[entry.id]?.receiptHandle == entry.handle else { continue }
                if let f = failures.first(where: { $0.id == "\(i)" }) {
                    if f.isInvalidReceipt { s.held[entry.id] = nil }
                } else {
                    s.held[entry.id]?.visibleAgainBy = sent.addingTimeInterval(timeout)
                }
            }
        }
    }

    /// Records messages left in the queue (--drain): each may stay invisible until its deadline, plus a
    /// second or two for SQS's clock having started after the estimate's start.
    func left(_ ids: [String], timeout: Double) {
        let now = Date()
        state.withLock { s in
            if s.left.count > 1000 { s.left = s.left.filter { $0.value > now } }
            for id in ids { s.left[id] = (s.held[id]?.visibleAgainBy ?? now.addingTimeInterval(timeout)).addingTimeInterval(2) }
        }
    }

    /// Messages this run left in the queue that may still be invisible.
    func leftInFlight(at now: Date) -> Int {
        state.withLock { s in s.left.values.filter { $0 > now }.count }
    }
}

/// Keeps every message this process holds invisible until it is deleted (or handed back). Each
/// message has its own deadline (when SQS could show it again); it is extended once a third of its
/// timeout has passed, so two thirds remain for the ChangeMessageVisibilityBatch call to land. The
/// loop ticks at a tenth of the timeout (0.2–5 s), and a slow call shifts no other deadline: each
/// new deadline counts from the moment its own request was sent.
struct VisibilityKeeper: StageComponent {
    /// The configuration, the journal, the tally and the logger every stage shares.
    let stage: StageContext
    let sqs: SQSClient
    let held: HeldMessages

    func run() async throws {
        let timeout = Double(config.input.visibilityTimeout)
        let tick = min(5, max(0.2, timeout / 10))
        while true {
            try await Task.sleep(nanoseconds: UInt64(tick * 1e9))
            let due = held.due(at: Date(), margin: timeout * 2 / 3)
            for group in stride(from: 0, to: due.count, by: 10).map({ Array(due[$0..<min(due.count, $0 + 10)]) }) {
                let sent = Date()
                do {
                    let failures = try await sqs.changeVisibilityBatch(group.map { ($0.handle, config.input.visibilityTimeout) })
                    logger.debug("visibility extended", metadata: ["messages": "\(group.count - failures.count)", "timeout": "\(config.input.visibilityTimeout)s"], source: LogStage.visibility.rawValue)
                    tally.count { $0.visibilityExtensions += group.count - failures.count }
                    held.extended(group, failures: failures, sent: sent, timeout: timeout)
                } catch {
                    logger.warning("visibility extension failed", metadata: ["error": "\(error)"], source: LogStage.visibility.rawValue)
                }
            }
        }
    }
}
