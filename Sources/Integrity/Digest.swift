// Integrity — CloudTrail log-file validation: digest files, their RSA signatures, the chain they form
// and the verdicts on the log files they list.
//
// What CloudTrail writes (User Guide: "CloudTrail digest file structure", "Custom implementation of
// CloudTrail log file integrity validation"): every hour, per account, region and trail, a gzip'd JSON
// digest under `[prefix/]AWSLogs/[o-org/]account/CloudTrail-Digest/region/Y/M/D/` that lists the log
// files delivered in that hour with the SHA-256 of each one's *uncompressed* bytes, and names the previous
// digest (object, SHA-256, signature). The digest's own signature (SHA256withRSA, hex) is the object's
// `x-amz-meta-signature`; it covers `digestEndTime \n bucket/key \n hex(SHA-256(uncompressed digest))
// \n previousDigestSignature` ("null" for the first of a chain). Backfill digests (`…_backfill.json.gz`,
// with `x-amz-meta-backfill-generation-timestamp`) list late files and form a chain of their own.
//
// Invariants of this module (everything here is pure: no I/O, no clock):
// 1. A digest is valid only when its format is whole, it sits where it says it was written
//    (`digestS3Bucket`/`digestS3Object`), a public key with its fingerprint exists, and the RSA
//    signature verifies. Anything else is a verdict with a reason, never a crash or a silent pass.
// 2. A log counts as valid only when a valid digest lists it and its uncompressed SHA-256 matches.
// 3. A link is checked both ways the chain allows: the previous digest must exist (else it is missing),
//    and when present its SHA-256 and signature must be the ones its successor recorded.
// 4. Verdicts depend on the inputs only, never on their order (sorted output), so a rerun after a crash
//    reaches the same findings.
import Foundation
import Stages

/// The JSON body of a CloudTrail digest file (fields the checks use; unknown fields are ignored).
public struct DigestBody: Sendable, Equatable, Decodable {
    public struct LogFile: Sendable, Equatable, Decodable {
        public var s3Bucket: String
        public var s3Object: String
        public var hashValue: String
        public var hashAlgorithm: String?
        public var newestEventTime: String?
        public var oldestEventTime: String?
    }
    public var awsAccountId: String?
    public var digestStartTime: String
    public var digestEndTime: String
    public var digestS3Bucket: String
    public var digestS3Object: String
    public var digestPublicKeyFingerprint: String
    public var digestSignatureAlgorithm: String?
    public var previousDigestS3Bucket: String?
    public var previousDigestS3Object: String?
    public var previousDigestHashValue: String?
    public var previousDigestHashAlgorithm: String?
    public var previousDigestSignature: String?
    public var logFiles: [LogFile]

    enum CodingKeys: String, CodingKey {
        case awsAccountId, digestStartTime, digestEndTime, digestS3Bucket, digestS3Object, digestPublicKeyFingerprint,
             digestSignatureAlgorithm, previousDigestS3Bucket, previousDigestS3Object, previousDigestHashValue,
             previousDigestHashAlgorithm, previousDigestSignature, logFiles
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        awsAccountId = try c.decodeIfPresent(String.self, forKey: .awsAccountId)
        digestStartTime = try c.decode(String.self, forKey: .digestStartTime)
        digestEndTime = try c.decode(String.self, forKey: .digestEndTime)
        digestS3Bucket = try c.decode(String.self, forKey: .digestS3Bucket)
        digestS3Object = try c.decode(String.self, forKey: .digestS3Object)
        digestPublicKeyFingerprint = try c.decode(String.self, forKey: .digestPublicKeyFingerprint)
        digestSignatureAlgorithm = try c.decodeIfPresent(String.self, forKey: .digestSignatureAlgorithm)
        previousDigestS3Bucket = try c.decodeIfPresent(String.self, forKey: .previousDigestS3Bucket)
        previousDigestS3Object = try c.decodeIfPresent(String.self, forKey: .previousDigestS3Object)
        previousDigestHashValue = try c.decodeIfPresent(String.self, forKey: .previousDigestHashValue)
        previousDigestHashAlgorithm = try c.decodeIfPresent(String.self, forKey: .previousDigestHashAlgorithm)
        // Required, but null for the first digest of a chain.
        guard c.contains(.previousDigestSignature) else {
            throw DecodingError.keyNotFound(CodingKeys.previousDigestSignature, .init(codingPath: [], debugDescription: "previousDigestSignature is missing"))
        }
        previousDigestSignature = try c.decodeIfPresent(String.self, forKey: .previousDigestSignature)
        logFiles = try c.decodeIfPresent([LogFile].self, forKey: .logFiles) ?? []
    }
}

/// A digest object as fetched: its place, its uncompressed bytes and the metadata CloudTrail set on it.
public struct DigestObject: Sendable {
    public var bucket: String
    public var key: String
    /// The uncompressed JSON, exactly as stored (its SHA-256 is part of what the signature covers).
    public var content: [UInt8]
    /// `x-amz-meta-signature` (hex), `x-amz-meta-signature-algorithm`.
    public var signature: String?
    public var signatureAlgorithm: String?
    /// `x-amz-meta-backfill-generation-timestamp` (backfill digests only).
    public var backfillGenerationTimestamp: String?

    public init(bucket: String, key: String, content: [UInt8], signature: String?, signatureAlgorithm: String?, backfillGenerationTimestamp: String? = nil) {
        self.bucket = bucket
        self.key = key
        self.content = content
        self.signature = signature
        self.signatureAlgorithm = signatureAlgorithm
        self.backfillGenerationTimestamp = backfillGenerationTimestamp
    }

    /// The most a digest may hold uncompressed. CloudTrail's list an hour of log files (kilobytes, a few
    /// MB for the busiest trails); a body inflating past this is not one (a zip bomb), and is refused
    /// before it fills memory.
    public static let maxContentBytes = 64 << 20

    /// From the object's stored (gzip'd) bytes and its `x-amz-meta-*` metadata (names without the prefix).
    ///
    /// - Throws: ``GunzipError``; ``DigestFormatError`` past ``maxContentBytes`` uncompressed.
    public static func fromStored(bucket: String, key: String, gzipped: [UInt8], metadata: [String: String]) throws -> DigestObject {
        var content: [UInt8] = []
        let gunzip = Gunzip()
        func keep(_ bytes: UnsafeRawBufferPointer) throws {
            guard content.count + bytes.count <= maxContentBytes else {
                throw DigestFormatError(reason: "more than \(maxContentBytes >> 20) MiB uncompressed: not a CloudTrail digest")
            }
            content.append(contentsOf: bytes)
        }
        try gzipped.withUnsafeBytes { raw in
            try gunzip.push(raw, keep)
            try gunzip.finish(keep)
        }
        return DigestObject(
            bucket: bucket, key: key, content: content, signature: metadata["signature"],
            signatureAlgorithm: metadata["signature-algorithm"], backfillGenerationTimestamp: metadata["backfill-generation-timestamp"])
    }

    /// The hex SHA-256 of the uncompressed content.
    public var sha256: String { Hex.sha256(content) }

    /// The parsed body; throws ``DigestFormatError`` when it is not a digest.
    public func body() throws -> DigestBody {
        do {
            return try JSONDecoder().decode(DigestBody.self, from: Data(content))
        } catch let DecodingError.keyNotFound(key, _) {
            throw DigestFormatError(reason: "invalid format: \(key.stringValue) is missing")
        } catch {
            throw DigestFormatError(reason: "invalid format: not a digest's JSON")
        }
    }
}

public struct DigestFormatError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}
