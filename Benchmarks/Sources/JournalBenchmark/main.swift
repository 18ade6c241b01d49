// Durable journal throughput, as ratios against the disk's own durable-write floor measured in the
// same run: a loop of 200-byte write + fdatasync on a plain file (what any durable ack must pay).
//
//   swift run -c release --package-path Benchmarks journal-benchmark [--quick] [--dir DIR]
//
// Prints: durable stage transitions per second, one at a time and with concurrent callers sharing
// commits (group commit); acknowledgements per second when batched in one transition; and bytes
// written to the journal per record over a full object life cycle.
import BenchmarkSupport
import Foundation
import Journal

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
let quick = arguments.contains("--quick")
let base = option("--dir") ?? FileManager.default.temporaryDirectory.path
let scale = quick ? 10 : 1


/// Bytes this process has passed to write(2)/pwrite(2), from /proc/self/io.
func bytesWritten() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/io", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("wchar:") {
        return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? 0
    }
    return 0
}

func freshDir(_ name: String) -> String {
    let path = base + "/ctb-bench-\(name)-\(getpid())-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.removeItem(atPath: path)
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func options(_ outputs: [String]) -> Journal.Options {
    var o = Journal.Options()
    o.outputs = outputs
    o.maxSize = 8 << 30
    return o
}

/// The reference: durable 200-byte appends, one fdatasync each.
func fdatasyncFloor(_ n: Int) -> Double {
    let dir = freshDir("floor")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let fd = open(dir + "/log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
    precondition(fd >= 0)
    defer { close(fd) }
    let record = [UInt8](repeating: 0x61, count: 200)
    let start = now()
    for _ in 0..<n {
        _ = record.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        fdatasync(fd)
    }
    return Double(n) / (now() - start)
}

/// Receives and fetches one object with `records` records; returns its ref.
func prepare(_ j: Journal, _ i: Int, records: UInt64, bodyBytes: Int) async throws -> ObjectRef {
    let ref = ObjectRef(bucket: "bench", key: "AWSLogs/1/CloudTrail/us-east-1/2026/11/28/obj\(i).json.gz", version: "etag\(i)")
    _ = try await j.receive(ReceivedMessage(id: "msg-\(i)", receiptHandle: "rh-\(i)", receiveCount: 1, objects: [DiscoveredObject(ref)]))
    let ticket = try await j.startFetch(ref)
    let writer = j.bodyWriter(ticket)
    var rng = SystemRandomNumberGenerator()
    var left = bodyBytes
    while left > 0 {
        let n = min(left, 64 << 10)
        try await writer.append((0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) })
        left -= n
    }
    _ = try await writer.finish(recordCount: records)
    return ref
}

/// One transition at a time: each caller waits for its commit before the next.
func single(_ n: Int) async throws -> Double {
    let dir = freshDir("single")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let j = try Journal(path: dir, options: options(["a"]))
    defer { j.close() }
    let ref = try await prepare(j, 0, records: UInt64(n), bodyBytes: 1000)
    let start = now()
    for k in 1...n { _ = try await j.acknowledge(Acknowledgement(object: ref, output: "a", count: UInt64(k))) }
    return Double(n) / (now() - start)
}

/// `callers` concurrent callers, each acknowledging its own object record by record: their
/// transitions share commits on the writer thread.
func grouped(_ n: Int, callers: Int) async throws -> Double {
    let dir = freshDir("group")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let j = try Journal(path: dir, options: options(["a"]))
    defer { j.close() }
    let per = n / callers
    var refs: [ObjectRef] = []
    for i in 0..<callers { refs.append(try await prepare(j, i, records: UInt64(per), bodyBytes: 1000)) }
    let start = now()
    try await withThrowingTaskGroup(of: Void.self) { group in
        for ref in refs {
            group.addTask {
                for k in 1...per { _ = try await j.acknowledge(Acknowledgement(object: ref, output: "a", count: UInt64(k))) }
            }
        }
        try await group.waitForAll()
    }
    return Double(per * callers) / (now() - start)
}

/// Acknowledgements batched in one transition (as outputs report a window at a time).
func batchedAcks(_ transitions: Int, perTransition: Int) async throws -> Double {
    let dir = freshDir("batched")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let j = try Journal(path: dir, options: options(["a"]))
    defer { j.close() }
    var refs: [ObjectRef] = []
    for i in 0..<perTransition { refs.append(try await prepare(j, i, records: UInt64(transitions), bodyBytes: 100)) }
    let start = now()
    for k in 1...transitions {
        _ = try await j.acknowledge(refs.map { Acknowledgement(object: $0, output: "a", count: UInt64(k)) })
    }
    return Double(transitions * perTransition) / (now() - start)
}

/// A full object life cycle per object (receive, fetch with body, acks of 2 outputs in windows of
/// 100 records, message delete, GC): bytes written per record, in total and without the body itself.
func lifeCycle(objects: Int, records: Int, compressedBytesPerRecord: Int) async throws -> (total: Double, overhead: Double, recordsPerSecond: Double) {
    let dir = freshDir("life")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let j = try Journal(path: dir, options: options(["es", "file"]))
    defer { j.close() }
    let before = bytesWritten()
    let start = now()
    for i in 0..<objects {
        let ref = try await prepare(j, i, records: UInt64(records), bodyBytes: records * compressedBytesPerRecord)
        var sent = 0
        while sent < records {
            sent = min(records, sent + 100)
            _ = try await j.acknowledge([
                Acknowledgement(object: ref, output: "es", count: UInt64(sent)),
                Acknowledgement(object: ref, output: "file", count: UInt64(sent)),
            ])
        }
        try await j.messagesDeleted(["msg-\(i)"])
        while try await j.collectGarbage(maxChunks: 1024).moreWork {}
    }
    let elapsed = now() - start
    let written = Double(bytesWritten() - before)
    let all = Double(objects * records)
    return (written / all, written / all - Double(compressedBytesPerRecord), all / elapsed)
}

let repetitions = quick ? 1 : 3
print("journal benchmark (\(quick ? "quick" : "full"); \(repetitions) repetitions, medians; directory \(base))")
var floor: [Double] = [], one: [Double] = [], group: [Double] = [], batch: [Double] = []
var life: [(total: Double, overhead: Double, recordsPerSecond: Double)] = []
for _ in 0..<repetitions {
    floor.append(fdatasyncFloor(2000 / scale))
    one.append(try await single(2000 / scale))
    group.append(try await grouped(20_000 / scale, callers: 64))
    batch.append(try await batchedAcks(500 / scale, perTransition: 100))
    life.append(try await lifeCycle(objects: 40 / scale, records: 1000, compressedBytesPerRecord: 150))
}
let f = median(floor)
func pad(_ s: String) -> String { s.padding(toLength: 48, withPad: " ", startingAt: 0) }
func number(_ v: Double, _ digits: Int = 0) -> String { String(format: "%12.\(digits)f", v) }
print("  \(pad("reference: write(200 B) + fdatasync"))\(number(f)) ops/s")
func row(_ name: String, _ v: Double, _ unit: String) {
    print("  \(pad(name))\(number(v)) \(unit)  \(String(format: "%6.2f", v / f))x the fdatasync floor")
}
row("durable transitions, one at a time", median(one), "tx/s  ")
row("durable transitions, 64 callers (group commit)", median(group), "tx/s  ")
row("acknowledgements, 100 per transition", median(batch), "acks/s")
let lt = life.map(\.total), lo = life.map(\.overhead), lr = life.map(\.recordsPerSecond)
print("  \(pad("full object life cycle"))\(number(median(lr))) records/s (1000-record objects, 2 outputs, ack windows of 100)")
print("  \(pad("journal bytes written per record"))\(number(median(lt), 1)) B/record (\(String(format: "%.1f", median(lo))) B/record beyond the 150 B stored body)")
