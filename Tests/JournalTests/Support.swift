import Foundation
import Testing

@testable import Journal
@_exported import TestSupport

/// A clock the test advances by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64 = 1_700_000_000_000
    var now: Int64 { lock.withLock { value } }
    func advance(_ ms: Int64) { lock.withLock { value += ms } }
}

func readAllBody(_ journal: Journal, _ body: BodyRef) throws -> [UInt8] {
    var out: [UInt8] = []
    try journal.bodyChunks(body).forEachChunk { out += $0 }
    return out
}
