// # SNS message signatures
//
// Amazon SNS signs every message it delivers (Amazon SNS Developer Guide, "Verifying the signatures of
// Amazon SNS messages"). A message in an SNS envelope is accepted only when:
//
// 1. its `SigningCertURL` is `https` on a host the settings allow (by default `sns.<region>.amazonaws.com`
//    and the China partition's `.com.cn`), with a path ending in `.pem`: a sender cannot point at a
//    certificate of their own;
// 2. that certificate was fetched over TLS verified against the trusted CAs (the system's, or
//    `trusted_ca`), as AWS's own message validators do: its origin vouches for it. It must be valid now;
//    fetched certificates are cached by URL (a few per region, rotated rarely), and concurrent
//    messages share one fetch in flight;
// 3. the RSA signature (`SignatureVersion` 1: SHA1withRSA, 2: SHA256withRSA) verifies over the string
//    SNS signs: the message's fields in the documented order, each as `name\nvalue\n`.
//
// Anything else is a refusal with the reason. The verifier is an actor: its cache is its only state.

import Foundation
import HTTP
import X509

#if canImport(Glibc)
import Glibc
#endif

/// Where signing certificates may come from, and whom to trust for the HTTPS that fetches them.
public struct SNSSignatureSettings: Sendable, Equatable {
    /// Host patterns the `SigningCertURL` must match, label by label: a `*` label stands for exactly
    /// one AWS region name (`us-east-1`, `cn-north-1`, `us-gov-west-1`), any other label matches itself.
    /// So `sns.*.amazonaws.com` is `sns.<region>.amazonaws.com`, as AWS documents it, and never
    /// `sns.s3.amazonaws.com` (an S3 bucket anyone can own) or a host of more labels.
    public var certificateHosts: [String] = ["sns.*.amazonaws.com", "sns.*.amazonaws.com.cn"]
    /// A PEM bundle to verify the certificate host's TLS against instead of the system's CAs.
    public var trustedCAFile: String?
    public init() {}
}

/// Verifies SNS envelopes; see the design comment at the top of this file.
public actor SNSSignatureVerifier {
    let settings: SNSSignatureSettings
    let http: HTTPClient
    private var certificates: [String: Certificate] = [:]
    private var fetching: [String: Task<Certificate, any Error>] = [:]

    public init(settings: SNSSignatureSettings) {
        self.settings = settings
        var configuration = HTTPClient.Configuration()
        configuration.caFile = settings.trustedCAFile
        configuration.verifyTLS = true
        http = HTTPClient(configuration: configuration)
    }

    /// Nil when `body` is an SNS envelope whose signature verifies (or no SNS envelope at all: the
    /// caller decides about those); otherwise why it is refused.
    public func refusal(_ body: String) async -> String? {
        let envelope: SignedEnvelope
        switch SignedEnvelope.read(body, certificateHosts: settings.certificateHosts) {
        case .notSNS: return nil
        case .refused(let why): return why
        case .signed(let e): envelope = e
        }
        let (url, version, signature, text) = (envelope.certificateURL, envelope.version, envelope.signature, envelope.stringToSign)
        let certificate: Certificate
        do {
            certificate = try await self.certificate(url)
        } catch {
            return "SNS signature: cannot fetch the signing certificate \(url): \(error)"
        }
        let now = Date()
        guard certificate.notValidBefore <= now, now <= certificate.notValidAfter else {
            return "SNS signature: the signing certificate \(url) is not valid now (\(certificate.notValidBefore) to \(certificate.notValidAfter))"
        }
        let algorithm: Certificate.SignatureAlgorithm = version == "1" ? .sha1WithRSAEncryption : .sha256WithRSAEncryption
        guard certificate.publicKey.isValidSignature(signature, for: Array(text.utf8), signatureAlgorithm: algorithm) else {
            return "SNS signature: the signature does not verify (SignatureVersion \(version), certificate \(url))"
        }
        return nil
    }

    /// The certificate at `url`, fetched once: concurrent callers share the fetch in flight.
    private func certificate(_ url: String) async throws -> Certificate {
        if let c = certificates[url] { return c }
        if let pending = fetching[url] { return try await pending.value }
        let http = self.http
        let task = Task { () throws -> Certificate in
            let r = try await http.send(HTTPRequest(method: "GET", url: url), timeout: 10)
            guard r.status == 200 else { throw CertificateFetchError(message: "HTTP \(r.status)") }
            return try Certificate(pemEncoded: String(decoding: r.body, as: UTF8.self))
        }
        fetching[url] = task
        defer { fetching[url] = nil }
        let c = try await task.value
        if certificates.count > 64 { certificates.removeAll() }
        certificates[url] = c
        return c
    }

    /// The string SNS signs: for a `Notification`, Message, MessageId, Subject (when present),
    /// Timestamp, TopicArn, Type; for (un)subscription confirmations, Message, MessageId, SubscribeURL,
    /// Timestamp, Token, TopicArn, Type. Each is `name\nvalue\n`. Nil when a required field is missing.
    public static func stringToSign(_ envelope: [String: Any], type: String) -> String? {
        let fields: [(String, Bool)] =
            type == "Notification"
            ? [("Message", true), ("MessageId", true), ("Subject", false), ("Timestamp", true), ("TopicArn", true), ("Type", true)]
            : [("Message", true), ("MessageId", true), ("SubscribeURL", true), ("Timestamp", true), ("Token", true), ("TopicArn", true), ("Type", true)]
        var out = ""
        for (name, required) in fields {
            guard let value = envelope[name] as? String else {
                if required { return nil }
                continue
            }
            out += name + "\n" + value + "\n"
        }
        return out
    }
}

/// What an SNS envelope's signature covers, read from the message body with every check that needs
/// no certificate: the signature version, base64, the certificate URL's scheme, host and path, and the
/// signed fields.
public struct SignedEnvelope: Sendable, Equatable {
    public enum Reading: Sendable, Equatable {
        /// Not an SNS envelope (the caller decides about those).
        case notSNS
        /// An SNS envelope refused before any certificate is fetched, and why.
        case refused(String)
        case signed(SignedEnvelope)
    }

    public var version: String
    public var signature: Data
    public var certificateURL: String
    public var stringToSign: String

    public static func read(_ body: String, certificateHosts: [String]) -> Reading {
        guard let envelope = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              let type = envelope["Type"] as? String, envelope["TopicArn"] != nil
        else { return .notSNS }
        guard let version = envelope["SignatureVersion"] as? String, version == "1" || version == "2" else {
            return .refused("SNS signature: SignatureVersion \(envelope["SignatureVersion"].map { "'\($0)'" } ?? "missing") (1 and 2 are known)")
        }
        guard let signatureText = envelope["Signature"] as? String, let signature = Data(base64Encoded: signatureText) else {
            return .refused("SNS signature: no Signature, or not base64")
        }
        guard let url = envelope["SigningCertURL"] as? String else { return .refused("SNS signature: no SigningCertURL") }
        if let r = urlRefusal(url, certificateHosts: certificateHosts) { return .refused("SNS signature: \(r)") }
        guard let text = SNSSignatureVerifier.stringToSign(envelope, type: type) else {
            return .refused("SNS signature: a \(type) message lacks a signed field")
        }
        return .signed(SignedEnvelope(version: version, signature: signature, certificateURL: url, stringToSign: text))
    }

    /// The URL rules: https, an allowed host, a `.pem` path.
    static func urlRefusal(_ text: String, certificateHosts: [String]) -> String? {
        guard let url = URL(string: text), url.scheme == "https", let host = url.host, url.path.hasSuffix(".pem") else {
            return "SigningCertURL '\(text)' is not an https URL of a .pem file"
        }
        guard certificateHosts.contains(where: { hostMatches($0, host.lowercased()) }) else {
            return "SigningCertURL host '\(host)' is not an SNS host (\(certificateHosts.joined(separator: ", ")))"
        }
        return nil
    }

    /// Whether `host` matches `pattern` label by label (see ``SNSSignatureSettings/certificateHosts``).
    static func hostMatches(_ pattern: String, _ host: String) -> Bool {
        let p = pattern.lowercased().split(separator: ".", omittingEmptySubsequences: false)
        let h = host.split(separator: ".", omittingEmptySubsequences: false)
        guard p.count == h.count else { return false }
        return zip(p, h).allSatisfy { p, h in p == "*" ? isRegion(h) : p == h }
    }

    /// An AWS region name: two letters, then hyphenated words, the last a number (`eu-west-1`,
    /// `us-gov-east-1`, `ap-southeast-5`).
    static func isRegion(_ label: Substring) -> Bool {
        let parts = label.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 3, let number = parts.last, !number.isEmpty, number.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        guard parts[0].count == 2 else { return false }
        return parts.dropLast().allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isLowercase } }
    }
}

struct CertificateFetchError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
