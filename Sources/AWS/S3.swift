import Foundation
import HTTP

#if canImport(Glibc)
import Glibc
#endif

/// What S3 says of an object.
public struct S3ObjectInfo: Sendable, Equatable {
    public var etag: String?
    public var size: UInt64?
    public var contentEncoding: String?
    public var versionID: String?
    public var lastModified: String?
    /// User metadata (`x-amz-meta-*`), by name without the prefix (lower case).
    public var metadata: [String: String] = [:]
}

/// One page of a listing.
public struct S3ListPage: Sendable {
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var size: UInt64
        public var etag: String
        /// When the object was last written, by the source's clock (nil when it did not say).
        public var lastModified: Date?
        public init(key: String, size: UInt64, etag: String, lastModified: Date?) {
            self.key = key
            self.size = size
            self.etag = etag
            self.lastModified = lastModified
        }
    }
    public var objects: [Entry]
    public var commonPrefixes: [String]
    public var isTruncated: Bool
    public var nextContinuationToken: String?
    /// S3's clock when it answered (the HTTP `Date` header), the one `LastModified` is in.
    public var serverTime: Date?
    public init(objects: [Entry], commonPrefixes: [String], isTruncated: Bool, nextContinuationToken: String?, serverTime: Date? = nil) {
        self.objects = objects
        self.commonPrefixes = commonPrefixes
        self.isTruncated = isTruncated
        self.nextContinuationToken = nextContinuationToken
        self.serverTime = serverTime
    }

    /// A page from ListObjectsV2's XML answer; nil when the bytes are not XML.
    public init?(xml body: [UInt8], serverTime: Date?) {
        guard let tree = XMLTree.parse(body) else { return nil }
        self.init(
            objects: tree.all("Contents").map {
                .init(
                    key: $0.child("Key") ?? "", size: UInt64($0.child("Size") ?? "0") ?? 0,
                    etag: ($0.child("ETag") ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "\"")),
                    lastModified: $0.child("LastModified").flatMap(S3ListPage.isoDate))
            },
            commonPrefixes: tree.all("CommonPrefixes").compactMap { $0.child("Prefix") },
            isTruncated: tree.child("IsTruncated") == "true",
            nextContinuationToken: tree.child("NextContinuationToken"),
            serverTime: serverTime)
    }

    /// ListObjectsV2's `LastModified` (`2026-12-02T12:21:56.000Z`, or without the fraction).
    static func isoDate(_ text: String) -> Date? {
        (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))) ?? (try? Date(text, strategy: .iso8601))
    }

    /// An HTTP date (RFC 9110's IMF-fixdate, `Wed, 02 Dec 2026 12:45:00 GMT`).
    /// Parsed by hand (every GetObject answer has one; a DateFormatter each cost more than the request).
    static func httpDate(_ text: String?) -> Date? {
        guard let text else { return nil }
        let f = text.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard f.count == 6, f[5] == "GMT", let day = Int32(f[1]), let month = months.firstIndex(of: String(f[2])), let year = Int32(f[3]) else { return nil }
        let clock = f[4].split(separator: ":")
        guard clock.count == 3, let h = Int32(clock[0]), let m = Int32(clock[1]), let sec = Int32(clock[2]),
            (1...31).contains(day), (0...23).contains(h), (0...59).contains(m), (0...60).contains(sec) else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = Int32(month)
        parts.tm_mday = day
        parts.tm_hour = h
        parts.tm_min = m
        parts.tm_sec = sec
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }
}

/// S3 over REST-XML, path-style for non-AWS endpoints.
public struct S3Client: Sendable {
    public let service: AWSService
    /// Path-style addressing (`/bucket/key`), required by local stand-ins; virtual-host otherwise.
    public let pathStyle: Bool
    /// How often a broken download is resumed with `Range` before giving up.
    public var maxResumes = 5

    public init(service: AWSService, pathStyle: Bool) {
        self.service = service
        self.pathStyle = pathStyle
    }

    /// The service to use for a bucket (virtual-host style prefixes the host). A bucket that is not one
    /// DNS label (dots, upper case, anything else) is addressed path style, as the AWS SDKs do: only a
    /// label can become part of a host name, so no name changes which host a request goes to.
    func target(_ bucket: String) -> (AWSService, prefix: String) {
        if pathStyle || !S3Client.isHostLabel(bucket) { return (service, "/\(bucket)") }
        let s = AWSService(
            http: service.http, service: "s3", region: service.region,
            endpoint: "\(service.scheme)://\(bucket).\(service.hostHeader)\(service.basePath)", credentials: service.credentials, retry: service.retry)
        return (s, "")
    }

    /// 3–63 of `a-z 0-9 -`, starting and ending with a letter or digit.
    static func isHostLabel(_ bucket: String) -> Bool {
        let b = Array(bucket.utf8)
        func alnum(_ c: UInt8) -> Bool { (97...122).contains(c) || (48...57).contains(c) }
        return (3...63).contains(b.count) && alnum(b.first!) && alnum(b.last!) && b.allSatisfy { alnum($0) || $0 == 45 }
    }

    static func info(_ head: HTTPHead) -> S3ObjectInfo {
        S3ObjectInfo(
            etag: head.header("etag")?.trimmingCharacters(in: CharacterSet(charactersIn: "\"")),
            size: head.header("content-length").flatMap(UInt64.init), contentEncoding: head.header("content-encoding"),
            versionID: head.header("x-amz-version-id"), lastModified: head.header("last-modified"),
            metadata: Dictionary(
                head.headers.filter { $0.0.hasPrefix("x-amz-meta-") }.map { (String($0.0.dropFirst("x-amz-meta-".count)), $0.1) },
                uniquingKeysWith: { _, last in last }))
    }

    /// Whether an object exists: its metadata, or nil when S3 answers 404.
    public func headIfExists(bucket: String, key: String) async throws -> S3ObjectInfo? {
        do {
            return try await head(bucket: bucket, key: key)
        } catch let e as AWSError where e.status == 404 {
            return nil
        }
    }

    public func head(bucket: String, key: String) async throws -> S3ObjectInfo {
        let (svc, prefix) = target(bucket)
        var call = AWSService.Call(operation: "HeadObject", method: "HEAD", path: prefix + "/" + key)
        call.unsignedPayload = true
        call.timeout = 30
        return S3Client.info(try await svc.send(call).head)
    }

    /// Streams an object to `consume`, chunk by chunk. A transfer broken mid-body resumes with
    /// `Range: bytes=<received>-` (and `If-Match` on the first answer's ETag, so a replaced object is
    /// never stitched together); the consumer sees every byte exactly once, in order.
    @discardableResult
    public func get(bucket: String, key: String, version: String? = nil, from offset: UInt64 = 0, consume: ([UInt8]) async throws -> Void) async throws -> S3ObjectInfo {
        let (svc, prefix) = target(bucket)
        var received: UInt64 = offset
        var info: S3ObjectInfo?
        var resumes = 0
        while true {
            var call = AWSService.Call(operation: "GetObject", method: "GET", path: prefix + "/" + key)
            if let version { call.query = [("versionId", version)] }
            call.unsignedPayload = true
            if received > 0 {
                call.headers.append(("Range", "bytes=\(received)-"))
                if let etag = info?.etag { call.headers.append(("If-Match", "\"\(etag)\"")) }
            }
            let (head, body) = try await svc.stream(call)
            if info == nil {
                info = S3Client.info(head)
                if offset > 0, let size = info?.size { info?.size = size + offset }  // a ranged answer's length is the rest
            }
            if received > 0 && head.status != 206 {
                throw AWSError(kind: .server, code: "RangeNotHonoured", message: "resuming at byte \(received) answered HTTP \(head.status)", requestID: head.header("x-amz-request-id"), status: head.status, service: "s3", operation: "GetObject")
            }
            do {
                for try await chunk in body {
                    received += UInt64(chunk.count)
                    try await consume(chunk)
                }
                if let size = info?.size, received < size {
                    throw HTTPTransportError(code: 18, message: "transfer closed with \(size - received) bytes remaining", url: key)
                }
                return info!
            } catch let e as HTTPTransportError {
                resumes += 1
                guard resumes <= maxResumes else {
                    throw AWSError(kind: .network, code: "NetworkError", message: "\(e.description); gave up after \(maxResumes) resumes", requestID: nil, status: nil, service: "s3", operation: "GetObject")
                }
                try await Task.sleep(nanoseconds: UInt64(service.retry.delay(attempt: resumes) * 1e9))
            }
        }
    }

    public func put(bucket: String, key: String, body: [UInt8], contentType: String = "application/octet-stream", contentEncoding: String? = nil, metadata: [String: String] = [:]) async throws {
        let (svc, prefix) = target(bucket)
        var call = AWSService.Call(operation: "PutObject", method: "PUT", path: prefix + "/" + key, headers: [("Content-Type", contentType)], body: body)
        if let contentEncoding { call.headers.append(("Content-Encoding", contentEncoding)) }
        for (name, value) in metadata.sorted(by: { $0.key < $1.key }) { call.headers.append(("x-amz-meta-\(name)", value)) }
        _ = try await svc.send(call)
    }

    public func createBucket(_ bucket: String) async throws {
        let (svc, prefix) = target(bucket)
        var body: [UInt8] = []
        if service.region != "us-east-1" {
            body = Array("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>\(service.region)</LocationConstraint></CreateBucketConfiguration>".utf8)
        }
        _ = try await svc.send(AWSService.Call(operation: "CreateBucket", method: "PUT", path: prefix.isEmpty ? "/" : prefix, body: body))
    }

    /// One ListObjectsV2 page.
    public func list(bucket: String, prefix: String? = nil, delimiter: String? = nil, startAfter: String? = nil, continuationToken: String? = nil, maxKeys: Int = 1000) async throws -> S3ListPage {
        let (svc, path) = target(bucket)
        var query = [("list-type", "2"), ("max-keys", String(maxKeys))]
        if let prefix { query.append(("prefix", prefix)) }
        if let delimiter { query.append(("delimiter", delimiter)) }
        if let startAfter { query.append(("start-after", startAfter)) }
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        var call = AWSService.Call(operation: "ListObjectsV2", method: "GET", path: path.isEmpty ? "/" : path, query: query)
        call.timeout = 60
        let r = try await svc.send(call)
        guard let page = S3ListPage(xml: r.body, serverTime: S3ListPage.httpDate(r.header("Date"))) else {
            throw AWSError(kind: .server, code: "MalformedResponse", message: "the ListObjectsV2 answer is not XML", requestID: r.header("x-amz-request-id"), status: r.status, service: "s3", operation: "ListObjectsV2")
        }
        return page
    }
}
