// One fuzz target per parser that reads bytes from the outside world. Each is a C function
// `ctb_fuzz_<name>(data, size)` that libFuzzer calls through Drivers/driver.c.
//
// Invariants checked here, beyond "no crash, no hang, no unbounded allocation" (what the sanitizers
// and libFuzzer's limits catch):
// 1. gunzip: inflating in arbitrary chunks gives the same bytes and the same error as in one piece.
// 2. records: every event an accepted record becomes, in every codec, is one line of valid JSON.
// 3. lumberjack: a window is acknowledged only whole; redis: a reply stream is consumed or refused.
// 4. bulk: a report never handles more than the batch, and its dead letters lie below `handled`.
// 5. journal: a record that decodes re-encodes to bytes that decode to the same record.
// 6. hec: an ack answer acknowledges only ids the query asked for; an event's time, read from any
//    bytes, is either absent or a time HEC's envelope can carry.
// 7. digest: no bytes pass as a digest signed by a key whose private half nobody has here; a finding
//    record made of any bytes becomes one line of valid JSON in every codec.
import Codecs
import Foundation
@testable import AWS
@testable import Engine
import HTTP
import Integrity
@testable import Journal
@testable import Outputs
import SNSSignature
import Stages

/// The input as a buffer, valid during the call.
@inline(__always)
func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: data, count: size)
}

/// SQS, SNS, S3 event notification and EventBridge bodies, as they arrive in a message.
@_cdecl("ctb_fuzz_notification")
public func fuzzNotification(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let body = Array(bytes(data, size))
    // The first input byte chooses the per-message bound, so that the bound's edge is reached too.
    let maxKeys = 1 + Int(body.first ?? 0) % 8
    switch NotificationDecoder.decode(body, maxKeys: maxKeys) {
    case .objects(let refs, _):
        // The name gate's invariants (S3Names.swift): nothing but S3 names gets past it.
        precondition(refs.count <= maxKeys, "more objects than the bound")
        for r in refs {
            precondition(S3Name.bucketProblem(r.bucket) == nil, "a bucket that is not an S3 name passed")
            precondition(S3Name.keyProblem(r.key) == nil, "a key that S3 or a log line would not take passed")
            let forbidden = Set("@:/#?%\\".unicodeScalars)
            precondition(!r.bucket.unicodeScalars.contains(where: forbidden.contains), "a URL-meaningful character in a bucket")
        }
    case .unrecognised(let reason), .nothingToDo(let reason):
        precondition(!reason.unicodeScalars.contains(where: UntrustedText.isControl), "a reason with a raw control character")
    }
    _ = NotificationDecoder.formURLDecode(String(decoding: body, as: UTF8.self))
    return 0
}

/// gzip streams (and the plain-text passthrough), pushed in chunks whose sizes the input chooses.
@_cdecl("ctb_fuzz_gunzip")
public func fuzzGunzip(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let chunk = Int(first % 64) + 1
    let body = UnsafeRawBufferPointer(rebasing: input.dropFirst())

    func inflate(chunked: Bool) -> ([UInt8], String?) {
        let g = Gunzip(outputChunk: 4096)
        var out: [UInt8] = []
        do {
            var offset = 0
            while offset < body.count {
                let n = chunked ? min(chunk, body.count - offset) : body.count
                try g.push(UnsafeRawBufferPointer(rebasing: body[offset..<offset + n])) { out += $0 }
                offset += n
            }
            try g.finish { out += $0 }
            return (out, nil)
        } catch {
            return (out, "\(error)")
        }
    }
    let whole = inflate(chunked: false)
    let pieces = inflate(chunked: true)
    precondition(whole.1 == pieces.1, "chunking changed the outcome: \(whole.1 ?? "ok") vs \(pieces.1 ?? "ok")")
    if whole.1 == nil { precondition(whole.0 == pieces.0, "chunking changed the inflated bytes") }
    return 0
}

/// A log file's bytes (plain or gzip) through the strict splitter, then every record through every
/// codec, the way the engine emits them.
@_cdecl("ctb_fuzz_records")
public func fuzzRecords(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let decoder = LogDecoder(maxRecordSize: 64 << 10)
    var encoders = CodecKind.allCases.map {
        EventEncoder(
            options: CodecOptions(kind: $0, eventOriginal: true), filter: nil,
            bucket: "fuzz-bucket", key: "AWSLogs/123456789012/CloudTrail/us-east-1/2026/12/02/x.json.gz", receivedAt: 0)
    }
    var out: [UInt8] = []
    func emit(_ record: RecordView) {
        for i in encoders.indices {
            out.removeAll(keepingCapacity: true)
            guard encoders[i].encode(record, to: &out) != nil else { continue }
            precondition(!out.contains(0x0a), "an event spans lines")
            precondition((try? JSONSerialization.jsonObject(with: Data(out))) is [String: Any], "an event is not a JSON object: \(String(decoding: out.prefix(200), as: UTF8.self))")
        }
    }
    do {
        try decoder.push(bytes(data, size), emit)
        try decoder.finish(emit)
    } catch {}
    return 0
}

/// ListObjectsV2 answers (REST-XML).
@_cdecl("ctb_fuzz_listing")
public func fuzzListing(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = S3ListPage(xml: Array(bytes(data, size)), serverTime: nil)
    return 0
}

/// SQS ReceiveMessage answers (JSON protocol) and AWS error bodies (JSON and XML).
@_cdecl("ctb_fuzz_sqs")
public func fuzzSQS(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let body = Array(bytes(data, size))
    if let answer = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
        _ = SQSClient.messages(inReceiveAnswer: answer)
    }
    let status = body.first.map { 400 + Int($0) % 200 } ?? 500
    let e = AWSError.from(HTTPResponse(head: HTTPHead(status: status, headers: []), body: body), service: "sqs", operation: "ReceiveMessage")
    _ = e.description
    return 0
}

/// The configuration loader (YAML, every key's validation).
@_cdecl("ctb_fuzz_config")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = try? Config.parse(String(decoding: bytes(data, size), as: UTF8.self), file: "fuzz.yml")
    return 0
}

/// Redis replies (RESP), read until the stream ends or is refused.
@_cdecl("ctb_fuzz_redis")
public func fuzzRedis(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let reader = MemoryReplies(bytes(data, size))
    for _ in 0..<1000 {
        do { _ = try RedisOutput.reply(reader) } catch { break }
    }
    return 0
}

/// Lumberjack v2 ACK frames for a window whose size the first byte chooses.
@_cdecl("ctb_fuzz_lumberjack")
public func fuzzLumberjack(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let window = Int(first) + 1
    var last = 0
    if let acked = try? LogstashOutput.awaitAcks(MemoryReplies(input.dropFirst()), window: window, progress: {
        precondition($0 > last && $0 <= window, "progress went from \(last) to \($0) in a window of \(window)")
        last = $0
    }) {
        precondition(acked == window, "returned \(acked) of a window of \(window)")
    }
    return 0
}

/// Elasticsearch `_bulk` answers for a batch whose size the first byte chooses.
@_cdecl("ctb_fuzz_bulk")
public func fuzzBulk(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let count = Int(first % 16)
    if let report = ElasticsearchOutput.bulkReport(Array(input.dropFirst()), count: count) {
        precondition(report.handled <= count, "handled \(report.handled) of \(count)")
        precondition(report.deadLetters.allSatisfy { $0.index < report.handled }, "a dead letter at or beyond handled")
    }
    return 0
}

/// Splunk HEC: answers to an event request and to an ack query (the first byte: status class and how
/// many ids were queried), and event times read from any bytes.
@_cdecl("ctb_fuzz_hec")
public func fuzzHEC(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let body = Array(input.dropFirst())
    let status = [200, 400, 403, 503][Int(first & 3)]
    let answer = SplunkHECOutput.Answer(HTTPResponse(head: HTTPHead(status: status, headers: []), body: body))
    _ = answer.summary
    let queried = Array(0..<Int(first >> 2))
    if let acked = try? SplunkHECOutput.acknowledged(answer, queried: queried, endpoint: "fuzz") {
        precondition(acked.isSubset(of: Set(queried)), "acknowledged ids that were not asked for: \(acked.subtracting(queried))")
    }
    let event = OutputEvent(id: "e", json: body, timestamp: Array(body.prefix(32)))
    if let ms = event.epochMillis { precondition(ms >= -62_167_219_200_000 && ms < 253_402_300_800_000, "a time outside years 0–9999: \(ms)") }
    _ = OutputEvent(id: "e", json: body).epochMillis
    return 0
}

/// SNS envelopes, up to the point a signing certificate would be fetched.
@_cdecl("ctb_fuzz_sns")
public func fuzzSNS(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let body = String(decoding: bytes(data, size), as: UTF8.self)
    if case .signed(let e) = SignedEnvelope.read(body, certificateHosts: ["sns.*.amazonaws.com"]) {
        precondition(e.certificateURL.hasPrefix("https://"), "an envelope passed with \(e.certificateURL)")
    }
    return 0
}

/// The journal's records as read back from its file: a torn page, a disk that returns garbage, a
/// record written by a newer build. The first byte picks the record type.
@_cdecl("ctb_fuzz_journal")
public func fuzzJournal(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let record = Array(input.dropFirst())
    func roundTrip<T: Equatable>(_ decode: ([UInt8]) throws -> T, _ encode: (T) -> [UInt8]) {
        guard let value = try? decode(record) else { return }
        let again = try? decode(encode(value))
        precondition(again == value, "\(T.self) does not survive re-encoding")
    }
    switch first % 6 {
    case 0: roundTrip(ObjectState.decode) { $0.encode() }
    case 1: roundTrip(MessageState.decode) { $0.encode() }
    case 2: roundTrip(QuarantineEntry.decode) { $0.encode() }
    case 3: roundTrip(BackfillCursor.decode) { $0.encode() }
    case 4: roundTrip({ try OutputRecords.decode("file", $0) }) { $0.encode() }
    default: roundTrip(OutputHealth.decode) { $0.encode() }
    }
    return 0
}

/// A public key from scripts/signed_trails.py (its private half was never kept): the fuzzer's digests
/// name its fingerprint, so they reach the RSA check, which nothing here can pass.
let fuzzPublicKeys = try! PublicKeySet(
    json: Array(#"{"PublicKeyList":[{"Value":"MIIBCgKCAQEAu+SNI6kH5418XAU7tF34jRdgg6t9cafWG0pLUlr6KLn0o8EBinMuGlFaPlwkETmkF0f25u6KzZOQMPbnx+hC6kEup3BU9fyQkrjYzNRnrUTP5l668BdEF3rojrmdeW1SD6AgnKvtEoKbwAL5bfU1FhIFvwEbyJawBwr/4fxlkOIEdkN93+UOxaUPOZpcAgwrRaxYoW9XaauvIf8M3LT7fhsqXWxafD4vguuBFhUlhQ/MEb+6QFopA613KUPJNjjCEApIfplke0H2ffUdbWKaH3t8Q18b4RLJEkTg3TuALl3cUs70Iu/lR87V4x7U3Ahdw6EW79hwqp6/BG5LLFdrUwIDAQAB","Fingerprint":"9aa3c361746570e66dd7f81acbbfff30"}]}"#.utf8), source: "fuzz")

/// CloudTrail digests (integrity): any bytes as a stored digest (gzip'd or not) with a signature taken
/// from them, as a public key list and as S3 keys; and any bytes as a finding record, in every codec.
@_cdecl("ctb_fuzz_digest")
public func fuzzDigest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = Array(bytes(data, size))
    let text = String(decoding: input, as: UTF8.self)
    _ = DigestKey(text)
    _ = LogKey(text)
    _ = try? PublicKeySet(json: input, source: "fuzz")
    let key = "AWSLogs/111111111111/CloudTrail-Digest/eu-west-1/2026/11/30/111111111111_CloudTrail-Digest_eu-west-1_main_us-east-1_20261130T010000Z.json.gz"
    if let o = try? DigestObject.fromStored(bucket: "trails", key: key, gzipped: input, metadata: ["signature": Hex.encode(input.suffix(256))]),
        let body = try? o.body()
    {
        precondition(Audit.verdict(o, body, keys: fuzzPublicKeys) != nil, "a digest verified without the private key")
        _ = Audit.digests([key: .loaded(o)], bucket: "trails", keys: { _ in fuzzPublicKeys }, since: nil)
    }
    input.withUnsafeBytes { raw in
        let record = RecordView(index: 0, bytes: raw, eventTime: nil, eventID: nil)
        for kind in CodecKind.allCases {
            var out: [UInt8] = []
            guard FindingEncoder(options: CodecOptions(kind: kind), bucket: "b", key: "k").encode(record, to: &out) != nil else { continue }
            precondition(!out.contains(0x0a) && (try? JSONSerialization.jsonObject(with: Data(out))) != nil, "\(kind): a finding's event is not one line of JSON")
        }
    }
    return 0
}
