// # Journal change signal — how the engine's stages wait for work without polling
//
// Invariants:
// 1. `generation` grows by one after every write batch the writer thread finished (committed or not),
//    after its callers were resumed: a stage that read the journal at generation g and saw nothing to do
//    has missed nothing once it waits with `since: g`, since any later commit makes the generation
//    differ from g and the wait returns at once.
// 2. Every waiter is resumed exactly once: by a signal, by its timeout, or by its task's cancellation,
//    whichever comes first; the others find it gone. The timeout is a fallback (work that no commit
//    announces: a backoff ending, a clock passing), never the means by which commits are seen.
// 3. No lock is held while a continuation is resumed.

import Synchronization

/// Wakes tasks waiting for the journal to change (a commit of any transition).
public final class JournalChanges: Sendable {
    /// A waiter between its registration and its resumption.
    private enum Waiter {
        /// Announced, its continuation not yet stored.
        case announced
        /// Resumed (signal, timeout or cancellation) before its continuation was stored.
        case early
        case waiting(CheckedContinuation<Void, Never>)
    }
    private struct State {
        var generation: UInt64 = 0
        var nextID: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
    }
    private let state = Mutex(State())
    /// Commits counted since the journal was opened (write transactions that committed).
    private let commitCount = Atomic<UInt64>(0)

    init() {}

    /// The current generation: read it before looking at the journal, then wait with it.
    public var generation: UInt64 { state.withLock { $0.generation } }

    /// Write transactions committed since the journal was opened (several transitions may share one).
    public var commits: UInt64 { commitCount.load(ordering: .relaxed) }

    func committed() { commitCount.add(1, ordering: .relaxed) }

    /// Resumes every waiter and moves to the next generation.
    func signal() {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.generation &+= 1
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, w) in s.waiters {
                if case .waiting(let c) = w { ready.append(c) }
                s.waiters[id] = .early
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
            if case .waiting(let c) = w { return c }
            return nil
        }
        ready?.resume()
    }

    /// Returns once the generation differs from `since` (at once if it already does), after `timeout`
    /// seconds, or when the task is cancelled; with `pause`, that many seconds later (unless cancelled),
    /// so that a stage whose look at the journal is costly (a scan) answers a busy moment's commits
    /// with one look.
    public func wait(since generation: UInt64, timeout: Double, pause: Double = 0) async {
        await wait(since: generation, timeout: timeout)
        if pause > 0 { try? await Task.sleep(nanoseconds: UInt64(pause * 1e9)) }
    }

    private func wait(since generation: UInt64, timeout: Double) async {
        let id = state.withLock { s -> UInt64 in
            s.nextID &+= 1
            s.waiters[s.nextID] = s.generation == generation ? .announced : .early
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
                    guard case .announced = s.waiters[id], !Task.isCancelled else { return true }
                    s.waiters[id] = .waiting(c)
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            resume(id)
        }
    }
}
