import Foundation
import Journal
import Logging
import Outputs
import Synchronization

/// Each output's batchers (Batcher.swift, whose invariants open that file), and the claims that keep
/// two batchers of one output off the same object.
///
/// Runs the output's `worker` batchers (Batcher.swift): each claims objects in key order and fills
/// every delivery from as many as are ready, so an output works on up to `worker` batches at once
/// (each object's records stay in order).
///
/// Invariant: an (output, object) pair is in `emitting` from a batcher's claim until that batcher
/// released it (its records acknowledged, or given up); a claim is re-checked against the journal
/// after the scan that found it.
final class Emitter: StageComponent {
    /// (output, object) pairs a batcher is working on.
    private struct Claim: Hashable {
        var output: String
        var object: ObjectKey
    }

    /// The configuration, the journal, the tally and the logger every stage shares.
    let stage: StageContext
    let decodedBodies: DecodedBodies
    /// Sets an object aside (a stored body that no longer decodes).
    let quarantine: @Sendable (ObjectRef, String) async throws -> Void
    private let emitting = Mutex<Set<Claim>>([])

    init(_ stage: StageContext, decodedBodies: DecodedBodies, quarantine: @escaping @Sendable (ObjectRef, String) async throws -> Void) {
        self.stage = stage
        self.decodedBodies = decodedBodies
        self.quarantine = quarantine
    }

    func run(_ pump: OutputPump) async throws {
        let name = pump.output.name
        let workers = config.workers(forOutput: name)
        let due: @Sendable (ObjectState) -> Bool = { o in o.cursor(name) < (o.recordCount ?? 0) }
        let hooks = Batcher.Hooks(
            claim: { [self] n, records, position in
                // The first objects (in key order: for CloudTrail's keys, account, region, then time) with
                // records this output has not acknowledged and no other batcher holds, re-read after the
                // claim (another batcher may have finished one since the scan).
                let held = { [self] (key: ObjectKey) in emitting.withLock { $0.contains(Claim(output: name, object: key)) } }
                var taken = 0
                let claimed = try journal.objects(in: [.fetched, .emitting], limit: n, from: &position, skipping: held, enough: { taken >= records }) { o in
                    guard due(o) && emitting.withLock({ $0.insert(Claim(output: name, object: o.ref.journalKey)).inserted }) else { return false }
                    taken += Int((o.recordCount ?? 0) - o.cursor(name))
                    return true
                }
                return try claimed.compactMap { o in
                    if let current = try journal.object(o.ref), due(current) { return current }
                    emitting.withLock { _ = $0.remove(Claim(output: name, object: o.ref.journalKey)) }
                    return nil
                }
            },
            release: { [self] ref in emitting.withLock { _ = $0.remove(Claim(output: name, object: ref.journalKey)) } },
            quarantine: quarantine,
            counted: { [tally] events, filtered, objects in tally.delivered(output: name, events: events, filtered: filtered, objects: objects) },
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
}
