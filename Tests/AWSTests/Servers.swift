import Foundation
import Testing

@testable import AWS
@_exported import TestSupport
import HTTP

#if canImport(Glibc)
import Glibc
#endif

extension LocalServer {
    /// moto_server with signatures enforced after `freeCalls` unauthenticated calls.
    static func moto(freeCalls: Int = 5) throws -> LocalServer {
        let port = freePort()
        return try LocalServer(
            ["moto_server", "-H", "127.0.0.1", "-p", String(port)], port: port,
            environment: ["INITIAL_NO_AUTH_ACTION_COUNT": String(freeCalls), "MOTO_ALLOW_NONEXISTENT_REGION": "true"],
            name: "moto", installHint: "pip install 'moto[server]' (scripts/setup does it)")
    }

    /// The misbehaving S3 stand-in in Fixtures/flaky_s3.py.
    static func flakyS3(_ mode: String) throws -> LocalServer {
        let port = freePort()
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/flaky_s3.py").path
        return try LocalServer(["python3", script, String(port), mode], port: port, name: "flaky-s3", installHint: "python3 is needed")
    }
}

/// An IAM user (with a policy allowing S3, SQS and STS) and a role it may assume, made with moto's free calls.
struct MotoAccount {
    let user: Credentials
    let roleArn: String

    static let policy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sqs:*","sts:*"],"Resource":"*"}]}"#
    static let trust = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#

    static func create(_ moto: LocalServer, http: HTTPClient) async throws -> MotoAccount {
        let iam = QueryClient(
            service: AWSService(http: http, service: "iam", region: "us-east-1", endpoint: moto.url,
                                credentials: StaticCredentialProvider(Credentials(accessKeyID: "AKIASETUP", secretAccessKey: "setup"))),
            version: "2010-05-08")
        _ = try await iam.call("CreateUser", [("UserName", "shipper")])
        _ = try await iam.call("PutUserPolicy", [("UserName", "shipper"), ("PolicyName", "ship"), ("PolicyDocument", policy)])
        let key = try await iam.call("CreateAccessKey", [("UserName", "shipper")])
        let role = try await iam.call("CreateRole", [("RoleName", "reader"), ("AssumeRolePolicyDocument", trust)])
        _ = try await iam.call("PutRolePolicy", [("RoleName", "reader"), ("PolicyName", "read"), ("PolicyDocument", policy)])
        return MotoAccount(
            user: Credentials(accessKeyID: key.first("AccessKeyId")!.text, secretAccessKey: key.first("SecretAccessKey")!.text, source: "moto iam"),
            roleArn: role.first("Arn")!.text)
    }
}

extension LocalServer {
    /// The SSO portal and SSO OIDC stand-in in Fixtures/sso_portal.py: GetRoleCredentials for `token`,
    /// `account` and `role` (credentials expiring at `expirationMs`), CreateToken for `refreshToken`.
    static func ssoPortal(token: String, account: String, role: String, expirationMs: Int64, refreshToken: String = "refresh-1") throws -> LocalServer {
        let port = freePort()
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sso_portal.py").path
        return try LocalServer(
            ["python3", script, String(port), token, account, role, String(expirationMs), refreshToken], port: port,
            name: "sso-portal", installHint: "python3 is needed")
    }
}
