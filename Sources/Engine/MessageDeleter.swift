import AWS
import Foundation
import Journal
import Logging

/// Deletes the messages whose every object is finished (or which were quarantined), then forgets them
/// in the journal; with `input.no_purge`, or for poison left to a dead-letter queue, leaves them in the
/// queue instead.
///
/// Invariants:
/// 1. A message is deleted only once the journal says it is `complete` or `quarantined`: every record
///    of every object it named was acknowledged by every output first (the journal's invariants).
/// 2. It is forgotten in the journal only after SQS confirmed the delete (or said the handle expired:
///    the message comes back, is recognised as done and deleted then); a failed delete is retried.
/// 3. Quarantined messages wait while `auto` has not learnt the redrive policy (PoisonPolicy).
struct MessageDeleter: StageComponent {
    /// The configuration, the journal, the tally and the logger every stage shares.
    let stage: StageContext
    let sqs: SQSClient
    let held: HeldMessages
    let poison: PoisonPolicy

    func run() async throws {
        while true {
            try Task.checkCancellation()
            let generation = journal.changes.generation(.finished)
            let ready = try journal.messages(in: [.complete, .quarantined])
            if ready.isEmpty {
                await journal.changes.wait(.finished, since: generation, timeout: 1)
                continue
            }
            let leavePoison = poison.leave
            // Quarantined messages wait while `auto` has not learnt the redrive policy yet.
            let undecided = leavePoison == nil && !config.input.noPurge
            if undecided && ready.contains(where: { $0.state == .quarantined }) { try await Task.sleep(nanoseconds: 100_000_000) }
            // Up to eight DeleteMessageBatch calls at once: with SQS tens of milliseconds away, one at a
            // time would bound deletes at a few hundred messages a second.
            let groups = stride(from: 0, to: ready.count, by: 10).map { Array(ready[$0..<min(ready.count, $0 + 10)]) }
            try await withThrowingTaskGroup(of: Void.self) { running in
                for (n, group) in groups.enumerated() {
                    if n >= 8 { try await running.next() }
                    running.addTask { try await self.deleteGroup(group, leavePoison: leavePoison, undecided: undecided) }
                }
                try await running.waitForAll()
            }
        }
    }

    /// Deletes (or leaves, by `input.no_purge` and the poison policy) up to ten finished messages, then
    /// forgets them in the journal.
    private func deleteGroup(_ group: [MessageState], leavePoison: Bool?, undecided: Bool) async throws {
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
            if drain {
                held.left(left, timeout: Double(config.input.visibilityTimeout))
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
                tally.count { $0.messagesDeleted += toDelete.count - failures.count }
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
            held.release(forget)
        }
    }
}
