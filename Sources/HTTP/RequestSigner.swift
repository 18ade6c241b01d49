/// Something that authenticates a request just before it is sent (AWS SigV4 for Amazon OpenSearch
/// Service, say), so a module that sends HTTP need not know who signs it.
///
/// A signer sees the request exactly as it will go out (URL percent-encoded, the final body), and
/// returns it with its authentication headers added.
public protocol HTTPRequestSigner: Sendable {
    func sign(_ request: HTTPRequest) async throws -> HTTPRequest
}
