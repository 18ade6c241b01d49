// Splunk's HTTP Event Collector (HEC), with indexer acknowledgement.
//
// HEC answers 200 to a batch as soon as it has parsed it, before the batch enters Splunk's indexing
// pipeline; only indexer acknowledgement says it was indexed. The output maps that onto the engine's
// contract (a delivery is handled when the receiver durably has it):
//
// Invariants:
// 1. With `use_ack` (the default), a batch is reported handled only once `/services/collector/ack`
//    has answered `true` for its `ackId`. A 200 from `/services/collector/event` alone never moves a
//    journal cursor, so the SQS message is deleted only after Splunk indexed every record.
// 2. One ack tracker per output and channel: every outstanding `ackId` of every concurrent delivery
//    goes into one ack query per poll, so ack traffic does not grow with `worker`, and a delivery
//    waiting for its ack holds no thread (it is a suspended continuation the poller resumes).
// 3. A batch whose ack has not come within `ack_timeout`, or whose channel Splunk no longer knows (a
//    restart), fails with a retryable error and the pump sends it again: at-least-once. HEC has no
//    document id, so such a re-send duplicates the batch if Splunk had indexed it after all.
// 4. Every waiter is resumed exactly once: by its ack, its deadline, a lost channel, its ackId handed
//    out again (a restarted channel), its task's cancellation, or `close()`; the tracker's lock makes
//    those mutually exclusive (a waiter is resumed only by whoever removed it from the table).

import Failures
import Foundation
import HTTP
import Synchronization

/// Splunk HEC: batches of events to `/services/collector/event` with `Authorization: Splunk <token>`,
/// each wrapped in HEC's envelope (`time` from the event's time, `sourcetype`, `source`, `index`,
/// `host`), optionally gzip'd; with indexer acknowledgement through a request channel.
///
/// HEC's answers (Splunk's REST reference, "Troubleshoot HTTP Event Collector"): code 0 is success;
/// busy or unhealthy (HTTP 503, codes 9, 18–20), internal errors (500, code 8) and 429 are retried;
/// a disabled token (403, code 1) is retried too, since an administrator re-enables it without any
/// change here; a missing, malformed or unknown token (401/403, codes 2–4), an index the token may
/// not write (code 7), a channel problem (10, 11) and disabled acknowledgement (14) refuse the run
/// with the reason; an event HEC cannot parse (codes 5, 6, 12, 13, 15, or 413) is narrowed down by
/// halving the batch and goes to the dead-letter file alone.
public final class SplunkHECOutput: Output {
    public struct Configuration: Sendable {
        /// The HEC endpoint's base (`https://splunk.example.com:8088`); `/services/collector/event` is
        /// appended unless the URL already names a collector path.
        public var url: String = "https://127.0.0.1:8088"
        public var token: String = ""
        /// Nil: the token's default index.
        public var index: String?
        public var sourcetype: String? = "aws:cloudtrail"
        /// Nil: each event's log file (`s3://bucket/key`), as Splunk's AWS add-on sets it.
        public var source: String?
        /// Nil: HEC's own default.
        public var host: String?
        public var bulkMaxSize = 1000
        public var bulkMaxBytes = 1 << 20
        /// gzip level of request bodies (1–9; 0 sends them as they are).
        public var compressionLevel = 0
        public var useAck = true
        /// How long a batch may wait for its acknowledgement before it is sent again.
        public var ackTimeout: Double = 300
        /// The first wait between ack queries; it doubles (up to 10 s or this, whichever is more)
        /// while no ack comes, and starts again when one does.
        public var ackPollInterval: Double = 1
        /// The request channel (a GUID); nil: a new one each start.
        public var channel: String?
        /// TLS settings (an `ssl` section not disabled): a URL without a scheme is `https://` then, and
        /// an `http://` one is refused. Nil: as the URL's scheme says, with the system's CAs.
        public var tls: TLSSettings?
        public var timeout: Double = 60
        public init() {}
    }

    public let name = "splunk"
    public let configuration: Configuration
    public var maxBatch: Int { configuration.bulkMaxSize }
    /// Deliveries waiting for their indexer acknowledgement.
    public var outstandingAcks: Int { tracker.outstanding }
    /// The channel every request of this output carries.
    public let channel: String
    let http: HTTPClient
    let endpoint: String
    let ackEndpoint: String
    let healthEndpoint: String
    private let tracker: HECAckTracker

    public init(_ configuration: Configuration) throws {
        guard !configuration.token.isEmpty else { throw OutputError(output: "splunk", code: .configuration, message: "no token") }
        var configuration = configuration
        guard let withScheme = TLSSettings.url(configuration.url, tls: configuration.tls != nil) else {
            throw OutputError(output: "splunk", code: .configuration, message: "'\(configuration.url)' is plain HTTP, yet TLS is configured (ssl): write https:// or no scheme")
        }
        configuration.url = withScheme
        guard let url = URL(string: configuration.url), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw OutputError(output: "splunk", code: .configuration, message: "'\(configuration.url)' is not an http(s) URL")
        }
        self.configuration = configuration
        channel = configuration.channel ?? UUID().uuidString.lowercased()
        let given = configuration.url.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let collector = given.range(of: "/services/collector")
        let base = collector.map { String(given[..<$0.lowerBound]) } ?? given
        endpoint = collector != nil ? given : base + "/services/collector/event"
        ackEndpoint = base + "/services/collector/ack"
        healthEndpoint = base + "/services/collector/health"
        var http = HTTPClient.Configuration()
        try http.apply(configuration.tls, output: "splunk")
        http.maxConcurrent = 8
        self.http = HTTPClient(configuration: http)
        tracker = HECAckTracker(pollInterval: configuration.ackPollInterval)
    }

    /// One parsed HEC answer: `{"text": …, "code": N, "ackId": N}`.
    struct Answer {
        var status: Int
        var code: Int?
        var text: String
        var ackID: Int?
        var acks: [String: Bool]?

        init(_ r: HTTPResponse) {
            status = r.status
            let json = (try? JSONSerialization.jsonObject(with: Data(r.body))) as? [String: Any] ?? [:]
            code = json["code"] as? Int
            text = json["text"] as? String ?? String(decoding: r.body.prefix(200), as: UTF8.self)
            ackID = json["ackId"] as? Int
            acks = json["acks"] as? [String: Bool]
        }

        var summary: String { "HTTP \(status)\(code.map { ", HEC code \($0)" } ?? ""): \(text)" }
    }

    func headers(contentType: Bool) -> [(String, String)] {
        var h = [("Authorization", "Splunk \(configuration.token)"), ("X-Splunk-Request-Channel", channel)]
        if contentType { h.append(("Content-Type", "application/json")) }
        return h
    }

    public func deliver(_ batch: [OutputEvent]) async throws -> DeliveryReport {
        guard !batch.isEmpty else { return DeliveryReport(handled: 0) }
        var bodies: [[UInt8]] = []
        var bytes = 0
        for e in batch {
            let envelope = envelope(e)
            if !bodies.isEmpty && bytes + envelope.count > configuration.bulkMaxBytes { break }
            bytes += envelope.count
            bodies.append(envelope)
        }
        return try await send(bodies)
    }

    /// HEC's envelope around one event: `time` (epoch seconds with milliseconds), the metadata, and
    /// the event itself as JSON.
    func envelope(_ e: OutputEvent) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(e.json.count + 200)
        out += Array("{".utf8)
        if let ms = e.epochMillis {
            let sign = ms < 0 ? "-" : ""
            let a = abs(ms)
            out += Array("\"time\":\(sign)\(a / 1000).\(String(format: "%03d", Int(a % 1000))),".utf8)
        }
        func field(_ name: String, _ value: String?) {
            guard let value else { return }
            out += Array("\"\(name)\":\"\(ElasticsearchOutput.escape(value))\",".utf8)
        }
        field("host", configuration.host)
        field("source", configuration.source ?? e.source)
        field("sourcetype", configuration.sourcetype)
        field("index", configuration.index)
        out += Array("\"event\":".utf8)
        out += e.json
        out += Array("}\n".utf8)
        return out
    }

    private func send(_ envelopes: [[UInt8]]) async throws -> DeliveryReport {
        var body: [UInt8] = []
        body.reserveCapacity(envelopes.reduce(0) { $0 + $1.count })
        for e in envelopes { body += e }
        var h = headers(contentType: true)
        if configuration.compressionLevel > 0 {
            body = Deflate.gzip(body, level: Int32(configuration.compressionLevel))
            h.append(("Content-Encoding", "gzip"))
        }
        let response: HTTPResponse
        do {
            response = try await http.send(HTTPRequest(method: "POST", url: endpoint, headers: h, body: body), timeout: configuration.timeout)
        } catch let e as HTTPTransportError {
            throw OutputError(output: name, message: "\(endpoint): \(e.message)")
        }
        let answer = Answer(response)
        switch (answer.status, answer.code) {
        case (200..<300, _):
            guard configuration.useAck else { return DeliveryReport(handled: envelopes.count) }
            guard let id = answer.ackID else {
                throw OutputError(
                    output: name, code: .refused,
                    message: "use_ack is on but HEC answered without an ackId (\(answer.summary)): enable indexer acknowledgement on the token, or set output.splunk.use_ack: false")
            }
            try await tracker.wait(for: id, timeout: configuration.ackTimeout) { [self] ids in try await queryAcks(ids) }
            return DeliveryReport(handled: envelopes.count)
        case (413, _), (400, 5), (400, 6), (400, 12), (400, 13), (400, 15):
            // An event HEC cannot take: narrow it down (the first half goes now; the caller sends the
            // rest next), and dead-letter it alone.
            guard envelopes.count > 1 else {
                return DeliveryReport(handled: 1, deadLetters: [DeadLetter(index: 0, reason: answer.summary)])
            }
            return try await send(Array(envelopes[..<(envelopes.count / 2)]))
        case (403, 1):
            throw OutputError(output: name, message: "the token is disabled in Splunk (\(answer.summary)); waiting for it to be enabled again")
        case (_, 7):
            throw OutputError(
                output: name, code: .refused,
                message: "the token may not write to index '\(configuration.index ?? "(its default)")' (\(answer.summary)): allow the index on the token, or change output.splunk.index")
        case (401, _), (403, _):
            throw OutputError(output: name, code: .refused, message: "the token is refused (\(answer.summary)): check output.splunk.token")
        case (_, 10), (_, 11), (_, 14):
            throw OutputError(output: name, code: .refused, message: "\(endpoint) refused the request channel or acknowledgement (\(answer.summary))")
        case (429, _), (500..., _):
            throw OutputError(output: name, message: "\(endpoint) is busy or failing (\(answer.summary)); sent again after a backoff")
        case (404, _):
            throw OutputError(output: name, code: .configuration, message: "no HTTP Event Collector at \(endpoint) (\(answer.summary)): check output.splunk.url")
        default:
            throw OutputError(output: name, message: "\(endpoint) answered \(answer.summary)")
        }
    }

    /// One ack query for `ids`: which are indexed. A channel Splunk no longer knows is
    /// ``HECAckTracker/Failure/channelLost``; anything else that is not an answer is retried.
    func queryAcks(_ ids: [Int]) async throws -> Set<Int> {
        let body = Array("{\"acks\":[\(ids.map(String.init).joined(separator: ","))]}".utf8)
        let r: HTTPResponse
        do {
            r = try await http.send(HTTPRequest(method: "POST", url: ackEndpoint, headers: headers(contentType: true), body: body), timeout: configuration.timeout)
        } catch let e as HTTPTransportError {
            throw HECAckTracker.Failure.transient("\(ackEndpoint): \(e.message)")
        }
        return try Self.acknowledged(Answer(r), queried: ids, endpoint: ackEndpoint)
    }

    /// What an ack query's answer says: the queried ids that are indexed (an id the query did not ask
    /// for is ignored), or why there is no answer (a lost channel, or something to ask again).
    static func acknowledged(_ answer: Answer, queried: [Int], endpoint: String) throws -> Set<Int> {
        if (200..<300).contains(answer.status), let acks = answer.acks {
            return Set(acks.compactMap { $0.value ? Int($0.key) : nil }).intersection(queried)
        }
        if answer.code == 10 || answer.code == 11 { throw HECAckTracker.Failure.channelLost(answer.summary) }
        throw HECAckTracker.Failure.transient("\(endpoint) answered \(answer.summary)")
    }

    public func close() async {
        tracker.shutdown()
        http.shutdown()
    }
}

/// The ack tracker of one HEC channel: deliveries wait in it for their `ackId`; one poller task
/// queries every outstanding id at once, with backoff, while anyone waits (invariants 2 and 4 at the
/// top of this file).
final class HECAckTracker: Sendable {
    enum Failure: Error, CustomStringConvertible {
        case channelLost(String)
        case transient(String)
        var description: String {
            switch self {
            case .channelLost(let s): "the request channel is gone (\(redactingUserinfo(s)))"
            case .transient(let s): redactingUserinfo(s)
            }
        }
    }

    private struct Waiter {
        var continuation: CheckedContinuation<Void, any Error>
        var deadline: ContinuousClock.Instant
        /// Which wait this is: an `ackId` can come back (see ``wait(for:timeout:query:)``).
        var token: UInt64
    }
    private struct State {
        var waiters: [Int: Waiter] = [:]
        var nextToken: UInt64 = 0
        var polling = false
        var closed = false
        var query: (@Sendable ([Int]) async throws -> Set<Int>)?
    }
    private let state = Mutex(State())
    let pollInterval: Double

    init(pollInterval: Double) { self.pollInterval = pollInterval }

    /// Suspends until `id` is acknowledged; throws a retryable ``OutputError`` when it is not within
    /// `timeout` or the channel is lost, `CancellationError` when the task is cancelled.
    ///
    /// An `ackId` that is already waited for means HEC started the channel over (a restart numbers
    /// its ackIds from 0 again): the earlier batch's ack can no longer be told apart, so that wait
    /// fails at once (its batch is sent again) and this one takes the id.
    func wait(for id: Int, timeout: Double, query: @escaping @Sendable ([Int]) async throws -> Set<Int>) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        let token = state.withLock { s in
            defer { s.nextToken += 1 }
            return s.nextToken
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let (start, replaced) = state.withLock { s -> (Bool, Waiter?) in
                    if Task.isCancelled || s.closed {
                        c.resume(throwing: CancellationError())
                        return (false, nil)
                    }
                    let replaced = s.waiters.updateValue(Waiter(continuation: c, deadline: deadline, token: token), forKey: id)
                    s.query = query
                    defer { s.polling = true }
                    return (!s.polling, replaced)
                }
                replaced?.continuation.resume(
                    throwing: OutputError(output: "splunk", message: "ackId \(id) was handed out again: HEC started the channel over (a restart?); the batch is sent again"))
                if start { Task { await self.poll() } }
            }
        } onCancel: {
            state.withLock { s in s.waiters[id]?.token == token ? s.waiters.removeValue(forKey: id) : nil }?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Fails every waiter and stops polling.
    func shutdown() {
        let waiters = state.withLock { s in
            s.closed = true
            defer { s.waiters = [:] }
            return s.waiters
        }
        for w in waiters.values { w.continuation.resume(throwing: CancellationError()) }
    }

    /// How many deliveries wait for their acknowledgement.
    var outstanding: Int { state.withLock { $0.waiters.count } }

    private func poll() async {
        var interval = pollInterval
        while true {
            try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
            let (ids, query) = state.withLock { s in (s.waiters.keys.sorted(), s.query) }
            var acked: Set<Int> = []
            var lost: String?
            if let query, !ids.isEmpty {
                do {
                    acked = try await query(ids)
                } catch Failure.channelLost(let reason) {
                    lost = reason
                } catch {
                    acked = []  // transient: ask again after the backoff
                }
            }
            let now = ContinuousClock.now
            var resumed: [(Waiter, (any Error)?)] = []
            let done = state.withLock { s -> Bool in
                for (id, w) in s.waiters {
                    if acked.contains(id) {
                        resumed.append((w, nil))
                    } else if let lost {
                        resumed.append((w, OutputError(output: "splunk", message: "ackId \(id): the request channel is gone (\(lost)); the batch is sent again")))
                    } else if w.deadline <= now {
                        resumed.append((w, OutputError(output: "splunk", message: "ackId \(id) was not acknowledged within ack_timeout; the batch is sent again")))
                    } else {
                        continue
                    }
                    s.waiters.removeValue(forKey: id)
                }
                if s.waiters.isEmpty { s.polling = false }
                return !s.polling
            }
            for (w, error) in resumed {
                if let error { w.continuation.resume(throwing: error) } else { w.continuation.resume() }
            }
            if done { return }
            interval = acked.isEmpty ? min(interval * 2, max(10, pollInterval)) : pollInterval
        }
    }
}
