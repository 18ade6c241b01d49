import Foundation
import Journal
import Logging

/// The journal's collector: every second, garbage collection in bounded passes (done entries past
/// `done_retention`, unreferenced bodies, quarantine past its bound), the integrity ledger's expired
/// entries once a minute, and a journal that is full said so once per episode.
///
/// Invariant: it only removes what the journal's own rules call garbage (Journal.swift's invariants);
/// a full journal makes a pass wait and retry, never fail the engine.
struct Collector: StageComponent {
    /// The configuration, the journal, the tally and the logger every stage shares.
    let stage: StageContext
    /// Whether integrity validation is on (its ledger is collected too).
    let integrity: Bool

    func run() async throws {
        var wasFull: Date?
        // A disk that is nearly full flaps: GC frees pages, commits pass, the disk fills again within a
        // second. Each episode is a warning (and its end an info line) at most once a minute; episodes
        // in between are debug lines. The `journal_full` gauge shows every one.
        var lastWarning = Date.distantPast
        var warned = false
        var lastLedgerCollection = Date.distantPast
        while true {
            try await Task.sleep(nanoseconds: 1_000_000_000)
            let full = journal.fullState.since
            if full != nil, wasFull == nil {
                let disk = journal.diskLimit()
                warned = Date().timeIntervalSince(lastWarning) >= 60
                if warned { lastWarning = Date() }
                logger.log(
                    level: warned ? .warning : .debug,
                    "journal full: writes wait for GC or for space on its disk; intake is paused, nothing is lost",
                    metadata: ["limit": "\(StatusReport.bytes(journal.effectiveLimit()))", "max_size": "\(StatusReport.bytes(config.journal.maxSize))",
                               "filesystemFree": "\(StatusReport.bytes(disk.free))", "used": "\(StatusReport.bytes((try? journal.diskUse().used) ?? 0))"])
            } else if full == nil, let since = wasFull {
                logger.log(
                    level: warned ? .info : .debug, "journal has room again",
                    metadata: ["after": "\(Int(Date().timeIntervalSince(since)))s", "filesystemFree": "\(StatusReport.bytes(journal.diskLimit().free))"])
            }
            wasFull = full
            do {
                var pass: GCResult
                repeat {
                    try Task.checkCancellation()
                    pass = try await journal.collectGarbage(maxChunks: 1024)
                    if pass.quarantineDropped > 0 {
                        logger.warning(
                            "quarantine past journal.quarantine_max_entries: the entries seen longest ago were dropped (a flood of forged or broken messages?)",
                            metadata: ["dropped": "\(pass.quarantineDropped)", "max": "\(config.journal.maxQuarantineEntries)"])
                    }
                } while pass.moreWork
                if integrity, Date().timeIntervalSince(lastLedgerCollection) >= 60 {
                    lastLedgerCollection = Date()
                    let dropped = try await journal.collectIntegrity()
                    if dropped > 0 {
                        logger.info("integrity: ledger entries past integrity.retention dropped (logs whose digest never came)", metadata: ["dropped": "\(dropped)"])
                    }
                }
            } catch let e as JournalError where e.code == .full {
                logger.debug("journal full: garbage collection retries", metadata: ["error": "\(e)"])
            }
        }
    }
}
