import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where protocol replies are read from: a connection, or bytes in memory (tests and fuzzing).
protocol ReplyReader: AnyObject {
    /// Exactly `n` bytes.
    func read(_ n: Int) throws -> [UInt8]
    /// One CRLF-terminated line, without its CRLF.
    func readLine() throws -> [UInt8]
}

/// Received bytes not yet consumed, with the framing rules every reply parser shares: lines end with
/// CRLF and are at most ``maxLine`` bytes, so a peer that never ends a line cannot grow memory.
struct Inbox {
    static let maxLine = 64 << 10
    private var bytes: [UInt8] = []
    private var start = 0
    /// Where the search for the next CRLF resumes (bytes before it hold none).
    private var scanned = 0

    var buffered: Int { bytes.count - start }

    mutating func append(_ more: some Collection<UInt8>) {
        if start > 0 && (start == bytes.count || start >= 64 << 10) {
            bytes.removeFirst(start)
            scanned -= start
            start = 0
        }
        bytes += more
    }

    /// The next line without its CRLF, or nil until all of it has arrived.
    mutating func line() throws -> [UInt8]? {
        var i = max(scanned, start)
        while i + 1 < bytes.count {
            if bytes[i] == 0x0d && bytes[i + 1] == 0x0a {
                defer {
                    start = i + 2
                    scanned = start
                }
                return Array(bytes[start..<i])
            }
            i += 1
        }
        scanned = i
        if buffered > Inbox.maxLine { throw TCPError("protocol error: a reply line longer than \(Inbox.maxLine) bytes") }
        return nil
    }

    /// The next `n` bytes, or nil until they have arrived.
    mutating func take(_ n: Int) -> [UInt8]? {
        guard buffered >= n else { return nil }
        defer { start += n }
        return Array(bytes[start..<start + n])
    }
}

/// Replies held in memory: a reader over bytes already received, for tests and fuzz targets.
final class MemoryReplies: ReplyReader {
    private var inbox = Inbox()
    init(_ bytes: some Collection<UInt8>) { inbox.append(bytes) }
    func read(_ n: Int) throws -> [UInt8] {
        guard let b = inbox.take(n) else { throw TCPError("the peer closed the connection") }
        return b
    }
    func readLine() throws -> [UInt8] {
        guard let l = try inbox.line() else { throw TCPError("the peer closed the connection") }
        return l
    }
}

/// A blocking TCP connection with timeouts, used on an output's own lane (never on the cooperative pool).
final class TCPConnection: ReplyReader {
    let fd: Int32
    let peer: String
    private var tls: TLSSession?
    private var inbox = Inbox()

    /// Connects to `host:port` within `timeout` seconds; reads and writes time out after `ioTimeout`.
    init(host: String, port: Int, timeout: Double, ioTimeout: Double, tls: TLSContext? = nil) throws {
        peer = "\(host):\(port)"
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else {
            throw TCPError("cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        var lastError = "no address"
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        var connected: Int32 = -1
        while let ai = cursor {
            let s = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            if s >= 0 {
                TCPConnection.setTimeout(s, SO_SNDTIMEO, timeout)
                if connect(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 {
                    connected = s
                    break
                }
                lastError = String(cString: strerror(errno))
                Glibc.close(s)
            }
            cursor = ai.pointee.ai_next
        }
        guard connected >= 0 else { throw TCPError("cannot connect to \(host):\(port): \(lastError)") }
        fd = connected
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
        TCPConnection.setTimeout(fd, SO_SNDTIMEO, ioTimeout)
        TCPConnection.setTimeout(fd, SO_RCVTIMEO, max(ioTimeout, tls == nil ? 0 : timeout))
        if let tls {
            self.tls = try TLSSession(fd: fd, host: host, context: tls)  // on failure, deinit closes the socket
            TCPConnection.setTimeout(fd, SO_RCVTIMEO, ioTimeout)
        }
    }

    deinit {
        tls = nil
        Glibc.close(fd)
    }

    static func setTimeout(_ fd: Int32, _ option: Int32, _ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        try bytes.withUnsafeBytes { b in
            while offset < b.count {
                if let tls {
                    offset += try tls.write(UnsafeRawBufferPointer(rebasing: b[offset...]))
                    continue
                }
                let n = send(fd, b.baseAddress! + offset, b.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw TCPError("write to \(peer) failed: \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
    }

    private func fill() throws {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try tls.map { t in try buffer.withUnsafeMutableBytes { try t.read(into: $0) } } ?? recv(fd, &buffer, buffer.count, 0)
            if n > 0 {
                inbox.append(buffer[..<n])
                return
            }
            if n == 0 { throw TCPError("\(peer) closed the connection") }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw TCPError("timed out reading from \(peer)", timeout: true) }
            throw TCPError("read from \(peer) failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Reads exactly `n` bytes.
    func read(_ n: Int) throws -> [UInt8] {
        while true {
            if let b = inbox.take(n) { return b }
            try fill()
        }
    }

    /// Reads up to and excluding CRLF.
    func readLine() throws -> [UInt8] {
        while true {
            if let l = try inbox.line() { return l }
            try fill()
        }
    }
}

struct TCPError: Error, CustomStringConvertible {
    var message: String
    var timeout = false
    init(_ message: String, timeout: Bool = false) {
        self.message = message
        self.timeout = timeout
    }
    var description: String { message }
}

/// `host[:port]` with a default port; an IPv6 address is written in brackets (`[::1]:6379`).
func splitHost(_ s: String, defaultPort: Int) -> (String, Int) {
    var text = s
    if let r = text.range(of: "://") { text = String(text[r.upperBound...]) }
    if let slash = text.firstIndex(of: "/") { text = String(text[..<slash]) }
    var port = defaultPort
    if let colon = text.lastIndex(of: ":"), !text[colon...].contains("]"), let p = Int(text[text.index(after: colon)...]) {
        port = p
        text = String(text[..<colon])
    }
    if text.hasPrefix("[") && text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
    return (text, port)
}

/// Connects to the first of `hosts` that answers, trying them in turn from index `start`; returns the
/// connection and the index of its host. The error lists why each host failed.
func connectFirst(_ hosts: [String], from start: Int, defaultPort: Int, timeout: Double, tls: TLSContext?) throws -> (TCPConnection, Int) {
    var errors: [String] = []
    for attempt in 0..<hosts.count {
        let index = (start + attempt) % hosts.count
        let (host, port) = splitHost(hosts[index], defaultPort: defaultPort)
        do {
            return (try TCPConnection(host: host, port: port, timeout: timeout, ioTimeout: timeout, tls: tls), index)
        } catch {
            errors.append("\(error)")
        }
    }
    throw TCPError(errors.joined(separator: "; "))
}
