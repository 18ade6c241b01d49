import Foundation
import HTTP

/// One AWS service at one endpoint: signs every attempt, retries what may be retried (full-jitter
/// backoff, `Retry-After`), refreshes credentials once on `ExpiredToken`, and types errors.
public struct AWSService: Sendable {
    public let http: HTTPClient
    /// The signing name: `s3`, `sqs`, `sts`, `iam`.
    public let service: String
    public let region: String
    public let scheme: String
    public let host: String
    public let port: Int?
    public let basePath: String
    /// nil: requests go unsigned (STS AssumeRoleWithWebIdentity).
    public let credentials: (any CredentialProvider)?
    public let retry: RetryPolicy

    public init(http: HTTPClient, service: String, region: String, endpoint: String, credentials: (any CredentialProvider)?, retry: RetryPolicy = RetryPolicy()) {
        self.http = http
        self.service = service
        self.region = region
        let c = URLComponents(string: endpoint)
        scheme = c?.scheme ?? "https"
        host = c?.host ?? endpoint
        port = c?.port
        let p = c?.path ?? ""
        basePath = p.hasSuffix("/") ? String(p.dropLast()) : p
        self.credentials = credentials
        self.retry = retry
    }

    /// `host[:port]` as sent in the Host header.
    public var hostHeader: String {
        guard let port, !(scheme == "https" && port == 443), !(scheme == "http" && port == 80) else { return host }
        return "\(host):\(port)"
    }

    /// A request to send: path and query raw (not encoded).
    public struct Call: Sendable {
        public var operation: String
        public var method: String = "GET"
        public var path: String = "/"
        public var query: [(String, String)] = []
        public var headers: [(String, String)] = []
        public var body: [UInt8] = []
        /// Sign the payload as `UNSIGNED-PAYLOAD` (S3 only).
        public var unsignedPayload = false
        public var timeout: Double? = nil

        public init(operation: String, method: String = "GET", path: String = "/", query: [(String, String)] = [], headers: [(String, String)] = [], body: [UInt8] = []) {
            self.operation = operation
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.body = body
        }
    }

    func build(_ call: Call, credentials: Credentials?) -> HTTPRequest {
        let path = basePath + (call.path.hasPrefix("/") ? call.path : "/" + call.path)
        var url = "\(scheme)://\(hostHeader)\(SigV4.encode(path, keepSlash: true))"
        if !call.query.isEmpty {
            url += "?" + call.query.map { SigV4.encode($0.0) + "=" + SigV4.encode($0.1) }.joined(separator: "&")
        }
        var headers = [("Host", hostHeader)] + call.headers
        if let credentials {
            let hash = call.unsignedPayload ? "UNSIGNED-PAYLOAD" : SigV4.sha256Hex(call.body)
            headers = SigV4.sign(
                SigV4.Request(method: call.method, path: path, query: call.query, headers: headers, payloadHash: hash),
                credentials: credentials, region: region, service: service, date: Date())
        }
        return HTTPRequest(method: call.method, url: url, headers: headers, body: call.body)
    }

    enum Outcome<T> {
        case ok(T)
        case failed(HTTPHead, [UInt8])
    }

    /// Sends a call and buffers the answer; throws ``AWSError`` for non-2xx answers and transport failures.
    public func send(_ call: Call) async throws -> HTTPResponse {
        try await attempt(call) { request in
            let r = try await http.send(request, timeout: call.timeout)
            return r.status < 300 ? .ok(r) : .failed(r.head, r.body)
        }
    }

    /// Sends a call and returns once the (2xx) head arrived; the body streams.
    public func stream(_ call: Call) async throws -> (head: HTTPHead, body: HTTPBody) {
        try await attempt(call) { request in
            let (head, body) = try await http.stream(request, timeout: call.timeout ?? 0)
            guard head.status >= 300 else { return .ok((head, body)) }
            var bytes: [UInt8] = []
            for try await c in body {
                bytes += c
                if bytes.count > 1 << 20 { break }
            }
            body.cancel()
            return .failed(head, bytes)
        }
    }

    /// A credential source that fails is waited for like the network (`AWSError` of kind `credentials`);
    /// one that is refused (``CredentialsError/Code/refused``) is thrown as it is: fatal.
    private func attempt<T>(_ call: Call, _ perform: (HTTPRequest) async throws -> Outcome<T>) async throws -> T {
        var refreshed = false
        var attempt = 0
        while true {
            attempt += 1
            let error: AWSError
            var retryAfter: String?
            do {
                let creds: Credentials?
                do {
                    creds = try await credentials?.credentials()
                } catch let e as CredentialsError where e.code != .refused {
                    throw AWSError.credentialsUnavailable(e, service: service, operation: call.operation)
                }
                switch try await perform(build(call, credentials: creds)) {
                case .ok(let value): return value
                case .failed(let head, let body):
                    error = AWSError.from(HTTPResponse(head: head, body: body), service: service, operation: call.operation)
                    retryAfter = head.header("retry-after")
                }
            } catch let e as HTTPTransportError {
                error = AWSError(kind: .network, code: "NetworkError", message: e.description, requestID: nil, status: nil, service: service, operation: call.operation)
            } catch let e as AWSError where e.kind == .credentials {
                error = e
            }
            if error.isExpiredToken, !refreshed, let provider = credentials {
                refreshed = true
                do {
                    _ = try await provider.refresh()
                } catch let e as CredentialsError where e.code != .refused {
                    throw AWSError.credentialsUnavailable(e, service: service, operation: call.operation)
                }
                continue
            }
            guard error.isRetryable, attempt < retry.maxAttempts else { throw error }
            try await Task.sleep(nanoseconds: UInt64(retry.delay(attempt: attempt, retryAfter: retryAfter) * 1e9))
        }
    }
}
