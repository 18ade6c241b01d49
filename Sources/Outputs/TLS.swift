import COpenSSL
import Foundation

/// TLS settings of a TCP output (`ssl.*` in the configuration).
public struct TLSSettings: Sendable {
    /// A PEM file of trusted CAs; the system's trust store when nil.
    public var caFile: String?
    /// Verify the server's certificate and name (`verification_mode: full`, the default).
    public var verify = true
    public init(caFile: String? = nil, verify: Bool = true) {
        self.caFile = caFile
        self.verify = verify
    }
}

/// A TLS session over a connected socket (OpenSSL), with SNI and host-name or IP verification.
final class TLSSession {
    private let ctx: OpaquePointer
    private let ssl: OpaquePointer

    init(fd: Int32, host: String, settings: TLSSettings) throws {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TCPError("TLS: cannot create a context: \(TLSSession.lastError())") }
        self.ctx = ctx
        _ = cloudtrailbeat_ssl_ctx_min_tls12(ctx)
        if let ca = settings.caFile {
            guard SSL_CTX_load_verify_locations(ctx, ca, nil) == 1 else {
                SSL_CTX_free(ctx)
                throw TCPError("TLS: cannot load certificate authorities from '\(ca)': \(TLSSession.lastError())")
            }
        } else {
            SSL_CTX_set_default_verify_paths(ctx)
        }
        SSL_CTX_set_verify(ctx, settings.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
        guard let ssl = SSL_new(ctx) else {
            SSL_CTX_free(ctx)
            throw TCPError("TLS: cannot create a session: \(TLSSession.lastError())")
        }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        let isIP = host.allSatisfy { $0.isHexDigit || $0 == "." || $0 == ":" } && (host.contains(".") || host.contains(":"))
        if !isIP { _ = cloudtrailbeat_ssl_set_sni(ssl, host) }
        if settings.verify {
            let param = SSL_get0_param(ssl)
            if isIP { X509_VERIFY_PARAM_set1_ip_asc(param, host) } else { X509_VERIFY_PARAM_set1_host(param, host, 0) }
        }
        let rc = SSL_connect(ssl)
        guard rc == 1 else {
            let verify = SSL_get_verify_result(ssl)
            let reason = verify != X509_V_OK ? String(cString: X509_verify_cert_error_string(verify)) : TLSSession.lastError()
            // Every property is set: deinit frees the session and the context.
            throw TCPError("TLS handshake with \(host) failed: \(reason)")
        }
    }

    deinit {
        SSL_shutdown(ssl)
        SSL_free(ssl)
        SSL_CTX_free(ctx)
    }

    static func lastError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "no detail" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(cString: buffer)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let n = SSL_write(ssl, bytes.baseAddress, Int32(bytes.count))
        if n > 0 { return Int(n) }
        throw TCPError(error(n, "write"), timeout: isTimeout(n))
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = SSL_read(ssl, buffer.baseAddress, Int32(buffer.count))
        if n > 0 { return Int(n) }
        if SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN { return 0 }
        throw TCPError(error(n, "read"), timeout: isTimeout(n))
    }

    private func isTimeout(_ n: Int32) -> Bool {
        let e = SSL_get_error(ssl, n)
        return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_SYSCALL) && (errno == EAGAIN || errno == EWOULDBLOCK)
    }

    private func error(_ n: Int32, _ op: String) -> String {
        if isTimeout(n) { return "TLS \(op) timed out" }
        return "TLS \(op) failed: \(TLSSession.lastError())"
    }
}
