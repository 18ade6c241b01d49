import Crypto
import Foundation
import _CryptoExtras

/// CloudTrail's digest-signing public keys of one region: what `ListPublicKeys` answers and what
/// `aws cloudtrail list-public-keys` prints (`{"PublicKeyList":[{"Value","ValidityStartTime",
/// "ValidityEndTime","Fingerprint"}]}`).
public struct PublicKeySet: Sendable {
    public struct Key: Sendable {
        /// DER of the RSA public key (PKCS#1 `RSAPublicKey`, as CloudTrail hands it out).
        public var der: [UInt8]
        public var validFrom: Date?
        public var validUntil: Date?
        /// Hex, as the digests' `digestPublicKeyFingerprint` names it.
        public var fingerprint: String
        public init(der: [UInt8], validFrom: Date?, validUntil: Date?, fingerprint: String) {
            self.der = der
            self.validFrom = validFrom
            self.validUntil = validUntil
            self.fingerprint = fingerprint
        }
    }

    public private(set) var keys: [Key]

    public init(keys: [Key] = []) { self.keys = keys }

    public var isEmpty: Bool { keys.isEmpty }

    public mutating func merge(_ other: PublicKeySet) {
        for k in other.keys where !keys.contains(where: { $0.fingerprint.lowercased() == k.fingerprint.lowercased() && $0.der == k.der }) {
            keys.append(k)
        }
    }

    /// The key a digest names. CloudTrail's own validator matches on the fingerprint alone; so does this.
    public func key(fingerprint: String) -> Key? {
        keys.first { $0.fingerprint.lowercased() == fingerprint.lowercased() }
    }

    public struct Invalid: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// From the JSON of `ListPublicKeys` (epoch seconds) or of `aws cloudtrail list-public-keys` (ISO 8601).
    public init(json: [UInt8], source: String) throws {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any], let list = object["PublicKeyList"] as? [Any] else {
            throw Invalid(description: "\(source): not a public key list (expected {\"PublicKeyList\": [...]}, as `aws cloudtrail list-public-keys` prints)")
        }
        var keys: [Key] = []
        for (i, item) in list.enumerated() {
            guard let entry = item as? [String: Any], let value = entry["Value"] as? String, let fingerprint = entry["Fingerprint"] as? String else {
                throw Invalid(description: "\(source): PublicKeyList[\(i)] needs Value and Fingerprint")
            }
            guard let der = PublicKeySet.der(fromBase64: value) else {
                throw Invalid(description: "\(source): PublicKeyList[\(i)].Value is not a base64 DER public key")
            }
            keys.append(Key(der: der, validFrom: PublicKeySet.date(entry["ValidityStartTime"]), validUntil: PublicKeySet.date(entry["ValidityEndTime"]), fingerprint: fingerprint))
        }
        self.keys = keys
    }

    /// From several answers of `ListPublicKeys` (its pages), merged.
    public init(pages: [[UInt8]], source: String) throws {
        self.init()
        for page in pages { merge(try PublicKeySet(json: page, source: source)) }
    }

    /// CloudTrail's `Value` is the DER in base64 (as the API sends it and the CLI prints it); a value
    /// base64'd once more (an SDK that decoded the blob, then printed it again) is accepted too.
    static func der(fromBase64 text: String) -> [UInt8]? {
        guard let once = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)).map(Array.init) else { return nil }
        if once.first == 0x30 { return once }
        let inner = String(decoding: once, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let twice = Data(base64Encoded: inner).map(Array.init), twice.first == 0x30 else { return nil }
        return twice
    }

    static func date(_ value: Any?) -> Date? {
        switch value {
        case let n as NSNumber: return Date(timeIntervalSince1970: n.doubleValue)
        case let s as String:
            return TrailKeys.isoDate(s) ?? (try? Date(s, strategy: Date.ISO8601FormatStyle(timeZoneSeparator: .colon)))
                ?? ISO8601DateFormatter().date(from: s) ?? Double(s).map { Date(timeIntervalSince1970: $0) }
        default: return nil
        }
    }
}

/// Checks digests' signatures (SHA256withRSA, PKCS#1 v1.5) through swift-crypto.
public enum DigestSignature {
    /// What CloudTrail signs for a digest.
    public static func stringToSign(_ body: DigestBody, contentSHA256: String) -> String {
        "\(body.digestEndTime)\n\(body.digestS3Bucket)/\(body.digestS3Object)\n\(contentSHA256)\n\(body.previousDigestSignature ?? "null")"
    }

    /// nil when the signature verifies; otherwise why not.
    public static func check(_ digest: DigestObject, _ body: DigestBody, keys: PublicKeySet) -> String? {
        guard let signatureHex = digest.signature else { return "no signature (x-amz-meta-signature is missing)" }
        if let algorithm = digest.signatureAlgorithm ?? body.digestSignatureAlgorithm, algorithm.uppercased() != "SHA256WITHRSA" {
            return "unsupported signature algorithm \(algorithm)"
        }
        guard let key = keys.key(fingerprint: body.digestPublicKeyFingerprint) else {
            return "public key not found for fingerprint \(body.digestPublicKeyFingerprint)"
        }
        guard let signature = Hex.decode(signatureHex) else { return "the signature is not hex" }
        let publicKey: _RSA.Signing.PublicKey
        do {
            publicKey = try _RSA.Signing.PublicKey(derRepresentation: key.der)
        } catch {
            return "unable to load the public key with fingerprint \(body.digestPublicKeyFingerprint)"
        }
        let signed = Array(stringToSign(body, contentSHA256: digest.sha256).utf8)
        guard publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: signed, padding: .insecurePKCS1v1_5) else {
            return "signature verification failed"
        }
        return nil
    }
}
