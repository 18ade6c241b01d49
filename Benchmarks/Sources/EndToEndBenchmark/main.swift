// cloudtrailbeat end to end, the real binary, against reference tools in the same invocation:
//
//   e2e-benchmark --binary PATH [--quick] [--mb N] [--repo DIR] [--keep DIR]
//
// 1. Journaled throughput: a local-directory backfill of a generated >= 100 MB (uncompressed) corpus →
//    journal → file output, versus `zcat FILES | jq -c '.Records[]' > out` and bare `zcat FILES > /dev/null`
//    (same files, medians). Targets: >= 5x jq and >= 0.4x bare zcat. Also records/s, MB/s, peak RSS and
//    journal bytes written per record.
//    Also many small objects (a few records each, CloudTrail's usual shape): objects/s against the same
//    jq pipeline, which shows the per-object cost (journal commits and the output's fsync per object).
//    And the codecs (ecs: target >= 4x jq; ocsf) and a filter that drops about 60 % of the records.
// 2. Memory: one object of 1 GiB uncompressed, end to end; peak RSS must stay <= 128 MiB.
// 3. The queue path against moto: our CPU seconds per 1 000 records (moto itself is slow: we measure our
//    CPU, not its speed).
// 4. Each network output (Elasticsearch, OpenSearch with SigV4, Logstash, Splunk HEC with indexer
//    acknowledgement, redis) against its protocol test server: records/s and the ratio to the file output.
// 5. Integrity: what hashing every log costs end to end (target <= 10 %), and `verify` over >= 2 000
//    signed logs against `aws cloudtrail validate-logs`, objects/s.
// 6. Far-away S3: >= 500 small objects in moto behind a loopback proxy adding 60 and 120 ms to every
//    request (Benchmarks/latency_proxy.py); `cloudtrailbeat -b` with its defaults against `aws s3 sync`
//    of the same bucket through the same proxy (AWS CLI defaults: 10 requests at once, download only).
//    Target >= 2x. And the queue path through the same proxy: SNS → SQS notifications for >= 500 small
//    objects, objects/s with defaults. First, the stand-in's own limit: both clients with no proxy, and
//    moto's CPU per object (one Python process), which bounds every rate above it.
import BenchmarkSupport
import Foundation

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
guard let binary = option("--binary"), FileManager.default.isExecutableFile(atPath: binary) else {
    FileHandle.standardError.write(Data("usage: e2e-benchmark --binary .build/release/cloudtrailbeat [--quick] [--mb N]\n".utf8))
    exit(2)
}
let quick = args.contains("--quick")
let repo = option("--repo") ?? FileManager.default.currentDirectoryPath
// --keep DIR works in DIR and leaves the corpus and journals there (for profiling the binary by hand).
let kept = option("--keep")
let base = kept ?? FileManager.default.temporaryDirectory.path + "/ctb-e2e-bench-\(getpid())"
try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
defer { if kept == nil { try? FileManager.default.removeItem(atPath: base) } }

struct Run {
    var seconds: Double
    var peakRSS: Int
    var cpu: Double
    var written: Int
}

/// Runs the binary, sampling /proc/<pid>/io for bytes written; returns wall time, peak RSS, CPU.
func run(_ arguments: [String], environment: [String: String] = [:]) -> Run {
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, base + "/engine.log", O_WRONLY | O_CREAT | O_APPEND, 0o644)
    let argv = ([binary] + arguments).map { strdup($0) } + [nil]
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    var pid: pid_t = 0
    let start = now()
    precondition(posix_spawn(&pid, binary, &actions, nil, argv, envp) == 0)
    var written = 0
    var peak = 0
    var status: Int32 = 0
    var usage = rusage()
    while true {
        // The child's own high-water mark (wait4's ru_maxrss would include this parent's, as posix_spawn
        // shares the address space until exec).
        if let st = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = st.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kb = Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
        {
            peak = max(peak, kb * 1024)
        }
        if let io = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8) {
            for line in io.split(separator: "\n") where line.hasPrefix("wchar:") { written = Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? written }
        }
        let r = wait4(pid, &status, WNOHANG, &usage)
        if r == pid { break }
        usleep(20_000)
    }
    let seconds = now() - start
    precondition(status == 0, "cloudtrailbeat failed (status \(status)); see \(base)/engine.log")
    let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    return Run(seconds: seconds, peakRSS: peak, cpu: cpu, written: written)
}

func shell(_ command: String) -> Double {
    let start = now()
    precondition(system(command) == 0, "reference command failed: \(command)")
    return now() - start
}

func config(_ name: String, extra: String = "") -> String {
    let path = "\(base)/\(name).yml"
    try? FileManager.default.removeItem(atPath: "\(base)/\(name)")
    try! "journal:\n  path: \(base)/\(name)/journal\noutput:\n  file:\n    path: \(base)/\(name)/out\n    rotate_every_kb: 10485760\n\(extra)"
        .write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

// MARK: 1. Throughput through the journal
let totalMB = Int(option("--mb") ?? (quick ? "20" : "110"))!
let corpusDir = base + "/corpus"
let day = corpusDir + "/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28"
try FileManager.default.createDirectory(atPath: day, withIntermediateDirectories: true)
var corpus = Corpus()
var files: [String] = []
var uncompressed = 0, records = 0
while uncompressed < totalMB << 20 {
    let path = day + "/123456789012_CloudTrail_us-east-1_20261128T\(String(format: "%04d", files.count))Z_\(String(format: "%016d", files.count)).json.gz"
    let (bytes, n) = writeLog(path: path, bytes: min(6 << 20, (totalMB << 20) - uncompressed), corpus: &corpus, start: records)
    files.append(path)
    uncompressed += bytes
    records += n
}
let list = files.map { "'\($0)'" }.joined(separator: " ")
let repetitions = quick ? 1 : 5
print("e2e benchmark: \(files.count) files, \(uncompressed >> 20) MiB uncompressed, \(records) records; \(repetitions) repetitions, medians")
var ours: [Run] = []
var jq: [Double] = [], zcat: [Double] = []
for _ in 0..<repetitions {
    let c = config("backfill")
    ours.append(run(["-c", c, "-b", corpusDir]))
    let out = try String(contentsOfFile: "\(base)/backfill/out/cloudtrailbeat.ndjson", encoding: .utf8).utf8.reduce(0) { $0 + ($1 == 0x0a ? 1 : 0) }
    precondition(out == records, "the file output holds \(out) events, expected \(records)")
    jq.append(shell("zcat \(list) | jq -c '.Records[]' > \(base)/jq.out"))
    zcat.append(shell("zcat \(list) > /dev/null"))
}
let t = median(ours.map(\.seconds))
let mb = Double(uncompressed) / 1e6
func pad(_ s: String) -> String { s.padding(toLength: 44, withPad: " ", startingAt: 0) }
print("  \(pad("cloudtrailbeat -b dir (journal + file output)"))\(String(format: "%8.1f MB/s %9.0f records/s", mb / t, Double(records) / t))")
print("  \(pad("zcat | jq -c '.Records[]' > out"))\(String(format: "%8.1f MB/s %9.0f records/s", mb / median(jq), Double(records) / median(jq)))")
print("  \(pad("zcat > /dev/null"))\(String(format: "%8.1f MB/s %9.0f records/s", mb / median(zcat), Double(records) / median(zcat)))")
let vsJq = median(jq) / t, vsZcat = median(zcat) / t
print(String(format: "  ratio vs jq:   %.2fx (target >= 5x)   %@", vsJq, vsJq >= 5 ? "met" : "MISSED"))
print(String(format: "  ratio vs zcat: %.2fx (target >= 0.4x) %@", vsZcat, vsZcat >= 0.4 ? "met" : "MISSED"))
print(String(format: "  peak RSS %.1f MiB; bytes written per record %.0f (journal, bodies, file output and fsyncs included)",
             Double(median(ours.map { Double($0.peakRSS) })) / 1048576, median(ours.map { Double($0.written) }) / Double(records)))

// MARK: 1c. Codecs and filters on the same corpus (docs/codecs.md): each against the same jq pipeline
let codecRuns: [(String, String, Double?)] = [
    ("codec: ecs", "    codec: ecs\n", 4),
    ("codec: ocsf", "    codec: ocsf\n", nil),
    ("filter dropping read-only and Get* (cloudtrail)", "", nil),
]
for (label, output, target) in codecRuns {
    let filter = label.hasPrefix("filter") ? "filter:\n  exclude:\n    - readOnly: true\n    - eventName: \"Get*\"\n" : ""
    var times: [Double] = []
    var shipped = 0
    for _ in 0..<(quick ? 1 : 3) {
        let c = config("codec", extra: output)
        if !filter.isEmpty { try (try String(contentsOfFile: c, encoding: .utf8) + filter).write(toFile: c, atomically: true, encoding: .utf8) }
        times.append(run(["-c", c, "-b", corpusDir]).seconds)
        shipped = try String(contentsOfFile: "\(base)/codec/out/cloudtrailbeat.ndjson", encoding: .utf8).utf8.reduce(0) { $0 + ($1 == 0x0a ? 1 : 0) }
        precondition(filter.isEmpty ? shipped == records : shipped < records, "the file output holds \(shipped) events of \(records)")
    }
    let tc = median(times), ratio = median(jq) / tc
    let dropped = filter.isEmpty ? "" : String(format: ", %.0f %% of records dropped", 100 * Double(records - shipped) / Double(records))
    let verdict = target.map { String(format: " (target >= %.0fx) %@", $0, ratio >= $0 ? "met" : "MISSED") } ?? ""
    print(String(format: "  %@: %.1f MB/s, %.0f records/s, %.2fx jq%@%@", label, mb / tc, Double(records) / tc, ratio, verdict, dropped))
}

// MARK: 1b. Many small objects (CloudTrail's usual shape: a file every five minutes, a few records each)
let smallCount = quick ? 2_000 : 10_000
let smallRoot = base + "/small"
var smallFiles: [String] = []
var smallRecords = 0
for i in 0..<smallCount {
    let dayDir = smallRoot + "/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/\(String(format: "%02d", 1 + i / 288 % 28))"
    if i % 288 == 0 { try FileManager.default.createDirectory(atPath: dayDir, withIntermediateDirectories: true) }
    let path = dayDir + "/123456789012_CloudTrail_us-east-1_20261101T\(String(format: "%04d", i % 288))Z_\(String(format: "%016d", i)).json.gz"
    let (_, n) = writeLog(path: path, bytes: 1 + 1500 * (1 + i % 4), corpus: &corpus, start: records + smallRecords)
    smallFiles.append(path)
    smallRecords += n
}
try smallFiles.joined(separator: "\n").write(toFile: base + "/small.list", atomically: true, encoding: .utf8)
var smallOurs: [Double] = [], smallJq: [Double] = []
for _ in 0..<(quick ? 1 : 3) {
    smallOurs.append(run(["-c", config("small-run"), "-b", smallRoot]).seconds)
    let out = try String(contentsOfFile: "\(base)/small-run/out/cloudtrailbeat.ndjson", encoding: .utf8).utf8.reduce(0) { $0 + ($1 == 0x0a ? 1 : 0) }
    precondition(out == smallRecords, "the file output holds \(out) events, expected \(smallRecords)")
    smallJq.append(shell("xargs -a \(base)/small.list zcat | jq -c '.Records[]' > \(base)/jq-small.out"))
}
let ts = median(smallOurs), tj = median(smallJq)
print(String(format: "  %d small objects (%d records): %.0f objects/s, %.0f records/s; %.2fx zcat | jq (%.0f objects/s) (target >= 1.5x) %@",
             smallCount, smallRecords, Double(smallCount) / ts, Double(smallRecords) / ts, tj / ts, Double(smallCount) / tj, tj / ts >= 1.5 ? "met" : "MISSED"))
print("  small objects: \(commitsPerObject()) journal commits per object; \(fsyncsPerObject(["-c", config("small-run"), "-b", smallRoot], objects: smallCount))")

/// The stop summary's "journal N commits (X per object)" of the latest run.
func commitsPerObject() -> String {
    let log = (try? String(contentsOfFile: base + "/engine.log", encoding: .utf8)) ?? ""
    guard let line = log.split(separator: "\n").last(where: { $0.contains(" commits (") }),
        let r = line.range(of: " commits ("), let end = line[r.upperBound...].firstIndex(of: " ") else { return "?" }
    return String(line[r.upperBound..<end])
}

/// fsync and fdatasync calls per object of one more run, counted by strace (journal commits and the
/// file output's syncs), when strace is installed.
func fsyncsPerObject(_ arguments: [String], objects: Int) -> String {
    guard system("command -v strace >/dev/null") == 0 else { return "fsyncs per object: not counted (strace missing)" }
    let out = base + "/strace.txt"
    let argv = ([binary] + arguments).map { "'\($0)'" }.joined(separator: " ")
    guard system("strace -f -c -e trace=fsync,fdatasync -o '\(out)' \(argv) >/dev/null 2>&1") == 0,
        let text = try? String(contentsOfFile: out, encoding: .utf8) else { return "fsyncs per object: strace failed" }
    var calls = 0
    for line in text.split(separator: "\n") {
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        if let name = f.last, name == "fsync" || name == "fdatasync", f.count >= 5, let n = Int(f[3]) { calls += n }
    }
    return String(format: "%.2f fsync/fdatasync calls per object (strace)", Double(calls) / Double(objects))
}

// MARK: 2. Memory on one 1 GiB object
let bigMB = quick ? 128 : 1024
let bigDay = base + "/big/AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28"
try FileManager.default.createDirectory(atPath: bigDay, withIntermediateDirectories: true)
let (bigBytes, bigRecords) = writeLog(path: bigDay + "/123456789012_CloudTrail_us-east-1_20261128T0000Z_big.json.gz", bytes: bigMB << 20, corpus: &corpus, start: 0, level: 1)
let big = run(["-c", config("big-run"), "-b", base + "/big", "--page-size", "10"])
print(String(format: "  one object of %d MiB uncompressed (%d records) end to end: peak RSS %.1f MiB (target <= 128 MiB) %@, %.1f s",
             bigBytes >> 20, bigRecords, Double(big.peakRSS) / 1048576, big.peakRSS <= 128 << 20 ? "met" : "MISSED", big.seconds))

// MARK: 3. The queue path against moto: our CPU per 1 000 records
if system("command -v moto_server >/dev/null") == 0 {
    let port = Int.random(in: 20000...40000)
    let moto = Process()
    moto.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    moto.arguments = ["moto_server", "-H", "127.0.0.1", "-p", String(port)]
    moto.environment = ProcessInfo.processInfo.environment.merging(["INITIAL_NO_AUTH_ACTION_COUNT": "3"]) { $1 }
    moto.standardError = FileHandle.nullDevice
    moto.standardOutput = FileHandle.nullDevice
    try moto.run()
    defer { moto.terminate() }
    usleep(2_500_000)
    let queueDir = base + "/queue"
    let objects = quick ? 30 : 150
    precondition(system("python3 '\(repo)/scripts/demo_aws.py' setup --endpoint http://127.0.0.1:\(port) --dir '\(queueDir)' --objects \(objects) > \(base)/setup.log 2>&1") == 0, "demo_aws.py setup failed")
    var env: [String: String] = [:]
    for line in try String(contentsOfFile: queueDir + "/env", encoding: .utf8).split(separator: "\n") {
        let kv = line.replacingOccurrences(of: "export ", with: "").split(separator: "=", maxSplits: 1)
        env[String(kv[0])] = String(kv[1])
    }
    let queueRecords = try String(contentsOfFile: queueDir + "/expected.ndjson", encoding: .utf8).split(separator: "\n").count
    let q = run(["-c", queueDir + "/cloudtrailbeat.yml", "--drain"], environment: env)
    print(String(format: "  queue path against moto: %d records, %.3f CPU seconds per 1000 records (wall %.1f s, moto-bound)",
                 queueRecords, q.cpu / Double(queueRecords) * 1000, q.seconds))
} else {
    print("  queue path: skipped (moto_server missing: pip install 'moto[server]')")
}

// MARK: 4. Each network output against its protocol test server (Tests/OutputsTests/Fixtures, redis-server)
// The same backfill shipped to one output at a time; records/s, and the ratio to the file output on the
// same corpus in this run. The Python test servers parse every request, so they, not cloudtrailbeat, set
// most of these figures: read them as "what a receiver that keeps up gets", not as a receiver's limit.
/// Whether something listens on the loopback port (bash's /dev/tcp).
func listening(_ port: Int) -> Bool { system("bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(port)' 2>/dev/null") == 0 }

/// Starts a server and waits until it listens; nil (with a note) when it cannot.
func server(_ argv: [String], port: Int) -> Process? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle(forWritingAtPath: "/dev/null")
    guard (try? p.run()) != nil else { return nil }
    for _ in 0..<200 where !listening(port) { usleep(50_000) }
    return listening(port) ? p : nil
}

func post(_ url: String, _ json: String) {
    _ = shell("curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '\(json)' \(url)")
}

func count(_ command: String) -> Int {
    let pipe = Pipe()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    p.standardOutput = pipe
    try? p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Int(String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
}

let outputMB = quick ? 6 : 24
let outputDir = base + "/outputs-corpus"
let outputDay = outputDir + "/AWSLogs/123456789012/CloudTrail/eu-west-1/2026/11/29"
try FileManager.default.createDirectory(atPath: outputDay, withIntermediateDirectories: true)
var outputRecords = 0, outputBytes = 0, outputFiles = 0
while outputBytes < outputMB << 20 {
    let path = outputDay + "/123456789012_CloudTrail_eu-west-1_20261129T\(String(format: "%04d", outputFiles))Z_o\(outputFiles).json.gz"
    let (bytes, n) = writeLog(path: path, bytes: min(2 << 20, (outputMB << 20) - outputBytes), corpus: &corpus, start: 10_000_000 + outputRecords)
    outputBytes += bytes
    outputRecords += n
    outputFiles += 1
}
print("outputs: \(outputFiles) files, \(outputBytes >> 20) MiB uncompressed, \(outputRecords) records; one output at a time")
func outputConfig(_ name: String, _ output: String) -> String {
    let path = "\(base)/\(name).yml"
    try? FileManager.default.removeItem(atPath: "\(base)/\(name)")
    try! "journal:\n  path: \(base)/\(name)/journal\noutput:\n\(output)".write(toFile: path, atomically: true, encoding: .utf8)
    return path
}
let fileBaseline = run(["-c", config("outputs-file"), "-b", outputDir]).seconds
print(String(format: "  %@%9.0f records/s", pad("file output (fsync per batch)"), Double(outputRecords) / fileBaseline))
let fixtures = repo + "/Tests/OutputsTests/Fixtures"
@MainActor func report(_ label: String, _ seconds: Double, shipped: Int) {
    precondition(shipped >= outputRecords, "\(label): the receiver holds \(shipped) events of \(outputRecords)")
    print(String(format: "  %@%9.0f records/s  %.2fx the file output", pad(label), Double(outputRecords) / seconds, fileBaseline / seconds))
}
/// Starts a test server (`command` for a free loopback port), scripts it, ships the corpus to it through
/// the output `section` (its YAML, given the port) and reports; `shipped` counts what the receiver holds.
@MainActor func measure(
    _ label: String, command: (Int) -> [String], script: String? = nil, environment: [String: String] = [:],
    section: (Int) -> String, shipped: (Int) -> String
) {
    let port = count("python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'")
    guard port > 0, let process = server(command(port), port: port) else {
        return print("  \(label): skipped (\(command(port)[0] == "python3" ? "python3" : command(port)[0]) did not start; scripts/setup installs it)")
    }
    defer { process.terminate() }
    if let script { post("http://127.0.0.1:\(port)/_script", script) }
    let name = "outputs-" + label.prefix { $0 != " " }
    let t = run(["-c", outputConfig(String(name), section(port)), "-b", outputDir], environment: environment).seconds
    report(label, t, shipped: count(shipped(port)))
}
func fixture(_ name: String, _ extra: [String] = []) -> (Int) -> [String] { { ["python3", fixtures + "/" + name, String($0)] + extra } }
func docs(_ port: Int) -> String {
    "curl -s http://127.0.0.1:\(port)/_test/stats | python3 -c 'import json,sys; s=json.load(sys.stdin); assert not s[\"refused\"]; print(len(s[\"docs\"]))'"
}
measure(
    "elasticsearch (_bulk, es_server.py)", command: fixture("es_server.py"),
    section: { "  elasticsearch:\n    hosts: [\"http://127.0.0.1:\($0)\"]\n" }, shipped: docs)
measure(
    "OpenSearch Service (SigV4 + gzip)", command: fixture("es_server.py"),
    script: #"{"sigv4": {"region": "eu-west-1", "service": "es", "keys": {"AKIABENCHMARK": "bench-secret"}}}"#,
    environment: ["AWS_ACCESS_KEY_ID": "AKIABENCHMARK", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "eu-west-1"],
    section: { "  elasticsearch:\n    hosts: [\"http://127.0.0.1:\($0)\"]\n    compression_level: 1\n    aws_auth: {service: es}\n" }, shipped: docs)
measure(
    "logstash (Lumberjack v2, zlib level 3)", command: fixture("lumberjack_server.py", ["full", base + "/lumberjack.log"]),
    section: { "  logstash:\n    hosts: [\"127.0.0.1:\($0)\"]\n" }, shipped: { _ in "grep -c '\"event\"' '\(base)/lumberjack.log'" })
measure(
    "splunk HEC (acks on, 250 ms to index)", command: fixture("hec_server.py"), script: #"{"ack_delay": 0.25}"#,
    section: { "  splunk:\n    url: \"http://127.0.0.1:\($0)\"\n    token: secret-token\n    index: cloudtrail\n    ack_poll_interval: 100ms\n" },
    shipped: { "curl -s http://127.0.0.1:\($0)/_test/stats | python3 -c 'import json,sys; print(len(json.load(sys.stdin)[\"events\"]))'" })
measure(
    "redis (RPUSH pipelines)", command: { ["redis-server", "--port", String($0), "--save", "", "--appendonly", "no"] },
    section: { "  redis:\n    hosts: [\"127.0.0.1:\($0)\"]\n" }, shipped: { "redis-cli -p \($0) LLEN cloudtrailbeat" })

// MARK: 5. Integrity (docs/integrity.md)
// a) What hashing every log costs: the section-1 corpus in moto's S3, backfilled with integrity.enabled
//    and without, alternately (medians): wall time and our CPU. Target: at most 10 % slower.
// b) `verify` over a bucket of >= 2 000 signed logs (scripts/signed_trails.py: three trails, 24 hours):
//    objects/s; and `aws cloudtrail validate-logs` (one trail and region at a time, which is what it
//    does) over one of them, objects/s, in the same run.
if system("command -v moto_server >/dev/null") == 0 {
    let port = count("python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'")
    guard let moto = server(["moto_server", "-H", "127.0.0.1", "-p", String(port)], port: port) else { fatalError("moto_server did not start") }
    defer { moto.terminate() }
    let endpoint = "http://127.0.0.1:\(port)"
    let aws = ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1"]
    let trails = base + "/trails"
    precondition(system("python3 '\(repo)/scripts/signed_trails.py' setup --endpoint \(endpoint) --bucket verify-bench --dir '\(trails)' --hours 24 --logs 28 > \(base)/trails.log 2>&1") == 0, "signed_trails.py setup failed")
    let upload = """
        import boto3, os, sys
        c = boto3.client('s3', endpoint_url='\(endpoint)', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b')
        c.create_bucket(Bucket='hash-bench')
        root = '\(corpusDir)'
        for d, _, names in os.walk(root):
            for n in names:
                p = os.path.join(d, n)
                c.upload_file(p, 'hash-bench', os.path.relpath(p, root))
        """
    try upload.write(toFile: base + "/upload.py", atomically: true, encoding: .utf8)
    precondition(system("python3 \(base)/upload.py > \(base)/upload.log 2>&1") == 0, "uploading the corpus to moto failed")
    func s3Config(_ name: String, integrity: Bool) -> String {
        config(name, extra: "input:\n  aws_region: us-east-1\n  endpoint: \(endpoint)\nintegrity:\n  enabled: \(integrity)\n  public_keys_file: \(trails)/public-keys.json\n")
    }
    var plain: [Run] = [], hashed: [Run] = []
    for _ in 0..<(quick ? 1 : 3) {
        plain.append(run(["-c", s3Config("s3-plain", integrity: false), "-b", "hash-bench"], environment: aws))
        hashed.append(run(["-c", s3Config("s3-hashed", integrity: true), "-b", "hash-bench"], environment: aws))
    }
    let slower = median(hashed.map(\.seconds)) / median(plain.map(\.seconds)) - 1
    let cpu = median(hashed.map(\.cpu)) / median(plain.map(\.cpu)) - 1
    print(String(format: "  integrity: %d files (%d MiB) backfilled from moto's S3: %.1f s plain, %.1f s hashing every log; throughput cost %.1f %% (target <= 10 %%) %@; our CPU %+.1f %%",
                 files.count, uncompressed >> 20, median(plain.map(\.seconds)), median(hashed.map(\.seconds)), slower * 100, slower <= 0.10 ? "met" : "MISSED", cpu * 100))

    // b) verify, and the AWS CLI's validate-logs on one of the trails.
    try "input:\n  aws_region: us-east-1\n  endpoint: \(endpoint)\n".write(toFile: base + "/verify.yml", atomically: true, encoding: .utf8)
    let v = run(["verify", "-c", base + "/verify.yml", "-b", "verify-bench", "--public-keys", trails + "/public-keys.json"], environment: aws)
    let digests = 3 * 24 + 1, logs = 3 * 24 * 28 + 1
    let oursRate = Double(digests + logs) / v.seconds
    print(String(format: "  verify: %d digests and %d logs (every trail) in %.1f s: %.0f objects/s", digests, logs, v.seconds, oursRate))
    let tools = ProcessInfo.processInfo.environment["CLOUDTRAILBEAT_TOOLS"] ?? (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.cache/cloudtrailbeat"
    let keysPort = count("python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'")
    if FileManager.default.isExecutableFile(atPath: tools + "/awscli/bin/aws"),
        let keys = server(["python3", repo + "/scripts/signed_trails.py", "keys-server", "--dir", trails, "--port", String(keysPort)], port: keysPort)
    {
        defer { keys.terminate() }
        let start = now()
        let checked = count(
            "AWS_ACCESS_KEY_ID=a AWS_SECRET_ACCESS_KEY=b AWS_ENDPOINT_URL_S3=\(endpoint) '\(tools)/awscli/bin/aws' cloudtrail validate-logs"
                + " --trail-arn arn:aws:cloudtrail:us-east-1:111111111111:trail/main --start-time 2026-11-30T00:00:00Z --end-time 2026-12-01T23:59:59Z"
                + " --s3-bucket verify-bench --account-id 111111111111 --region us-east-1 --endpoint-url http://127.0.0.1:\(keysPort) --verbose | grep -c 'valid$'")
        let theirs = Double(checked) / (now() - start)
        print(String(format: "  aws cloudtrail validate-logs (one trail, one region: %d objects): %.0f objects/s; verify %.1fx its rate", checked, theirs, oursRate / theirs))
    } else {
        print("  aws cloudtrail validate-logs: skipped (scripts/setup installs the AWS CLI into \(tools)/awscli)")
    }
} else {
    print("  integrity: skipped (moto_server missing: pip install 'moto[server]')")
}

// MARK: 6. Far-away S3: many small objects, every request 60 or 120 ms away
if system("command -v moto_server >/dev/null") == 0 {
    func freePort() -> Int { count("python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'") }
    let port = freePort()
    guard let moto = server(["moto_server", "-H", "127.0.0.1", "-p", String(port)], port: port) else { fatalError("moto_server did not start") }
    defer { moto.terminate() }
    let endpoint = "http://127.0.0.1:\(port)"
    let aws = ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1"]
    let farCount = quick ? 200 : 600
    let upload = """
        import boto3, os
        from concurrent.futures import ThreadPoolExecutor
        from botocore.config import Config
        c = boto3.client('s3', endpoint_url='\(endpoint)', region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b',
                         config=Config(max_pool_connections=16))
        c.create_bucket(Bucket='far-bench')
        root = '\(smallRoot)'
        files = sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names)[:\(farCount)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda p: c.upload_file(p, 'far-bench', os.path.relpath(p, root)), files))
        """
    try upload.write(toFile: base + "/far-upload.py", atomically: true, encoding: .utf8)
    precondition(system("python3 \(base)/far-upload.py > \(base)/far-upload.log 2>&1") == 0, "uploading the small objects to moto failed")
    let tools = ProcessInfo.processInfo.environment["CLOUDTRAILBEAT_TOOLS"] ?? (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.cache/cloudtrailbeat"
    let awsCLI = tools + "/awscli/bin/aws"
    let queueDir = base + "/far-queue"
    // The stand-in's own limit, measured first: the same backfill and sync with no proxy. moto answers
    // from one Python process, so its CPU per GET bounds what any client gets from it, whatever the
    // latency; on a 2-core machine it also shares the cores with the client and the proxy.
    let motoPID = count("pgrep -f 'moto_server -H 127.0.0.1 -p \(port)$' | tail -1")
    func motoCPU() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(motoPID)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // utime and stime, the 14th and 15th fields (the 12th and 13th after the command's parenthesis).
        return fields.count > 12 ? (Double(fields[11]) ?? 0) / 100 + (Double(fields[12]) ?? 0) / 100 : 0
    }
    let cpuBefore = motoCPU()
    let direct = run(["-c", config("far-0", extra: "input:\n  aws_region: us-east-1\n  endpoint: \(endpoint)\n"), "-b", "far-bench"], environment: aws)
    let motoMsPerObject = (motoCPU() - cpuBefore) * 1000 / Double(farCount)
    var limitLine = String(format: "  S3 with no added latency (the stand-in's own limit): cloudtrailbeat -b %.0f objects/s; moto spent %.1f ms of CPU per object (one Python process: at most %.0f objects/s)",
                           Double(farCount) / direct.seconds, motoMsPerObject, motoMsPerObject > 0 ? 1000 / motoMsPerObject : 0)
    if FileManager.default.isExecutableFile(atPath: awsCLI) {
        let t = shell("AWS_ACCESS_KEY_ID=a AWS_SECRET_ACCESS_KEY=b AWS_DEFAULT_REGION=us-east-1 '\(awsCLI)' s3 sync s3://far-bench '\(base)/far-sync-0' --endpoint-url \(endpoint) --only-show-errors")
        limitLine += String(format: "; aws s3 sync %.0f objects/s", Double(farCount) / t)
    }
    print(limitLine)
    for delay in [60, 120] {
        let proxyPort = freePort()
        guard let proxy = server(["python3", repo + "/Benchmarks/latency_proxy.py", String(proxyPort), String(port), String(delay)], port: proxyPort) else {
            fatalError("latency_proxy.py did not start")
        }
        defer { proxy.terminate() }
        let far = "http://127.0.0.1:\(proxyPort)"
        let ours = run(["-c", config("far-\(delay)", extra: "input:\n  aws_region: us-east-1\n  endpoint: \(far)\n"), "-b", "far-bench"], environment: aws)
        let oursRate = Double(farCount) / ours.seconds
        var line = String(format: "  S3 %d ms away, %d small objects: cloudtrailbeat -b %.0f objects/s (%@ commits/object)", delay, farCount, oursRate, commitsPerObject())
        if FileManager.default.isExecutableFile(atPath: awsCLI) {
            let target = base + "/far-sync-\(delay)"
            let t = shell("AWS_ACCESS_KEY_ID=a AWS_SECRET_ACCESS_KEY=b AWS_DEFAULT_REGION=us-east-1 '\(awsCLI)' s3 sync s3://far-bench '\(target)' --endpoint-url \(far) --only-show-errors")
            let synced = count("find '\(target)' -type f | wc -l")
            precondition(synced == farCount, "aws s3 sync copied \(synced) of \(farCount) objects")
            let theirs = Double(farCount) / t
            line += String(format: "; aws s3 sync %.0f objects/s; %.2fx (target >= 2x) %@", theirs, oursRate / theirs, oursRate / theirs >= 2 ? "met" : "MISSED")
        } else {
            line += "; aws s3 sync: skipped (scripts/setup installs the AWS CLI into \(tools)/awscli)"
        }
        print(line)

        // The queue path through the same proxy: notifications (SNS → SQS, three keys each) for small
        // objects, in a moto of its own (the demo's set-up makes its user, bucket and queue afresh).
        let queuePort = freePort()
        guard let queueMoto = server(["moto_server", "-H", "127.0.0.1", "-p", String(queuePort)], port: queuePort) else { fatalError("moto_server did not start") }
        defer { queueMoto.terminate() }
        let queueProxyPort = freePort()
        guard let queueProxy = server(["python3", repo + "/Benchmarks/latency_proxy.py", String(queueProxyPort), String(queuePort), String(delay)], port: queueProxyPort) else {
            fatalError("latency_proxy.py did not start")
        }
        defer { queueProxy.terminate() }
        let queueEndpoint = "http://127.0.0.1:\(queuePort)", queueFar = "http://127.0.0.1:\(queueProxyPort)"
        try? FileManager.default.removeItem(atPath: queueDir)
        precondition(system("python3 '\(repo)/scripts/demo_aws.py' setup --endpoint \(queueEndpoint) --dir '\(queueDir)' --objects \(quick ? 150 : 510) > \(base)/far-setup.log 2>&1") == 0, "demo_aws.py setup failed")
        var env: [String: String] = [:]
        for l in try String(contentsOfFile: queueDir + "/env", encoding: .utf8).split(separator: "\n") {
            let kv = l.replacingOccurrences(of: "export ", with: "").split(separator: "=", maxSplits: 1)
            env[String(kv[0])] = String(kv[1])
        }
        // The demo's configuration with the stand-in behind the proxy and the engine's defaults.
        let yml = try String(contentsOfFile: queueDir + "/cloudtrailbeat.yml", encoding: .utf8)
            .replacingOccurrences(of: queueEndpoint, with: queueFar).replacingOccurrences(of: "  workers: 2\n", with: "").replacingOccurrences(of: "  visibility_timeout: 30\n", with: "")
        try yml.write(toFile: queueDir + "/far.yml", atomically: true, encoding: .utf8)
        let objects = quick ? 150 : 510
        let q = run(["-c", queueDir + "/far.yml", "--drain"], environment: env)
        print(String(format: "  queue path, S3 and SQS %d ms away: %d objects in %.1f s, %.0f objects/s with defaults (%@ commits/object)",
                     delay, objects, q.seconds, Double(objects) / q.seconds, commitsPerObject()))
    }
} else {
    print("  far-away S3: skipped (moto_server missing: pip install 'moto[server]')")
}
