import Crypto
import Foundation
import Integrity
import Stages
import Testing
import _CryptoExtras

/// A trail's digest chain signed with a key of the test's own, checked in-process.
struct SignedChain {
    let key: _RSA.Signing.PrivateKey
    let fingerprint: String
    let bucket = "trail-bucket"
    var objects: [String: DigestObject] = [:]
    var keys: PublicKeySet

    init() throws {
        key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let der = Array(key.publicKey.derRepresentation)
        fingerprint = Hex.encode(Insecure.MD5.hash(data: der))
        // As the API sends it and the CLI prints it: base64 of the DER.
        let value = Data(der).base64EncodedString()
        keys = try PublicKeySet(json: Array(#"{"PublicKeyList":[{"Value":"\#(value)","ValidityStartTime":"2026-01-01T00:00:00+00:00","ValidityEndTime":"2027-01-01T00:00:00+00:00","Fingerprint":"\#(fingerprint)"}]}"#.utf8), source: "test")
    }

    static func digestKey(hour: Int, backfill: Bool = false) -> String {
        "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2026/12/03/111122223333_CloudTrail-Digest_eu-west-1_org_trail_us-east-1_20261203T\(String(format: "%02d", hour))0000Z\(backfill ? "_backfill" : "").json.gz"
    }

    static func logKey(hour: Int, n: Int) -> String {
        "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/12/03/111122223333_CloudTrail_eu-west-1_20261203T\(String(format: "%02d", hour))\(String(format: "%02d", 10 + n))Z_abc\(n).json.gz"
    }

    /// Appends the digest of `hour`, listing `logs` (key → uncompressed SHA-256), linked to the previous one.
    mutating func add(hour: Int, logs: [(String, String)], previous: String?) throws {
        let key = SignedChain.digestKey(hour: hour)
        let prev = previous.flatMap { objects[$0] }
        var json: [String: Any] = [
            "awsAccountId": "111122223333",
            "digestStartTime": "2026-12-03T\(String(format: "%02d", hour - 1)):00:00Z",
            "digestEndTime": "2026-12-03T\(String(format: "%02d", hour)):00:00Z",
            "digestS3Bucket": bucket, "digestS3Object": key,
            "digestPublicKeyFingerprint": fingerprint, "digestSignatureAlgorithm": "SHA256withRSA",
            "logFiles": logs.map { ["s3Bucket": bucket, "s3Object": $0.0, "hashValue": $0.1, "hashAlgorithm": "SHA-256"] },
        ]
        json["previousDigestSignature"] = prev?.signature ?? NSNull()
        if let prev {
            json["previousDigestS3Bucket"] = bucket
            json["previousDigestS3Object"] = prev.key
            json["previousDigestHashValue"] = prev.sha256
        }
        let content = Array(try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))
        objects[key] = try sign(key: key, content: content)
    }

    func sign(key: String, content: [UInt8]) throws -> DigestObject {
        var o = DigestObject(bucket: bucket, key: key, content: content, signature: nil, signatureAlgorithm: "SHA256withRSA")
        let body = try o.body()
        let toSign = DigestSignature.stringToSign(body, contentSHA256: o.sha256)
        o.signature = Hex.encode(try self.key.signature(for: Array(toSign.utf8), padding: .insecurePKCS1v1_5).rawRepresentation)
        return o
    }

    func audit(dropping: Set<String> = []) -> (valid: [ValidDigest], findings: [Finding]) {
        var loads: [String: DigestLoad] = [:]
        for (k, o) in objects where !dropping.contains(k) { loads[k] = .loaded(o) }
        return Audit.digests(loads, bucket: bucket, keys: { _ in keys }, since: nil)
    }
}

@Suite struct AuditTests {
    func chain(hours: ClosedRange<Int> = 1...4) throws -> SignedChain {
        var c = try SignedChain()
        var previous: String?
        for h in hours {
            try c.add(hour: h, logs: [(SignedChain.logKey(hour: h - 1, n: 1), Hex.sha256(Array("log \(h)".utf8)))], previous: previous)
            previous = SignedChain.digestKey(hour: h)
        }
        return c
    }

    @Test func aSignedChainIsValidThroughout() throws {
        let c = try chain()
        let (valid, findings) = c.audit()
        #expect(findings.isEmpty)
        #expect(valid.map(\.key) == (1...4).map { SignedChain.digestKey(hour: $0) })
    }

    /// A digest body inflating past 64 MiB (a zip bomb: 65 MiB from 65 KB of gzip) is refused as it
    /// passes the bound, not held in memory whole.
    @Test func aDigestInflatingPastTheBoundIsRefused() throws {
        let member = GzipWriter.compress([UInt8](repeating: 0x20, count: 1 << 20), level: 9)
        var bomb = GzipWriter.compress(Array("{\"awsAccountId\":\"111122223333\",\"logFiles\":[".utf8))
        for _ in 0..<65 { bomb += member }
        #expect(bomb.count < 100_000)
        #expect {
            _ = try DigestObject.fromStored(bucket: "b", key: SignedChain.digestKey(hour: 1), gzipped: bomb, metadata: [:])
        } throws: { ($0 as? DigestFormatError)?.reason.contains("more than 64 MiB uncompressed") == true }
        let fits = try DigestObject.fromStored(bucket: "b", key: SignedChain.digestKey(hour: 1), gzipped: Array(bomb.prefix(bomb.count - 2 * member.count)), metadata: [:])
        #expect(fits.content.count > 62 << 20, "up to the bound, a body is read whole")
    }

    @Test func anAlteredDigestFailsItsSignature() throws {
        var c = try chain()
        let key = SignedChain.digestKey(hour: 2)
        var o = c.objects[key]!
        // A listed log's hash swapped for another: what someone covering a modified log would do.
        o.content = Array(String(decoding: o.content, as: UTF8.self).replacingOccurrences(of: Hex.sha256(Array("log 2".utf8)), with: String(repeating: "0", count: 64)).utf8)
        c.objects[key] = o
        let (valid, findings) = c.audit()
        #expect(findings == [Finding(kind: .digestInvalid, bucket: c.bucket, key: key, detail: "signature verification failed")])
        #expect(valid.count == 3)
    }

    @Test func aDeletedDigestIsAGapNamedByItsSuccessor() throws {
        let c = try chain()
        let key = SignedChain.digestKey(hour: 3)
        let (valid, findings) = c.audit(dropping: [key])
        #expect(findings.map(\.kind) == [.digestMissing])
        #expect(findings.first?.key == key)
        #expect(valid.count == 3)
    }

    @Test func aDigestReplacedByAnotherValidlySignedOneBreaksTheLink() throws {
        // Signed with the right key (a digest re-issued), but not the one its successor recorded.
        var c = try chain()
        let key = SignedChain.digestKey(hour: 2)
        let text = String(decoding: c.objects[key]!.content, as: UTF8.self).replacingOccurrences(of: "\"awsAccountId\"", with: "\"extra\":1,\"awsAccountId\"")
        c.objects[key] = try c.sign(key: key, content: Array(text.utf8))
        let (_, findings) = c.audit()
        #expect(findings.map(\.kind) == [.digestInvalid])
        #expect(findings.first?.detail.contains("SHA-256 is not the one") == true)
    }

    @Test func aMovedDigestOrAnUnknownKeyIsInvalid() throws {
        var c = try chain(hours: 1...1)
        let key = SignedChain.digestKey(hour: 1)
        var moved = c.objects[key]!
        moved.key = "elsewhere/" + key
        c.objects = [moved.key: moved]
        #expect(c.audit().findings.first?.detail.hasPrefix("has been moved") == true)
        let other = try SignedChain()
        let (_, findings) = Audit.digests([key: .loaded(try chain(hours: 1...1).objects[key]!)], bucket: c.bucket, keys: { _ in other.keys }, since: nil)
        #expect(findings.first?.detail.hasPrefix("public key not found") == true)
    }

    @Test func logsAreCheckedAgainstTheValidDigests() throws {
        let c = try chain()
        let (valid, _) = c.audit()
        let listed = Audit.listedLogs(valid)
        #expect(listed.count == 4)
        let good = listed[0], bad = listed[1], gone = listed[2]
        #expect(Audit.log(bucket: good.bucket, key: good.key, expected: good.hash, digest: good.digest, .hash(good.hash.uppercased())) == nil)
        #expect(Audit.log(bucket: bad.bucket, key: bad.key, expected: bad.hash, digest: bad.digest, .hash(String(repeating: "1", count: 64)))?.kind == .logModified)
        #expect(Audit.log(bucket: gone.bucket, key: gone.key, expected: gone.hash, digest: gone.digest, .missing)?.kind == .logMissing)
        // A forged log in an hour whose digest came (and later ones too), and one after the last digest began.
        let forged = SignedChain.logKey(hour: 1, n: 7)
        let tooNew = SignedChain.logKey(hour: 3, n: 7)
        let notCovered = Audit.notCovered(logsInBucket: listed.map(\.key) + [forged, tooNew], bucket: c.bucket, valid: valid)
        #expect(notCovered.map(\.key) == [forged])
    }

    @Test func publicKeysParseAsTheAPIAndTheCLIGiveThem() throws {
        let c = try SignedChain()
        let der = c.keys.keys[0].der
        // The blob's bytes base64'd once more (a client that decoded the blob and printed it again).
        let twice = Data(Data(der).base64EncodedString().utf8).base64EncodedString()
        let api = try PublicKeySet(json: Array(#"{"PublicKeyList":[{"Value":"\#(twice)","ValidityStartTime":1764547200,"ValidityEndTime":1796083200,"Fingerprint":"ab"}]}"#.utf8), source: "api")
        #expect(api.keys[0].der == der)
        #expect(api.keys[0].validFrom == Date(timeIntervalSince1970: 1764547200))
        #expect(c.keys.keys[0].validFrom != nil)
        #expect(throws: PublicKeySet.Invalid.self) { try PublicKeySet(json: Array("{}".utf8), source: "f") }
        #expect(throws: PublicKeySet.Invalid.self) { try PublicKeySet(json: Array(#"{"PublicKeyList":[{"Value":"!!","Fingerprint":"x"}]}"#.utf8), source: "f") }
    }

    @Test func keysAreParsedWithTrailNamesHoldingUnderscores() throws {
        let d = try #require(DigestKey("p/AWSLogs/o-abc123/111122223333/CloudTrail-Digest/eu-west-1/2026/12/03/111122223333_CloudTrail-Digest_eu-west-1_org_trail_us-east-1_20261203T010000Z_backfill.json.gz"))
        #expect(d.trail == "org_trail")
        #expect(d.homeRegion == "us-east-1")
        #expect(d.backfill)
        #expect(d.scope.organization == "o-abc123")
        #expect(d.scope.prefix == "p/")
        #expect(LogKey(SignedChain.logKey(hour: 1, n: 1))?.scope.region == "eu-west-1")
        #expect(LogKey("AWSLogs/111122223333/CloudTrail/eu-west-1/2026/12/03/x.json.gz") == nil)
        #expect(DigestKey(SignedChain.logKey(hour: 1, n: 1)) == nil)
    }
}
