import Foundation
import HTTP

/// A client of an AWS query-protocol service (STS, and IAM for test set-up): form-encoded POST, XML answers.
public struct QueryClient: Sendable {
    public let service: AWSService
    public let version: String

    public init(service: AWSService, version: String) {
        self.service = service
        self.version = version
    }

    public func call(_ action: String, _ parameters: [(String, String)]) async throws -> XMLTree {
        let form = ([("Action", action), ("Version", version)] + parameters)
            .map { SigV4.encode($0.0) + "=" + SigV4.encode($0.1) }.joined(separator: "&")
        var call = AWSService.Call(operation: action, method: "POST", headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")], body: Array(form.utf8))
        call.timeout = 30
        let r = try await service.send(call)
        guard let tree = XMLTree.parse(r.body) else {
            throw AWSError(kind: .server, code: "MalformedResponse", message: "the \(action) answer is not XML", requestID: nil, status: r.status, service: service.service, operation: action)
        }
        return tree
    }
}

/// STS: the role flows of the credential chain.
public struct STSClient: Sendable {
    let query: QueryClient

    public init(service: AWSService) { query = QueryClient(service: service, version: "2011-06-15") }

    public func assumeRole(roleArn: String, sessionName: String, externalID: String? = nil, durationSeconds: Int? = nil) async throws -> Credentials {
        var p = [("RoleArn", roleArn), ("RoleSessionName", sessionName)]
        if let externalID { p.append(("ExternalId", externalID)) }
        if let durationSeconds { p.append(("DurationSeconds", String(durationSeconds))) }
        return try STSClient.credentials(try await query.call("AssumeRole", p), source: "sts:AssumeRole")
    }

    public func assumeRoleWithWebIdentity(roleArn: String, sessionName: String, token: String) async throws -> Credentials {
        try STSClient.credentials(
            try await query.call("AssumeRoleWithWebIdentity", [("RoleArn", roleArn), ("RoleSessionName", sessionName), ("WebIdentityToken", token)]),
            source: "sts:AssumeRoleWithWebIdentity")
    }

    /// The account and ARN the credentials belong to.
    public func callerIdentity() async throws -> (account: String, arn: String) {
        let t = try await query.call("GetCallerIdentity", [])
        return (t.first("Account")?.text ?? "", t.first("Arn")?.text ?? "")
    }

    static func credentials(_ tree: XMLTree, source: String) throws -> Credentials {
        guard let c = tree.first("Credentials"), let id = c.child("AccessKeyId"), let secret = c.child("SecretAccessKey") else {
            throw CredentialsError(message: "\(source) returned no credentials")
        }
        let expiration = c.child("Expiration").flatMap { s -> Date? in
            let f = ISO8601DateFormatter()
            if let d = f.date(from: s) { return d }
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return f.date(from: s)
        }
        return Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: c.child("SessionToken"), expiration: expiration, source: source)
    }
}
