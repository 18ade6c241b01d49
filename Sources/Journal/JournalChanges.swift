// # Journal change signal — how the engine's stages wait for work without polling
//
// Every write batch signals the topics its committed transactions touched — objects that became
// `received` (work for the fetch pool), objects that became `fetched` (records for the outputs),
// objects or messages that finished and GC that freed room (room for intake, work for the deleter) —
// and `any`, which every batch signals. One topic is no commit's: `released`, which a stage announces
// when it gives back a claim it held in memory (the fetch pool's slots). A stage waits only on the
// topics that can bring it work, so a commit wakes only the stages it concerns. Invariants:
//
// 1. The generation of a set of topics grows after every write batch the writer thread finished that
//    touched one of them (`any`: every batch, committed or not), after its callers were resumed: a
//    stage that read the journal at generation g of its topics and saw nothing to do has missed none
//    of their changes once it waits with `since: g`, since any later such batch makes the generation
//    differ from g and the wait returns at once. A transition that makes work for a stage touches that stage's topic in
//    the same transaction (`WriteContext.touch`; the transitions say which). Likewise the generation
//    of `released` grows after every `announce`, which its caller makes after the claim is given back;
//    `any` counts write batches only, and an announcement does not move it.
// 2. Every waiter is resumed exactly once: by a signal of one of its topics, by its timeout, or by its
//    task's cancellation, whichever comes first; the others find it gone. The timeout is a fallback
//    (work that nothing announces: a backoff ending, a clock passing, a batcher's claim given back
//    after a failure), never the means by which commits or announcements are seen.
// 3. No lock is held while a continuation is resumed.

import Synchronization

/// Wakes tasks waiting for the journal to change, by what changed (invariants above).
public final class JournalChanges: Sendable {
    /// What a commit changed, as the stages that wait care.
    public struct Topics: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Objects became `received` (listed, notified, re-queued, or a failed download back to wait):
        /// work for the fetch pool.
        public static let received = Topics(rawValue: 1 << 0)
        /// Objects became `fetched`: records for the outputs' batchers.
        public static let fetched = Topics(rawValue: 1 << 1)
        /// Objects finished (done, quarantined), messages became complete or quarantined, or GC freed
        /// room: room for intake, work for the deleter.
        public static let finished = Topics(rawValue: 1 << 2)
        /// Every write batch, whatever it changed.
        public static let any = Topics(rawValue: 1 << 3)
        /// A stage gave back a claim it held in memory (a download's slot in the fetch pool): announced by
        /// that stage with ``JournalChanges/announce(_:)``, never by a commit.
        public static let released = Topics(rawValue: 1 << 4)
        static let count = 5
    }

    /// A waiter between its registration and its resumption.
    private enum Waiter {
        /// Announced, its continuation not yet stored.
        case announced(Topics)
        /// Resumed (signal, timeout or cancellation) before its continuation was stored.
        case early
        case waiting(CheckedContinuation<Void, Never>, Topics)
    }
    private struct State {
        /// Per topic, the write batches that touched it.
        var generations = [UInt64](repeating: 0, count: Topics.count)
        var nextID: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]

        func generation(_ topics: Topics) -> UInt64 {
            var sum: UInt64 = 0
            for bit in 0..<Topics.count where topics.rawValue & (1 << bit) != 0 { sum &+= generations[bit] }
            return sum
        }
    }
    private let state = Mutex(State())
    /// Commits counted since the journal was opened (write transactions that committed).
    private let commitCount = Atomic<UInt64>(0)

    init() {}

    /// The current generation of `topics`: read it before looking at the journal, then wait with it
    /// (for the same topics).
    public func generation(_ topics: Topics = .any) -> UInt64 { state.withLock { $0.generation(topics) } }

    /// Write transactions committed since the journal was opened (several transitions may share one).
    public var commits: UInt64 { commitCount.load(ordering: .relaxed) }

    func committed() { commitCount.add(1, ordering: .relaxed) }

    /// Moves the generation of `topics` (and of `any`), and resumes the waiters of any of them.
    func signal(_ topics: Topics) { move(topics.union(.any)) }

    /// Tells the stages waiting on `topics` that something no commit records changed (``Topics/released``):
    /// call it after the change (invariant 1). It does not move `any`.
    public func announce(_ topics: Topics) {
        precondition(topics.isSubset(of: .released), "only in-memory topics are announced; commits signal the others")
        move(topics)
    }

    private func move(_ topics: Topics) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            for bit in 0..<Topics.count where topics.rawValue & (1 << bit) != 0 { s.generations[bit] &+= 1 }
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, w) in s.waiters {
                switch w {
                case .waiting(let c, let wanted) where !wanted.isDisjoint(with: topics):
                    ready.append(c)
                    s.waiters[id] = .early
                case .announced(let wanted) where !wanted.isDisjoint(with: topics):
                    s.waiters[id] = .early
                default: break
                }
            }
            return ready
        }
        for c in ready { c.resume() }
    }

    /// Resumes one waiter (its timeout or its cancellation), or marks it so that it does not wait.
    private func resume(_ id: UInt64) {
        let ready = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let w = s.waiters[id] else { return nil }
            s.waiters[id] = .early
            if case .waiting(let c, _) = w { return c }
            return nil
        }
        ready?.resume()
    }

    /// Returns once the generation of `topics` differs from `since` (at once if it already does), after
    /// `timeout` seconds, or when the task is cancelled; with `pause`, that many seconds later (unless
    /// cancelled), so that a stage whose look at the journal is costly (a scan) answers a busy moment's
    /// commits with one look.
    public func wait(_ topics: Topics = .any, since generation: UInt64, timeout: Double, pause: Double = 0) async {
        await wait(topics, since: generation, timeout: timeout)
        if pause > 0 { try? await Task.sleep(nanoseconds: UInt64(pause * 1e9)) }
    }

    private func wait(_ topics: Topics, since generation: UInt64, timeout: Double) async {
        let id = state.withLock { s -> UInt64 in
            s.nextID &+= 1
            s.waiters[s.nextID] = s.generation(topics) == generation ? .announced(topics) : .early
            return s.nextID
        }
        defer { state.withLock { _ = $0.waiters.removeValue(forKey: id) } }
        let timer = Task { [weak self] in
            try? await Task.sleep(nanoseconds: UInt64(max(0, timeout) * 1e9))
            self?.resume(id)
        }
        defer { timer.cancel() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    guard case .announced(let wanted) = s.waiters[id], !Task.isCancelled else { return true }
                    s.waiters[id] = .waiting(c, wanted)
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            resume(id)
        }
    }
}
