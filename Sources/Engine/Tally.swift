import Synchronization

/// What this run did (``Engine/Counters``) and each output's latest delivery, counted by the stages and
/// read by the metrics endpoint and the closing summary. One `Mutex`; every update is a short closure.
final class Tally: Sendable {
    private struct State {
        var counters = Engine.Counters()
        /// Each output's latest delivery: the events it carried and the objects it spanned.
        var lastBatch: [String: (events: Int, objects: Int)] = [:]
    }

    private let state = Mutex(State())

    /// Adds to the counters.
    func count(_ update: (inout Engine.Counters) -> Void) {
        state.withLock { update(&$0.counters) }
    }

    /// A copy of the counters.
    var counters: Engine.Counters { state.withLock { $0.counters } }

    /// An output's delivery: its acknowledged and filtered events, and the objects it spanned.
    func delivered(output: String, events: Int, filtered: Int, objects: Int) {
        state.withLock { s in
            s.counters.recordsAcknowledged[output, default: 0] += events
            if filtered > 0 { s.counters.recordsFiltered[output, default: 0] += filtered }
            if events > 0 { s.lastBatch[output] = (events, objects) }
        }
    }

    /// Each output's latest delivery (events, objects), for the metrics.
    var lastBatches: [String: (events: Int, objects: Int)] { state.withLock { $0.lastBatch } }
}
