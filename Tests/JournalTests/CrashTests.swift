import Foundation
import Testing

@testable import Journal

@Suite("Journal survives SIGKILL", .serialized)
struct CrashTests {
    /// The child (Tests/JournalCrashChild) works on object n in steps 4n…4n+3: receive, fetch, ack a,
    /// ack b + delete message + GC. It prints a step only after its transitions returned.
    @Test func killedAtRandomMomentsLosesNoCommittedTransition() throws {
        let child = productsDirectory().appendingPathComponent("journal-crash-child")
        try #require(FileManager.default.isExecutableFile(atPath: child.path), "build the journal-crash-child product first")
        let dir = TempDir("crash")
        var rng = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        var next = 0
        var kills = 0
        var midStepKills = 0
        var options = Journal.Options()
        options.outputs = ["a", "b"]
        options.initialMapSize = 1 << 20

        for round in 0..<60 {
            var environment = ProcessInfo.processInfo.environment
            environment["SWIFT_BACKTRACE"] = "enable=no"
            let process = try ChildProcess(child.path, [dir.path, String(next)], environment: environment)
            // Let it start (open, recover) and then commit for a random while.
            usleep(UInt32.random(in: 5_000...120_000, using: &rng))
            process.kill()
            let end = process.wait()
            #expect(!end.exited && end.code == SIGKILL, "round \(round): the child exited by itself (\(end))")
            kills += 1
            let output = process.readAll()
            let steps = output.split(separator: "\n").compactMap { Int($0) }
            #expect(steps == Array(steps.indices.map { next + $0 }), "round \(round): steps are consecutive")
            let lastReported = steps.last ?? (next - 1)

            // The environment opens after every kill, and every reported step is there.
            let journal = try Journal(path: dir.path, options: options)
            defer { journal.close() }
            for n in 0...max(0, (lastReported + 1) / 4) {
                let ref = ObjectRef(bucket: "b", key: "k\(n)", version: "e\(n)")
                let reported = lastReported - 4 * n  // highest reported step of object n, relative
                let object = try journal.object(ref)
                let marker = try journal.doneMarker(ref)
                let message = try journal.message("m\(n)")
                if reported >= 3 {
                    #expect(marker != nil && message == nil, "round \(round) object \(n): step 3 lost")
                    if object != nil && lastReported > 4 * n + 3 { Issue.record("object \(n) not collected") }
                } else if reported >= 2 {
                    // Step 3, in flight at the kill, may have committed whole (then GC removed the object).
                    if let o = object {
                        #expect(o.cursor("a") == 3, "round \(round) object \(n): ack a lost")
                    } else {
                        #expect(marker != nil, "round \(round) object \(n): lost after step 2")
                    }
                } else if reported >= 1 {
                    let o = try #require(object, "round \(round) object \(n): lost after step 1")
                    #expect(o.stage != .received, "round \(round) object \(n): fetched lost")
                } else if reported >= 0 {
                    #expect(object != nil && message != nil, "round \(round) object \(n): receive lost")
                }
                // Nothing half-applied: whatever is visible is whole.
                if let o = object {
                    if o.stage == .fetched || o.stage == .emitting || (o.stage == .done && o.body != nil) {
                        let body = try #require(o.body)
                        let bytes = try readAllBody(journal, body)
                        #expect(bytes == [UInt8](repeating: UInt8(n % 251), count: 10_000 + n % 7), "round \(round) object \(n): body")
                        #expect(o.recordCount == 3)
                    }
                    if o.stage == .done { #expect(marker != nil, "round \(round) object \(n): done without marker") }
                    if message == nil { #expect(!o.messages.contains("m\(n)"), "round \(round) object \(n): dangling message") }
                    if o.stage == .received { #expect(o.body == nil) }
                    if lastReported + 1 < 4 * n { Issue.record("round \(round): object \(n) exists before its step") }
                }
            }
            // At most the step in flight may have committed beyond the last reported one.
            let ahead = ObjectRef(bucket: "b", key: "k\((lastReported + 1) / 4 + 1)", version: "e\((lastReported + 1) / 4 + 1)")
            #expect(try journal.object(ahead) == nil, "round \(round): a step beyond the kill is visible")
            if let o = try journal.object(ObjectRef(bucket: "b", key: "k\((lastReported + 1) / 4)", version: "e\((lastReported + 1) / 4)")),
                (lastReported + 1) % 4 == 1, o.stage == .received
            {
                midStepKills += 1
            }
            next = lastReported + 1
        }
        #expect(kills >= 50)
        // Progress was made across the kills, so they hit a working child, not one still starting.
        #expect(next > 200, "only \(next) steps were reported over \(kills) kills")
        print("crash test: \(kills) kills, \(next) steps committed, \(midStepKills) kills inside a fetch")
    }
}
