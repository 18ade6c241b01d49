import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A certificate authority made for one test with the `openssl` command (P-256 keys, valid one day),
/// in a directory of its own: it issues server and client certificates with the names asked for.
public final class TestCA: @unchecked Sendable {
    public let dir: TempDir
    /// The CA's certificate (PEM): what `certificate_authorities` names.
    public let certificate: String
    private let key: String
    private let openssl: String
    private var serial = 1

    /// - Parameter name: the CA's common name (two CAs of one test differ by it).
    public init(_ name: String = "cloudtrailbeat test CA") throws {
        guard let openssl = LocalServer.which("openssl") else { throw ServerError(message: "openssl is not installed: apt-get install openssl") }
        self.openssl = openssl
        dir = TempDir("ca")
        certificate = dir.sub("ca.pem")
        key = dir.sub("ca.key")
        try run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
                 "-subj", "/CN=\(name)", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    }

    /// A certificate and its key, signed by this CA, for the subject alternative names `names`
    /// (`DNS:bad.cafe`, `IP:127.0.0.1`); usable by a server and by a client.
    public func issue(_ file: String, names: [String]) throws -> (certificate: String, key: String) {
        let cert = dir.sub("\(file).pem"), key = dir.sub("\(file).key"), csr = dir.sub("\(file).csr"), ext = dir.sub("\(file).ext")
        try "subjectAltName=\(names.joined(separator: ","))\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n".write(toFile: ext, atomically: true, encoding: .utf8)
        try run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=\(file)"])
        serial += 1
        try run(["x509", "-req", "-in", csr, "-CA", certificate, "-CAkey", self.key, "-set_serial", String(serial), "-days", "1", "-extfile", ext, "-out", cert])
        return (cert, key)
    }

    private func run(_ arguments: [String]) throws {
        let p = try ChildProcess(openssl, arguments, stderrPath: dir.sub("openssl.err"))
        _ = p.readAll()
        let end = p.wait()
        guard end.exited && end.code == 0 else {
            throw ServerError(message: "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \((try? String(contentsOfFile: dir.sub("openssl.err"), encoding: .utf8)) ?? "")")
        }
    }
}
