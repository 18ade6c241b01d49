// The pure stages (gunzip + strict split + event building) against reference tools on the same files,
// in the same invocation:
//
//   swift run -c release --package-path Benchmarks stages-benchmark [--quick] [--mb N] [--dir DIR]
//
// 1. Speed: a seeded corpus of realistic CloudTrail logs (>= 100 MB uncompressed, gzip level 6) is
//    processed by cloudtrailbeat's stages on one thread, by `zcat FILES | jq -c '.Records[]'`, and by
//    bare `zcat FILES`; medians of several repetitions; ratios printed.
//    Targets: >= 8x jq's throughput and >= 0.5x bare zcat's.
// 2. Memory: one object of 1 GiB uncompressed is split in a child process; its peak RSS must stay
//    below 128 MiB.
import Foundation
import BenchmarkSupport
import Stages

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
let quick = args.contains("--quick")

/// cloudtrailbeat's stages over the files, one thread: read, gunzip, split, build every event.
func ours(_ files: [String]) throws -> (records: Int, eventBytes: Int) {
    var records = 0
    var eventBytes = 0
    var out: [UInt8] = []
    out.reserveCapacity(4 << 20)
    var chunk = [UInt8](repeating: 0, count: 256 << 10)
    for file in files {
        let fd = open(file, O_RDONLY)
        precondition(fd >= 0)
        defer { close(fd) }
        let decoder = LogDecoder()
        let builder = EventBuilder(bucket: "bench-bucket", key: file, receivedAt: 0)
        let onRecord: (RecordView) -> Void = { r in
            _ = builder.append(r, to: &out)
            out.append(0x0a)
            records += 1
            if out.count > (4 << 20) {
                eventBytes += out.count
                out.removeAll(keepingCapacity: true)
            }
        }
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            try chunk.withUnsafeBytes { try decoder.push(UnsafeRawBufferPointer(rebasing: $0[..<n]), onRecord) }
        }
        try decoder.finish(onRecord)
    }
    return (records, eventBytes + out.count)
}

func shell(_ command: String) -> Double {
    let start = now()
    let status = system(command)
    precondition(status == 0, "reference command failed (\(status)): \(command)")
    return now() - start
}

// MARK: - The memory child: split one file, print peak RSS.
if let file = option("--memory-child") {
    let r = try ours([file])
    print("\(r.records) \(peakRSS())")
    exit(0)
}

guard system("command -v jq >/dev/null && command -v zcat >/dev/null") == 0 else {
    FileHandle.standardError.write(Data("stages-benchmark: needs jq and zcat (apt-get install jq gzip)\n".utf8))
    exit(2)
}

let base = (option("--dir") ?? FileManager.default.temporaryDirectory.path) + "/ctb-stages-bench-\(getpid())"
try? FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: base) }
let totalMB = Int(option("--mb") ?? (quick ? "20" : "120"))!
let repetitions = quick ? 1 : 5

// MARK: - Corpus
var corpus = Corpus()
var files: [String] = []
nonisolated(unsafe) var uncompressed = 0
nonisolated(unsafe) var expectedRecords = 0
var compressed = 0
let perFile = 6 << 20
var written = 0
while written < totalMB << 20 {
    let path = base + "/123456789012_CloudTrail_us-east-1_20261128T\(String(format: "%04d", files.count))Z_\(files.count).json.gz"
    let (bytes, n) = writeLog(path: path, bytes: min(perFile, (totalMB << 20) - written), corpus: &corpus, start: expectedRecords)
    files.append(path)
    written += bytes
    uncompressed += bytes
    expectedRecords += n
    compressed += (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
}
let list = files.map { "'\($0)'" }.joined(separator: " ")
print("stages benchmark: \(files.count) files, \(uncompressed >> 20) MiB uncompressed (\(compressed >> 20) MiB gzip), \(expectedRecords) records; \(repetitions) repetitions, medians")

// MARK: - Speed
nonisolated(unsafe) var tOurs: [Double] = [], tJq: [Double] = [], tZcat: [Double] = []
for _ in 0..<repetitions {
    let start = now()
    let r = try ours(files)
    tOurs.append(now() - start)
    precondition(r.records == expectedRecords, "split \(r.records) records, expected \(expectedRecords)")
    tZcat.append(shell("zcat \(list) > /dev/null"))
    tJq.append(shell("zcat \(list) | jq -c '.Records[]' > /dev/null"))
}
let mb = Double(uncompressed) / 1e6
func line(_ name: String, _ t: Double) {
    let label = name.padding(toLength: 44, withPad: " ", startingAt: 0)
    print("  \(label)\(String(format: "%8.1f MB/s  %10.0f records/s", mb / t, Double(expectedRecords) / t))")
}
line("cloudtrailbeat stages (1 thread)", median(tOurs))
line("zcat | jq -c '.Records[]'", median(tJq))
line("zcat > /dev/null", median(tZcat))
let vsJq = median(tJq) / median(tOurs)
let vsZcat = median(tZcat) / median(tOurs)
print(String(format: "  ratio vs jq:   %.2fx (target >= 8x)   %@", vsJq, vsJq >= 8 ? "met" : "MISSED"))
print(String(format: "  ratio vs zcat: %.2fx (target >= 0.5x) %@", vsZcat, vsZcat >= 0.5 ? "met" : "MISSED"))

// MARK: - Memory: one 1 GiB object
let bigMB = quick ? 128 : 1024
let big = base + "/big.json.gz"
let (bigBytes, bigRecords) = writeLog(path: big, bytes: bigMB << 20, corpus: &corpus, start: 0, level: 1)
let pipe = Pipe()
let child = Process()
child.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
child.arguments = ["--memory-child", big]
child.standardOutput = pipe
try child.run()
let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
child.waitUntilExit()
let parts = output.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
precondition(parts.count == 2 && parts[0] == bigRecords, "memory child failed: \(output)")
let rss = parts[1]
print(String(format: "  one object of %d MiB uncompressed (%d records): peak RSS %.1f MiB (target < 128 MiB) %@",
             bigBytes >> 20, bigRecords, Double(rss) / 1048576, rss < 128 << 20 ? "met" : "MISSED"))
