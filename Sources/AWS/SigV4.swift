import Crypto
import Foundation
import HTTP

#if canImport(Glibc)
import Glibc
#endif

/// AWS credentials. Their description never shows the secret or the session token.
public struct Credentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// When temporary credentials expire.
    public var expiration: Date?
    /// Where they came from (`environment`, `profile default`, `imds`, …), for logs.
    public var source: String

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil, source: String = "static") {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.source = source
    }

    public var description: String {
        "Credentials(accessKeyID: \(accessKeyID), secret: <redacted>, sessionToken: \(sessionToken == nil ? "none" : "<redacted>"), source: \(source))"
    }
    public var debugDescription: String { description }
}

/// AWS Signature Version 4 (the official test suite in shared/testdata/sigv4 passes).
public enum SigV4 {
    /// The hex SHA-256 of an empty body.
    public static let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// A request as the signer sees it. `path` and the query are raw (not percent-encoded).
    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var query: [(String, String)]
        public var headers: [(String, String)]
        /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
        public var payloadHash: String

        public init(method: String, path: String, query: [(String, String)] = [], headers: [(String, String)], payloadHash: String) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadHash = payloadHash
        }
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters (and `/` when kept).
    public static func encode(_ s: String, keepSlash: Bool = false) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        let hex = Array("0123456789ABCDEF")
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(UnicodeScalar(b))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out.append("%")
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 15)])
            }
        }
        return out
    }

    /// Removes `.` and `..` segments and empty segments (RFC 3986 §5.2.4, as AWS normalises).
    public static func normalize(_ path: String) -> String {
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            if segment == "." { continue }
            if segment == ".." {
                if !segments.isEmpty { segments.removeLast() }
                continue
            }
            segments.append(segment)
        }
        var result = "/" + segments.joined(separator: "/")
        if path.hasSuffix("/") && result != "/" { result += "/" }
        return result
    }

    /// The canonical URI: each segment encoded once; normalised except for S3.
    public static func canonicalURI(_ path: String, normalizePath: Bool) -> String {
        let p = path.isEmpty ? "/" : path
        return encode(normalizePath ? normalize(p) : p, keepSlash: true)
    }

    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        var pairs: [(String, String)] = query.map { (encode($0.0), encode($0.1)) }
        pairs.sort { (a: (String, String), b: (String, String)) -> Bool in a.0 == b.0 ? a.1 < b.1 : a.0 < b.0 }
        let items: [String] = pairs.map { (p: (String, String)) -> String in p.0 + "=" + p.1 }
        return items.joined(separator: "&")
    }

    /// Lowercased names, trimmed values with inner runs of spaces folded, duplicates joined by commas.
    public static func canonicalHeaders(_ headers: [(String, String)]) -> (canonical: String, signed: String) {
        var order: [String] = []
        var values: [String: [String]] = [:]
        for (name, value) in headers {
            let key = name.lowercased()
            if values[key] == nil { order.append(key) }
            let folded = value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
            values[key, default: []].append(folded)
        }
        let names = order.sorted()
        let canonical = names.map { "\($0):\(values[$0]!.joined(separator: ","))\n" }.joined()
        return (canonical, names.joined(separator: ";"))
    }

    public static func canonicalRequest(_ r: Request, normalizePath: Bool) -> (String, signedHeaders: String) {
        let (headers, signed) = canonicalHeaders(r.headers)
        let uri: String = canonicalURI(r.path, normalizePath: normalizePath)
        let query: String = canonicalQuery(r.query)
        let parts: [String] = [r.method, uri, query, headers, signed, r.payloadHash]
        let text = parts.joined(separator: "\n")
        return (text, signed)
    }

    public static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func sha256Hex(_ bytes: some DataProtocol) -> String { hex(SHA256.hash(data: bytes)) }

    public static func scope(date: String, region: String, service: String) -> String {
        "\(date.prefix(8))/\(region)/\(service)/aws4_request"
    }

    public static func stringToSign(canonicalRequest: String, amzDate: String, scope: String) -> String {
        "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(sha256Hex(Array(canonicalRequest.utf8)))"
    }

    public static func signingKey(secret: String, date: String, region: String, service: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ s: String) -> SymmetricKey {
            SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array(s.utf8), using: key))
        }
        var key = SymmetricKey(data: Array(("AWS4" + secret).utf8))
        for part in [String(date.prefix(8)), region, service, "aws4_request"] { key = hmac(key, part) }
        return key
    }

    public static func signature(stringToSign: String, key: SymmetricKey) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
    }

    /// `20150830T123600Z` for a date.
    /// Formatted by hand: a DateFormatter per request was a tenth of the CPU of fetching small objects.
    public static func amzDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        var out: [UInt8] = []
        out.reserveCapacity(16)
        func digits(_ value: Int32, _ width: Int) {
            var v = Int(value)
            var d = [UInt8](repeating: UInt8(ascii: "0"), count: width)
            for i in stride(from: width - 1, through: 0, by: -1) {
                d[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
            out += d
        }
        digits(parts.tm_year + 1900, 4)
        digits(parts.tm_mon + 1, 2)
        digits(parts.tm_mday, 2)
        out.append(UInt8(ascii: "T"))
        digits(parts.tm_hour, 2)
        digits(parts.tm_min, 2)
        digits(parts.tm_sec, 2)
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    /// Signs a request: adds `X-Amz-Date` (when absent), `X-Amz-Security-Token` for session
    /// credentials (`signToken: false` adds it after signing), `x-amz-content-sha256` for S3, and
    /// `Authorization`. Returns the headers to send.
    public static func sign(
        _ request: Request, credentials: Credentials, region: String, service: String, date: Date,
        signToken: Bool = true
    ) -> [(String, String)] {
        var r = request
        let amz: String
        if let existing = r.headers.first(where: { $0.0.lowercased() == "x-amz-date" })?.1 {
            amz = existing
        } else {
            amz = amzDate(date)
            r.headers.append(("X-Amz-Date", amz))
        }
        if service == "s3" && !r.headers.contains(where: { $0.0.lowercased() == "x-amz-content-sha256" }) {
            r.headers.append(("x-amz-content-sha256", r.payloadHash))
        }
        if let token = credentials.sessionToken, signToken { r.headers.append(("X-Amz-Security-Token", token)) }
        let (creq, signed) = canonicalRequest(r, normalizePath: service != "s3")
        let scope = scope(date: amz, region: region, service: service)
        let sts = stringToSign(canonicalRequest: creq, amzDate: amz, scope: scope)
        let sig = signature(stringToSign: sts, key: signingKey(secret: credentials.secretAccessKey, date: amz, region: region, service: service))
        var headers = r.headers
        headers.append(("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signed), Signature=\(sig)"))
        if let token = credentials.sessionToken, !signToken { headers.append(("X-Amz-Security-Token", token)) }
        return headers
    }
}
