// TLS for the outputs: OpenSSL sessions for the TCP outputs (Logstash, Redis), and the same settings
// checked and handed to libcurl for the HTTP ones (Elasticsearch, Splunk).
//
// Invariants:
// 1. A host is an IP address only when `inet_pton` parses it as one (a dotted quad, or IPv6). Every
//    other host — `feed.de`, `bad.cafe`, made of hex digits and dots — is a DNS name: sent as SNI and
//    verified as a name against the certificate's DNS names, never taken for an address.
// 2. Every OpenSSL call that can fail is checked. A session whose expected name or address cannot be
//    set is refused before its handshake: verification never silently checks nothing.
// 3. With verification on, a handshake counts only with a peer certificate whose chain verified
//    (`X509_V_OK`) against every configured CA file (the system's trust store when none is given).
// 4. The CAs, the client certificate and its key are read once, when the output is made: a missing,
//    unreadable or mismatched file is a configuration error at start, not a failure of every delivery.
// 5. A session that failed (a reset, a protocol error, a timeout) is freed without a close_notify:
//    OpenSSL forbids `SSL_shutdown` after a fatal error. SIGPIPE is ignored process-wide besides
//    (cloudtrailbeat's entry), so a close_notify written to a peer that reset since is a failed write,
//    never the end of the process.

import COpenSSL
import Foundation
import HTTP

#if canImport(Glibc)
import Glibc
#endif

/// TLS settings of an output (`ssl.*` in the configuration).
public struct TLSSettings: Sendable, Equatable {
    /// PEM files of trusted CAs, every one loaded; the system's trust store when empty.
    public var certificateAuthorities: [String]
    /// Verify the server's certificate and name (every `verification_mode` but `none`).
    public var verify: Bool
    /// A client certificate (PEM, optionally followed by its intermediate CAs), for servers that
    /// require one (mutual TLS); with ``key``.
    public var certificate: String?
    /// The client certificate's private key (PEM, not encrypted).
    public var key: String?

    public init(certificateAuthorities: [String] = [], verify: Bool = true, certificate: String? = nil, key: String? = nil) {
        self.certificateAuthorities = certificateAuthorities
        self.verify = verify
        self.certificate = certificate
        self.key = key
    }

    /// The settings in words, for `test config`.
    public var summary: String {
        var parts = [verify ? "verification full" : "verification none (the server's certificate and name are not checked)"]
        parts.append(certificateAuthorities.isEmpty ? "the system's CAs" : "CAs \(certificateAuthorities.joined(separator: ", "))")
        if let certificate { parts.append("client certificate \(certificate)") }
        return "TLS (" + parts.joined(separator: ", ") + ")"
    }

    /// The URL an HTTP output sends to. With TLS on (an `ssl` section not disabled), a host without a
    /// scheme gets `https://`; without, it is left as it is (libcurl takes it for `http://`).
    /// Nil when TLS is on and the host says `http://`: TLS was asked for and would not be used.
    public static func url(_ host: String, tls: Bool) -> String? {
        guard tls else { return host }
        if let scheme = host.range(of: "://") {
            return host[..<scheme.lowerBound].lowercased() == "http" ? nil : host
        }
        return "https://" + host
    }

    /// Whether `url` (`https://h:9200/x`, `h:9200`, `redis-host`) names a plain-text HTTP endpoint:
    /// `http://`, or no scheme at all (libcurl's default).
    public static func isPlainHTTP(_ url: String) -> Bool {
        guard let scheme = url.range(of: "://") else { return true }
        return url[..<scheme.lowerBound].lowercased() == "http"
    }
}

/// What a host is to TLS: an IP address (checked against the certificate's IP addresses, no SNI) or a
/// DNS name (sent as SNI, checked against its DNS names). Classified by parsing, never by its characters.
public enum PeerName: Equatable, Sendable {
    case address(String)
    case name(String)

    /// `host` as written in `hosts` (an IPv6 address may be bracketed).
    public init(_ host: String) {
        var bare = host
        if bare.hasPrefix("[") && bare.hasSuffix("]") { bare = String(bare.dropFirst().dropLast()) }
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, bare, &v4) == 1 || inet_pton(AF_INET6, bare, &v6) == 1 {
            self = .address(bare)
        } else {
            self = .name(host)
        }
    }

    /// The host of a URL or `host[:port]` (`https://u@es1:9200/x` → `es1`, `[::1]:6379` → `::1`).
    public init(url: String) {
        var rest = Substring(url)
        if let r = rest.range(of: "://") { rest = rest[r.upperBound...] }
        if let end = rest.firstIndex(where: { "/?#".contains($0) }) { rest = rest[..<end] }
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            rest = rest[rest.startIndex...close]
        } else if let colon = rest.lastIndex(of: ":"), rest.firstIndex(of: ":") == colon {
            rest = rest[..<colon]
        }
        self.init(String(rest))
    }

    /// `localhost`, 127.0.0.0/8 or ::1: traffic that never leaves the machine.
    public var isLoopback: Bool {
        switch self {
        case .name(let n): return n.lowercased() == "localhost" || n.lowercased().hasSuffix(".localhost")
        case .address(let a):
            var v4 = in_addr()
            if inet_pton(AF_INET, a, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
            var v6 = in6_addr()
            var loopback = in6_addr()
            _ = inet_pton(AF_INET6, "::1", &loopback)
            return inet_pton(AF_INET6, a, &v6) == 1 && withUnsafeBytes(of: &v6, { Array($0) }) == withUnsafeBytes(of: &loopback, { Array($0) })
        }
    }
}

/// An OpenSSL client context built from ``TLSSettings``: the trusted CAs, the client certificate and
/// key, the verification mode. Built once per output; sessions are made from it on any thread
/// (`SSL_new` on a context no longer changed is thread-safe).
///
/// `@unchecked Sendable`: the context is only read after `init`.
public final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    public let settings: TLSSettings

    /// - Throws: ``OutputError`` with code `configuration`, naming the file that could not be used.
    public init(_ settings: TLSSettings, output: String) throws {
        func fail(_ what: String) -> OutputError {
            OutputError(output: output, code: .configuration, message: "TLS: \(what): \(TLSContext.lastError())")
        }
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw fail("cannot create a context") }
        self.ctx = ctx
        self.settings = settings
        // From here on every property is set: a throw runs deinit, which frees the context.
        guard cloudtrailbeat_ssl_ctx_min_tls12(ctx) == 1 else { throw fail("cannot require TLS 1.2 or later") }
        // A daemon has nobody to type a passphrase: an encrypted key is an error, never a prompt.
        cloudtrailbeat_ssl_ctx_refuse_passphrases(ctx)
        if settings.certificateAuthorities.isEmpty {
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else { throw fail("cannot load the system's certificate authorities") }
        }
        for ca in settings.certificateAuthorities {
            guard SSL_CTX_load_verify_locations(ctx, ca, nil) == 1 else { throw fail("cannot load certificate authorities from '\(ca)'") }
        }
        switch (settings.certificate, settings.key) {
        case (nil, nil): break
        case (let certificate?, let key?):
            guard SSL_CTX_use_certificate_chain_file(ctx, certificate) == 1 else { throw fail("cannot load the client certificate '\(certificate)'") }
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 else {
                if ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH {
                    ERR_clear_error()
                    throw OutputError(output: output, code: .configuration, message: "TLS: '\(key)' is not the private key of '\(certificate)'")
                }
                let encrypted = (try? String(contentsOfFile: key, encoding: .utf8))?.contains("ENCRYPTED") == true
                throw fail("cannot load the client key '\(key)'" + (encrypted ? " (it is encrypted: store it decrypted, readable by this user only)" : ""))
            }
            guard SSL_CTX_check_private_key(ctx) == 1 else { throw fail("'\(key)' does not go with '\(certificate)'") }
        default:
            throw OutputError(output: output, code: .configuration, message: "TLS: a client certificate needs its key, and a key its certificate (ssl.certificate and ssl.key)")
        }
        SSL_CTX_set_verify(ctx, settings.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
    }

    deinit { SSL_CTX_free(ctx) }

    /// The oldest error on this thread's OpenSSL queue (the cause; later ones are consequences), and
    /// the queue emptied so that it cannot be blamed on a later call.
    static func lastError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "no detail" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The settings as libcurl takes them (for the HTTP outputs): the CA files concatenated into one
    /// bundle held in memory, the client certificate and key read. Read once, like the TCP outputs'.
    ///
    /// - Throws: ``OutputError`` with code `configuration` when a file cannot be read.
    public func pem(output: String) throws -> (caBundle: [UInt8]?, certificate: [UInt8]?, key: [UInt8]?) {
        func read(_ path: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw OutputError(output: output, code: .configuration, message: "TLS: cannot read '\(path)'")
            }
            return Array(data)
        }
        var bundle: [UInt8]?
        for ca in settings.certificateAuthorities { bundle = (bundle ?? []) + (try read(ca)) + [0x0a] }
        return (bundle, try settings.certificate.map(read), try settings.key.map(read))
    }
}

/// A TLS session over a connected socket, made from a ``TLSContext``: SNI and name verification for a
/// DNS name, address verification for an IP address.
final class TLSSession {
    private let context: TLSContext
    private let ssl: OpaquePointer
    /// Set until the handshake succeeds and again on any failed read or write: no close_notify then.
    private var failed = true

    init(fd: Int32, host: String, context: TLSContext) throws {
        ERR_clear_error()
        guard let ssl = SSL_new(context.ctx) else { throw TCPError("TLS: cannot create a session: \(TLSContext.lastError())") }
        self.ssl = ssl
        self.context = context
        // Every property is set: a throw from here on runs deinit, which frees the session.
        guard SSL_set_fd(ssl, fd) == 1 else { throw TCPError("TLS: cannot attach the socket: \(TLSContext.lastError())") }
        let verify = context.settings.verify
        switch PeerName(host) {
        case .address(let address):
            // No SNI for an address (RFC 6066, section 3).
            if verify {
                guard let param = SSL_get0_param(ssl), X509_VERIFY_PARAM_set1_ip_asc(param, address) == 1 else {
                    throw TCPError("TLS: cannot set the address \(address) to verify (\(TLSContext.lastError())): not connecting")
                }
            }
        case .name(let name):
            guard !name.isEmpty, !name.utf8.contains(0), cloudtrailbeat_ssl_set_sni(ssl, name) == 1 else {
                throw TCPError("TLS: cannot send the name '\(name)' (SNI): \(TLSContext.lastError())")
            }
            if verify {
                guard let param = SSL_get0_param(ssl), X509_VERIFY_PARAM_set1_host(param, name, 0) == 1 else {
                    throw TCPError("TLS: cannot set the name '\(name)' to verify (\(TLSContext.lastError())): not connecting")
                }
            }
        }
        ERR_clear_error()
        let rc = SSL_connect(ssl)
        let code = SSL_get_error(ssl, rc)
        let saved = errno
        let verified = SSL_get_verify_result(ssl)
        guard rc == 1 else {
            let reason: String
            if verified != X509_V_OK {
                reason = String(cString: X509_verify_cert_error_string(verified))
            } else if code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 {
                reason = saved == 0 ? "the peer closed the connection" : String(cString: strerror(saved))
            } else {
                reason = TLSContext.lastError()
            }
            throw TCPError("TLS handshake with \(host) failed: \(reason)")
        }
        if verify {
            guard SSL_get0_peer_certificate(ssl) != nil, verified == X509_V_OK else {
                throw TCPError("TLS handshake with \(host) failed: the server's certificate was not verified")
            }
        }
        failed = false
    }

    deinit {
        if !failed {
            // Best effort: a peer gone since gets a failed write (SIGPIPE is ignored), nothing more.
            ERR_clear_error()
            _ = SSL_shutdown(ssl)
        }
        SSL_free(ssl)
        ERR_clear_error()
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        ERR_clear_error()
        let n = SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
        if n > 0 { return Int(n) }
        throw failure(n, "write")
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        ERR_clear_error()
        let n = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
        if n > 0 { return Int(n) }
        if SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN { return 0 }
        throw failure(n, "read")
    }

    /// The error of a failed `SSL_read` or `SSL_write` (`n` its result); the session is not used again.
    private func failure(_ n: Int32, _ op: String) -> TCPError {
        let saved = errno
        let code = SSL_get_error(ssl, n)
        failed = true
        if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE || code == SSL_ERROR_SYSCALL) && (saved == EAGAIN || saved == EWOULDBLOCK) {
            return TCPError("TLS \(op) timed out", timeout: true)
        }
        if code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 {
            return TCPError("TLS \(op) failed: \(saved == 0 ? "the peer closed the connection" : String(cString: strerror(saved)))")
        }
        return TCPError("TLS \(op) failed: \(TLSContext.lastError())")
    }
}

extension HTTPClient.Configuration {
    /// An HTTP output's TLS settings, checked as the TCP outputs' are (loaded into a ``TLSContext``:
    /// every CA file, the client certificate and its key) and handed to libcurl. Nil changes nothing.
    ///
    /// - Throws: ``OutputError`` with code `configuration`, naming the file that could not be used.
    mutating func apply(_ tls: TLSSettings?, output: String) throws {
        guard let tls else { return }
        let pem = try TLSContext(tls, output: output).pem(output: output)
        verifyTLS = tls.verify
        caBundle = pem.caBundle
        clientCertificate = pem.certificate
        clientKey = pem.key
    }
}
