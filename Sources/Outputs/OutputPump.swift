import Failures
import Foundation

/// Drives one output: sends batches of at most `maxBatch` events in order, retries with full-jitter
/// backoff after errors, writes permanent failures to the dead-letter file (fsynced) before counting
/// them as handled, and reports progress after every acknowledgement. One pump per output, each in
/// its own task, so a receiver that is down never holds back another output.
public final class OutputPump: @unchecked Sendable {
    public let output: any Output
    let deadLetters: DeadLetterFile?
    let minBackoff: Double
    let maxBackoff: Double
    private let lock = NSLock()
    private var _retries = 0, _deadLettered = 0
    /// The error of the current run of failures; nil while deliveries succeed.
    private var failingWith: String?
    private let health: (@Sendable (String?) async -> Void)?
    /// Retries so far (for metrics and tests). Several emitters may deliver through one pump at once.
    public var retries: Int { lock.withLock { _retries } }
    public var deadLettered: Int { lock.withLock { _deadLettered } }
    /// Whether the latest delivery failed (until one succeeds).
    public var isFailing: Bool { lock.withLock { failingWith != nil } }

    /// `health` hears when deliveries start failing or fail with another error (the error) and when
    /// one succeeds after failures (nil); it is called from the delivering task, outside the lock.
    public init(
        output: any Output, deadLetters: DeadLetterFile?, minBackoff: Double = 0.1, maxBackoff: Double = 30,
        health: (@Sendable (String?) async -> Void)? = nil
    ) {
        self.output = output
        self.deadLetters = deadLetters
        self.minBackoff = minBackoff
        self.maxBackoff = maxBackoff
        self.health = health
    }

    /// Delivers `events` from `start`; calls `progress(n)` each time the first `n` are handled.
    /// Returns when all are handled; throws only for cancellation or a non-retryable error.
    public func deliver(_ events: [OutputEvent], from start: Int = 0, progress: (Int) async throws -> Void) async throws {
        var done = start
        var failures = 0
        while done < events.count {
            try Task.checkCancellation()
            let batch = Array(events[done..<min(events.count, done + output.maxBatch)])
            do {
                let report = try await output.deliver(batch)
                if !report.deadLetters.isEmpty {
                    try deadLetters?.write(output: output.name, events: report.deadLetters.map { (batch[$0.index], $0.reason) })
                    lock.withLock { _deadLettered += report.deadLetters.count }
                }
                if report.handled > 0 {
                    done += report.handled
                    failures = 0
                    let recovered = lock.withLock {
                        defer { failingWith = nil }
                        return failingWith != nil
                    }
                    if recovered { await health?(nil) }
                    try await progress(done)
                } else {
                    failures += 1
                    lock.withLock { _retries += 1 }
                    try await Task.sleep(nanoseconds: UInt64(backoff(failures) * 1e9))
                }
            } catch where Disposition.of(error) == .retry {
                // Whatever the output threw, if it says "try again" (OutputError's `unavailable`, a
                // transport error that escaped the output); anything else ends the pump.
                failures += 1
                let reason = "\(error)"
                let changed = lock.withLock {
                    _retries += 1
                    defer { failingWith = reason }
                    return failingWith != reason
                }
                if changed { await health?(reason) }
                try await Task.sleep(nanoseconds: UInt64(backoff(failures) * 1e9))
            }
        }
    }

    func backoff(_ failures: Int) -> Double {
        Double.random(in: minBackoff...max(minBackoff, min(maxBackoff, minBackoff * pow(2, Double(failures)))))
    }
}
