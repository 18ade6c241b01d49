import CCurl
import Failures
import Foundation

/// An HTTP request as sent (the URL is already percent-encoded).
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// Status and headers of a response (header names lowercased).
public struct HTTPHead: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public init(status: Int, headers: [(String, String)]) {
        self.status = status
        self.headers = headers
    }
    public func header(_ name: String) -> String? {
        let key = name.lowercased()
        return headers.last { $0.0 == key }?.1
    }
}

public struct HTTPResponse: Sendable {
    public var head: HTTPHead
    public var body: [UInt8]
    public init(head: HTTPHead, body: [UInt8]) {
        self.head = head
        self.body = body
    }
    public var status: Int { head.status }
    public func header(_ name: String) -> String? { head.header(name) }
}

/// A transport failure (no HTTP answer): the curl code and its text.
public struct HTTPTransportError: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    public var message: String
    /// The URL without its query string (which may carry signatures) and without a password.
    public var url: String
    public var isTimeout: Bool { code == Int32(CURLE_OPERATION_TIMEDOUT.rawValue) }
    /// `url` is redacted (``HTTPClient/redact(_:)``) and `message` loses any URL's userinfo, whoever
    /// builds the error: it is printed, logged and recorded in the journal.
    public init(code: Int32, message: String, url: String) {
        self.code = code
        self.message = redactingUserinfo(message)
        self.url = HTTPClient.redact(url)
    }
    public var description: String { "\(message) (curl \(code)) for \(url)" }
}

extension HTTPTransportError: ClassifiedError {
    /// No answer came (refused, reset, timed out, TLS failed): the next attempt may get one.
    public var disposition: Disposition { .retry }
}

/// HTTP over libcurl's multi interface: one thread (TransferDriver.swift) runs every transfer of this
/// client at once, up to ``Configuration/maxConcurrent``, over connections kept alive and reused from
/// one cache; Swift tasks await results without blocking the cooperative pool. Streamed bodies reach the
/// consumer through a bounded channel: a slow consumer pauses only its own transfer, which never
/// buffers more than ``Configuration/streamBuffer`` (plus one chunk).
public final class HTTPClient: Sendable {
    public struct Configuration: Sendable {
        /// Seconds to establish a connection.
        public var connectTimeout: Double = 10
        /// Abort a transfer slower than 1 byte/s for this many seconds (idle timeout).
        public var idleTimeout: Int = 60
        /// Total seconds for a buffered request (0: none). Streams have no total limit.
        public var requestTimeout: Double = 120
        /// Verify TLS peers and host names (default on).
        public var verifyTLS: Bool = true
        /// A CA bundle instead of the system's.
        public var caFile: String?
        /// Trusted CAs as PEM held in memory (every `certificate_authorities` file of an output,
        /// concatenated): trusted alone, instead of the system's and of ``caFile``.
        public var caBundle: [UInt8]?
        /// A client certificate (PEM, optionally with its intermediate CAs) and its private key (PEM),
        /// for servers that require one (mutual TLS).
        public var clientCertificate: [UInt8]?
        public var clientKey: [UInt8]?
        public var userAgent: String = "cloudtrailbeat/0.1 (+libcurl)"
        /// Requests in flight at once (more wait their turn, in order).
        public var maxConcurrent: Int = 16
        /// Bytes a stream may buffer before its transfer pauses for the consumer.
        public var streamBuffer: Int = 2 << 20
        /// The largest buffered (non-streamed) body accepted.
        public var maxBufferedBody: Int = 64 << 20
        public init() {}
    }

    public let configuration: Configuration
    let driver: TransferDriver

    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_ALL)) }()

    public init(configuration: Configuration = Configuration()) {
        _ = HTTPClient.globalInit
        self.configuration = configuration
        self.driver = TransferDriver(limit: max(1, configuration.maxConcurrent))
    }

    deinit { shutdown() }

    /// Lets the driver thread leave once the transfers started or waiting have ended.
    public func shutdown() { driver.shutdown() }

    /// Sends a request and buffers the whole response body.
    public func send(_ request: HTTPRequest, timeout: Double? = nil) async throws -> HTTPResponse {
        let stream = try await self.stream(request, timeout: timeout ?? configuration.requestTimeout)
        var body: [UInt8] = []
        for try await chunk in stream.body {
            body += chunk
            if body.count > configuration.maxBufferedBody {
                stream.body.cancel()
                throw HTTPTransportError(code: Int32(CURLE_FILESIZE_EXCEEDED.rawValue), message: "response body larger than \(configuration.maxBufferedBody) bytes", url: HTTPClient.redact(request.url))
            }
        }
        return HTTPResponse(head: stream.head, body: body)
    }

    /// Sends a request; returns once the response head arrived, with the body to read as a stream.
    public func stream(_ request: HTTPRequest, timeout: Double = 0) async throws -> (head: HTTPHead, body: HTTPBody) {
        let transfer = Transfer(request: request, timeout: timeout, client: configuration)
        let driver = self.driver
        // The channel asks the driver to resume a paused transfer (or to end a cancelled one).
        transfer.channel.onRoom = { [weak transfer] in
            if let transfer { driver.wake(transfer) }
        }
        let head: HTTPHead = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<HTTPHead, any Error>) in
                transfer.setHeadContinuation(cont)
                driver.enqueue(transfer)
            }
        } onCancel: {
            transfer.channel.cancel()
        }
        return (head, HTTPBody(channel: transfer.channel))
    }

    /// The URL without its query (which may hold signatures) and with its userinfo's password masked
    /// (``redactingUserinfo(_:)``), for messages.
    public static func redact(_ url: String) -> String {
        redactingUserinfo(String(url.prefix { $0 != "?" }))
    }
}

/// A response body, chunk by chunk. Dropping it (or ``cancel()``) aborts the transfer.
public final class HTTPBody: AsyncSequence, @unchecked Sendable {
    public typealias Element = [UInt8]
    let channel: BodyChannel
    init(channel: BodyChannel) { self.channel = channel }
    deinit { channel.cancel() }

    public func cancel() { channel.cancel() }

    /// Holds the body itself, not only its channel: the body's deinit aborts the transfer, so a caller
    /// that keeps only the iterator (a `for try await` over `stream.body`) must keep the body alive.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let body: HTTPBody
        public mutating func next() async throws -> [UInt8]? { try await body.channel.next() }
    }
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(body: self) }
}

/// A bounded single-producer single-consumer channel between the driver thread (producing) and the
/// body's reader. It never blocks the producer: a full channel answers `.full`, the transfer pauses,
/// and the reader taking the buffer below the limit calls `onRoom` (once per pause) to resume it.
///
/// `@unchecked Sendable`: every field is read and written under `condition`'s lock, except `onRoom`,
/// set once before the transfer is enqueued.
final class BodyChannel: @unchecked Sendable {
    private let condition = NSCondition()
    private var chunks: [[UInt8]] = []
    private var buffered = 0
    private var end: Result<Void, any Error>?
    private var waiter: CheckedContinuation<[UInt8]?, any Error>?
    private var producerPaused = false
    private(set) var cancelled = false
    let limit: Int
    /// Called (outside the lock) when a paused producer may go on, or the body was cancelled.
    var onRoom: (@Sendable () -> Void)?

    init(limit: Int) { self.limit = limit }

    enum Offer { case taken, full, cancelled }

    /// Producer: takes a copy of `data`, or says the channel is full (the producer pauses and is called
    /// back through `onRoom`) or the reader went away (abort the transfer).
    func offer(_ data: UnsafeRawBufferPointer) -> Offer {
        condition.lock()
        if cancelled {
            condition.unlock()
            return .cancelled
        }
        if let w = waiter {
            waiter = nil
            condition.unlock()
            w.resume(returning: Array(data))
            return .taken
        }
        if buffered >= limit {
            producerPaused = true
            condition.unlock()
            return .full
        }
        chunks.append(Array(data))
        buffered += data.count
        condition.unlock()
        return .taken
    }

    /// The bytes waiting for the reader (for tests of the bound).
    var bufferedBytes: Int { condition.withLock { buffered } }

    func finish(_ result: Result<Void, any Error>) {
        condition.lock()
        end = result
        let w = waiter
        waiter = nil
        condition.unlock()
        if let w {
            switch result {
            case .success: w.resume(returning: nil)
            case .failure(let e): w.resume(throwing: e)
            }
        }
    }

    /// The next chunk; nil at the end of a complete body. After ``cancel()`` it throws
    /// `CancellationError`, even when the whole body had arrived: a cancelled body is never mistaken
    /// for a complete one (a cancellation racing the response's arrival once ended a 200's body early).
    func next() async throws -> [UInt8]? {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<[UInt8]?, any Error>) in
            condition.lock()
            if cancelled {
                condition.unlock()
                cont.resume(throwing: CancellationError())
            } else if !chunks.isEmpty {
                let c = chunks.removeFirst()
                buffered -= c.count
                let resume = producerPaused && buffered < limit
                if resume { producerPaused = false }
                condition.unlock()
                cont.resume(returning: c)
                if resume { onRoom?() }
            } else if let end {
                condition.unlock()
                switch end {
                case .success: cont.resume(returning: nil)
                case .failure(let e): cont.resume(throwing: e)
                }
            } else {
                waiter = cont
                condition.unlock()
            }
        }
    }

    /// Ends the body for its reader; the driver is woken to abort the transfer (paused or not).
    func cancel() {
        condition.lock()
        let first = !cancelled
        cancelled = true
        chunks.removeAll()
        buffered = 0
        producerPaused = false
        let w = waiter
        waiter = nil
        condition.unlock()
        w?.resume(throwing: CancellationError())
        if first { onRoom?() }
    }
}

/// One request's state while the driver performs it.
///
/// `@unchecked Sendable`: `headCont` is set before the transfer is enqueued (the driver's lock orders
/// it); every other mutable field (`status`, `headers`, `headSent`, `easy`, `headerList`, `bodyCopy`)
/// is read and written on the driver thread alone, which configures, runs and completes the transfer.
final class Transfer: @unchecked Sendable {
    let request: HTTPRequest
    let timeout: Double
    let config: HTTPClient.Configuration
    let channel: BodyChannel
    private var headCont: CheckedContinuation<HTTPHead, any Error>?
    private var status = 0
    private var headers: [(String, String)] = []
    private var headSent = false
    /// The easy handle running this transfer, while it is attached to the driver's multi handle.
    var easy: UnsafeMutableRawPointer?
    private var headerList: UnsafeMutablePointer<curl_slist>?
    /// The request body where libcurl reads it (CURLOPT_POSTFIELDS is not copied).
    private var bodyCopy: UnsafeMutableRawBufferPointer?

    init(request: HTTPRequest, timeout: Double, client: HTTPClient.Configuration) {
        self.request = request
        self.timeout = timeout
        self.config = client
        self.channel = BodyChannel(limit: client.streamBuffer)
    }

    deinit { release() }

    func setHeadContinuation(_ c: CheckedContinuation<HTTPHead, any Error>) { headCont = c }

    private func deliverHead() {
        guard !headSent else { return }
        headSent = true
        headCont?.resume(returning: HTTPHead(status: status, headers: headers))
        headCont = nil
    }

    /// One header line as libcurl hands it over (with its CRLF). Parsed over the bytes: Foundation's
    /// trimming cost more than the rest of a small object's request.
    fileprivate func onHeader(_ line: UnsafeRawBufferPointer) {
        func blank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0d || b == 0x0a }
        var start = 0, end = line.count
        while start < end && blank(line[start]) { start += 1 }
        while end > start && blank(line[end - 1]) { end -= 1 }
        let bytes = UnsafeRawBufferPointer(rebasing: line[start..<end])
        if bytes.starts(with: "HTTP/".utf8) {
            // A new response (after 100 Continue or a proxy's CONNECT answer): start over.
            let parts = bytes.split(separator: 0x20)
            status = parts.count > 1 ? Int(String(decoding: parts[1], as: UTF8.self)) ?? 0 : 0
            headers = []
        } else if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
            var value = colon + 1
            while value < bytes.count && blank(bytes[value]) { value += 1 }
            let name = String(decoding: bytes[..<colon].map { $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 }, as: UTF8.self)
            headers.append((name, String(decoding: bytes[value...], as: UTF8.self)))
        }
    }

    /// The write callback's answer: all taken, pause (libcurl offers the same bytes again once resumed),
    /// or 0 to abort a cancelled transfer.
    fileprivate func onData(_ data: UnsafeRawBufferPointer) -> Int {
        deliverHead()
        switch channel.offer(data) {
        case .taken: return data.count
        case .full: return Int(CURL_WRITEFUNC_PAUSE)
        case .cancelled: return 0
        }
    }

    /// Sets `easy` up for this request. False when the transfer already ended (cancelled before it
    /// started): it must not be attached.
    func configure(_ easy: UnsafeMutableRawPointer) -> Bool {
        if channel.cancelled {
            fail(HTTPTransportError(code: Int32(CURLE_ABORTED_BY_CALLBACK.rawValue), message: "cancelled", url: HTTPClient.redact(request.url)))
            return false
        }
        self.easy = easy
        for (name, value) in request.headers { headerList = curl_slist_append(headerList, "\(name): \(value)") }
        headerList = curl_slist_append(headerList, "Expect:")
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = cloudtrailbeat_easy_setopt_string(easy, CURLOPT_URL, request.url)
        _ = cloudtrailbeat_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList)
        _ = cloudtrailbeat_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = cloudtrailbeat_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        _ = cloudtrailbeat_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(config.connectTimeout * 1000))
        _ = cloudtrailbeat_easy_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, 1)
        _ = cloudtrailbeat_easy_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, config.idleTimeout)
        if timeout > 0 { _ = cloudtrailbeat_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, Int(timeout * 1000)) }
        // The settings that keep a request where it belongs are checked: a transfer with one of them
        // refused would go out with less verification (or without its client certificate) than
        // configured, to another path than the key's (`../` normalised away), or by another protocol.
        var tls = [
            // The path goes out as written: a key's `../` names a key, never another bucket or path.
            cloudtrailbeat_easy_setopt_long(easy, CURLOPT_PATH_AS_IS, 1),
            // HTTP and HTTPS only: no URL, whoever built it, makes libcurl read a file or speak another protocol.
            cloudtrailbeat_easy_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "http,https"),
            cloudtrailbeat_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, config.verifyTLS ? 1 : 0),
            cloudtrailbeat_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, config.verifyTLS ? 2 : 0),
        ]
        if let bundle = config.caBundle {
            // The bundle alone: without clearing them, the default CA file and directory count too.
            tls.append(cloudtrailbeat_easy_setopt_string(easy, CURLOPT_CAINFO, nil))
            tls.append(cloudtrailbeat_easy_setopt_string(easy, CURLOPT_CAPATH, nil))
            tls.append(bundle.withUnsafeBytes { cloudtrailbeat_easy_setopt_blob(easy, CURLOPT_CAINFO_BLOB, $0.baseAddress, $0.count) })
        } else if let ca = config.caFile {
            tls.append(cloudtrailbeat_easy_setopt_string(easy, CURLOPT_CAINFO, ca))
        }
        if let certificate = config.clientCertificate, let key = config.clientKey {
            tls.append(cloudtrailbeat_easy_setopt_string(easy, CURLOPT_SSLCERTTYPE, "PEM"))
            tls.append(certificate.withUnsafeBytes { cloudtrailbeat_easy_setopt_blob(easy, CURLOPT_SSLCERT_BLOB, $0.baseAddress, $0.count) })
            tls.append(cloudtrailbeat_easy_setopt_string(easy, CURLOPT_SSLKEYTYPE, "PEM"))
            tls.append(key.withUnsafeBytes { cloudtrailbeat_easy_setopt_blob(easy, CURLOPT_SSLKEY_BLOB, $0.baseAddress, $0.count) })
        }
        if let refused = tls.first(where: { $0 != CURLE_OK }) {
            let message = "libcurl refused a required setting (path as written, http/https only, TLS): " + String(cString: curl_easy_strerror(refused))
            release()
            fail(HTTPTransportError(code: Int32(refused.rawValue), message: message, url: HTTPClient.redact(request.url)))
            return false
        }
        _ = cloudtrailbeat_easy_setopt_string(easy, CURLOPT_USERAGENT, config.userAgent)
        switch request.method {
        case "GET": _ = cloudtrailbeat_easy_setopt_long(easy, CURLOPT_HTTPGET, 1)
        case "HEAD": _ = cloudtrailbeat_easy_setopt_long(easy, CURLOPT_NOBODY, 1)
        default: _ = cloudtrailbeat_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method)
        }
        if request.method != "GET" && request.method != "HEAD" {
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, request.body.count), alignment: 1)
            request.body.withUnsafeBytes { copy.copyMemory(from: $0) }
            bodyCopy = copy
            _ = cloudtrailbeat_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count))
            _ = cloudtrailbeat_easy_setopt_pointer(easy, CURLOPT_POSTFIELDS, copy.baseAddress!)
        }
        _ = cloudtrailbeat_easy_setopt_data_callback(easy, CURLOPT_HEADERFUNCTION) { ptr, size, n, ud in
            let t = Unmanaged<Transfer>.fromOpaque(ud!).takeUnretainedValue()
            t.onHeader(UnsafeRawBufferPointer(start: ptr, count: size * n))
            return size * n
        }
        _ = cloudtrailbeat_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, me)
        _ = cloudtrailbeat_easy_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION) { ptr, size, n, ud in
            Unmanaged<Transfer>.fromOpaque(ud!).takeUnretainedValue().onData(UnsafeRawBufferPointer(start: ptr, count: size * n))
        }
        _ = cloudtrailbeat_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, me)
        // Cancellation (a task cancelled, a body dropped) aborts even a transfer waiting for data: the
        // channel wakes the driver, which detaches it (TransferDriver.swift, invariant 3).
        return true
    }

    /// The transfer ended with `rc` (on the driver thread, once): the head and the body's end reported.
    func complete(_ rc: CURLcode) {
        release()
        if rc == CURLE_OK {
            deliverHead()
            channel.finish(.success(()))
        } else {
            let message = String(cString: curl_easy_strerror(rc))
            fail(HTTPTransportError(code: Int32(rc.rawValue), message: message, url: HTTPClient.redact(request.url)))
        }
    }

    private func release() {
        easy = nil
        if let list = headerList { curl_slist_free_all(list) }
        headerList = nil
        bodyCopy?.deallocate()
        bodyCopy = nil
    }

    private func fail(_ error: HTTPTransportError) {
        if !headSent {
            headSent = true
            headCont?.resume(throwing: error)
            headCont = nil
        }
        channel.finish(.failure(error))
    }
}
