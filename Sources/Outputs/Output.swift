import Failures
import Foundation
import Stages

#if canImport(Glibc)
import Glibc
#endif

/// One event for the outputs: its id (for idempotent receivers) and its JSON bytes (no newline).
public struct OutputEvent: Sendable, Equatable {
    public var id: String
    public var json: [UInt8]
    /// The event's time (RFC 3339) when the JSON does not begin with `@timestamp` (an OCSF event).
    public var timestamp: [UInt8]?
    /// The log file the event came from (`s3://bucket/key`), for receivers that keep it beside the
    /// event (Splunk's `source`). Shared by every event of one object.
    public var source: String?
    public init(id: String, json: [UInt8], timestamp: [UInt8]? = nil, source: String? = nil) {
        self.id = id
        self.json = json
        self.timestamp = timestamp
        self.source = source
    }

    /// The event's time (``timestamp``, else the leading `@timestamp`) in milliseconds since the
    /// epoch (Stages' RFC 3339 reading); nil when it has none.
    var epochMillis: Int64? {
        if let timestamp { return timestamp.withUnsafeBytes { RFC3339.millis($0) } }
        let prefix = Array("{\"@timestamp\":\"".utf8)
        guard json.count > prefix.count, json[..<prefix.count].elementsEqual(prefix) else { return nil }
        let rest = json[prefix.count...]
        guard let end = rest.firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return rest[..<end].withUnsafeBytes { RFC3339.millis($0) }
    }

    /// `YYYY.MM.dd` of the event's time: ``timestamp``, else the `@timestamp` the event starts with
    /// (`{"@timestamp":"YYYY-MM-DD…`).
    var datePattern: (year: Substring, month: Substring, day: Substring)? {
        let s: String
        if let timestamp, timestamp.count >= 10 {
            s = String(decoding: timestamp[..<10], as: UTF8.self)
        } else {
            let prefix = Array("{\"@timestamp\":\"".utf8)
            guard json.count >= prefix.count + 10, Array(json[..<prefix.count]) == prefix else { return nil }
            s = String(decoding: json[prefix.count..<prefix.count + 10], as: UTF8.self)
        }
        let parts = s.split(separator: "-")
        guard parts.count == 3 else { return nil }
        return (parts[0], parts[1], parts[2])
    }
}

/// What an output did with a batch.
public struct DeliveryReport: Sendable, Equatable {
    /// How many leading events of the batch the receiver has (or were dead-lettered).
    public var handled: Int
    /// Events (indices into the batch, below `handled`) that failed permanently, with the reason.
    public var deadLetters: [DeadLetter]

    public init(handled: Int, deadLetters: [DeadLetter] = []) {
        self.handled = handled
        self.deadLetters = deadLetters
    }
}

public struct DeadLetter: Sendable, Equatable {
    public var index: Int
    public var reason: String
    public init(index: Int, reason: String) {
        self.index = index
        self.reason = reason
    }
}

/// A failure with nothing delivered this time; the caller backs off and sends again from the first
/// unacknowledged event.
public struct OutputError: Error, Sendable, CustomStringConvertible, ClassifiedError {
    /// Why the delivery failed. Open, so new codes can be added without breaking callers.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// The receiver cannot be reached or cannot take the batch now (connection refused or
        /// dropped, a timeout, 429, 5xx, a full disk): sent again after a backoff.
        public static let unavailable = Code(rawValue: "unavailable")
        /// The receiver refuses this sender (authentication, a command it rejects): no retry mends it.
        public static let refused = Code(rawValue: "refused")
        /// The output's own settings cannot work (no hosts, a bad datatype or path).
        public static let configuration = Code(rawValue: "configuration")
    }

    public var output: String
    public var code: Code
    public var message: String
    public var retryable: Bool { code == .unavailable }
    /// `message` loses the userinfo of any URL in it (``redactingUserinfo(_:)``): an output's error is
    /// logged, printed and recorded in the journal for `journal status`, and hosts may carry a password.
    public init(output: String, code: Code = .unavailable, message: String) {
        self.output = output
        self.code = code
        self.message = redactingUserinfo(message)
    }
    public init(output: String, message: String, retryable: Bool) {
        self.init(output: output, code: retryable ? .unavailable : .refused, message: message)
    }
    public var description: String { "output \(output): \(message)" }
    /// Unavailable receivers are retried; refusals and settings that cannot work end the run.
    public var disposition: Disposition { retryable ? .retry : .fatal }
}

/// The contract every output keeps: take an ordered batch, and say how many leading events the
/// receiver durably has (`handled`, counting permanent failures reported in `deadLetters`).
/// Acknowledged means the receiver has it: an fsync for the file, a server's reply for redis and
/// Elasticsearch, a Lumberjack ACK for Logstash. A report with `handled < batch.count` is partial
/// progress: the caller sends the rest again. No progress at all is a thrown ``OutputError``.
public protocol Output: AnyObject, Sendable {
    /// The name its cursor is kept under in the journal (e.g. `file`, `elasticsearch`).
    var name: String { get }
    /// The largest batch it takes (`bulk_max_size`).
    var maxBatch: Int { get }
    func deliver(_ batch: [OutputEvent]) async throws -> DeliveryReport
    /// Releases connections and files.
    func close() async
}

/// Runs blocking work (sockets, fsync) on a dedicated thread, never on Swift's cooperative pool.
final class BlockingLane: @unchecked Sendable {
    private let queue: DispatchQueue
    init(_ label: String) { queue = DispatchQueue(label: label) }

    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            queue.async { cont.resume(with: Result { try body() }) }
        }
    }
}

/// The dead-letter file: events an output refused permanently, one JSON line each with the reason;
/// fsynced before the events count as handled. Files are 0600.
public final class DeadLetterFile: @unchecked Sendable {
    public let path: String
    private let lock = NSLock()

    public init(path: String) { self.path = path }

    public func write(output: String, events: [(OutputEvent, String)]) throws {
        guard !events.isEmpty else { return }
        try lock.withLock {
            let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw OutputError(output: output, message: "cannot open dead-letter file '\(path)': \(String(cString: strerror(errno)))", retryable: true) }
            defer { close(fd) }
            let end = try cutTornTail(fd, path: path, output: output)
            var buffer: [UInt8] = []
            let stamp = ISO8601DateFormatter().string(from: Date())
            for (event, reason) in events {
                let head = try JSONSerialization.data(withJSONObject: ["output": output, "id": event.id, "reason": reason, "at": stamp], options: [.sortedKeys])
                buffer += Array(head.dropLast())  // reopen the object to append the event verbatim
                buffer += Array(",\"event\":".utf8) + event.json + [UInt8(ascii: "}"), 0x0a]
            }
            do {
                try writeAll(fd, buffer, output: output, path: path)
                guard fsync(fd) == 0 else { throw OutputError(output: output, message: "fsync of '\(path)' failed: \(String(cString: strerror(errno)))") }
            } catch {
                _ = ftruncate(fd, off_t(end))  // a torn tail left despite this is cut at the next open
                throw error
            }
        }
    }
}

/// Cuts an append-only NDJSON file back to its last whole line and returns its new size: a crash (or a
/// failed write) may have left part of an unacknowledged batch after it. `fd` must be open for reading.
func cutTornTail(_ fd: Int32, path: String, output: String) throws -> Int {
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw OutputError(output: output, message: "cannot stat '\(path)': \(String(cString: strerror(errno)))") }
    let size = Int(st.st_size)
    var end = size
    var chunk = [UInt8](repeating: 0, count: 4096)
    search: while end > 0 {
        let start = max(0, end - chunk.count)
        let n = pread(fd, &chunk, end - start, off_t(start))
        guard n == end - start else {
            let reason = n < 0 ? String(cString: strerror(errno)) : "the file shrank while being read"
            throw OutputError(output: output, message: "cannot read back the tail of '\(path)': \(reason)")
        }
        for i in stride(from: n - 1, through: 0, by: -1) where chunk[i] == 0x0a {
            end = start + i + 1
            break search
        }
        end = start
    }
    if end != size {
        guard ftruncate(fd, off_t(end)) == 0, fsync(fd) == 0 else {
            throw OutputError(output: output, message: "cannot cut the torn tail of '\(path)': \(String(cString: strerror(errno)))")
        }
    }
    return end
}

func writeAll(_ fd: Int32, _ bytes: [UInt8], output: String, path: String) throws {
    var offset = 0
    try bytes.withUnsafeBytes { b in
        while offset < b.count {
            let n = Glibc.write(fd, b.baseAddress! + offset, b.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw OutputError(output: output, message: "write to '\(path)' failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }
}
