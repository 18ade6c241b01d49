import Foundation
import Testing

@testable import AWS
import HTTP

/// One case of the official suite: the request parsed from its `.req` file.
struct SigV4Case: CustomStringConvertible, Sendable {
    let name: String
    let directory: URL
    var description: String { name }

    static func all() throws -> [SigV4Case] {
        let shared = ProcessInfo.processInfo.environment["CTB_SHARED_DIR"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared")
        let root = shared.appendingPathComponent("testdata/sigv4/aws-sig-v4-test-suite")
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else { return [] }
        var cases: [SigV4Case] = []
        for case let url as URL in walker where url.pathExtension == "req" {
            cases.append(SigV4Case(name: url.deletingPathExtension().lastPathComponent, directory: url.deletingLastPathComponent()))
        }
        return cases.sorted { $0.name < $1.name }
    }

    func file(_ ext: String) throws -> String {
        try String(contentsOf: directory.appendingPathComponent("\(name).\(ext)"), encoding: .utf8)
    }

    /// Parses the raw request: request line, headers (continuation lines fold into the value), body.
    func request() throws -> (SigV4.Request, body: String) {
        let text = try file("req")
        let parts = text.components(separatedBy: "\n\n")
        var lines = parts[0].components(separatedBy: "\n")
        let first = lines.removeFirst()
        let method = String(first.prefix { $0 != " " })
        let target = String(first.dropFirst(method.count + 1).dropLast(" HTTP/1.1".count))
        let pathPart = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [(String, String)] = []
        if pathPart.count == 2 {
            for item in pathPart[1].split(separator: "&") {
                let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query.append((String(kv[0]), kv.count > 1 ? String(kv[1]) : ""))
            }
        }
        var headers: [(String, String)] = []
        for line in lines {
            if line.first == " " || line.first == "\t", !headers.isEmpty {
                headers[headers.count - 1].1 += "," + line.trimmingCharacters(in: .whitespaces)
            } else if let colon = line.firstIndex(of: ":") {
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
            }
        }
        let body = parts.count > 1 ? parts[1...].joined(separator: "\n\n") : ""
        return (SigV4.Request(method: method, path: String(pathPart[0]), query: query, headers: headers, payloadHash: SigV4.sha256Hex(Array(body.utf8))), body)
    }
}

@Suite("SigV4: the official AWS test suite")
struct SigV4Tests {
    static let cases = (try? SigV4Case.all()) ?? []
    static let credentials = Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

    @Test func theSuiteIsThere() {
        #expect(SigV4Tests.cases.count >= 30, "shared/testdata/sigv4 beside the repository holds the suite")
    }

    @Test(arguments: SigV4Tests.cases)
    func reproducesCanonicalRequestStringToSignAndAuthorization(_ c: SigV4Case) throws {
        var (request, _) = try c.request()
        let expectedCreq = try c.file("creq")
        let expectedSts = try c.file("sts")
        let expectedAuthz = try c.file("authz")
        // post-sts-header-after: the token is added after signing.
        var credentials = SigV4Tests.credentials
        if c.name == "post-sts-header-after" {
            credentials.sessionToken = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
        }
        let (creq, _) = SigV4.canonicalRequest(request, normalizePath: true)
        #expect(creq == expectedCreq, "\(c.name): canonical request")
        if c.name.hasPrefix("post-x-www-form-urlencoded") {
            // A known defect of the official suite: these two cases' .sts and .authz were computed from a
            // canonical request without Content-Length (and, for -parameters, with "charset=utf8" where the
            // .req says "utf-8"), so sha256(.creq) is not the hash in .sts. Prove the files disagree, then
            // reproduce .sts and .authz from the request they were really computed from.
            #expect(!expectedSts.hasSuffix(SigV4.sha256Hex(Array(expectedCreq.utf8))), "the suite was fixed: drop this branch")
            request.headers.removeAll { $0.0.lowercased() == "content-length" }
            if c.name.hasSuffix("-parameters") {
                request.headers = request.headers.map { $0.0 == "Content-Type" ? ($0.0, "application/x-www-form-urlencoded; charset=utf8") : $0 }
            }
            let (original, _) = SigV4.canonicalRequest(request, normalizePath: true)
            let amz = request.headers.first { $0.0.lowercased() == "x-amz-date" }!.1
            #expect(SigV4.stringToSign(canonicalRequest: original, amzDate: amz, scope: SigV4.scope(date: amz, region: "us-east-1", service: "service")) == expectedSts)
            let headers = SigV4.sign(request, credentials: credentials, region: "us-east-1", service: "service", date: Date())
            let authz = headers.first { $0.0 == "Authorization" }!.1
            // The signature and scope match exactly; -parameters' .authz lists the SignedHeaders of its .creq
            // while its signature was computed without content-length (the same defect).
            func part(_ s: String, _ name: String) -> String? { s.components(separatedBy: ", ").first { $0.contains(name + "=") } }
            #expect(part(authz, "Signature") == part(expectedAuthz, "Signature"), "\(c.name): signature")
            #expect(part(authz, "Credential") == part(expectedAuthz, "Credential"))
            let signedInAuthz = part(expectedAuthz, "SignedHeaders")!.components(separatedBy: "=")[1]
            #expect([part(authz, "SignedHeaders")!.components(separatedBy: "=")[1], expectedCreq.split(separator: "\n").dropLast().last.map(String.init)!].contains(signedInAuthz))
            return
        }
        let amz = request.headers.first { $0.0.lowercased() == "x-amz-date" }!.1
        let sts = SigV4.stringToSign(canonicalRequest: creq, amzDate: amz, scope: SigV4.scope(date: amz, region: "us-east-1", service: "service"))
        #expect(sts == expectedSts, "\(c.name): string to sign")
        let headers = SigV4.sign(request, credentials: credentials, region: "us-east-1", service: "service", date: Date(), signToken: false)
        #expect(headers.first { $0.0 == "Authorization" }?.1 == expectedAuthz, "\(c.name): authorization")
        request.headers = headers
        if c.name == "post-sts-header-after" {
            #expect(headers.contains { $0.0 == "X-Amz-Security-Token" && $0.1 == credentials.sessionToken })
        }
    }

    @Test func s3RulesNoNormalisationNoDoubleEncodingContentHash() {
        let r = SigV4.Request(method: "GET", path: "/bucket/AWSLogs/a b/./x+y.json.gz", headers: [("Host", "s3.amazonaws.com")], payloadHash: "UNSIGNED-PAYLOAD")
        let headers = SigV4.sign(r, credentials: SigV4Tests.credentials, region: "us-east-1", service: "s3", date: Date(timeIntervalSince1970: 1_440_938_160))
        #expect(headers.contains { $0.0 == "x-amz-content-sha256" && $0.1 == "UNSIGNED-PAYLOAD" })
        var signed = r
        signed.headers = headers.filter { $0.0 != "Authorization" }
        let (creq, names) = SigV4.canonicalRequest(signed, normalizePath: false)
        #expect(creq.split(separator: "\n")[1] == "/bucket/AWSLogs/a%20b/./x%2By.json.gz")
        #expect(names == "host;x-amz-content-sha256;x-amz-date")
    }

    @Test func sessionTokenIsSignedAndSecretsNeverPrinted() {
        let creds = Credentials(accessKeyID: "ASIAEXAMPLE", secretAccessKey: "SECRETSECRET", sessionToken: "TOKENTOKEN")
        let headers = SigV4.sign(SigV4.Request(method: "POST", path: "/", headers: [("Host", "sqs.us-east-1.amazonaws.com")], payloadHash: SigV4.emptyHash), credentials: creds, region: "us-east-1", service: "sqs", date: Date())
        #expect(headers.first { $0.0 == "Authorization" }!.1.contains("x-amz-security-token"))
        let printed = "\(creds) \(String(reflecting: creds))"
        #expect(!printed.contains("SECRETSECRET") && !printed.contains("TOKENTOKEN"))
    }
}
