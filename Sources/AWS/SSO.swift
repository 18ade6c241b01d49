import Crypto
import Foundation
import HTTP

#if canImport(Glibc)
import Glibc
#endif

/// A profile that gets its credentials from IAM Identity Center (SSO), as the AWS CLI v2 reads it:
/// `sso_session` naming a `[sso-session NAME]` section (`sso_start_url`, `sso_region`), or the legacy
/// `sso_start_url` + `sso_region` in the profile itself; and `sso_account_id`, `sso_role_name`.
struct SSOProfile: Sendable {
    var profile: String
    /// The `[sso-session]` the profile names; nil in the legacy form.
    var session: String?
    var startURL: String
    var region: String
    var accountID: String
    var roleName: String

    /// The keys that make a profile an SSO profile (any one of them), all of which it then needs.
    static let keys = ["sso_start_url", "sso_region", "sso_role_name", "sso_account_id"]
    /// A token expiring sooner than this is refreshed first, when the cache holds what that takes
    /// (the AWS CLI's window).
    static let refreshWindow: TimeInterval = 15 * 60

}

extension SSOProfile {
    /// nil when the profile has none of `keys`: then it is no SSO profile, as for the AWS CLI.
    init?(_ name: String, _ files: SharedConfigFiles) throws {
        guard let own = files.profiles[name], SSOProfile.keys.contains(where: { own[$0] != nil }) else { return nil }
        var p = own
        if let session = own["sso_session"] {
            guard let values = files.ssoSessions[session] else {
                throw CredentialsError(message: "profile '\(name)' names sso_session '\(session)', but the config file has no [sso-session \(session)] section")
            }
            for (key, value) in values {
                if let mine = own[key], mine != value {
                    throw CredentialsError(
                        message: "profile '\(name)': \(key) is '\(mine)' in the profile but '\(value)' in its [sso-session \(session)] section")
                }
                p[key] = value
            }
        }
        let missing = SSOProfile.keys.filter { (p[$0] ?? "").isEmpty }
        guard missing.isEmpty, let startURL = p["sso_start_url"], let region = p["sso_region"],
            let accountID = p["sso_account_id"], let roleName = p["sso_role_name"]
        else {
            let place = own["sso_session"].map { " (in the profile or its [sso-session \($0)] section)" } ?? ""
            throw CredentialsError(
                message: "profile '\(name)' is configured for IAM Identity Center (SSO) but is missing \(missing.joined(separator: ", "))\(place)")
        }
        self.init(profile: name, session: own["sso_session"], startURL: startURL, region: region, accountID: accountID, roleName: roleName)
    }

    /// What `aws sso login` named the cached token after: the session name, or the start URL (legacy).
    var cacheKey: String { session ?? startURL }

    /// `HOME/.aws/sso/cache/<SHA-1 of the key, hex>.json`, where `aws sso login` writes the token.
    static func cachePath(home: String, key: String) -> String {
        home + "/.aws/sso/cache/" + SigV4.hex(Insecure.SHA1.hash(data: Array(key.utf8))) + ".json"
    }

    /// The session (or legacy start URL) in error messages.
    var subject: String { session.map { "the SSO session '\($0)'" } ?? "the SSO start URL '\(startURL)' of profile '\(profile)'" }

    /// How to get a fresh token.
    var login: String {
        session.map { "run `aws sso login --sso-session \($0)` (or --profile \(profile))" } ?? "run `aws sso login --profile \(profile)`"
    }

    /// The role in error messages.
    var target: String { "role '\(roleName)' in account \(accountID) (profile '\(profile)')" }
}

extension CredentialChain {
    /// The cached token of `sso.cacheKey`, then SSO GetRoleCredentials with it.
    func ssoCredentials(_ sso: SSOProfile) async throws -> Credentials {
        let token = try await ssoAccessToken(sso)
        return try await roleCredentials(sso, token: token)
    }

    /// The access token `aws sso login` cached: refreshed through SSO OIDC CreateToken when it expires
    /// within `SSOProfile.refreshWindow` and the cache holds a refresh token and a client registration
    /// (the `sso_session` form; the legacy one has none), written back to the cache as the CLI does.
    func ssoAccessToken(_ sso: SSOProfile) async throws -> String {
        let path = SSOProfile.cachePath(home: SharedConfigFiles.home(settings.environment), key: sso.cacheKey)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CredentialsError(message: "\(sso.subject) has no cached token: \(sso.login)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let accessToken = json["accessToken"] as? String, !accessToken.isEmpty,
            let expiresText = json["expiresAt"] as? String, let expiresAt = CredentialChain.timestamp(expiresText)
        else {
            throw CredentialsError(message: "\(sso.subject) has a cached token (\(path)) without accessToken and expiresAt: \(sso.login)")
        }
        var notRefreshed = ""
        if sso.session != nil && expiresAt.timeIntervalSinceNow < SSOProfile.refreshWindow {
            do {
                return try await refreshSSOToken(sso, json, path: path)
            } catch {
                notRefreshed = " and could not be refreshed (\(error))"
            }
        }
        guard expiresAt > Date() else {
            throw CredentialsError(
                message: "\(sso.subject) has a cached token that expired at \(ISO8601DateFormatter().string(from: expiresAt))\(notRefreshed): \(sso.login)")
        }
        return accessToken
    }

    /// SSO OIDC CreateToken with the cached refresh token; the new token is written back to `path`.
    func refreshSSOToken(_ sso: SSOProfile, _ cached: [String: Any], path: String) async throws -> String {
        let needed = ["refreshToken", "clientId", "clientSecret", "registrationExpiresAt"]
        let missing = needed.filter { ((cached[$0] as? String) ?? "").isEmpty }
        guard missing.isEmpty, let refreshToken = cached["refreshToken"] as? String, let clientID = cached["clientId"] as? String,
            let clientSecret = cached["clientSecret"] as? String, let registration = cached["registrationExpiresAt"] as? String
        else { throw CredentialsError(message: "the cache holds no \(missing.joined(separator: ", "))") }
        if let end = CredentialChain.timestamp(registration), end <= Date() {
            throw CredentialsError(message: "its client registration expired at \(registration)")
        }
        let base = (AWSSettings.endpoint(service: "SSO_OIDC", configured: nil, environment: settings.environment) ?? "https://oidc.\(sso.region).amazonaws.com")
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let body = try JSONSerialization.data(withJSONObject: [
            "grantType": "refresh_token", "clientId": clientID, "clientSecret": clientSecret, "refreshToken": refreshToken,
        ])
        let r: HTTPResponse
        do {
            r = try await http.send(
                HTTPRequest(method: "POST", url: base + "/token", headers: [("Content-Type", "application/json")], body: Array(body)), timeout: 30)
        } catch {
            throw CredentialsError(message: "SSO OIDC at \(base) could not be reached: \(error)")
        }
        guard r.status == 200, let answer = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any],
            let accessToken = answer["accessToken"] as? String, !accessToken.isEmpty,
            let expiresIn = (answer["expiresIn"] as? NSNumber)?.doubleValue
        else { throw CredentialsError(message: "SSO OIDC CreateToken answered HTTP \(r.status)\(SSOPortal.errorDetail(r))") }
        var updated = cached
        updated["accessToken"] = accessToken
        updated["expiresAt"] = ISO8601DateFormatter().string(from: Date().addingTimeInterval(expiresIn))
        if let next = answer["refreshToken"] as? String, !next.isEmpty { updated["refreshToken"] = next }
        SSOPortal.write(updated, to: path)
        return accessToken
    }

    /// SSO GetRoleCredentials (unsigned; the token in `x-amz-sso_bearer_token`), retried twice on a
    /// network error, throttling or a server error.
    func roleCredentials(_ sso: SSOProfile, token: String) async throws -> Credentials {
        let base = (AWSSettings.endpoint(service: "SSO", configured: nil, environment: settings.environment) ?? "https://portal.sso.\(sso.region).amazonaws.com")
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let request = HTTPRequest(
            method: "GET",
            url: base + "/federation/credentials?account_id=" + SigV4.encode(sso.accountID) + "&role_name=" + SigV4.encode(sso.roleName),
            headers: [("x-amz-sso_bearer_token", token)])
        for attempt in 1...3 {
            if attempt > 1 { try await Task.sleep(nanoseconds: UInt64(attempt) * 300_000_000) }
            let r: HTTPResponse
            do {
                r = try await http.send(request, timeout: 30)
            } catch {
                if attempt < 3 { continue }
                throw CredentialsError(message: "the SSO portal at \(base) could not be reached for \(sso.target): \(error)")
            }
            if (r.status == 429 || r.status >= 500) && attempt < 3 { continue }
            return try SSOPortal.credentials(r, sso)
        }
        throw CredentialsError(message: "the SSO portal at \(base) gave no answer for \(sso.target)")
    }
}

/// The answers of the SSO portal and SSO OIDC.
enum SSOPortal {
    /// GetRoleCredentials' answer: `roleCredentials` with the expiration in epoch milliseconds; 401 and
    /// 403 say what to do about them.
    static func credentials(_ r: HTTPResponse, _ sso: SSOProfile) throws -> Credentials {
        switch r.status {
        case 200:
            break
        case 401:
            throw CredentialsError(message: "the SSO portal rejected the cached token of \(sso.subject) (HTTP 401\(errorDetail(r))): \(sso.login)")
        case 403:
            throw CredentialsError(
                message: "the SSO portal refused \(sso.target) (HTTP 403\(errorDetail(r))): check sso_account_id and sso_role_name, or \(sso.login)")
        default:
            throw CredentialsError(message: "the SSO portal answered HTTP \(r.status)\(errorDetail(r)) for \(sso.target)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any],
            let role = json["roleCredentials"] as? [String: Any],
            let id = role["accessKeyId"] as? String, !id.isEmpty, let secret = role["secretAccessKey"] as? String, !secret.isEmpty
        else { throw CredentialsError(message: "the SSO portal returned no credentials for \(sso.target)") }
        let expiration = (role["expiration"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue / 1000) }
        return Credentials(
            accessKeyID: id, secretAccessKey: secret, sessionToken: (role["sessionToken"] as? String).flatMap { $0.isEmpty ? nil : $0 },
            expiration: expiration, source: "sso (profile \(sso.profile), account \(sso.accountID), role \(sso.roleName))")
    }

    /// `: Type: message` from an error answer (the `x-amzn-ErrorType` header or the body's `__type`,
    /// OIDC's `error`; `message` or `error_description`), shortened; empty when there is none.
    static func errorDetail(_ r: HTTPResponse) -> String {
        let json = (try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]) ?? [:]
        let rawType = r.header("x-amzn-ErrorType") ?? json["__type"] as? String ?? json["error"] as? String ?? ""
        let type = rawType.split(separator: ":").first.map { String($0.split(separator: "#").last ?? $0) } ?? ""
        let message = json["message"] as? String ?? json["Message"] as? String ?? json["error_description"] as? String ?? ""
        let detail = [type, message].filter { !$0.isEmpty }.joined(separator: ": ")
        return detail.isEmpty ? "" : " " + String(detail.prefix(300))
    }

    /// Replaces the cached token file atomically, readable by its owner only. A failure leaves the old
    /// file (the new token still serves this run).
    static func write(_ json: [String: Any], to path: String) {
        guard let data = try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        let temp = path + ".tmp-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: temp, contents: data, attributes: [.posixPermissions: 0o600]) else { return }
        if rename(temp, path) != 0 { unlink(temp) }
    }
}
