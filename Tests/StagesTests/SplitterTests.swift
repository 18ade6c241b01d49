import Foundation
import Testing

@testable import Stages
import TestSupport

/// Generates CloudTrail-like records as exact JSON text.
struct RecordGenerator {
    var rng: SplitMix64

    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    mutating func space() -> String {
        chance(0.8) ? "" : [" ", "\n", "\t", "\r\n", "  "][int(0...4)]
    }

    mutating func string(maxLength: Int = 24) -> String {
        let pieces = [
            "a", "Z", "9", " ", "é", "日本", "😀", "\\n", "\\\"", "\\\\", "\\/", "\\u00e9", "\\ud83d\\ude00", "\\t", "\\b", "\\f",
            "\\r", "<", "&", "'", "ü", "\u{2028}", "ASIA", "arn:aws:iam::", "-", "_", ".",
        ]
        var s = ""
        for _ in 0..<int(0...maxLength) { s += pieces[int(0...(pieces.count - 1))] }
        return "\"" + s + "\""
    }

    mutating func number() -> String {
        [
            "0", "-0", "1", "-1", "42", "3.14159", "-2.5e-3", "1E10", "6.02e+23", "123456789012345678901234567890",
            "0.000001", "-9223372036854775808", "1e-300", "\(int(0...1_000_000))",
        ][int(0...13)]
    }

    mutating func value(depth: Int) -> String {
        switch depth > 25 ? int(0...3) : int(0...6) {
        case 0: return string()
        case 1: return number()
        case 2: return ["true", "false", "null"][int(0...2)]
        case 3: return string(maxLength: 4)
        case 4, 5: return object(depth: depth + 1, fields: int(0...4))
        default:
            let items = (0..<int(0...4)).map { _ in value(depth: depth + 1) }
            return "[" + space() + items.map { $0 + space() }.joined(separator: "," + space()) + "]"
        }
    }

    mutating func object(depth: Int, fields: Int) -> String {
        var members: [String] = []
        for i in 0..<fields { members.append(space() + "\"k\(i)\(chance(0.1) ? "é" : "")\"" + space() + ":" + space() + value(depth: depth)) }
        return "{" + members.joined(separator: ",") + space() + "}"
    }

    mutating func deep(_ n: Int) -> String {
        var s = "1"
        for i in 0..<n { s = i % 2 == 0 ? "[\(s)]" : "{\"d\":\(s)}" }
        return s
    }

    mutating func record(_ i: Int) -> String {
        var fields = [
            "\"eventVersion\":\"1.08\"",
            "\"userIdentity\":{\"type\":\"AssumedRole\",\"principalId\":\"AROA:\(i)\",\"arn\":\"arn:aws:sts::123456789012:assumed-role/x/\(i)\",\"sessionContext\":{\"attributes\":{\"mfaAuthenticated\":\"false\"}}}",
            "\"eventTime\":\"2026-11-28T22:\(10 + i % 50):0\(i % 10)Z\"",
            "\"eventSource\":\"s3.amazonaws.com\"", "\"eventName\":\(string())", "\"awsRegion\":\"us-east-1\"",
            "\"sourceIPAddress\":\"10.0.0.\(i % 255)\"",
        ]
        if chance(0.9) { fields.append("\"eventID\":\"\(UUID(uuid: (UInt8(i & 255), UInt8(i >> 8 & 255), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)).uuidString.lowercased())\"") }
        if chance(0.05) {
            // A 40 KB requestParameters.
            let big = (0..<800).map { "\"p\($0)\":\"" + String(repeating: "x", count: 40) + "\"" }.joined(separator: ",")
            fields.append("\"requestParameters\":{" + big + "}")
        } else {
            fields.append("\"requestParameters\":" + object(depth: 1, fields: int(0...6)))
        }
        if chance(0.05) { fields.append("\"additionalEventData\":" + deep(int(50...300))) }
        fields.append("\"readOnly\":\(chance(0.5))")
        fields.append("\"resources\":[" + (0..<int(0...3)).map { _ in object(depth: 2, fields: 2) }.joined(separator: ",") + "]")
        fields.append("\"numbers\":[" + (0..<int(0...5)).map { _ in number() }.joined(separator: ",") + "]")
        fields.shuffle(using: &rng)
        return "{" + fields.map { space() + $0.replacingOccurrences(of: "\":", with: "\":" + space()) }.joined(separator: ",") + space() + "}"
    }

    mutating func file(records: [String]) -> String {
        "{" + space() + "\"Records\"" + space() + ":" + space() + "[" + records.map { space() + $0 + space() }.joined(separator: ",") + "]" + space() + "}" + space()
    }
}

/// Decodes `compressed`, fed in random chunks; returns the records' exact bytes.
func decode(_ compressed: [UInt8], rng: inout SplitMix64, maxChunk: Int = 70_000) throws -> [[UInt8]] {
    let decoder = LogDecoder(maxRecordSize: 1 << 20)
    var records: [[UInt8]] = []
    var i = 0
    while i < compressed.count {
        let n = min(compressed.count - i, Int.random(in: 1...maxChunk, using: &rng))
        try compressed.withUnsafeBytes { all in
            try decoder.push(UnsafeRawBufferPointer(rebasing: all[i..<i + n])) { r in
                #expect(r.index == UInt64(records.count))
                records.append(Array(r.bytes))
            }
        }
        i += n
    }
    let count = try decoder.finish { records.append(Array($0.bytes)) }
    #expect(count == UInt64(records.count))
    return records
}

/// The directory of the shared test data, beside the repository.
func sharedTestData() throws -> URL {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let shared = ProcessInfo.processInfo.environment["CTB_SHARED_DIR"].map { URL(fileURLWithPath: $0).appendingPathComponent("testdata") }
        ?? root.deletingLastPathComponent().appendingPathComponent("shared/testdata")
    try #require(FileManager.default.fileExists(atPath: shared.path), "shared test data missing at \(shared.path) (it lies beside the repository)")
    return shared
}

@Suite("Record splitting")
struct SplitterTests {
    @Test(arguments: [UInt64(11), 12, 13, 14])
    func roundTripOfRandomRecords(seed: UInt64) throws {
        var gen = RecordGenerator(rng: SplitMix64(seed: seed))
        var rng = SplitMix64(seed: seed &* 31)
        var checked = 0
        for round in 0..<12 {
            let records = (0..<gen.int(0...60)).map { gen.record($0) }
            let text = Array(gen.file(records: records).utf8)
            // Single member, several members (split at random points), or not compressed at all.
            var compressed: [UInt8]
            switch round % 3 {
            case 0: compressed = GzipWriter.compress(text, level: Int32(gen.int(1...9)))
            case 1:
                compressed = []
                var cuts = (0..<gen.int(1...5)).map { _ in gen.int(0...text.count) }.sorted()
                cuts = [0] + cuts + [text.count]
                for k in 0..<(cuts.count - 1) { compressed += GzipWriter.compress(Array(text[cuts[k]..<cuts[k + 1]])) }
            default: compressed = text
            }
            let got = try decode(compressed, rng: &rng, maxChunk: [1, 7, 4096, 70_000][round % 4] + (round % 4 == 0 ? 8 : 0))
            #expect(got.count == records.count, "seed \(seed) round \(round)")
            for (a, b) in zip(got, records) { #expect(a == Array(b.utf8), "seed \(seed) round \(round)") }
            // Every generated record is valid JSON by another parser too.
            for r in records.prefix(3) { #expect((try? JSONSerialization.jsonObject(with: Data(r.utf8))) != nil, "\(r.prefix(200))") }
            checked += records.count
        }
        #expect(checked > 100)
    }

    @Test func realSamplesSplitAndTheMalformedOneIsReported() throws {
        let dir = try sharedTestData().appendingPathComponent("cloudtrail/stratus-red-team")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }.sorted()
        #expect(files.count >= 4)
        var rng = SplitMix64(seed: 5)
        var malformedSeen = false
        for name in files {
            let bytes = Array(try Data(contentsOf: dir.appendingPathComponent(name)))
            if name == "aws.execution.ec2-user-data.json" {
                malformedSeen = true
                #expect {
                    _ = try decode(GzipWriter.compress(bytes), rng: &rng)
                } throws: { error in
                    guard let e = error as? SplitError else { return false }
                    return e.code == .malformedJSON && e.offset > 0 && e.recordIndex != nil && e.description.contains("expected ',' or ']'")
                }
                #expect((try? JSONSerialization.jsonObject(with: Data(bytes))) == nil, "the sample is indeed malformed")
                continue
            }
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
            let expected = try #require(parsed["Records"] as? [Any]).count
            let records = try decode(GzipWriter.compress(bytes), rng: &rng, maxChunk: 1000)
            #expect(records.count == expected, "\(name)")
            for r in records {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(r)) as? [String: Any])
                #expect(object["eventTime"] != nil && object["aws"] != nil, "\(name): forwarder keys kept verbatim")
            }
        }
        #expect(malformedSeen)
    }

    @Test(arguments: [
        ("", 0), ("{\"Records\":[]}", 0), ("  {\"Records\" : [ ] }  \n", 0), ("\u{FEFF}{\"Records\":[{}]}", 1),
        ("{\"Other\":{\"a\":[1,2]},\"Records\":[{\"a\":1}],\"More\":null}", 1),
    ])
    func edgeShapes(text: String, count: Int) throws {
        var rng = SplitMix64(seed: 1)
        #expect(try decode(Array(text.utf8), rng: &rng).count == count)
        #expect(try decode(GzipWriter.compress(Array(text.utf8)), rng: &rng).count == count)
    }

    @Test(arguments: [
        ("{\"Records\":[{\"a\":1},]}", SplitError.Code.malformedJSON),
        ("{\"Records\":[{\"a\":01}]}", .malformedJSON),
        ("{\"Records\":[{\"a\":\"\u{1}\"}]}", .malformedJSON),
        ("{\"Records\":[{\"a\":\"\\x\"}]}", .malformedJSON),
        ("{\"Records\":[{\"a\":tru}]}", .malformedJSON),
        ("{\"Records\":[{\"a\":1}", .truncated),
        ("{\"Records\":[{\"a\":\"abc", .truncated),
        ("{\"Records\":[1]}", .recordNotObject),
        ("{\"Records\":{}}", .notCloudTrailLog),
        ("{\"awsAccountId\":\"1\",\"logFiles\":[]}", .notCloudTrailLog),
        ("[]", .notCloudTrailLog),
        ("{\"Records\":[]} x", .malformedJSON),
        ("{\"Records\":[{\"a\":1e}]}", .malformedJSON),
        ("{\"Records\":[{\"a\":-}]}", .malformedJSON),
        ("{\"Records\":[{\"a\" 1}]}", .malformedJSON),
    ])
    func malformedInputIsATypedError(text: String, code: SplitError.Code) {
        var rng = SplitMix64(seed: 2)
        #expect {
            _ = try decode(Array(text.utf8), rng: &rng)
        } throws: { ($0 as? SplitError)?.code == code }
    }

    @Test func invalidUTF8IsRejected() {
        var rng = SplitMix64(seed: 3)
        for bad: [UInt8] in [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xe2, 0x28, 0xa1], [0x80], [0xf0, 0x8f, 0xbf, 0xbf]] {
            let text = Array("{\"Records\":[{\"a\":\"".utf8) + bad + Array("\"}]}".utf8)
            #expect(throws: SplitError.self) { _ = try decode(text, rng: &rng) }
        }
    }

    @Test func recordSizeLimitAndDepthLimit() {
        var rng = SplitMix64(seed: 4)
        let big = "{\"Records\":[{\"a\":\"" + String(repeating: "x", count: 2 << 20) + "\"}]}"
        #expect { _ = try decode(Array(big.utf8), rng: &rng) } throws: { ($0 as? SplitError)?.code == .recordTooLarge }
        var splitter = RecordSplitter(maxRecordSize: 1 << 20, maxDepth: 10)
        let deep = "{\"Records\":[" + String(repeating: "[", count: 20) + "]}"
        #expect(throws: SplitError.self) {
            try Array(deep.utf8).withUnsafeBytes { try splitter.push($0) { _ in } }
            try splitter.finish()
        }
    }

    /// Every token the splitter must hold whole is bounded by the record limit, not only records: a key
    /// (or a value outside `Records`) that never ends is refused once it passes the limit, the buffer
    /// never holding much more, however much more input follows.
    @Test(arguments: [
        ("{\"", "a"), ("{\"Records\":[],\"", "a"), ("{\"Other\":\"", "a"), ("{\"Other\":[", " "), ("{\"Records\":[{\"a\":\"", "a"),
        ("{\"Records\":[],\"Other\":123", "4"),
    ])
    func everyTokenIsBoundedByTheRecordLimit(prefix: String, filler: String) throws {
        let limit = 1 << 20, chunk = 64 << 10
        var splitter = RecordSplitter(maxRecordSize: limit)
        let piece = [UInt8](repeating: filler.utf8.first!, count: chunk)
        var pushed = 0
        var refused: SplitError?
        do {
            try Array(prefix.utf8).withUnsafeBytes { try splitter.push($0) { _ in } }
            while pushed < 64 << 20 {
                try piece.withUnsafeBytes { try splitter.push($0) { _ in } }
                pushed += chunk
                #expect(splitter.bufferCapacity <= 3 * limit, "the buffer grew to \(splitter.bufferCapacity) bytes")
            }
        } catch let e as SplitError {
            refused = e
        }
        let e = try #require(refused, "\(prefix)…: 64 MiB of one token were accepted")
        #expect(e.code == .recordTooLarge, "\(e)")
        #expect(pushed <= limit + 2 * chunk, "refused only after \(pushed) bytes")
        #expect(e.description.contains("\(limit)-byte limit"), "\(e)")
    }

    /// Whitespace between tokens is skipped as it arrives: it costs no memory, however long.
    @Test func whitespaceBetweenTokensIsNotBuffered() throws {
        var splitter = RecordSplitter(maxRecordSize: 1 << 20)
        let spaces = [UInt8](repeating: 0x20, count: 64 << 10)
        var records = 0
        try Array("{\"Records\":[{\"a\":1},".utf8).withUnsafeBytes { try splitter.push($0) { _ in records += 1 } }
        for _ in 0..<(32 << 20) / spaces.count {
            try spaces.withUnsafeBytes { try splitter.push($0) { _ in records += 1 } }
        }
        #expect(splitter.bufferCapacity <= 1 << 20, "\(splitter.bufferCapacity)")
        try Array("{\"b\":2}]}".utf8).withUnsafeBytes { try splitter.push($0) { _ in records += 1 } }
        #expect(try splitter.finish { _ in records += 1 } == 2)
        #expect(records == 2)
    }

    /// `maxObjectSize` bounds the uncompressed bytes of one body: a zip bomb (here 64 MiB of a valid log
    /// from 240 KB of gzip) is `objectTooLarge` as soon as it passes the bound; a body of exactly the
    /// bound, compressed or not, is accepted.
    @Test func theDecompressedSizeIsBounded() throws {
        let cap = 4 << 20
        // Members of 1 MiB of records each: a valid CloudTrail log of 64 MiB.
        let record = #"{"eventVersion":"1.08","eventTime":"2026-11-28T00:00:00Z","eventID":"bomb"},"#
        let block = Array(String(repeating: record, count: (1 << 20) / record.utf8.count).utf8)
        let member = GzipWriter.compress(block, level: 9)
        var bomb = GzipWriter.compress(Array("{\"Records\":[".utf8))
        for _ in 0..<64 { bomb += member }
        bomb += GzipWriter.compress(Array("{}]}".utf8))
        #expect(bomb.count < 300_000, "\(bomb.count) bytes of gzip")
        let decoder = LogDecoder(maxObjectSize: UInt64(cap))
        var records = 0
        #expect {
            try decoder.push(bomb) { _ in records += 1 }
            try decoder.finish()
        } throws: { error in
            guard let e = error as? SplitError else { return false }
            return e.code == .objectTooLarge && e.offset == UInt64(cap) && e.description.contains("input.max_object_size")
        }
        #expect(records > 0 && records < cap / record.utf8.count + 1, "stopped at the bound: \(records) records")

        // Exactly the bound passes, gzip or plain; one byte more does not.
        let exact = Array(("{\"Records\":[{\"a\":\"" + String(repeating: "x", count: 1000) + "\"}]}").utf8)
        for body in [exact, GzipWriter.compress(exact)] {
            let ok = LogDecoder(maxObjectSize: UInt64(exact.count))
            try ok.push(body) { _ in }
            #expect(try ok.finish() == 1)
            let over = LogDecoder(maxObjectSize: UInt64(exact.count - 1))
            #expect {
                try over.push(body) { _ in }
                try over.finish()
            } throws: { ($0 as? SplitError)?.code == .objectTooLarge }
        }
    }

    @Test func corruptAndTruncatedGzipAreTypedWithOffsets() throws {
        var rng = SplitMix64(seed: 6)
        let good = GzipWriter.compress(Array("{\"Records\":[{\"a\":1},{\"b\":2}]}".utf8))
        #expect { _ = try decode(Array(good.prefix(good.count - 5)), rng: &rng) } throws: { ($0 as? GunzipError)?.code == .truncated }
        var corrupt = good
        corrupt[12] ^= 0xff
        corrupt[13] ^= 0xff
        #expect {
            _ = try decode(corrupt, rng: &rng)
        } throws: { error in
            if let e = error as? GunzipError { return e.code == .corrupt && e.offset >= 10 }
            return error is SplitError
        }
        #expect { _ = try decode(good + [0x42, 0x42], rng: &rng) } throws: { ($0 as? GunzipError)?.code == .corrupt }
        #expect(try decode(good + [0, 0, 0], rng: &rng).count == 2, "zero padding after the last member is ignored")
        #expect(try decode(GzipWriter.compress([]), rng: &rng).isEmpty, "an empty gzip member is zero records")
    }

    @Test func mutationFuzzNeverCrashes() {
        var gen = RecordGenerator(rng: SplitMix64(seed: 99))
        var rng = SplitMix64(seed: 100)
        var outcomes = [String: Int]()
        for round in 0..<3000 {
            let text = Array(gen.file(records: (0..<gen.int(1...4)).map { gen.record($0) }).utf8)
            let mutateJSON = round % 2 == 0
            var bytes = mutateJSON ? text : GzipWriter.compress(text)
            for _ in 0..<gen.int(1...4) {
                guard !bytes.isEmpty else { break }
                let at = gen.int(0...(bytes.count - 1))
                switch gen.int(0...3) {
                case 0: bytes[at] ^= UInt8(1 << gen.int(0...7))
                case 1: bytes[at] = UInt8(gen.int(0...255))
                case 2: bytes.removeSubrange(at...)
                default: bytes.insert(UInt8(gen.int(0...255)), at: at)
                }
            }
            if mutateJSON && round % 4 == 0 { bytes = GzipWriter.compress(bytes) }
            do {
                _ = try decode(bytes, rng: &rng, maxChunk: 300)
                outcomes["records", default: 0] += 1
            } catch let e as SplitError {
                outcomes["split:\(e.code)", default: 0] += 1
            } catch let e as GunzipError {
                outcomes["gunzip:\(e.code)", default: 0] += 1
            } catch {
                Issue.record("untyped error \(error)")
            }
        }
        #expect(outcomes.count >= 4, "\(outcomes)")
        #expect((outcomes["split:malformed-json"] ?? 0) > 100 && (outcomes["gunzip:corrupt-gzip"] ?? 0) > 100, "\(outcomes)")
    }
}
