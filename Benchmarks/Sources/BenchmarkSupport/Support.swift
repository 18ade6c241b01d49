// Shared by the benchmarks: a seeded corpus of realistic CloudTrail records, timing and memory helpers.
import Foundation
import Stages

#if canImport(Glibc)
import Glibc
#endif

/// The value after `name` on the command line, if given.
public func option(_ name: String) -> String? {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

public func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
public func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
public func peakRSS() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Realistic CloudTrail records: the fields and shapes of real management and data events.
public struct Corpus {
    var rng = SplitMix64(state: 20261128)
    public init() {}
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

    public mutating func record(_ t: Int) -> String {
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
public func writeLog(path: String, bytes: Int, corpus: inout Corpus, start: Int, level: Int32 = 6) -> (Int, Int) {
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

