import Foundation
import HTTP

/// Signs any ``HTTPRequest`` with SigV4 for an AWS service reached at a URL of its own: Amazon
/// OpenSearch Service (`es`) and OpenSearch Serverless (`aoss`) behind the Elasticsearch output.
///
/// What goes into the signature is what goes on the wire: the path as sent (percent-encoded, so it is
/// encoded a second time in the canonical URI, as AWS does for every service but S3), the query, the
/// `Host` header, every header the caller set, and `x-amz-content-sha256` with the hash of the body as
/// sent (compressed, when it is). Serverless requires that header; the managed service accepts it.
public struct SigV4RequestSigner: HTTPRequestSigner {
    public let credentials: any CredentialProvider
    public let region: String
    /// `es` (Amazon OpenSearch Service) or `aoss` (OpenSearch Serverless).
    public let service: String

    public init(credentials: any CredentialProvider, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    public struct InvalidURL: Error, CustomStringConvertible {
        public var url: String
        public var description: String { "cannot sign a request to '\(HTTPClient.redact(url))': not an absolute URL" }
    }

    public func sign(_ request: HTTPRequest) async throws -> HTTPRequest {
        let creds: Credentials
        do {
            creds = try await credentials.credentials()
        } catch let e as CredentialsError {
            throw AWSError.credentialsUnavailable(e, service: service, operation: "sign")
        }
        return try Self.sign(request, credentials: creds, region: region, service: service, date: Date())
    }

    /// The pure part: signs with these credentials at this time.
    public static func sign(_ request: HTTPRequest, credentials: Credentials, region: String, service: String, date: Date) throws -> HTTPRequest {
        guard let url = URLComponents(string: request.url), let host = url.host, let scheme = url.scheme else {
            throw InvalidURL(url: request.url)
        }
        var hostHeader = host
        if let port = url.port, !(scheme == "https" && port == 443), !(scheme == "http" && port == 80) { hostHeader += ":\(port)" }
        var headers = request.headers.filter { name, _ in
            let n = name.lowercased()
            return n != "host" && n != "authorization" && n != "x-amz-date" && n != "x-amz-security-token" && n != "x-amz-content-sha256"
        }
        let payloadHash = SigV4.sha256Hex(request.body)
        headers = [("Host", hostHeader)] + headers + [("x-amz-content-sha256", payloadHash)]
        // The query as raw pairs (the signer encodes them); a `+` in a query is a literal plus to AWS.
        let query = (url.percentEncodedQueryItems ?? []).map { item in
            (item.name.removingPercentEncoding ?? item.name, (item.value ?? "").removingPercentEncoding ?? item.value ?? "")
        }
        let path = url.percentEncodedPath.isEmpty ? "/" : url.percentEncodedPath
        let signed = SigV4.sign(
            SigV4.Request(method: request.method, path: path, query: query, headers: headers, payloadHash: payloadHash),
            credentials: credentials, region: region, service: service, date: date)
        var out = request
        out.headers = signed
        return out
    }
}
