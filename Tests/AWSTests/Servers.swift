import Foundation
import Testing

@testable import AWS
import HTTP

#if canImport(Glibc)
import Glibc
#endif

/// A free TCP port on 127.0.0.1 (bound, read, released).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

func canConnect(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
}

/// A server process on a loopback port, stopped when released.
final class LocalServer: @unchecked Sendable {
    let pid: pid_t
    let port: Int
    var url: String { "http://127.0.0.1:\(port)" }

    init(_ argv: [String], port: Int, environment: [String: String] = [:], name: String, installHint: String) throws {
        guard let path = LocalServer.which(argv[0]) else {
            Issue.record("\(name) is not installed: \(installHint)")
            throw CredentialsError(message: "\(argv[0]) missing")
        }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/tmp/ctb-\(name)-\(port).log", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let cargs = ([path] + argv.dropFirst()).map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        let cenv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cenv.forEach { free($0) } }
        var child: pid_t = 0
        guard posix_spawn(&child, path, &actions, nil, cargs, cenv) == 0 else { throw CredentialsError(message: "cannot start \(name)") }
        pid = child
        self.port = port
        let deadline = Date().addingTimeInterval(30)
        while !canConnect(port) {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let log = (try? String(contentsOfFile: "/tmp/ctb-\(name)-\(port).log", encoding: .utf8)) ?? ""
                throw CredentialsError(message: "\(name) exited at start: \(log.suffix(2000))")
            }
            guard Date() < deadline else { kill(pid, SIGKILL); throw CredentialsError(message: "\(name) did not listen on \(port)") }
            usleep(50_000)
        }
    }

    deinit {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<50 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }

    static func which(_ name: String) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/root/.pyenv/shims", "/usr/local/bin"] {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

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
