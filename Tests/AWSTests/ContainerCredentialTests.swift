import Failures
import Foundation
import Testing

@testable import AWS
import HTTP

/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` is asked only where the AWS SDKs ask it: any https URL; plain
/// http only to a loopback address or to the ECS and EKS container hosts. Anything else is refused
/// before a request is made, and the refusal is fatal (no wait mends the environment).
@Suite("Container credentials endpoints the SDKs allow")
struct ContainerCredentialTests {
    @Test(arguments: [
        "https://credentials.example.com/v1/credentials", "HTTPS://10.0.0.1/creds", "http://127.0.0.1:8080/creds",
        "http://127.5.6.7/creds", "http://[::1]:8080/creds", "http://localhost:51679/creds", "http://169.254.170.2/v2/credentials/x",
        "http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/v1/credentials",
    ])
    func theSDKsHostsAreAllowed(url: String) {
        #expect(CredentialChain.containerEndpointRefusal(url) == nil)
    }

    @Test(arguments: [
        "http://10.0.0.1/creds", "http://169.254.169.254/latest/meta-data/", "http://credentials.example.com/creds",
        "http://127.1/creds", "http://0x7f000001/creds", "http://[::ffff:127.0.0.1]/creds", "http://[fd00:ec2::24]/creds",
        "file:///etc/passwd", "ftp://127.0.0.1/creds", "gopher://127.0.0.1:6379/_INFO", "not a url", "http:///creds",
    ])
    func otherEndpointsAreRefused(url: String) {
        let refusal = CredentialChain.containerEndpointRefusal(url)
        #expect(refusal != nil, "\(url)")
    }

    /// The loopback stand-in serves credentials; a URI the SDKs refuse is never asked — even one that
    /// would reach the same stand-in (`127.1`, an IPv4-mapped address) — and the error is fatal, also
    /// through an AWS client (not a credentials wait).
    @Test func aRefusedURIIsNeverAsked() async throws {
        let dir = TempDir("container-credentials")
        let json = dir.sub("creds.json")
        try #"{"AccessKeyId":"AKIACONTAINER","SecretAccessKey":"s","Token":"t","Expiration":"2099-01-01T00:00:00Z"}"#
            .write(toFile: json, atomically: true, encoding: .utf8)
        let port = freePort()
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/container_credentials.py").path
        let requests = dir.sub("requests")
        let endpoint = try LocalServer(["python3", script, String(port), "Bearer c", json, requests], port: port, name: "container-credentials", installHint: "python3 is needed")
        func chain(_ uri: String) -> CredentialChain {
            var settings = CredentialChain.Settings()
            settings.environment = ["HOME": "/nonexistent", "AWS_CONTAINER_CREDENTIALS_FULL_URI": uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN": "Bearer c"]
            return CredentialChain(settings: settings, http: HTTPClient())
        }
        func asked() -> Int { ((try? String(contentsOfFile: requests, encoding: .utf8)) ?? "").split(separator: "\n").count }

        let good = try await chain(endpoint.url + "/v1/credentials").credentials()
        #expect(good.accessKeyID == "AKIACONTAINER" && good.source == "container" && asked() == 1)

        for uri in ["http://127.1:\(port)/v1/credentials", "http://[::ffff:127.0.0.1]:\(port)/v1/credentials", "http://u:secret@10.1.2.3:\(port)/v1/credentials"] {
            let error = await #expect(throws: CredentialsError.self) { _ = try await chain(uri).credentials() }
            #expect(error?.code == .refused && error.map { Disposition.of($0) } == .fatal, "\(uri)")
            let text = error.map { "\($0)" } ?? ""
            #expect(text.hasPrefix("AWS_CONTAINER_CREDENTIALS_FULL_URI: ") && text.contains("neither loopback") && !text.contains("secret"), "\(text)")
        }
        // Through an AWS client the refusal is not a credentials wait (AWSError of kind credentials).
        let s3 = S3Client(service: AWSService(http: HTTPClient(), service: "s3", region: "us-east-1", endpoint: "http://127.0.0.1:1", credentials: chain("http://10.1.2.3/creds")), pathStyle: true)
        await #expect(throws: CredentialsError.self) { _ = try await s3.list(bucket: "b") }
        #expect(asked() == 1, "no refused URI reached the stand-in")
    }
}
