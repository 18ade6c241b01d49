import Foundation
import Testing

@testable import AWS
import HTTP

func service(_ name: String, _ server: LocalServer, _ credentials: Credentials, http: HTTPClient, retry: RetryPolicy = RetryPolicy(maxAttempts: 3, base: 0.05, cap: 0.5)) -> AWSService {
    AWSService(http: http, service: name, region: "us-east-1", endpoint: server.url, credentials: StaticCredentialProvider(credentials), retry: retry)
}

@Suite("AWS clients against moto with SigV4 enforced")
struct MotoTests {
    @Test func s3GetRangedListAndHead() async throws {
        // moto's signature check (boto3 fails against it the same way) rejects reserved characters in keys
        // and in query values (a '/' in prefix or delimiter), which real S3 accepts. So objects with such keys,
        // and a delimiter listing, are made with moto's free (unchecked) calls; every later call is checked.
        let moto = try LocalServer.moto(freeCalls: 9)
        let http = HTTPClient()
        let setup = S3Client(service: service("s3", moto, Credentials(accessKeyID: "AKIASETUP", secretAccessKey: "setup"), http: http), pathStyle: true)
        try await setup.createBucket("trail-bucket")
        let awkward = ["AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/a&b <c>.json.gz", "AWSLogs/o-abc/123456789013/CloudTrail/é+ü\"'.json.gz"]
        for k in awkward { try await setup.put(bucket: "trail-bucket", key: k, body: [1]) }
        let delimited = try await setup.list(bucket: "trail-bucket", prefix: "AWSLogs/", delimiter: "/")
        #expect(delimited.commonPrefixes == ["AWSLogs/123456789012/", "AWSLogs/o-abc/"] && delimited.objects.isEmpty)
        let account = try await MotoAccount.create(moto, http: http)

        let s3 = S3Client(service: service("s3", moto, account.user, http: http), pathStyle: true)
        let body = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/a b.json.gz"
        try await s3.put(bucket: "trail-bucket", key: key, body: body, contentEncoding: "gzip")
        var got: [UInt8] = []
        let info = try await s3.get(bucket: "trail-bucket", key: key) { got += $0 }
        #expect(got == body)
        #expect(info.size == 200_000 && info.etag != nil && info.contentEncoding == "gzip")
        var tail: [UInt8] = []
        _ = try await s3.get(bucket: "trail-bucket", key: key, from: 150_000) { tail += $0 }
        #expect(tail == Array(body[150_000...]), "ranged get")
        let head = try await s3.head(bucket: "trail-bucket", key: key)
        #expect(head.size == 200_000 && head.etag == info.etag)
        // The awkward keys come back unescaped from a signed listing.
        let all = try await s3.list(bucket: "trail-bucket", prefix: "AWSLogs")
        #expect(Set(all.objects.map(\.key)) == Set(awkward + [key]))
        // More than two pages.
        var keys: Set<String> = []
        for i in 0..<25 {
            let k = String(format: "flat %02d.json.gz", i)
            keys.insert(k)
            try await s3.put(bucket: "trail-bucket", key: k, body: [UInt8(i)])
        }
        var listed: [String] = []
        var token: String?
        var pages = 0
        repeat {
            let page = try await s3.list(bucket: "trail-bucket", prefix: "flat", continuationToken: token, maxKeys: 10)
            listed += page.objects.map(\.key)
            token = page.isTruncated ? page.nextContinuationToken : nil
            pages += 1
        } while token != nil
        #expect(pages == 3 && Set(listed) == keys && listed == listed.sorted(), "all pages, in order")
        let after = try await s3.list(bucket: "trail-bucket", prefix: "flat", startAfter: listed[20])
        #expect(after.objects.map(\.key) == Array(listed[21...]))
        // A missing key is a typed not-found.
        await #expect { _ = try await s3.get(bucket: "trail-bucket", key: "missing.json.gz") { _ in } } throws: { ($0 as? AWSError)?.kind == .notFound }
        await #expect { _ = try await s3.head(bucket: "trail-bucket", key: "missing.json.gz") } throws: { ($0 as? AWSError)?.kind == .notFound }
    }

    @Test func sqsSendReceiveVisibilityAndDeleteWithAnInvalidHandle() async throws {
        let moto = try LocalServer.moto()
        let http = HTTPClient()
        let account = try await MotoAccount.create(moto, http: http)
        let svc = service("sqs", moto, account.user, http: http)
        // Long enough that a slow, loaded run never sees a received message come back before it is meant to.
        let url = try await SQSClient.createQueue(service: svc, name: "trail-queue", attributes: ["VisibilityTimeout": "600"])
        let sqs = SQSClient(service: svc, queueURL: url)
        let bodies = (0..<15).map { "{\"s3Bucket\":\"b\",\"s3ObjectKey\":[\"k\($0)\"]}" }
        #expect(SQSClient.batches(bodies).map(\.count) == [10, 5])
        #expect(try await sqs.sendBatch(bodies).isEmpty)
        var received: [SQSMessage] = []
        while received.count < 15 {
            let batch = try await sqs.receive(max: 10, waitSeconds: 1)
            #expect(!batch.isEmpty)
            if batch.isEmpty { break }
            received += batch
        }
        #expect(Set(received.map(\.body)) == Set(bodies))
        #expect(received.allSatisfy { $0.receiveCount == 1 })
        try await sqs.changeVisibility(received[0].receiptHandle, timeout: 0)
        #expect(try await sqs.changeVisibilityBatch(received[1...3].map { ($0.receiptHandle, 60) }).isEmpty)
        // Message 0 is visible again at once, with a higher receive count.
        let again = try await sqs.receive(max: 1, waitSeconds: 2)
        #expect(again.first?.id == received[0].id && again.first?.receiveCount == 2)
        let handles = [again[0].receiptHandle] + received[1..<9].map(\.receiptHandle) + ["not-a-valid-receipt-handle"]
        let failures = try await sqs.deleteBatch(handles)
        #expect(failures.count == 1 && failures[0].id == "9" && failures[0].isInvalidReceipt, "\(failures)")
        let attributes = try await sqs.attributes(["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        #expect(Int(attributes["ApproximateNumberOfMessages"] ?? "-1")! + Int(attributes["ApproximateNumberOfMessagesNotVisible"] ?? "-1")! == 6)
    }

    @Test func assumeRoleAndProfileFiles() async throws {
        let moto = try LocalServer.moto()
        let http = HTTPClient()
        let account = try await MotoAccount.create(moto, http: http)
        let sts = STSClient(service: service("sts", moto, account.user, http: http))
        let assumed = try await sts.assumeRole(roleArn: account.roleArn, sessionName: "test", externalID: "ext-1")
        #expect(assumed.sessionToken != nil && assumed.expiration != nil)
        let s3 = S3Client(service: service("s3", moto, assumed, http: http), pathStyle: true)
        try await s3.createBucket("assumed-bucket")
        #expect(try await s3.list(bucket: "assumed-bucket").objects.isEmpty)

        // A profile with static keys, and one that assumes the role from it.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ctb-aws-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try """
            [shipper]
            aws_access_key_id = \(account.user.accessKeyID)
            aws_secret_access_key = \(account.user.secretAccessKey)
            """.write(to: dir.appendingPathComponent("credentials"), atomically: true, encoding: .utf8)
        try """
            [profile reader]
            role_arn = \(account.roleArn)
            source_profile = shipper
            external_id = ext-2
            region = eu-west-1
            """.write(to: dir.appendingPathComponent("config"), atomically: true, encoding: .utf8)
        for (profile, expectedSource) in [("shipper", "profile shipper"), ("reader", "profile reader (assumed")] {
            var settings = CredentialChain.Settings()
            settings.environment = ["HOME": dir.path, "AWS_SHARED_CREDENTIALS_FILE": dir.appendingPathComponent("credentials").path,
                                    "AWS_CONFIG_FILE": dir.appendingPathComponent("config").path, "AWS_PROFILE": profile]
            settings.stsEndpoint = moto.url
            let chain = CredentialChain(settings: settings, http: http)
            let creds = try await chain.credentials()
            #expect(creds.source.hasPrefix(expectedSource))
            let client = S3Client(service: AWSService(http: http, service: "s3", region: "us-east-1", endpoint: moto.url, credentials: chain), pathStyle: true)
            #expect(try await client.list(bucket: "assumed-bucket").objects.isEmpty)
            if profile == "reader" {
                #expect(AWSSettings.region(configured: nil, environment: settings.environment) == "eu-west-1")
            }
        }
    }

    @Test func webIdentityAndContainerCredentials() async throws {
        // AssumeRoleWithWebIdentity is unsigned (as on AWS); moto's signature check fails on an unsigned
        // request with a 500 (KeyError HTTP_AUTHORIZATION), so it is the one free call after the account's
        // five. Everything after it is signature-checked.
        let moto = try LocalServer.moto(freeCalls: 6)
        let http = HTTPClient()
        let account = try await MotoAccount.create(moto, http: http)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ctb-aws-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        // AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (EKS IRSA): STS AssumeRoleWithWebIdentity, then S3 with those keys.
        let tokenFile = dir.appendingPathComponent("token").path
        try "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Y3Q6c2hpcHBlciJ9.c2ln\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        var settings = CredentialChain.Settings()
        settings.environment = ["HOME": "/nonexistent", "AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile, "AWS_ROLE_ARN": account.roleArn, "AWS_ROLE_SESSION_NAME": "irsa"]
        settings.stsEndpoint = moto.url
        let web = CredentialChain(settings: settings, http: http)
        let webCreds = try await web.credentials()
        #expect(webCreds.source.hasPrefix("web identity") && webCreds.sessionToken != nil && webCreds.expiration != nil)
        let setup = S3Client(service: service("s3", moto, account.user, http: http), pathStyle: true)
        try await setup.createBucket("federated-bucket")
        let viaWeb = S3Client(service: AWSService(http: http, service: "s3", region: "us-east-1", endpoint: moto.url, credentials: web), pathStyle: true)
        #expect(try await viaWeb.list(bucket: "federated-bucket").objects.isEmpty)

        // AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (ECS, EKS Pod Identity).
        let port = freePort()
        let json = dir.appendingPathComponent("creds.json").path
        let expiry = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3600))
        try JSONSerialization.data(withJSONObject: ["AccessKeyId": webCreds.accessKeyID, "SecretAccessKey": webCreds.secretAccessKey,
                                                    "Token": webCreds.sessionToken!, "Expiration": expiry]).write(to: URL(fileURLWithPath: json))
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/container_credentials.py").path
        let endpoint = try LocalServer(["python3", script, String(port), "Bearer pod-identity", json], port: port, name: "container-credentials", installHint: "python3 is needed")
        try "Bearer pod-identity\n".write(toFile: dir.appendingPathComponent("auth").path, atomically: true, encoding: .utf8)
        var containerSettings = CredentialChain.Settings()
        containerSettings.environment = ["HOME": "/nonexistent", "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url + "/v1/credentials",
                                         "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": dir.appendingPathComponent("auth").path]
        let container = CredentialChain(settings: containerSettings, http: http)
        let containerCreds = try await container.credentials()
        #expect(containerCreds.source == "container" && containerCreds.accessKeyID == webCreds.accessKeyID && containerCreds.expiration != nil)
        let viaContainer = S3Client(service: AWSService(http: http, service: "s3", region: "us-east-1", endpoint: moto.url, credentials: container), pathStyle: true)
        #expect(try await viaContainer.list(bucket: "federated-bucket").objects.isEmpty)
        // A wrong authorization token is refused by the endpoint, and the chain says so.
        containerSettings.environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = nil
        containerSettings.environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "Bearer wrong"
        await #expect { _ = try await CredentialChain(settings: containerSettings, http: http).credentials() } throws: {
            "\($0)".contains("HTTP 401")
        }
    }

    @Test func credentialsFromInstanceMetadata() async throws {
        let moto = try LocalServer.moto()
        let http = HTTPClient()
        var settings = CredentialChain.Settings()
        settings.environment = ["HOME": "/nonexistent"]
        settings.imdsEndpoint = moto.url
        let creds = try await CredentialChain(settings: settings, http: http).credentials()
        #expect(creds.source.hasPrefix("instance metadata") && !creds.accessKeyID.isEmpty && creds.sessionToken != nil)
        // AWS_EC2_METADATA_DISABLED=true, as for the AWS CLI: the same metadata service is not asked.
        settings.environment["AWS_EC2_METADATA_DISABLED"] = "True"
        await #expect { _ = try await CredentialChain(settings: settings, http: http).credentials() } throws: {
            "\($0)".contains("instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)")
        }
    }

    @Test func aWrongSecretFailsFastAsAuthAndSecretsStayOutOfErrors() async throws {
        let moto = try LocalServer.moto()
        let http = HTTPClient()
        let account = try await MotoAccount.create(moto, http: http)
        var wrong = account.user
        wrong.secretAccessKey = "WRONG-SECRET-0123456789"
        let s3 = S3Client(service: service("s3", moto, wrong, http: http, retry: RetryPolicy(maxAttempts: 8, base: 1, cap: 5)), pathStyle: true)
        do {
            _ = try await s3.list(bucket: "wrong-secret-probe")
            Issue.record("a wrong secret was accepted")
        } catch let e as AWSError {
            #expect(e.kind == .auth, "\(e)")
            #expect(e.code == "SignatureDoesNotMatch" || e.code == "InvalidAccessKeyId" || e.code == "AccessDenied", "\(e)")
            #expect(!"\(e)".contains("WRONG-SECRET") && !String(reflecting: e).contains("WRONG-SECRET"))
        }
        // No retry loop on auth errors: moto saw exactly one request for it (a retry policy of 8 attempts was set).
        let log = (try? String(contentsOfFile: "/tmp/ctb-moto-\(moto.port).log", encoding: .utf8)) ?? ""
        #expect(log.split(separator: "\n").filter { $0.contains("wrong-secret-probe") }.count == 1, "\(log.suffix(500))")
    }
}

@Suite("Transfers that break")
struct FlakyTransferTests {
    let creds = Credentials(accessKeyID: "AKIATEST", secretAccessKey: "secret")

    @Test func aDownloadBrokenMidBodyResumesWithRangeAndYieldsIdenticalBytes() async throws {
        let server = try LocalServer.flakyS3("cut")
        let http = HTTPClient()
        let s3 = S3Client(service: service("s3", server, creds, http: http), pathStyle: true)
        var got: [UInt8] = []
        let info = try await s3.get(bucket: "b", key: "obj.json.gz") { got += $0 }
        // What the server sent, reproduced: the same seeded bytes.
        let log = try JSONSerialization.jsonObject(with: Data(try await http.send(HTTPRequest(method: "GET", url: server.url + "/stats")).body)) as! [[String: Any]]
        #expect(log.count == 3, "two cuts, two resumes")
        #expect(log[0]["range"] is NSNull && (log[1]["range"] as? String)?.hasPrefix("bytes=") == true)
        #expect(log.allSatisfy { $0["signed"] as? Bool == true })
        #expect((log[1]["ifMatch"] as? String)?.contains(info.etag!) == true)
        #expect(got.count == 300_000)
        let expected = try await http.send(HTTPRequest(method: "GET", url: server.url + "/b/obj.json.gz", headers: [("Range", "bytes=0-")]))
        _ = expected
        #expect(SigV4.sha256Hex(got).count == 64)
        #expect(info.etag == Insecure_md5(got), "identical bytes (the ETag is their MD5)")
    }

    @Test func throttlingIsRetriedWithBackoffUntilItSucceeds() async throws {
        let server = try LocalServer.flakyS3("throttle")
        let http = HTTPClient()
        let s3 = S3Client(service: service("s3", server, creds, http: http, retry: RetryPolicy(maxAttempts: 6, base: 0.05, cap: 1)), pathStyle: true)
        var got = 0
        _ = try await s3.get(bucket: "b", key: "k") { got += $0.count }
        #expect(got == 300_000)
        let log = try JSONSerialization.jsonObject(with: Data(try await http.send(HTTPRequest(method: "GET", url: server.url + "/stats")).body)) as! [[String: Any]]
        #expect(log.count == 4, "three 503 SlowDown answers, then success")
    }

    /// Credentials that report one key until refreshed, counting refreshes.
    actor RotatingCredentials: CredentialProvider {
        var current = Credentials(accessKeyID: "AKIAEXPIRED", secretAccessKey: "old", sessionToken: "old-token")
        var refreshes = 0
        func credentials() async throws -> Credentials { current }
        func refresh() async throws -> Credentials {
            refreshes += 1
            current = Credentials(accessKeyID: "AKIAFRESH", secretAccessKey: "new", sessionToken: "new-token")
            return current
        }
    }

    @Test func anExpiredTokenIsRefreshedOnceAndTheRequestRetried() async throws {
        let server = try LocalServer.flakyS3("expired")
        let http = HTTPClient()
        let provider = RotatingCredentials()
        let s3 = S3Client(service: AWSService(http: http, service: "s3", region: "us-east-1", endpoint: server.url, credentials: provider,
                                              retry: RetryPolicy(maxAttempts: 1, base: 0.05, cap: 1)), pathStyle: true)
        var got = 0
        _ = try await s3.get(bucket: "b", key: "k") { got += $0.count }
        #expect(got == 300_000)
        #expect(await provider.refreshes == 1)
        let log = try JSONSerialization.jsonObject(with: Data(try await http.send(HTTPRequest(method: "GET", url: server.url + "/stats")).body)) as! [[String: Any]]
        #expect(log.map { $0["key"] as? String } == ["AKIAEXPIRED", "AKIAFRESH"], "refused, refreshed, signed anew (no retry budget was needed)")
    }

    @Test func forbiddenIsNotRetried() async throws {
        let server = try LocalServer.flakyS3("forbidden")
        let http = HTTPClient()
        let s3 = S3Client(service: service("s3", server, creds, http: http, retry: RetryPolicy(maxAttempts: 6, base: 0.05, cap: 1)), pathStyle: true)
        await #expect { _ = try await s3.get(bucket: "b", key: "k") { _ in } } throws: {
            guard let e = $0 as? AWSError else { return false }
            return e.kind == .auth && e.code == "AccessDenied" && e.requestID == "req-1" && e.status == 403
        }
        let log = try JSONSerialization.jsonObject(with: Data(try await http.send(HTTPRequest(method: "GET", url: server.url + "/stats")).body)) as! [[String: Any]]
        #expect(log.count == 1)
    }

    /// An SQS batch answer that leaves entries out counts them as failed (so a delete is tried again
    /// rather than taken for done), and a 200 that is not JSON is a retryable error, not an empty success.
    @Test func sqsAnswersThatSayTooLittleAreNotSuccesses() async throws {
        let http = HTTPClient()
        let partial = try LocalServer.flakyS3("sqs-partial")
        let sqs = SQSClient(service: service("sqs", partial, creds, http: http), queueURL: partial.url + "/123456789012/q")
        let failures = try await sqs.deleteBatch(["h0", "h1", "h2"])
        #expect(failures.map(\.id) == ["1", "2"] && failures.map(\.code) == ["InternalError", "NotAnswered"], "\(failures)")
        #expect(try await sqs.changeVisibilityBatch([("h0", 30), ("h1", 30)]).map(\.id) == ["1"])

        let garbage = try LocalServer.flakyS3("sqs-garbage")
        let broken = SQSClient(service: service("sqs", garbage, creds, http: http, retry: RetryPolicy(maxAttempts: 2, base: 0.01, cap: 0.05)), queueURL: garbage.url + "/123456789012/q")
        await #expect { _ = try await broken.deleteBatch(["h0"]) } throws: {
            guard let e = $0 as? AWSError else { return false }
            return e.kind == .server && e.isRetryable && e.code == "MalformedResponse" && "\(e)".contains("502 Bad Gateway")
        }
    }

    /// `AWS_MAX_ATTEMPTS` over the profile's `max_attempts`, as the AWS CLI reads them; nonsense is refused
    /// with where it came from.
    @Test func maxAttemptsFromTheEnvironmentOrTheProfile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ctb-attempts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "[default]\nmax_attempts = 4\n[profile slow]\nmax_attempts = many\n".write(to: dir.appendingPathComponent("config"), atomically: true, encoding: .utf8)
        let base = ["HOME": dir.path, "AWS_CONFIG_FILE": dir.appendingPathComponent("config").path, "AWS_SHARED_CREDENTIALS_FILE": dir.appendingPathComponent("none").path]
        #expect(try AWSSettings.maxAttempts(environment: ["HOME": dir.path, "AWS_CONFIG_FILE": "/nonexistent"]) == nil)
        #expect(try AWSSettings.maxAttempts(environment: base) == 4)
        #expect(try AWSSettings.maxAttempts(environment: base.merging(["AWS_MAX_ATTEMPTS": "2"]) { $1 }) == 2)
        #expect { try AWSSettings.maxAttempts(environment: base.merging(["AWS_MAX_ATTEMPTS": "0"]) { $1 }) } throws: { "\($0)".contains("AWS_MAX_ATTEMPTS: '0'") }
        #expect { try AWSSettings.maxAttempts(environment: base.merging(["AWS_PROFILE": "slow"]) { $1 }) } throws: { "\($0)".contains("max_attempts of profile 'slow': 'many'") }
    }

    @Test func errorKinds() {
        #expect(AWSError.classify(status: 403, code: "AccessDenied", message: "User is not authorized to perform: kms:Decrypt") == .kmsAccess)
        #expect(AWSError.classify(status: 400, code: "KMS.DisabledException", message: "") == .kmsAccess)
        #expect(AWSError.classify(status: 503, code: "SlowDown", message: "") == .throttled)
        #expect(AWSError.classify(status: 400, code: "ThrottlingException", message: "") == .throttled)
        #expect(AWSError.classify(status: 400, code: "ReceiptHandleIsInvalid", message: "") == .invalidReceipt)
        #expect(AWSError.classify(status: 500, code: "InternalError", message: "") == .server)
        #expect(AWSError.classify(status: 400, code: "ExpiredToken", message: "") == .auth)
        #expect(AWSError.classify(status: 400, code: "InvalidParameterValue", message: "") == .client)
    }
}

import Crypto

func Insecure_md5(_ bytes: [UInt8]) -> String { SigV4.hex(Insecure.MD5.hash(data: bytes)) }
