// The child of the journal crash test (Tests/JournalTests/CrashTests.swift).
//
// Usage: journal-crash-child <journal-dir> <first-step>
// Drives a deterministic sequence of transitions starting at <first-step>; after each transition's
// function returns (its commit is durable) it prints "<step>\n" on stdout and flushes. The parent
// SIGKILLs it at a random moment and checks that every printed step is in the journal.
import Foundation
import Journal

let args = CommandLine.arguments
guard args.count == 3, let first = Int(args[2]) else {
    FileHandle.standardError.write(Data("usage: journal-crash-child <dir> <first-step>\n".utf8))
    exit(2)
}
var options = Journal.Options()
options.outputs = ["a", "b"]
options.initialMapSize = 1 << 20
options.bodyChunkSize = 4096
let journal = try Journal(path: args[1], options: options)

/// Step n works on object n/4; its four transitions are: receive, fetch (body + fetched), ack a, ack b.
/// Each step is idempotent: the first step after a restart may have committed before the kill.
func run(step: Int) async throws {
    let n = step / 4
    let ref = ObjectRef(bucket: "b", key: "k\(n)", version: "e\(n)")
    switch step % 4 {
    case 0:
        _ = try await journal.receive(
            ReceivedMessage(id: "m\(n)", receiptHandle: "h\(n)", receiveCount: 1, objects: [DiscoveredObject(ref)]))
    case 1:
        guard try journal.object(ref)?.stage == .received else { return }
        let ticket = try await journal.startFetch(ref)
        let writer = journal.bodyWriter(ticket)
        try await writer.append([UInt8](repeating: UInt8(n % 251), count: 10_000 + n % 7))
        _ = try await writer.finish(recordCount: 3)
    case 2:
        guard try journal.object(ref) != nil else { return }
        _ = try await journal.acknowledge(Acknowledgement(object: ref, output: "a", count: 3))
    default:
        guard try journal.object(ref) != nil else { return }
        _ = try await journal.acknowledge([
            Acknowledgement(object: ref, output: "b", count: 3)
        ])
        try await journal.messagesDeleted(["m\(n)"])
        _ = try await journal.collectGarbage()
    }
}

var step = first
while true {
    try await run(step: step)
    // Unbuffered: the parent must see the step as soon as its commit has returned.
    let line = Array("\(step)\n".utf8)
    _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    step += 1
}
