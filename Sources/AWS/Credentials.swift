import Foundation
import Failures
import HTTP

#if canImport(Glibc)
import Glibc
#endif

/// Why no credentials (or no region) could be had.
public struct CredentialsError: Error, Sendable, CustomStringConvertible, ClassifiedError {
    /// Why no credentials could be had. Open, so new codes can be added without breaking callers.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// The source failed this time (instance metadata or STS unreachable, a token file being
        /// rotated, a credential process failing, an SSO session expired).
        public static let unavailable = Code(rawValue: "unavailable")
        /// The environment names a source that must not be asked (a container credentials URI the AWS
        /// SDKs refuse): no wait mends it.
        public static let refused = Code(rawValue: "refused")
    }

    public var code: Code = .unavailable
    public var message: String
    public init(code: Code = .unavailable, message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
    /// Waited for: credentials come back (a new token, IMDS again), and the work was never at fault. A
    /// refused source is fatal: the environment must change.
    public var disposition: Disposition { code == .refused ? .fatal : .wait }
}

/// Something that yields credentials, refreshing temporary ones.
public protocol CredentialProvider: Sendable {
    /// Credentials valid for at least a few more minutes.
    func credentials() async throws -> Credentials
    /// Fetches new credentials now (after an `ExpiredToken` answer).
    func refresh() async throws -> Credentials
}

/// Fixed credentials.
public struct StaticCredentialProvider: CredentialProvider {
    let value: Credentials
    public init(_ value: Credentials) { self.value = value }
    public func credentials() async throws -> Credentials { value }
    public func refresh() async throws -> Credentials { value }
}

/// The shared `credentials` and `config` files (INI), as the AWS CLI reads them.
public struct SharedConfigFiles: Sendable {
    /// Profile name → key → value, credentials file over config file.
    public var profiles: [String: [String: String]] = [:]
    /// Profile name → key → value as the credentials file alone has them: its static keys outrank a
    /// `credential_process`, the config file's do not (the AWS CLI's order).
    public var credentialsFileProfiles: [String: [String: String]] = [:]
    /// `[sso-session NAME]` sections of the config file: name → key → value (`sso_start_url`, `sso_region`, …).
    public var ssoSessions: [String: [String: String]] = [:]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let home = SharedConfigFiles.home(environment)
        let credentialsPath = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        let configPath = environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
        let config = SharedConfigFiles.parse(configPath, isConfig: true)
        let credentials = SharedConfigFiles.parse(credentialsPath, isConfig: false)
        for (name, values) in config.profiles { profiles[name, default: [:]].merge(values) { a, _ in a } }
        for (name, values) in credentials.profiles { profiles[name, default: [:]].merge(values) { _, b in b } }
        credentialsFileProfiles = credentials.profiles
        ssoSessions = config.ssoSessions
    }

    /// The home directory the shared files (and `~/.aws/sso/cache`) are under: `HOME`, else the user's.
    public static func home(_ environment: [String: String]) -> String {
        environment["HOME"] ?? NSHomeDirectory()
    }

    static func parse(_ path: String, isConfig: Bool) -> (profiles: [String: [String: String]], ssoSessions: [String: [String: String]]) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return ([:], [:]) }
        var profiles: [String: [String: String]] = [:]
        var ssoSessions: [String: [String: String]] = [:]
        var current: (name: String, isSSOSession: Bool)?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                current = isConfig ? SharedConfigFiles.configSection(name) : (name, false)
                continue
            }
            guard let section = current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if section.isSSOSession { ssoSessions[section.name, default: [:]][key] = value }
            else { profiles[section.name, default: [:]][key] = value }
        }
        return (profiles, ssoSessions)
    }

    /// A config file section header: `[default]`, `[profile NAME]` or `[sso-session NAME]`; nil for the
    /// others (`services`, …).
    static func configSection(_ header: String) -> (name: String, isSSOSession: Bool)? {
        if header == "default" { return (header, false) }
        for (prefix, isSSOSession) in [("profile ", false), ("sso-session ", true)] where header.hasPrefix(prefix) {
            return (String(header.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces), isSSOSession)
        }
        return nil
    }
}

/// Resolves credentials in the order every AWS SDK uses, caching and refreshing temporary ones
/// before they expire:
/// 1. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`;
/// 2. `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` → STS AssumeRoleWithWebIdentity;
/// 3. the shared files' profile (`AWS_PROFILE`, default `default`), in the AWS CLI v2's order:
///    `role_arn` with `source_profile` (+ `external_id`) → STS AssumeRole, or with
///    `web_identity_token_file`; IAM Identity Center (`sso_session` naming an `[sso-session]` section,
///    or the legacy `sso_start_url` + `sso_region`, with `sso_account_id` and `sso_role_name`): the token
///    `aws sso login` cached under `~/.aws/sso/cache`, refreshed when it can be, → SSO GetRoleCredentials;
///    the credentials file's static keys; `credential_process` (a command printing JSON credentials);
///    the config file's static keys. A `source_profile` may be any of these;
/// 4. the ECS container endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`; the latter
///    only to the hosts the AWS SDKs allow: ``containerEndpointRefusal(_:)``);
/// 5. EC2 IMDSv2.
public actor CredentialChain: CredentialProvider {
    public struct Settings: Sendable {
        public var environment: [String: String] = ProcessInfo.processInfo.environment
        public var profile: String?
        /// Region and endpoint for STS calls.
        public var region: String = "us-east-1"
        public var stsEndpoint: String?
        /// IMDS endpoint (default `http://169.254.169.254`, or `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
        public var imdsEndpoint: String?
        /// Refresh temporary credentials this long before they expire.
        public var refreshMargin: TimeInterval = 300
        /// How long a profile's `credential_process` may run before it is killed.
        public var credentialProcessTimeout: TimeInterval = 60
        public init() {}
    }

    let settings: Settings
    let http: HTTPClient
    private var cached: Credentials?
    private var lastRefreshFailure: Date?
    private var inFlight: Task<Credentials, any Error>?

    public init(settings: Settings = Settings(), http: HTTPClient) {
        self.settings = settings
        self.http = http
    }

    /// The cached credentials until they near their expiry, then fresh ones. A refresh that fails while
    /// the cached ones are still valid for a minute more keeps them (as the SDKs do): a blip of IMDS or
    /// STS costs nothing, and the next call tries again.
    public func credentials() async throws -> Credentials {
        if let c = cached, c.expiration.map({ $0.timeIntervalSinceNow > settings.refreshMargin }) ?? true { return c }
        // After a failed refresh, valid cached credentials serve for 30 s before the next try (no storm
        // of credential_process runs or IMDS calls while it is down).
        if let c = cached, let expiry = c.expiration, expiry.timeIntervalSinceNow > 60,
           let failed = lastRefreshFailure, Date().timeIntervalSince(failed) < 30 { return c }
        do {
            let c = try await refresh()
            lastRefreshFailure = nil
            return c
        } catch {
            if let c = cached, let expiry = c.expiration, expiry.timeIntervalSinceNow > 60 {
                lastRefreshFailure = Date()
                return c
            }
            throw error
        }
    }

    public func refresh() async throws -> Credentials {
        if let t = inFlight { return try await t.value }
        let task = Task { try await self.resolve() }
        inFlight = task
        defer { inFlight = nil }
        let c = try await task.value
        cached = c
        return c
    }

    private func resolve() async throws -> Credentials {
        let env = settings.environment
        if let id = env["AWS_ACCESS_KEY_ID"], let secret = env["AWS_SECRET_ACCESS_KEY"], !id.isEmpty, !secret.isEmpty {
            return Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: env["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }, source: "environment")
        }
        if let file = env["AWS_WEB_IDENTITY_TOKEN_FILE"], let role = env["AWS_ROLE_ARN"] {
            return try await webIdentity(tokenFile: file, roleArn: role, sessionName: env["AWS_ROLE_SESSION_NAME"])
        }
        let files = SharedConfigFiles(environment: env)
        let profileName = settings.profile ?? env["AWS_PROFILE"] ?? env["AWS_DEFAULT_PROFILE"] ?? "default"
        if files.profiles[profileName] != nil {
            return try await fromProfile(profileName, files, depth: 0)
        } else if settings.profile != nil || env["AWS_PROFILE"] != nil {
            throw CredentialsError(message: "profile '\(profileName)' is not in the shared credentials or config file")
        }
        if env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] != nil || env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] != nil {
            return try await container(env)
        }
        if IMDS.disabled(env) {
            throw CredentialsError(
                message: "no AWS credentials: none in the environment, no web identity, no profile '\(profileName)', "
                    + "no container endpoint, and the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)")
        }
        do {
            return try await imds()
        } catch {
            throw CredentialsError(
                message: "no AWS credentials: none in the environment, no web identity, no profile '\(profileName)', "
                    + "no container endpoint, and the instance metadata service answered: \(error)")
        }
    }

    private func sts(_ credentials: Credentials?) -> STSClient {
        STSClient(
            service: AWSService(
                http: http, service: "sts", region: settings.region,
                endpoint: settings.stsEndpoint ?? settings.environment["AWS_ENDPOINT_URL_STS"] ?? settings.environment["AWS_ENDPOINT_URL"]
                    ?? "https://sts.\(settings.region).amazonaws.com",
                credentials: credentials.map { StaticCredentialProvider($0) }))
    }

    /// A profile's credentials, in the AWS CLI v2's order. As a `source_profile` (`asSource`), static keys
    /// win over the profile's own `role_arn`, as they do for the CLI.
    private func fromProfile(_ name: String, _ files: SharedConfigFiles, depth: Int, asSource: Bool = false) async throws -> Credentials {
        guard depth < 5, let p = files.profiles[name] else {
            throw CredentialsError(message: "profile '\(name)' is missing or its source_profile chain is too deep")
        }
        let hasStaticKeys = p["aws_access_key_id"] != nil && p["aws_secret_access_key"] != nil
        if let role = p["role_arn"], p["web_identity_token_file"] == nil, !(asSource && hasStaticKeys) {
            return try await assumeRole(role, profile: name, p, files, depth: depth)
        }
        if let role = p["role_arn"], let tokenFile = p["web_identity_token_file"] {
            return try await webIdentity(tokenFile: tokenFile, roleArn: role, sessionName: p["role_session_name"])
        }
        if let sso = try SSOProfile(name, files) {
            return try await ssoCredentials(sso)
        }
        if let keys = files.credentialsFileProfiles[name], let id = keys["aws_access_key_id"], let secret = keys["aws_secret_access_key"] {
            return Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: keys["aws_session_token"], source: "profile \(name)")
        }
        if let command = p["credential_process"] {
            return try await CredentialProcess.credentials(
                command: command, profile: name, environment: settings.environment, timeout: settings.credentialProcessTimeout)
        }
        guard let id = p["aws_access_key_id"], let secret = p["aws_secret_access_key"] else {
            if let session = p["sso_session"] {
                throw CredentialsError(message: "profile '\(name)' has sso_session '\(session)' but is missing required configuration: sso_account_id, sso_role_name")
            }
            throw CredentialsError(
                message: "profile '\(name)' has no aws_access_key_id/aws_secret_access_key, no role_arn, no sso_session or sso_start_url, and no credential_process")
        }
        return Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: p["aws_session_token"], source: "profile \(name)")
    }

    /// `role_arn` with `source_profile` → STS AssumeRole with the source profile's credentials.
    private func assumeRole(_ role: String, profile name: String, _ p: [String: String], _ files: SharedConfigFiles, depth: Int) async throws -> Credentials {
        guard let sourceProfile = p["source_profile"] else {
            throw CredentialsError(message: "profile '\(name)' has role_arn but neither source_profile nor web_identity_token_file")
        }
        let source: Credentials
        if sourceProfile == name, let id = p["aws_access_key_id"], let secret = p["aws_secret_access_key"] {
            source = Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: p["aws_session_token"], source: "profile \(name)")
        } else {
            source = try await fromProfile(sourceProfile, files, depth: depth + 1, asSource: true)
        }
        var c = try await sts(source).assumeRole(
            roleArn: role, sessionName: p["role_session_name"] ?? "cloudtrailbeat-\(Int(Date().timeIntervalSince1970))",
            externalID: p["external_id"], durationSeconds: p["duration_seconds"].flatMap(Int.init))
        c.source = "profile \(name) (assumed \(role))"
        return c
    }

    private func webIdentity(tokenFile: String, roleArn: String, sessionName: String?) async throws -> Credentials {
        guard let token = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
            throw CredentialsError(message: "cannot read the web identity token file '\(tokenFile)'")
        }
        var c = try await sts(nil).assumeRoleWithWebIdentity(
            roleArn: roleArn, sessionName: sessionName ?? "cloudtrailbeat-\(Int(Date().timeIntervalSince1970))",
            token: token.trimmingCharacters(in: .whitespacesAndNewlines))
        c.source = "web identity (\(roleArn))"
        return c
    }

    private func container(_ env: [String: String]) async throws -> Credentials {
        let url = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] ?? "http://169.254.170.2" + (env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] ?? "")
        if let refusal = CredentialChain.containerEndpointRefusal(url) {
            let variable = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] != nil ? "AWS_CONTAINER_CREDENTIALS_FULL_URI" : "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
            throw CredentialsError(code: .refused, message: "\(variable): \(refusal)")
        }
        var headers: [(String, String)] = []
        if let token = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] { headers.append(("Authorization", token)) }
        if let file = env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], let token = try? String(contentsOfFile: file, encoding: .utf8) {
            headers.append(("Authorization", token.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let r = try await http.send(HTTPRequest(method: "GET", url: url, headers: headers), timeout: 5)
        guard r.status == 200 else { throw CredentialsError(message: "the container credentials endpoint answered HTTP \(r.status)") }
        return try CredentialChain.decodeJSONCredentials(r.body, source: "container")
    }

    /// Why the container credentials endpoint `url` must not be asked, or nil when it may be — the AWS
    /// SDKs' rule, since whatever answers it hands this process its credentials and gets its token:
    /// any `https` URL; a plain `http` one only to a loopback address (127.0.0.0/8, `[::1]`, or the
    /// name `localhost`) or to the ECS and EKS container hosts (169.254.170.2, 169.254.170.23,
    /// `[fd00:ec2::23]`). Addresses must be written as inet_pton reads them (no `127.1`, no `0x7f…`);
    /// other host names are refused over http, as they could resolve anywhere.
    static func containerEndpointRefusal(_ url: String) -> String? {
        let shown = HTTPClient.redact(url)
        guard let parts = URLComponents(string: url), let scheme = parts.scheme?.lowercased(), var host = parts.host, !host.isEmpty else {
            return "'\(shown)' is not a URL"
        }
        if scheme == "https" { return nil }
        guard scheme == "http" else { return "'\(shown)' is neither https nor http" }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.lowercased() == "localhost" { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            let octets = withUnsafeBytes(of: &v4) { Array($0) }
            if octets[0] == 127 || octets == [169, 254, 170, 2] || octets == [169, 254, 170, 23] { return nil }
        } else {
            var v6 = in6_addr()
            if inet_pton(AF_INET6, host, &v6) == 1 {
                let bytes = withUnsafeBytes(of: &v6) { Array($0) }
                let loopback = [UInt8](repeating: 0, count: 15) + [1]
                let eks: [UInt8] = [0xfd, 0x00, 0x0e, 0xc2] + [UInt8](repeating: 0, count: 11) + [0x23]
                if bytes == loopback || bytes == eks { return nil }
            }
        }
        return "'\(shown)' is plain http to a host that is neither loopback (127.0.0.0/8, [::1], localhost) nor the ECS or EKS "
            + "container host (169.254.170.2, 169.254.170.23, [fd00:ec2::23]); use https, or one of those addresses (the AWS SDKs refuse it too)"
    }

    private func imds() async throws -> Credentials {
        let base = (settings.imdsEndpoint ?? settings.environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] ?? "http://169.254.169.254")
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let token = try await IMDS.token(http, base)
        let roles = try await IMDS.get(http, base, "/latest/meta-data/iam/security-credentials/", token: token)
        guard let role = roles.split(whereSeparator: \.isNewline).first.map(String.init), !role.isEmpty else {
            throw CredentialsError(message: "the instance has no IAM role")
        }
        let body = try await IMDS.get(http, base, "/latest/meta-data/iam/security-credentials/\(role)", token: token)
        return try CredentialChain.decodeJSONCredentials(Array(body.utf8), source: "instance metadata (\(role))")
    }

    /// An ISO 8601 time as the AWS tools write them: `2026-12-02T20:00:00Z`, with fractional seconds,
    /// an offset, or the `UTC` suffix early `aws sso login` versions wrote.
    static func timestamp(_ text: String) -> Date? {
        var t = text.trimmingCharacters(in: .whitespaces)
        if t.hasSuffix("UTC") { t = t.dropLast(3) + "Z" }
        let f = ISO8601DateFormatter()
        if let d = f.date(from: t) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: t)
    }

    static func decodeJSONCredentials(_ body: [UInt8], source: String) throws -> Credentials {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let id = json["AccessKeyId"] as? String, let secret = json["SecretAccessKey"] as? String
        else { throw CredentialsError(message: "\(source) returned no credentials") }
        let expiration = (json["Expiration"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) }
        return Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: (json["Token"] as? String).flatMap { $0.isEmpty ? nil : $0 }, expiration: expiration, source: source)
    }
}

/// EC2 instance metadata, IMDSv2 (a session token first).
public enum IMDS {
    /// Whether `AWS_EC2_METADATA_DISABLED` is `true` (any case), as the AWS SDKs and CLI read it: then
    /// neither credentials nor the region are looked up there.
    public static func disabled(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true"
    }

    static func token(_ http: HTTPClient, _ base: String) async throws -> String? {
        let r = try await http.send(HTTPRequest(method: "PUT", url: base + "/latest/api/token", headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")]), timeout: 2)
        return r.status == 200 ? String(decoding: r.body, as: UTF8.self) : nil
    }

    static func get(_ http: HTTPClient, _ base: String, _ path: String, token: String?) async throws -> String {
        var headers: [(String, String)] = []
        if let token { headers.append(("X-aws-ec2-metadata-token", token)) }
        let r = try await http.send(HTTPRequest(method: "GET", url: base + path, headers: headers), timeout: 2)
        guard r.status == 200 else { throw CredentialsError(message: "instance metadata \(path) answered HTTP \(r.status)") }
        return String(decoding: r.body, as: UTF8.self)
    }

    /// The instance's region (`placement/region`).
    public static func region(_ http: HTTPClient, endpoint: String? = nil) async throws -> String {
        let base = (endpoint ?? ProcessInfo.processInfo.environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] ?? "http://169.254.169.254")
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let token = try await token(http, base)
        return try await get(http, base, "/latest/meta-data/placement/region", token: token)
    }

    /// The spot interruption notice, if one was issued (404 until then).
    public static func spotInterruption(_ http: HTTPClient, endpoint: String? = nil) async throws -> String? {
        let base = (endpoint ?? ProcessInfo.processInfo.environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] ?? "http://169.254.169.254")
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let token = try await token(http, base)
        var headers: [(String, String)] = []
        if let token { headers.append(("X-aws-ec2-metadata-token", token)) }
        let r = try await http.send(HTTPRequest(method: "GET", url: base + "/latest/meta-data/spot/instance-action", headers: headers), timeout: 2)
        return r.status == 200 ? String(decoding: r.body, as: UTF8.self) : nil
    }
}

/// Region and endpoints, resolved as the AWS CLI does.
public enum AWSSettings {
    /// config → `AWS_REGION` → `AWS_DEFAULT_REGION` → the profile's `region` → nil (then IMDS).
    public static func region(configured: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let r = configured, !r.isEmpty { return r }
        if let r = environment["AWS_REGION"], !r.isEmpty { return r }
        if let r = environment["AWS_DEFAULT_REGION"], !r.isEmpty { return r }
        let profile = environment["AWS_PROFILE"] ?? "default"
        return SharedConfigFiles(environment: environment).profiles[profile]?["region"]
    }

    /// Attempts per request, as the AWS CLI and SDKs take them: `AWS_MAX_ATTEMPTS`, then the profile's
    /// `max_attempts`; nil when neither is set. A value that is not a whole number from 1 to 100 is an
    /// error naming where it came from.
    public static func maxAttempts(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Int? {
        let profile = environment["AWS_PROFILE"] ?? "default"
        let (text, source): (String?, String) = environment["AWS_MAX_ATTEMPTS"].map { ($0, "AWS_MAX_ATTEMPTS") }
            ?? (SharedConfigFiles(environment: environment).profiles[profile]?["max_attempts"], "max_attempts of profile '\(profile)'")
        guard let text else { return nil }
        guard let n = Int(text.trimmingCharacters(in: .whitespaces)), (1...100).contains(n) else {
            throw CredentialsError(message: "\(source): '\(text)' is not a number of attempts from 1 to 100")
        }
        return n
    }

    /// config → `AWS_ENDPOINT_URL_<SERVICE>` → `AWS_ENDPOINT_URL` → nil (AWS's own).
    public static func endpoint(service: String, configured: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let e = configured, !e.isEmpty { return e }
        if let e = environment["AWS_ENDPOINT_URL_\(service.uppercased())"], !e.isEmpty { return e }
        if let e = environment["AWS_ENDPOINT_URL"], !e.isEmpty { return e }
        return nil
    }
}

/// Credentials of a role assumed with another provider's credentials (`input.role_arn`), refreshed
/// before they expire.
public actor AssumedRoleProvider: CredentialProvider {
    let base: any CredentialProvider
    let roleArn: String
    let externalID: String?
    let http: HTTPClient
    let region: String
    let endpoint: String
    private var cached: Credentials?

    public init(base: any CredentialProvider, roleArn: String, externalID: String?, http: HTTPClient, region: String, endpoint: String?) {
        self.base = base
        self.roleArn = roleArn
        self.externalID = externalID
        self.http = http
        self.region = region
        self.endpoint = endpoint ?? "https://sts.\(region).amazonaws.com"
    }

    public func credentials() async throws -> Credentials {
        if let c = cached, c.expiration.map({ $0.timeIntervalSinceNow > 300 }) ?? true { return c }
        return try await refresh()
    }

    public func refresh() async throws -> Credentials {
        let sts = STSClient(service: AWSService(http: http, service: "sts", region: region, endpoint: endpoint, credentials: base))
        let c = try await sts.assumeRole(roleArn: roleArn, sessionName: "cloudtrailbeat-\(Int(Date().timeIntervalSince1970))", externalID: externalID)
        cached = c
        return c
    }
}
