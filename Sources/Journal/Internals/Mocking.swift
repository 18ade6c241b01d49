#if DEBUG
import Foundation

/// Debug-only fault injection behind the LMDB funnel (see `LMDB.swift`).
///
/// A test arms a point with an error code and a countdown; the Nth call through
/// that point then fails with the code instead of reaching LMDB (for a commit,
/// the transaction is aborted, exactly as a failed `mdb_txn_commit` leaves it).
/// Release builds compile none of this.
final class FaultInjector: @unchecked Sendable {
    private let lock = NSLock()
    private var plans: [JournalFaultPoint: (countdown: Int, code: Int32, times: Int)] = [:]

    /// Microseconds every commit waits before `mdb_txn_commit`, as a slow disk's fsync would: from the
    /// environment variable `CLOUDTRAILBEAT_DEBUG_COMMIT_DELAY_MS`, so tests can slow the real binary.
    let commitDelay: UInt32 = UInt32(ProcessInfo.processInfo.environment["CLOUDTRAILBEAT_DEBUG_COMMIT_DELAY_MS"] ?? "").map { $0 * 1000 } ?? 0

    func arm(_ point: JournalFaultPoint, code: Int32, onCall n: Int, times: Int) {
        lock.withLock { plans[point] = (max(1, n), code, max(1, times)) }
    }

    func disarm() { lock.withLock { plans.removeAll() } }

    /// Returns the code to fail with, or nil to let the real call through.
    func take(_ point: JournalFaultPoint) -> Int32? {
        lock.withLock {
            guard var plan = plans[point] else { return nil }
            plan.countdown -= 1
            if plan.countdown > 0 {
                plans[point] = plan
                return nil
            }
            plan.times -= 1
            if plan.times <= 0 { plans[point] = nil } else { plan.countdown = 1; plans[point] = plan }
            return plan.code
        }
    }
}
#endif

/// A place in the LMDB funnel where debug builds can inject a failure.
public enum JournalFaultPoint: Hashable, Sendable {
    /// `mdb_txn_begin` of a write transaction.
    case beginWrite
    /// `mdb_put`.
    case put
    /// `mdb_txn_commit`.
    case commit
}
