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
import Stages

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
let quick = args.contains("--quick")

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
func peakRSS() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Realistic CloudTrail records: the fields and shapes of real management and data events.
struct Corpus {
    var rng = SplitMix64(state: 20261128)
    let services = ["s3", "ec2", "iam", "sts", "kms", "lambda", "dynamodb", "cloudtrail", "logs", "ssm", "secretsmanager", "rds"]
    let names = ["GetObject", "PutObject", "DescribeInstances", "AssumeRole", "Decrypt", "GenerateDataKey", "ListBuckets",
                 "GetParameter", "CreateLogStream", "PutLogEvents", "Invoke", "GetSecretValue", "DescribeDBInstances", "ConsoleLogin"]
    let agents = ["aws-cli/2.15.30 Python/3.11.8 Linux/6.1.0 exe/x86_64.debian.12 prompt/off command/s3.cp",
                  "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.1.0 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69",
                  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
                  "aws-sdk-go-v2/1.25.3 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/sts#1.28.4",
                  "cloudtrail.amazonaws.com", "AWS Internal"]

    mutating func hex(_ n: Int) -> String {
        let digits = Array("0123456789abcdef")
        return String((0..<n).map { _ in digits[Int(rng.next() & 15)] })
    }
    mutating func pick<T>(_ xs: [T]) -> T { xs[Int(rng.next() % UInt64(xs.count))] }

    mutating func record(_ t: Int) -> String {
        let service = pick(services)
        let account = "1234567890\(10 + t % 3)"
        let role = pick(["ReadOnly", "Admin", "ci-deployer", "lambda-exec", "SecurityAudit"])
        let time = String(format: "2026-11-28T%02d:%02d:%02dZ", (t / 3600) % 24, (t / 60) % 60, t % 60)
        let size = rng.next() % 100
        let request: String
        if size < 2 {
            // Occasionally a very large requestParameters (policy documents, user data).
            request = "{\"policyDocument\":\"" + String(repeating: "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%7D%5D%7D", count: 60) + "\",\"policyName\":\"p\(t)\"}"
        } else if size < 40 {
            request = "{\"bucketName\":\"logs-\(hex(8))\",\"Host\":\"logs-\(hex(8)).s3.us-east-1.amazonaws.com\",\"key\":\"data/2026/11/28/\(hex(12)).parquet\",\"x-id\":\"GetObject\"}"
        } else if size < 70 {
            request = "{\"instancesSet\":{\"items\":[{\"instanceId\":\"i-\(hex(17))\"},{\"instanceId\":\"i-\(hex(17))\"}]},\"filterSet\":{\"items\":[{\"name\":\"tag:env\",\"valueSet\":{\"items\":[{\"value\":\"prod\"}]}}]}}"
        } else {
            request = "null"
        }
        let response = size % 3 == 0 ? "{\"credentials\":{\"accessKeyId\":\"ASIA\(hex(16).uppercased())\",\"sessionToken\":\"\(hex(180))\",\"expiration\":\"Nov 28, 2026, 11:07:49 PM\"},\"assumedRoleUser\":{\"assumedRoleId\":\"AROA\(hex(16).uppercased()):s\",\"arn\":\"arn:aws:sts::\(account):assumed-role/\(role)/s\"}}" : "null"
        return "{\"eventVersion\":\"1.09\",\"userIdentity\":{\"type\":\"AssumedRole\",\"principalId\":\"AROA\(hex(16).uppercased()):session-\(t)\",\"arn\":\"arn:aws:sts::\(account):assumed-role/\(role)/session-\(t)\",\"accountId\":\"\(account)\",\"accessKeyId\":\"ASIA\(hex(16).uppercased())\",\"sessionContext\":{\"sessionIssuer\":{\"type\":\"Role\",\"principalId\":\"AROA\(hex(16).uppercased())\",\"arn\":\"arn:aws:iam::\(account):role/\(role)\",\"accountId\":\"\(account)\",\"userName\":\"\(role)\"},\"webIdFederationData\":{},\"attributes\":{\"creationDate\":\"\(time)\",\"mfaAuthenticated\":\"false\"}}},\"eventTime\":\"\(time)\",\"eventSource\":\"\(service).amazonaws.com\",\"eventName\":\"\(pick(names))\",\"awsRegion\":\"\(pick(["us-east-1", "eu-west-1", "ap-southeast-2"]))\",\"sourceIPAddress\":\"\(rng.next() % 223 + 1).\(rng.next() % 256).\(rng.next() % 256).\(rng.next() % 256)\",\"userAgent\":\"\(pick(agents))\",\"requestParameters\":\(request),\"responseElements\":\(response),\"requestID\":\"\(hex(8))-\(hex(4))-\(hex(4))-\(hex(4))-\(hex(12))\",\"eventID\":\"\(hex(8))-\(hex(4))-\(hex(4))-\(hex(4))-\(hex(12))\",\"readOnly\":\(size % 2 == 0),\"resources\":[{\"accountId\":\"\(account)\",\"type\":\"AWS::S3::Object\",\"ARN\":\"arn:aws:s3:::logs-\(hex(8))/data/\(hex(10))\"}],\"eventType\":\"AwsApiCall\",\"managementEvent\":\(size % 4 != 0),\"recipientAccountId\":\"\(account)\",\"eventCategory\":\"Management\",\"tlsDetails\":{\"tlsVersion\":\"TLSv1.3\",\"cipherSuite\":\"TLS_AES_128_GCM_SHA256\",\"clientProvidedHostHeader\":\"\(service).us-east-1.amazonaws.com\"}}"
    }
}

/// Writes one gzip file of about `bytes` uncompressed bytes; returns (uncompressed bytes, records).
func writeLog(path: String, bytes: Int, corpus: inout Corpus, start: Int, level: Int32 = 6) -> (Int, Int) {
    FileManager.default.createFile(atPath: path, contents: nil)
    let handle = FileHandle(forWritingAtPath: path)!
    defer { try? handle.close() }
    let gz = GzipWriter(level: level)
    var pending: [UInt8] = []
    var total = 0
    var n = 0
    func flush(_ force: Bool) {
        if pending.count < (1 << 20) && !force { return }
        pending.withUnsafeBytes { b in gz.write(b) { handle.write(Data($0)) } }
        total += pending.count
        pending.removeAll(keepingCapacity: true)
    }
    pending += Array("{\"Records\":[".utf8)
    while total + pending.count < bytes {
        if n > 0 { pending.append(UInt8(ascii: ",")) }
        pending += Array(corpus.record(start + n).utf8)
        n += 1
        flush(false)
    }
    pending += Array("]}".utf8)
    flush(true)
    gz.finish { handle.write(Data($0)) }
    return (total, n)
}

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
