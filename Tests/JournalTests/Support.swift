import Foundation
import Testing

@testable import Journal

/// A fresh temporary directory per test (LMDB forbids opening one environment twice in a process).
final class TempDir: @unchecked Sendable {
    let path: String
    init(_ name: String = "journal") {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("ctb-\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func sub(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A seeded generator, so a failing run can be replayed from the seed it prints.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

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
