import Failures

/// Why a CloudTrail log body could not be split into records.
public struct SplitError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// Not valid JSON at ``SplitError/offset``.
        public static let malformedJSON = Code("malformed-json")
        /// The body ended before the JSON did.
        public static let truncated = Code("truncated")
        /// One record, or a top-level key or value, is larger than the record limit.
        public static let recordTooLarge = Code("record-too-large")
        /// Valid JSON, but not `{"Records":[…]}` (a digest file, another document).
        public static let notCloudTrailLog = Code("not-a-cloudtrail-log")
        /// An element of `Records` is not a JSON object.
        public static let recordNotObject = Code("record-not-an-object")
        /// The body holds more uncompressed bytes than the per-object limit (``LogDecoder``'s
        /// `maxObjectSize`, `input.max_object_size`): a zip bomb, or no CloudTrail log.
        public static let objectTooLarge = Code("object-too-large")
        public var description: String { name }
    }

    public var code: Code
    /// Byte offset in the uncompressed body.
    public var offset: UInt64
    /// The record being read, when the error is inside `Records`.
    public var recordIndex: UInt64?
    public var message: String

    public var description: String {
        var s = "\(message) at byte \(offset)"
        if let recordIndex { s += " (record \(recordIndex))" }
        return s
    }
}

extension SplitError: ClassifiedError {
    /// A body that is not a valid CloudTrail log stays invalid however often it is read again.
    public var disposition: Disposition { .quarantine }
}

/// One record of a CloudTrail log: its exact bytes (valid only during the callback) and where its
/// top-level `eventTime` and `eventID` string contents are within them.
public struct RecordView {
    public let index: UInt64
    public let bytes: UnsafeRawBufferPointer
    public let eventTime: Range<Int>?
    public let eventID: Range<Int>?

    public init(index: UInt64, bytes: UnsafeRawBufferPointer, eventTime: Range<Int>?, eventID: Range<Int>?) {
        self.index = index
        self.bytes = bytes
        self.eventTime = eventTime
        self.eventID = eventID
    }
}

/// Splits `{"Records":[ … ]}` into records as bytes arrive, validating the JSON strictly.
///
/// Memory is bounded by `maxRecordSize` (plus one input chunk), whatever the input: bytes of finished
/// records are dropped as soon as they are delivered, whitespace between tokens is skipped as it
/// arrives, and every token that must be buffered whole — a record, a top-level key, a top-level value
/// outside `Records` — is refused (`recordTooLarge`) once it holds more than `maxRecordSize` bytes.
/// Other top-level keys are validated and skipped. An empty body yields zero records.
public struct RecordSplitter {
    /// Records — and any other token buffered whole: a top-level key or value — larger than this are
    /// an error (`recordTooLarge`). Default 16 MiB.
    public let maxRecordSize: Int

    private enum State {
        case start, keyOrEnd, key, colon, value, recordsOpen, recordOrEnd, record, afterRecord, afterMember, end
    }

    private var state = State.start
    private var buffer: [UInt8] = []
    private var head = 0  // first unconsumed byte in buffer
    private var base: UInt64 = 0  // absolute offset of buffer[0]
    // Don't rescan a pending token until head + waitFor bytes are buffered: twice what it held at the
    // last scan (rescans stay O(n)), but never more than one byte past the limit, so a token that
    // outgrows it is refused as soon as it does.
    private var waitFor = 0
    private var currentKeyIsRecords = false
    private var sawRecords = false
    private var scanner = JSONScanner()
    private var sawAnything = false
    public private(set) var recordCount: UInt64 = 0

    public init(maxRecordSize: Int = 16 << 20, maxDepth: Int = 512) {
        self.maxRecordSize = maxRecordSize
        scanner = JSONScanner(maxDepth: maxDepth)
        buffer.reserveCapacity(256 << 10)
    }

    /// Absolute offset of the next unconsumed byte.
    public var offset: UInt64 { base + UInt64(head) }

    /// What the buffer holds allocated, in bytes (tests check it stays within the bound).
    var bufferCapacity: Int { buffer.capacity }

    /// Feeds bytes; calls `onRecord` for every record completed by them, in order.
    public mutating func push(_ bytes: UnsafeRawBufferPointer, _ onRecord: (RecordView) throws -> Void) throws {
        guard !bytes.isEmpty else { return }
        if head > 0 && (head >= buffer.count / 2 || buffer.count + bytes.count > buffer.capacity) {
            buffer.removeSubrange(0..<head)
            base += UInt64(head)
            head = 0
        }
        buffer.append(contentsOf: bytes)
        if buffer.count - head < waitFor { return }
        try process(final: false, onRecord)
    }

    /// Declares the end of the body; throws when it ended inside the JSON. Returns the record count.
    @discardableResult
    public mutating func finish(_ onRecord: (RecordView) throws -> Void = { _ in }) throws -> UInt64 {
        try process(final: true, onRecord)
        if !sawAnything { return 0 }  // an empty object: zero records
        guard state == .end else {
            throw SplitError(
                code: .truncated, offset: base + UInt64(buffer.count),
                recordIndex: state == .record || state == .afterRecord ? recordCount : nil,
                message: "the log ends before its JSON does")
        }
        return recordCount
    }

    private func error(_ code: SplitError.Code, _ at: Int, _ message: String, record: Bool = false) -> SplitError {
        SplitError(code: code, offset: base + UInt64(at), recordIndex: record ? recordCount : nil, message: message)
    }

    private mutating func process(final: Bool, _ onRecord: (RecordView) throws -> Void) throws {
        let n = buffer.count
        try buffer.withUnsafeBufferPointer { whole in
            let p = whole.baseAddress!
            var i = head
            defer { head = i }
            while true {
                i = JSONScanner.skipSpace(p, n, i)
                if i < n { sawAnything = true }
                switch state {
                case .start:
                    guard i < n else { return }
                    if p[i] == 0xef {  // a UTF-8 byte order mark
                        guard i + 3 <= n else { return }
                        if p[i + 1] == 0xbb && p[i + 2] == 0xbf {
                            i += 3
                            continue
                        }
                    }
                    guard p[i] == UInt8(ascii: "{") else {
                        throw error(.notCloudTrailLog, i, "expected a JSON object with a Records array, found \(JSONScanner.describe(p[i]))")
                    }
                    i += 1
                    state = .keyOrEnd
                case .keyOrEnd, .key:
                    guard i < n else { return }
                    if state == .keyOrEnd && p[i] == UInt8(ascii: "}") {
                        i += 1
                        state = .end
                        if !sawRecords { throw error(.notCloudTrailLog, i - 1, "the JSON object has no Records key") }
                        continue
                    }
                    guard p[i] == UInt8(ascii: "\"") else {
                        throw error(.malformedJSON, i, "expected a string key, found \(JSONScanner.describe(p[i]))")
                    }
                    switch JSONScanner.scanString(p, n, i + 1) {
                    case .complete(let e):
                        currentKeyIsRecords = e - i - 2 == 7 && JSONScanner.equals(p + i + 1, "Records")
                        i = e
                        waitFor = 0
                        state = .colon
                    case .needMore:
                        // A key is a token like any other: it may not outgrow the record limit.
                        if n - i > maxRecordSize {
                            throw error(.recordTooLarge, i, "a top-level key is larger than the \(maxRecordSize)-byte limit")
                        }
                        waitFor = min((n - i) * 2, maxRecordSize + 1)
                        return
                    case .invalid(let at, let why): throw error(.malformedJSON, at, why)
                    }
                case .colon:
                    guard i < n else { return }
                    guard p[i] == UInt8(ascii: ":") else { throw error(.malformedJSON, i, "expected ':' after a key") }
                    i += 1
                    state = currentKeyIsRecords ? .recordsOpen : .value
                case .value:
                    guard i < n else { return }
                    switch scanner.scanValue(p, n, i, fields: nil) {
                    case .complete(let e):
                        i = e
                        waitFor = 0
                        state = .afterMember
                    case .needMore:
                        if n - i > maxRecordSize {
                            throw error(.recordTooLarge, i, "a top-level value is larger than the \(maxRecordSize)-byte limit")
                        }
                        waitFor = min((n - i) * 2, maxRecordSize + 1)
                        return
                    case .invalid(let at, let why): throw error(.malformedJSON, at, why)
                    }
                case .recordsOpen:
                    guard i < n else { return }
                    guard p[i] == UInt8(ascii: "[") else {
                        throw error(.notCloudTrailLog, i, "Records is not an array (found \(JSONScanner.describe(p[i])))")
                    }
                    sawRecords = true
                    i += 1
                    state = .recordOrEnd
                case .recordOrEnd, .record:
                    guard i < n else { return }
                    if state == .recordOrEnd && p[i] == UInt8(ascii: "]") {
                        i += 1
                        state = .afterMember
                        continue
                    }
                    guard p[i] == UInt8(ascii: "{") else {
                        if p[i] == UInt8(ascii: "]") { throw error(.malformedJSON, i, "a trailing comma before ']'", record: true) }
                        throw error(.recordNotObject, i, "a record is not a JSON object (found \(JSONScanner.describe(p[i])))", record: true)
                    }
                    var fields = JSONScanner.Fields()
                    switch scanner.scanValue(p, n, i, fields: &fields) {
                    case .complete(let e):
                        if e - i > maxRecordSize {
                            throw error(.recordTooLarge, i, "the record is larger than the \(maxRecordSize)-byte limit", record: true)
                        }
                        try onRecord(
                            RecordView(
                                index: recordCount, bytes: UnsafeRawBufferPointer(start: p + i, count: e - i),
                                eventTime: fields.eventTime.map { ($0.lowerBound - i)..<($0.upperBound - i) },
                                eventID: fields.eventID.map { ($0.lowerBound - i)..<($0.upperBound - i) }))
                        recordCount += 1
                        i = e
                        waitFor = 0
                        state = .afterRecord
                    case .needMore:
                        if n - i > maxRecordSize {
                            throw error(.recordTooLarge, i, "the record is larger than the \(maxRecordSize)-byte limit", record: true)
                        }
                        waitFor = min((n - i) * 2, maxRecordSize + 1)
                        return
                    case .invalid(let at, let why): throw error(.malformedJSON, at, why, record: true)
                    }
                case .afterRecord:
                    guard i < n else { return }
                    if p[i] == UInt8(ascii: ",") {
                        i += 1
                        state = .record
                    } else if p[i] == UInt8(ascii: "]") {
                        i += 1
                        state = .afterMember
                    } else {
                        throw error(
                            .malformedJSON, i,
                            "expected ',' or ']' after a record, found \(JSONScanner.describe(p[i]))", record: true)
                    }
                case .afterMember:
                    guard i < n else { return }
                    if p[i] == UInt8(ascii: ",") {
                        i += 1
                        state = .key
                    } else if p[i] == UInt8(ascii: "}") {
                        i += 1
                        state = .end
                        if !sawRecords { throw error(.notCloudTrailLog, i - 1, "the JSON object has no Records key") }
                    } else {
                        throw error(.malformedJSON, i, "expected ',' or '}' after a member, found \(JSONScanner.describe(p[i]))")
                    }
                case .end:
                    guard i < n else { return }
                    throw error(.malformedJSON, i, "unexpected \(JSONScanner.describe(p[i])) after the end of the JSON")
                }
                _ = final
            }
        }
    }
}
