import Foundation

/// Redis over RESP: `RPUSH key event…` (datatype `list`, pipelined) or `PUBLISH channel event`
/// (`channel`), with `AUTH` and `SELECT` on connect, failover over `hosts`, reconnect after errors.
/// A reply from the server is the acknowledgement.
public final class RedisOutput: Output, @unchecked Sendable {
    public struct Configuration: Sendable {
        public var hosts: [String] = ["127.0.0.1:6379"]
        public var key: String = "cloudtrailbeat"
        public var datatype: String = "list"
        public var password: String?
        public var db: Int = 0
        public var timeout: Double = 5
        public var maxBatch: Int = 2048
        /// TLS (an `ssl` section not disabled); nil for plain TCP.
        public var tls: TLSSettings?
        public init() {}
    }

    public let name = "redis"
    public let configuration: Configuration
    public var maxBatch: Int { configuration.maxBatch }
    private let lane = BlockingLane("cloudtrailbeat.output.redis")
    private var connection: TCPConnection?
    private var hostIndex = 0
    /// ``Configuration/tls`` loaded (its CAs, client certificate and key), once.
    let tls: TLSContext?

    public init(_ configuration: Configuration) throws {
        guard ["list", "channel"].contains(configuration.datatype) else {
            throw OutputError(output: "redis", code: .configuration, message: "datatype must be 'list' or 'channel', not '\(configuration.datatype)'")
        }
        guard !configuration.hosts.isEmpty else { throw OutputError(output: "redis", code: .configuration, message: "no hosts") }
        self.configuration = configuration
        tls = try configuration.tls.map { try TLSContext($0, output: "redis") }
    }

    static func command(_ args: [[UInt8]]) -> [UInt8] {
        var out = Array("*\(args.count)\r\n".utf8)
        for a in args {
            out += Array("$\(a.count)\r\n".utf8)
            out += a
            out += [0x0d, 0x0a]
        }
        return out
    }

    /// The largest bulk reply read (and discarded): the commands sent answer with integers or
    /// simple strings, so anything bigger is a confused or hostile peer.
    static let maxBulkReply = 1 << 20

    /// Reads one reply; returns an error reply's text, or nil for success. Nested arrays deeper than
    /// a few levels, negative or oversized lengths are protocol errors.
    static func reply(_ c: some ReplyReader, depth: Int = 0) throws -> String? {
        let line = try c.readLine()
        guard let type = line.first else { throw TCPError("protocol error: an empty reply") }
        let rest = String(decoding: line.dropFirst(), as: UTF8.self)
        switch type {
        case UInt8(ascii: "+"), UInt8(ascii: ":"): return nil
        case UInt8(ascii: "-"): return rest
        case UInt8(ascii: "$"):
            guard let n = Int(rest), n >= -1, n <= maxBulkReply else { throw TCPError("protocol error: bulk length '\(rest.prefix(40))'") }
            if n >= 0 {
                let bulk = try c.read(n + 2)
                guard bulk[n] == 0x0d, bulk[n + 1] == 0x0a else { throw TCPError("protocol error: a bulk reply not ended by CRLF") }
            }
            return nil
        case UInt8(ascii: "*"):
            guard let n = Int(rest), n >= -1, n <= 1 << 20, depth < 8 else { throw TCPError("protocol error: array reply '\(rest.prefix(40))' at depth \(depth)") }
            var firstError: String?
            for _ in 0..<max(0, n) {
                // Every element is read, so the next reply starts where it should.
                if let e = try reply(c, depth: depth + 1), firstError == nil { firstError = e }
            }
            return firstError
        default: throw TCPError("protocol error: unexpected reply type \(type)")
        }
    }

    private func connect() throws -> TCPConnection {
        if let c = connection { return c }
        let (c, index): (TCPConnection, Int)
        do {
            (c, index) = try connectFirst(configuration.hosts, from: hostIndex, defaultPort: 6379, timeout: configuration.timeout, tls: tls)
        } catch let e as TCPError {
            throw OutputError(output: name, message: e.message)
        }
        var setup: [[[UInt8]]] = []
        if let password = configuration.password { setup.append([Array("AUTH".utf8), Array(password.utf8)]) }
        if configuration.db != 0 { setup.append([Array("SELECT".utf8), Array(String(configuration.db).utf8)]) }
        do {
            for cmd in setup {
                try c.write(RedisOutput.command(cmd))
                if let e = try RedisOutput.reply(c) {
                    throw OutputError(output: name, code: .refused, message: "\(String(decoding: cmd[0], as: UTF8.self)) refused by \(c.peer): \(e)")
                }
            }
        } catch let e as TCPError {
            throw OutputError(output: name, message: e.message)
        }
        hostIndex = index
        connection = c
        return c
    }

    public func deliver(_ batch: [OutputEvent]) async throws -> DeliveryReport {
        guard !batch.isEmpty else { return DeliveryReport(handled: 0) }
        return try await lane.run { [self] in
            let c = try connect()
            let key = Array(configuration.key.utf8)
            // Pipelined commands, each covering a slice of the batch: RPUSH of up to 256 events (list),
            // or one PUBLISH per event (channel). Each reply acknowledges its slice.
            var commands: [(range: Range<Int>, bytes: [UInt8])] = []
            if configuration.datatype == "list" {
                for start in stride(from: 0, to: batch.count, by: 256) {
                    let r = start..<min(batch.count, start + 256)
                    commands.append((r, RedisOutput.command([Array("RPUSH".utf8), key] + batch[r].map(\.json))))
                }
            } else {
                for (i, e) in batch.enumerated() { commands.append((i..<i + 1, RedisOutput.command([Array("PUBLISH".utf8), key, e.json]))) }
            }
            var handled = 0
            do {
                try c.write(commands.flatMap(\.bytes))
                for command in commands {
                    if let e = try RedisOutput.reply(c) {
                        connection = nil
                        if handled > 0 { return DeliveryReport(handled: handled) }
                        throw OutputError(output: name, message: "\(configuration.datatype == "list" ? "RPUSH" : "PUBLISH") refused: \(e)")
                    }
                    handled = command.range.upperBound
                }
                return DeliveryReport(handled: handled)
            } catch let e as TCPError {
                connection = nil
                hostIndex += 1
                if handled > 0 { return DeliveryReport(handled: handled) }
                throw OutputError(output: name, message: e.message)
            }
        }
    }

    public func close() async {
        _ = try? await lane.run { [self] in connection = nil }
    }
}
