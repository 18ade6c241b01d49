import Journal
import Logging

/// What every stage component is given: the configuration, whether this run ends once its work is done
/// (--drain, a backfill), the journal (the one way stages hand work to each other), the tally of
/// counts and the logger. Components hold it as `stage` and read its parts by name (StageComponent).
struct StageContext: Sendable {
    let config: Config
    let drain: Bool
    let journal: Journal
    let tally: Tally
    let logger: Logger
}

/// A stage of the engine (Receiver, Fetcher, Emitter, MessageDeleter, VisibilityKeeper, Collector):
/// its shared context's parts, by name.
protocol StageComponent: Sendable {
    var stage: StageContext { get }
}

extension StageComponent {
    var config: Config { stage.config }
    var drain: Bool { stage.drain }
    var journal: Journal { stage.journal }
    var tally: Tally { stage.tally }
    var logger: Logger { stage.logger }
}
