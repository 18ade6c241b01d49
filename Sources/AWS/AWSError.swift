import Foundation
import Failures
import HTTP

#if canImport(FoundationXML)
import FoundationXML
#endif

/// An error from an AWS service or from the way to it, typed by what a caller should do about it.
public struct AWSError: Error, Sendable, CustomStringConvertible {
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// Throttling (`SlowDown`, `Throttling*`, `RequestThrottled`, 429): retried with backoff.
        public static let throttled = Kind("throttled")
        /// Credentials refused (`SignatureDoesNotMatch`, `InvalidClientTokenId`, `AccessDenied`, `ExpiredToken`, …).
        public static let auth = Kind("auth")
        /// A KMS key refused decryption of an encrypted object (`kms:Decrypt` missing, key disabled).
        public static let kmsAccess = Kind("kms-access")
        /// No such key, bucket or queue.
        public static let notFound = Kind("not-found")
        /// An SQS receipt handle that is no longer valid (the message was received again, or deleted).
        public static let invalidReceipt = Kind("invalid-receipt")
        /// A 5xx answer: retried with backoff.
        public static let server = Kind("server")
        /// No answer (connection refused, reset, timeout): retried with backoff.
        public static let network = Kind("network")
        /// A request the service rejected as invalid (4xx): never retried.
        public static let client = Kind("client")
        /// No credentials to sign with: the provider failed (instance metadata or STS unreachable, a
        /// token file being rotated, an SSO session expired). Retried with backoff: they may come back.
        public static let credentials = Kind("credentials")
        public var description: String { name }
    }

    public var kind: Kind
    /// The AWS error code (`NoSuchKey`, `AccessDenied`, …) or the curl error text.
    public var code: String
    public var message: String
    public var requestID: String?
    public var status: Int?
    public var service: String
    public var operation: String

    /// A credential provider that failed: not the request's fault, a kind of its own, retried like a
    /// network error.
    static func credentialsUnavailable(_ e: CredentialsError, service: String, operation: String) -> AWSError {
        AWSError(kind: .credentials, code: "CredentialsUnavailable", message: e.message, requestID: nil, status: nil, service: service, operation: operation)
    }

    public init(kind: Kind, code: String, message: String, requestID: String?, status: Int?, service: String, operation: String) {
        self.kind = kind
        self.code = code
        self.message = message
        self.requestID = requestID
        self.status = status
        self.service = service
        self.operation = operation
    }

    public var isRetryable: Bool { kind == .throttled || kind == .server || kind == .network || kind == .credentials }
    public var isExpiredToken: Bool { ["ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"].contains(code) }

    public var description: String {
        var s = "\(service) \(operation) failed: \(code)"
        if !message.isEmpty { s += ": \(message)" }
        if let status { s += " (HTTP \(status)" + (requestID.map { ", request id \($0))" } ?? ")") }
        if kind == .kmsAccess { s += " — the object is KMS-encrypted: grant kms:Decrypt on its key to this principal" }
        else if code == "AccessDenied" || code == "AccessDeniedException" || code == "AWS.SimpleQueueService.AccessDenied" {
            s += " — no policy (the principal's, or the \(service == "s3" ? "bucket" : "resource")'s) allows \(service):\(operation) here"
        }
        return s
    }

    static let throttlingCodes: Set<String> = [
        "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
        "TooManyRequestsException", "RequestLimitExceeded", "ProvisionedThroughputExceededException", "BandwidthLimitExceeded",
        "EC2ThrottledException", "PriorRequestNotComplete",
    ]
    static let authCodes: Set<String> = [
        "SignatureDoesNotMatch", "InvalidClientTokenId", "AccessDenied", "AccessDeniedException", "ExpiredToken",
        "ExpiredTokenException", "InvalidAccessKeyId", "UnrecognizedClientException", "MissingAuthenticationToken",
        "IncompleteSignature", "InvalidToken", "AuthFailure", "RequestExpired", "TokenRefreshRequired", "InvalidSecurity",
        "AuthorizationError", "NotAuthorized",
    ]
    static let notFoundCodes: Set<String> = [
        "NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchVersion", "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
        "NonExistentQueue", "NoSuchEntity",
    ]

    /// Classifies an HTTP error answer from its status, code and message.
    static func classify(status: Int, code: String, message: String) -> Kind {
        if code.hasPrefix("KMS.") || (code == "AccessDenied" || code == "AccessDeniedException" || code == "InvalidArgument")
            && (message.contains("kms:") || message.contains("KMS"))
        {
            return .kmsAccess
        }
        if code.hasPrefix("Throttl") || throttlingCodes.contains(code) || status == 429 { return .throttled }
        if code.contains("ReceiptHandleIsInvalid") || code == "InvalidReceiptHandle" || code.hasSuffix("MessageNotInflight") { return .invalidReceipt }
        if notFoundCodes.contains(code) || status == 404 { return .notFound }
        if authCodes.contains(code) || status == 401 || status == 403 { return .auth }
        if status >= 500 { return .server }
        return .client
    }

    /// Builds the error for a non-2xx response: XML (`<Error><Code>`), JSON (`__type`) or none.
    static func from(_ response: HTTPResponse, service: String, operation: String) -> AWSError {
        var code = ""
        var message = ""
        let body = response.body
        if body.first == UInt8(ascii: "{"), let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
            let type = (json["__type"] as? String) ?? (json["code"] as? String) ?? ""
            code = String(type.split(separator: "#").last ?? "")
            message = (json["message"] as? String) ?? (json["Message"] as? String) ?? ""
        } else if !body.isEmpty, let tree = XMLTree.parse(body) {
            code = tree.first("Code")?.text ?? ""
            message = tree.first("Message")?.text ?? ""
        }
        if let query = response.header("x-amzn-query-error"), let legacy = query.split(separator: ";").first, code.isEmpty || code == "QueueDoesNotExist" {
            code = code.isEmpty ? String(legacy) : code
        }
        if code.isEmpty {
            code = response.status == 404 ? "NotFound" : response.status == 403 ? "AccessDenied" : "HTTP\(response.status)"
        }
        let requestID = response.header("x-amz-request-id") ?? response.header("x-amzn-requestid")
            ?? (body.isEmpty ? nil : XMLTree.parse(body)?.first("RequestId")?.text)
        return AWSError(
            kind: classify(status: response.status, code: code, message: message), code: code, message: message,
            requestID: requestID, status: response.status, service: service, operation: operation)
    }
}

extension AWSError: ClassifiedError {
    /// Credentials that cannot be had are waited for (nothing is wrong with the work); a missing,
    /// forbidden or KMS-locked object and a request the service rejects are quarantined (retrying
    /// cannot mend them: `journal retry` does, once the cause is fixed); the rest — throttling, 5xx,
    /// no answer, a stale receipt handle — is retried.
    public var disposition: Disposition {
        switch kind {
        case .credentials: .wait
        case .notFound, .auth, .kmsAccess, .client: .quarantine
        default: .retry
        }
    }
}

/// A small XML tree (FoundationXML's parser unescapes entities).
public final class XMLTree: @unchecked Sendable {
    public let name: String
    public var text = ""
    public var children: [XMLTree] = []

    init(name: String) { self.name = name }

    /// The first descendant (or self) with this name.
    public func first(_ name: String) -> XMLTree? {
        if self.name == name { return self }
        for c in children { if let f = c.first(name) { return f } }
        return nil
    }

    /// Direct children with this name.
    public func all(_ name: String) -> [XMLTree] { children.filter { $0.name == name } }

    public func child(_ name: String) -> String? { children.first { $0.name == name }?.text }

    /// The document's tree; nil when it is not well-formed XML, or not UTF-8 XML.
    ///
    /// AWS answers in UTF-8, with elements, text, entities and nothing else. Anything else is refused
    /// before it reaches FoundationXML, whose libxml2 callbacks crash on some hostile input (found by
    /// the `listing` and `sqs` fuzz targets; the inputs are in Fuzz/Regressions/): names that are not
    /// valid UTF-8 (a force unwrap) and empty processing instructions (strlen of NULL). So: bytes that
    /// are not UTF-8, NUL bytes (which make libxml2 guess UTF-16), an XML declaration naming another
    /// encoding, and any processing instruction or DTD declaration after it are refused.
    public static func parse(_ bytes: [UInt8]) -> XMLTree? {
        guard isUTF8Document(bytes) else { return nil }
        let parser = XMLParser(data: Data(bytes))
        let builder = Builder()
        parser.delegate = builder
        guard parser.parse(), let root = builder.root else { return nil }
        return root
    }

    static func isUTF8Document(_ bytes: [UInt8]) -> Bool {
        guard !bytes.contains(0), String(validating: bytes, as: UTF8.self) != nil else { return false }
        var rest = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? bytes.dropFirst(3) : bytes[...]
        if rest.starts(with: Array("<?xml".utf8)), rest.count > 5, [0x20, 0x09, 0x0d, 0x0a].contains(rest[rest.startIndex + 5]) {
            guard let end = rest.firstIndex(of: UInt8(ascii: ">")) else { return false }
            let declaration = String(decoding: rest[..<end], as: UTF8.self).lowercased()
            guard declaration.hasSuffix("?"), !declaration.dropFirst().contains("<") else { return false }
            if let encoding = declaration.range(of: "encoding") {
                let value = declaration[encoding.upperBound...].drop { $0 == " " || $0 == "=" || $0 == "\"" || $0 == "'" }
                guard value.hasPrefix("utf-8\"") || value.hasPrefix("utf-8'") else { return false }
            }
            rest = rest[(end + 1)...]
        }
        // No processing instruction, DOCTYPE or entity declaration after it: AWS sends none, and
        // FoundationXML crashes on an empty processing instruction (`<?x?>`: strlen of NULL).
        var i = rest.startIndex
        while let lt = rest[i...].firstIndex(of: UInt8(ascii: "<")) {
            let next = rest.index(after: lt)
            guard next < rest.endIndex else { break }
            if rest[next] == UInt8(ascii: "?") { return false }
            if rest[next] == UInt8(ascii: "!"), !rest[next...].starts(with: Array("!--".utf8)), !rest[next...].starts(with: Array("![CDATA[".utf8)) {
                return false
            }
            i = next
        }
        return true
    }

    private final class Builder: NSObject, XMLParserDelegate {
        var stack: [XMLTree] = []
        var root: XMLTree?
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            let node = XMLTree(name: name)
            stack.last?.children.append(node)
            if root == nil { root = node }
            stack.append(node)
        }
        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            _ = stack.popLast()
        }
        func parser(_ parser: XMLParser, foundCharacters string: String) {
            stack.last?.text += string
        }
        func parser(_ parser: XMLParser, foundCDATA block: Data) {
            stack.last?.text += String(decoding: block, as: UTF8.self)
        }
    }
}

/// Full-jitter exponential backoff.
public struct RetryPolicy: Sendable {
    public var maxAttempts = 8
    public var base: Double = 0.1
    public var cap: Double = 20

    public init(maxAttempts: Int = 8, base: Double = 0.1, cap: Double = 20) {
        self.maxAttempts = maxAttempts
        self.base = base
        self.cap = cap
    }

    /// The delay before retry `attempt` (1-based), honouring a server's `Retry-After` seconds.
    public func delay(attempt: Int, retryAfter: String? = nil) -> Double {
        if let retryAfter, let seconds = Double(retryAfter.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
            return min(seconds, 300)
        }
        return Double.random(in: 0...min(cap, base * pow(2, Double(attempt))))
    }
}
