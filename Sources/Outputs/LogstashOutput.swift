import CZlib
import Foundation

/// Logstash over Lumberjack v2 (the beats protocol): a window frame `W(n)`, then n JSON frames `J`
/// numbered 1…n (or one zlib-compressed `C` frame wrapping them); the server's cumulative `A(seq)`
/// acknowledges events 1…seq. `A(0)` is a keepalive: it resets the read timeout and is not progress.
/// On a dropped connection, only events the server acknowledged count; the rest are sent again.
public final class LogstashOutput: Output, @unchecked Sendable {
    public struct Configuration: Sendable {
        public var hosts: [String] = ["127.0.0.1:5044"]
        /// Spread windows over all hosts (true) or use one until it fails (false).
        public var loadbalance = false
        /// Events per window.
        public var bulkMaxSize = 2048
        /// zlib level of C frames; 0 sends plain J frames.
        public var compressionLevel: Int32 = 3
        /// Seconds without any ACK (keepalives included) before the connection is dropped.
        public var timeout: Double = 30
        /// TLS (an `ssl` section not disabled); nil for plain TCP.
        public var tls: TLSSettings?
        public init() {}
    }

    public let name = "logstash"
    public let configuration: Configuration
    public var maxBatch: Int { configuration.bulkMaxSize }
    private let lane = BlockingLane("cloudtrailbeat.output.logstash")
    private var connection: TCPConnection?
    private var hostIndex = 0
    /// ``Configuration/tls`` loaded (its CAs, client certificate and key), once.
    let tls: TLSContext?

    public init(_ configuration: Configuration) throws {
        guard !configuration.hosts.isEmpty else { throw OutputError(output: "logstash", code: .configuration, message: "no hosts") }
        guard (0...9).contains(configuration.compressionLevel) else {
            throw OutputError(output: "logstash", code: .configuration, message: "compression_level must be 0 to 9")
        }
        self.configuration = configuration
        tls = try configuration.tls.map { try TLSContext($0, output: "logstash") }
    }

    static func u32(_ v: Int) -> [UInt8] {
        [UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
    }

    /// The bytes of one window: W(n) followed by J frames, or by one C frame wrapping them.
    static func window(_ batch: [OutputEvent], level: Int32) -> [UInt8] {
        var frames: [UInt8] = []
        for (i, e) in batch.enumerated() {
            frames += [0x32, 0x4a] + u32(i + 1) + u32(e.json.count) + e.json
        }
        var out: [UInt8] = [0x32, 0x57] + u32(batch.count)
        if level == 0 { return out + frames }
        let compressed = Deflate.zlib(frames, level: level)
        out += [0x32, 0x43] + u32(compressed.count) + compressed
        return out
    }

    /// Reads ACK frames (`2A` + 32-bit sequence) until the whole window of `window` events is
    /// acknowledged; `progress` hears each new highest sequence (so a broken connection still reports
    /// what was acknowledged). Sequence 0 is a keepalive; a sequence beyond the window, going
    /// backwards or any other frame is a protocol error.
    static func awaitAcks(_ c: some ReplyReader, window: Int, progress: (Int) -> Void = { _ in }) throws -> Int {
        var acked = 0
        while acked < window {
            let frame = try c.read(6)
            guard frame[0] == 0x32, frame[1] == 0x41 else {
                throw TCPError("protocol error: unexpected frame \(frame[0]) \(frame[1])")
            }
            let seq = Int(frame[2]) << 24 | Int(frame[3]) << 16 | Int(frame[4]) << 8 | Int(frame[5])
            if seq == 0 { continue }  // keepalive: the server is still working
            guard seq <= window else { throw TCPError("protocol error: ACK \(seq) beyond the window of \(window)") }
            if seq > acked {
                acked = seq
                progress(acked)
            }
        }
        return acked
    }

    private func connect() throws -> TCPConnection {
        if let c = connection, !configuration.loadbalance { return c }
        if configuration.loadbalance { connection = nil }
        do {
            let (c, index) = try connectFirst(configuration.hosts, from: hostIndex, defaultPort: 5044, timeout: configuration.timeout, tls: tls)
            hostIndex = configuration.loadbalance ? index + 1 : index
            connection = c
            return c
        } catch let e as TCPError {
            throw OutputError(output: name, message: e.message)
        }
    }

    public func deliver(_ batch: [OutputEvent]) async throws -> DeliveryReport {
        guard !batch.isEmpty else { return DeliveryReport(handled: 0) }
        return try await lane.run { [self] in
            let c = try connect()
            var acked = 0
            do {
                try c.write(LogstashOutput.window(batch, level: configuration.compressionLevel))
                acked = try LogstashOutput.awaitAcks(c, window: batch.count) { acked = $0 }
                if configuration.loadbalance { connection = nil }
                return DeliveryReport(handled: acked)
            } catch let e as TCPError {
                connection = nil
                if !configuration.loadbalance { hostIndex += 1 }
                if acked > 0 { return DeliveryReport(handled: acked) }
                throw OutputError(output: name, message: e.message)
            }
        }
    }

    public func close() async {
        _ = try? await lane.run { [self] in connection = nil }
    }
}
