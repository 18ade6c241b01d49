import Foundation
import Testing

@testable import AWS
import HTTP

#if canImport(Glibc)
import Glibc
#endif

/// A fresh HOME with `~/.aws/config`, and credential chains reading it (the shared files found through
/// HOME alone, IMDS off so that nothing falls through to the network).
struct AWSHome {
    let dir = TempDir("aws-home")
    var path: String { dir.path }

    init() throws {
        try FileManager.default.createDirectory(atPath: dir.path + "/.aws/sso/cache", withIntermediateDirectories: true)
    }

    func write(_ relative: String, _ text: String) throws {
        try text.write(toFile: path + "/" + relative, atomically: true, encoding: .utf8)
    }

    func config(_ text: String) throws { try write(".aws/config", text) }

    /// An executable shell script; its path.
    func script(_ name: String, _ body: String) throws -> String {
        try write(name, "#!/bin/sh\n" + body + "\n")
        chmod(path + "/" + name, 0o755)
        return path + "/" + name
    }

    /// The lines of the file the scripts append a line to on every run.
    func runs(_ name: String = "runs") -> [String] {
        ((try? String(contentsOfFile: path + "/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// The SSO token cache file for `key`, named by the SHA-1 of the key as `sha1sum` computes it.
    func tokenCachePath(_ key: String) throws -> String {
        path + "/.aws/sso/cache/" + (try sha1sum(key)) + ".json"
    }

    func environment(profile: String, _ extra: [String: String] = [:]) -> [String: String] {
        ["HOME": path, "AWS_PROFILE": profile, "AWS_EC2_METADATA_DISABLED": "true",
         "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"].merging(extra) { $1 }
    }

    func chain(profile: String, _ extra: [String: String] = [:], http: HTTPClient = HTTPClient(),
               _ adjust: (inout CredentialChain.Settings) -> Void = { _ in }) -> CredentialChain {
        var settings = CredentialChain.Settings()
        settings.environment = environment(profile: profile, extra)
        adjust(&settings)
        return CredentialChain(settings: settings, http: http)
    }
}

/// The hex SHA-1 of `text` from /usr/bin/sha1sum, independently of the code under test.
func sha1sum(_ text: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha1sum")
    let input = Pipe(), output = Pipe()
    p.standardInput = input
    p.standardOutput = output
    try p.run()
    input.fileHandleForWriting.write(Data(text.utf8))
    try input.fileHandleForWriting.close()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    return String(String(decoding: out, as: UTF8.self).prefix(40))
}

func jsonText(_ object: [String: Any]) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

func iso(_ date: Date, fractional: Bool = false) -> String {
    let f = ISO8601DateFormatter()
    if fractional { f.formatOptions = [.withInternetDateTime, .withFractionalSeconds] }
    return f.string(from: date)
}

/// Whole seconds from now (what an ISO 8601 time without fractions can say).
func secondsFromNow(_ seconds: TimeInterval) -> Date {
    Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + seconds).rounded(.down))
}

/// The error `body` throws, as text ("" when it throws none).
func errorText(_ body: () async throws -> Credentials) async -> String {
    do {
        let c = try await body()
        Issue.record("expected an error, got \(c)")
        return ""
    } catch {
        return "\(error)"
    }
}

/// Whether `pid` is a live process (a zombie counts as dead).
func isAlive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
    return !stat[close...].hasPrefix(") Z")
}

@Suite("Profiles with credential_process")
struct CredentialProcessTests {
    @Test func credentialsAreCachedUntilTheyNearExpiryThenTheCommandRunsAgain() async throws {
        let home = try AWSHome()
        // The command goes through /bin/sh -c: quoting and arguments as in a shell.
        let script = try home.script("creds.sh", #"echo "$1|$2" >> "$(dirname "$0")/runs"; cat "$(dirname "$0")/out.json""#)
        try home.config("[profile proc]\ncredential_process = \(script) --label 'two words'\nregion = eu-west-1\n")
        let expiry = secondsFromNow(3600)
        try home.write("out.json", jsonText(["Version": 1, "AccessKeyId": "AKIAPROC1", "SecretAccessKey": "proc-secret-1",
                                             "SessionToken": "proc-token-1", "Expiration": iso(expiry)]))
        let chain = home.chain(profile: "proc")
        let first = try await chain.credentials()
        #expect(first.accessKeyID == "AKIAPROC1" && first.secretAccessKey == "proc-secret-1" && first.sessionToken == "proc-token-1")
        #expect(first.expiration == expiry)
        #expect(first.source == "credential_process (profile proc)")
        #expect(try await chain.credentials() == first)
        #expect(home.runs() == ["--label|two words"], "one run while the credentials last an hour")

        // Credentials inside the refresh margin (or already expired) make every call run the command again.
        try home.write("out.json", jsonText(["Version": 1, "AccessKeyId": "AKIAPROC2", "SecretAccessKey": "proc-secret-2",
                                             "SessionToken": "proc-token-2", "Expiration": iso(secondsFromNow(-60))]))
        let expiring = home.chain(profile: "proc")
        #expect(try await expiring.credentials().accessKeyID == "AKIAPROC2")
        #expect(home.runs().count == 2)
        try home.write("out.json", jsonText(["Version": 1, "AccessKeyId": "AKIAPROC3", "SecretAccessKey": "proc-secret-3",
                                             "Expiration": iso(secondsFromNow(7200), fractional: true)]))
        let refreshed = try await expiring.credentials()
        #expect(refreshed.accessKeyID == "AKIAPROC3" && refreshed.sessionToken == nil)
        #expect(home.runs().count == 3, "the expired credentials were fetched anew")
        #expect(try await expiring.credentials().accessKeyID == "AKIAPROC3")
        #expect(home.runs().count == 3, "and the new ones are cached")

        // Without Expiration they never expire.
        try home.write("out.json", jsonText(["Version": 1, "AccessKeyId": "AKIAPROC4", "SecretAccessKey": "proc-secret-4"]))
        let forever = home.chain(profile: "proc")
        let lasting = try await forever.credentials()
        #expect(lasting.expiration == nil && lasting.accessKeyID == "AKIAPROC4")
        _ = try await forever.credentials()
        #expect(home.runs().count == 4)
    }

    @Test func failuresNameTheProfileAndTheReasonButNoSecrets() async throws {
        let home = try AWSHome()
        let cases: [(profile: String, script: String, expected: [String])] = [
            ("sealed", "echo 'vault is sealed:' >&2; echo '  run vault login first  ' >&2; exit 1",
             ["credential_process of profile 'sealed' exited with status 1: vault is sealed: | run vault login first"]),
            ("silent", "exit 3", ["credential_process of profile 'silent' exited with status 3 and wrote nothing on stderr"]),
            ("v2", #"echo '{"Version": 2, "AccessKeyId": "AKIALEAK", "SecretAccessKey": "SECRETLEAK"}'"#,
             ["credential_process of profile 'v2' printed Version 2; only Version 1 is supported"]),
            ("noversion", #"echo '{"AccessKeyId": "AKIALEAK", "SecretAccessKey": "SECRETLEAK"}'"#, ["profile 'noversion' printed no Version"]),
            ("nosecret", #"echo '{"Version": 1, "AccessKeyId": "AKIALEAK"}'"#, ["profile 'nosecret' printed no SecretAccessKey"]),
            ("truncated", #"echo '{"Version": 1, "AccessKeyId": "AKIALEAK", "SecretAccessKey": "SECRETLEAK"'"#,
             ["profile 'truncated' did not print a JSON object on stdout"]),
            ("baddate", #"echo '{"Version": 1, "AccessKeyId": "AKIALEAK", "SecretAccessKey": "SECRETLEAK", "Expiration": "tomorrow"}'"#,
             ["profile 'baddate' printed an Expiration that is not an ISO 8601 time: 'tomorrow'"]),
        ]
        var config = ""
        for c in cases {
            let script = try home.script("\(c.profile).sh", c.script)
            config += "[profile \(c.profile)]\ncredential_process = \(script) --password CMDSECRET\n"
        }
        try home.config(config)
        for c in cases {
            let message = await errorText { try await home.chain(profile: c.profile).credentials() }
            for e in c.expected { #expect(message.contains(e), "\(c.profile): \(message)") }
            for secret in ["SECRETLEAK", "CMDSECRET"] { #expect(!message.contains(secret), "\(c.profile): \(message)") }
        }
    }

    /// Output larger than a pipe holds, on both streams, does not stall the command.
    @Test func largeOutputOnBothStreamsIsRead() async throws {
        let home = try AWSHome()
        let script = try home.script("chatty.sh", #"""
            i=0
            while [ $i -lt 4000 ]; do echo "progress line $i of a chatty helper, padded to be long enough" >&2; i=$((i+1)); done
            printf '%300000s' ''
            echo '{"Version": 1, "AccessKeyId": "AKIACHATTY", "SecretAccessKey": "chatty-secret"}'
            """#)
        try home.config("[default]\ncredential_process = \(script)\n")
        let c = try await home.chain(profile: "default").credentials()
        #expect(c.accessKeyID == "AKIACHATTY" && c.secretAccessKey == "chatty-secret")
    }

    /// Tests run in parallel, and the servers they start are long-lived. A server spawned while another
    /// test had a script open for writing (without `O_CLOEXEC`, as Foundation's atomic write opens it)
    /// kept that descriptor, and the script then failed to run with "Text file busy" (status 126) for as
    /// long as the server lived. Test children now inherit nothing but stdio.
    @Test func aScriptWrittenWhileAChildStartsStillRuns() async throws {
        let home = try AWSHome()
        let path = home.path + "/busy.sh"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o755)
        #expect(fd >= 0)
        let holder = try ChildProcess("/bin/sleep", ["60"])
        defer { holder.kill(); _ = holder.wait() }
        let body = "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIABUSY\", \"SecretAccessKey\": \"s\"}'\n"
        #expect(write(fd, body, body.utf8.count) == body.utf8.count)
        close(fd)
        try home.config("[profile busy]\ncredential_process = \(path)\n")
        let credentials = try await home.chain(profile: "busy").credentials()
        #expect(credentials.accessKeyID == "AKIABUSY")
    }

    @Test func aCommandThatHangsIsKilledAtTheTimeout() async throws {
        let home = try AWSHome()
        let script = try home.script("hang.sh", #"sleep 600 & echo $! > "$(dirname "$0")/sleeper"; wait"#)
        try home.config("[profile hang]\ncredential_process = \(script)\n")
        let start = Date()
        let message = await errorText { try await home.chain(profile: "hang") { $0.credentialProcessTimeout = 1 }.credentials() }
        #expect(message == "credential_process of profile 'hang' did not finish within 1 s and was killed")
        // Long before the command's ten minutes. (Not "about a second": in a full parallel run on two
        // cores, this async test may wait a minute or more for a thread of the cooperative pool, which
        // the synchronous end-to-end tests hold while their children run.)
        #expect(Date().timeIntervalSince(start) < 300)
        let sleeper = Int32(home.runs("sleeper").first ?? "") ?? 0
        #expect(sleeper > 0)
        var alive = true
        for _ in 0..<60 where alive {
            alive = isAlive(sleeper)
            if alive { try await Task.sleep(nanoseconds: 50_000_000) }
        }
        #expect(!alive, "the command's own children are killed too")
    }

    /// A `credential_process` profile as the `source_profile` of a role: the command's keys sign
    /// AssumeRole (moto with signatures enforced), and S3 takes the role's credentials.
    @Test func credentialProcessAsTheSourceProfileOfARole() async throws {
        let moto = try LocalServer.moto()
        let http = HTTPClient()
        let account = try await MotoAccount.create(moto, http: http)
        let home = try AWSHome()
        try home.write("out.json", jsonText(["Version": 1, "AccessKeyId": account.user.accessKeyID, "SecretAccessKey": account.user.secretAccessKey]))
        let script = try home.script("creds.sh", #"echo run >> "$(dirname "$0")/runs"; cat "$(dirname "$0")/out.json""#)
        try home.config("""
            [profile keys]
            credential_process = \(script)
            [profile reader]
            role_arn = \(account.roleArn)
            source_profile = keys
            """)
        let chain = home.chain(profile: "reader", http: http) { $0.stsEndpoint = moto.url }
        let c = try await chain.credentials()
        #expect(c.source == "profile reader (assumed \(account.roleArn))" && c.sessionToken != nil && c.expiration != nil)
        let s3 = S3Client(service: AWSService(http: http, service: "s3", region: "us-east-1", endpoint: moto.url, credentials: chain), pathStyle: true)
        try await s3.createBucket("process-bucket")
        #expect(try await s3.list(bucket: "process-bucket").objects.isEmpty)
        #expect(home.runs() == ["run"])
    }
}

@Suite("Profiles with IAM Identity Center (SSO)")
struct SSOProfileTests {
    static let config = """
        [default]
        region = eu-west-1

        [profile dev]
        sso_session = corp
        sso_account_id = 123456789012
        sso_role_name = ReadOnly
        region = eu-west-1

        [sso-session corp]
        sso_start_url = https://corp.awsapps.com/start
        sso_region = us-east-1
        sso_registration_scopes = sso:account:access

        [profile admin]
        sso_session = corp
        sso_account_id = 123456789012
        sso_role_name = Admin

        [profile noaccount]
        sso_session = corp
        sso_role_name = ReadOnly

        [profile nosession]
        sso_session = elsewhere
        sso_account_id = 123456789012
        sso_role_name = ReadOnly

        [profile old]
        sso_start_url = https://corp.awsapps.com/start
        sso_region = us-east-1
        sso_account_id = 123456789012
        sso_role_name = ReadOnly
        """

    static func portal(_ expiration: Date) throws -> LocalServer {
        try LocalServer.ssoPortal(token: "good-token-123", account: "123456789012", role: "ReadOnly",
                                  expirationMs: Int64(expiration.timeIntervalSince1970 * 1000))
    }

    static func requests(_ server: LocalServer) async throws -> [[String: Any]] {
        let r = try await HTTPClient().send(HTTPRequest(method: "GET", url: server.url + "/stats"))
        return try JSONSerialization.jsonObject(with: Data(r.body)) as? [[String: Any]] ?? []
    }

    @Test func anSSOSessionProfileUsesTheCachedTokenWithThePortal() async throws {
        let home = try AWSHome()
        try home.config(SSOProfileTests.config)
        // The [sso-session] section is kept apart; profiles parse as before.
        let files = SharedConfigFiles(environment: home.environment(profile: "dev"))
        #expect(files.ssoSessions["corp"] == ["sso_start_url": "https://corp.awsapps.com/start", "sso_region": "us-east-1",
                                              "sso_registration_scopes": "sso:account:access"])
        #expect(files.profiles["corp"] == nil && files.profiles["dev"]?["sso_start_url"] == nil)
        #expect(files.profiles["dev"] == ["sso_session": "corp", "sso_account_id": "123456789012", "sso_role_name": "ReadOnly", "region": "eu-west-1"])
        #expect(files.profiles["default"] == ["region": "eu-west-1"])

        // The token file is named by the SHA-1 of the session name (printf %s corp | sha1sum).
        let cache = try home.tokenCachePath("corp")
        #expect(cache.hasSuffix("/.aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json"))
        #expect(SSOProfile.cachePath(home: home.path, key: "corp") == cache)
        try home.write(".aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json", jsonText([
            "startUrl": "https://corp.awsapps.com/start", "region": "us-east-1", "accessToken": "good-token-123",
            "expiresAt": iso(secondsFromNow(7200)),
        ]))
        let expiration = secondsFromNow(3600)
        let portal = try SSOProfileTests.portal(expiration)
        let chain = home.chain(profile: "dev", ["AWS_ENDPOINT_URL_SSO": portal.url, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"])
        let c = try await chain.credentials()
        #expect(c.accessKeyID == "ASIASSO9012" && c.secretAccessKey == "sso-secret-ReadOnly" && c.sessionToken == "sso-session-token")
        #expect(c.expiration == expiration, "the portal's epoch milliseconds")
        #expect(c.source == "sso (profile dev, account 123456789012, role ReadOnly)")
        #expect(try await chain.credentials() == c)
        let seen = try await SSOProfileTests.requests(portal)
        #expect(seen.count == 1, "cached until they near expiry: \(seen)")
        #expect(seen.first?["account"] as? String == "123456789012" && seen.first?["role"] as? String == "ReadOnly")
    }

    @Test func theLegacyFormKeysTheCacheByTheStartURL() async throws {
        let home = try AWSHome()
        try home.config(SSOProfileTests.config)
        let cache = try home.tokenCachePath("https://corp.awsapps.com/start")
        #expect(cache.hasSuffix("/a51746d4aa793ae07b25e90c3a5db96fc7832bd7.json"))
        // What early CLI versions wrote: a UTC suffix; and fractional seconds.
        for expiresAt in [iso(secondsFromNow(3600), fractional: true), iso(secondsFromNow(3600)).replacingOccurrences(of: "Z", with: "UTC")] {
            try jsonText(["startUrl": "https://corp.awsapps.com/start", "region": "us-east-1", "accessToken": "good-token-123", "expiresAt": expiresAt])
                .write(toFile: cache, atomically: true, encoding: .utf8)
            let expiration = secondsFromNow(900)
            let portal = try SSOProfileTests.portal(expiration)
            let c = try await home.chain(profile: "old", ["AWS_ENDPOINT_URL": portal.url]).credentials()
            #expect(c.accessKeyID == "ASIASSO9012" && c.expiration == expiration, "\(expiresAt)")
            #expect(c.source == "sso (profile old, account 123456789012, role ReadOnly)")
        }
    }

    @Test func tokenProblemsSayToRunSSOLogin() async throws {
        let home = try AWSHome()
        try home.config(SSOProfileTests.config)
        let portal = try SSOProfileTests.portal(secondsFromNow(3600))
        let cache = try home.tokenCachePath("corp")
        let env = ["AWS_ENDPOINT_URL_SSO": portal.url, "AWS_ENDPOINT_URL_SSO_OIDC": portal.url]
        let secrets = ["good-token-123", "stale-token-456", "client-secret-1"]
        func error(_ profile: String) async -> String {
            let message = await errorText { try await home.chain(profile: profile, env).credentials() }
            for s in secrets { #expect(!message.contains(s), "\(message)") }
            return message
        }

        #expect(await error("dev") == "the SSO session 'corp' has no cached token: run `aws sso login --sso-session corp` (or --profile dev)")
        #expect(await error("old") == "the SSO start URL 'https://corp.awsapps.com/start' of profile 'old' has no cached token: run `aws sso login --profile old`")

        let expired = secondsFromNow(-120)
        try jsonText(["accessToken": "good-token-123", "expiresAt": iso(expired)]).write(toFile: cache, atomically: true, encoding: .utf8)
        let expiredMessage = await error("dev")
        #expect(expiredMessage.hasPrefix("the SSO session 'corp' has a cached token that expired at \(iso(expired))"), "\(expiredMessage)")
        #expect(expiredMessage.hasSuffix(": run `aws sso login --sso-session corp` (or --profile dev)"), "\(expiredMessage)")
        #expect(expiredMessage.contains("could not be refreshed (the cache holds no refreshToken, clientId, clientSecret, registrationExpiresAt)"))

        try jsonText(["accessToken": "stale-token-456", "expiresAt": iso(secondsFromNow(3600))]).write(toFile: cache, atomically: true, encoding: .utf8)
        #expect(await error("dev") == "the SSO portal rejected the cached token of the SSO session 'corp' (HTTP 401 UnauthorizedException: "
                + "Session token not found or invalid): run `aws sso login --sso-session corp` (or --profile dev)")

        try jsonText(["accessToken": "good-token-123", "expiresAt": iso(secondsFromNow(3600))]).write(toFile: cache, atomically: true, encoding: .utf8)
        #expect(await error("admin") == "the SSO portal refused role 'Admin' in account 123456789012 (profile 'admin') (HTTP 403 ForbiddenException: "
                + "No access): check sso_account_id and sso_role_name, or run `aws sso login --sso-session corp` (or --profile admin)")
        #expect(await error("noaccount") == "profile 'noaccount' is configured for IAM Identity Center (SSO) but is missing sso_account_id "
                + "(in the profile or its [sso-session corp] section)")
        #expect(await error("nosession") == "profile 'nosession' names sso_session 'elsewhere', but the config file has no [sso-session elsewhere] section")
        let seen = try await SSOProfileTests.requests(portal)
        #expect(seen.count == 2, "only the rejected token and the refused role reached the portal: \(seen)")
    }

    /// An sso-session token near its end is refreshed with SSO OIDC CreateToken and written back to the
    /// cache, as the CLI does; a refresh token the service refuses leaves an expired token an error.
    @Test func anExpiringSessionTokenIsRefreshedAndWrittenBack() async throws {
        let home = try AWSHome()
        try home.config(SSOProfileTests.config)
        let portal = try SSOProfileTests.portal(secondsFromNow(3600))
        let cache = try home.tokenCachePath("corp")
        let registration = iso(secondsFromNow(86400 * 30))
        let stale: [String: Any] = [
            "startUrl": "https://corp.awsapps.com/start", "region": "us-east-1", "accessToken": "stale-token-456",
            "expiresAt": iso(secondsFromNow(-60)), "refreshToken": "refresh-1", "clientId": "client-1",
            "clientSecret": "client-secret-1", "registrationExpiresAt": registration,
        ]
        try jsonText(stale).write(toFile: cache, atomically: true, encoding: .utf8)
        let before = Date()
        let c = try await home.chain(profile: "dev", ["AWS_ENDPOINT_URL": portal.url]).credentials()
        let after = Date()
        #expect(c.accessKeyID == "ASIASSO9012")
        #expect(try await SSOProfileTests.requests(portal).map { $0["path"] as? String } == ["/token", "/federation/credentials"])
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cache))) as? [String: Any] ?? [:]
        #expect(written["accessToken"] as? String == "good-token-123" && written["refreshToken"] as? String == "refresh-1-next")
        #expect(written["clientId"] as? String == "client-1" && written["registrationExpiresAt"] as? String == registration)
        let expiresAt = (written["expiresAt"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) }
        // The portal's expiresIn (8 h) from the refresh, which happened between `before` and `after` (ISO
        // 8601 keeps whole seconds). Not from now: on a loaded machine a test may wait minutes to resume.
        #expect(expiresAt.map { $0 >= before.addingTimeInterval(28800 - 1) && $0 <= after.addingTimeInterval(28800 + 1) } == true,
                "\(written["expiresAt"] ?? "none") not 8 h after the refresh (\(before)…\(after))")
        let mode = try FileManager.default.attributesOfItem(atPath: cache)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        var revoked = stale
        revoked["refreshToken"] = "revoked-refresh"
        try jsonText(revoked).write(toFile: cache, atomically: true, encoding: .utf8)
        let message = await errorText { try await home.chain(profile: "dev", ["AWS_ENDPOINT_URL": portal.url]).credentials() }
        #expect(message.contains("has a cached token that expired at") && message.contains("could not be refreshed (SSO OIDC CreateToken answered HTTP 400 invalid_grant"))
        #expect(message.hasSuffix("run `aws sso login --sso-session corp` (or --profile dev)"), "\(message)")
        for s in ["revoked-refresh", "client-secret-1", "stale-token-456"] { #expect(!message.contains(s), "\(message)") }
    }
}
