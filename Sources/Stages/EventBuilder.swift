import Crypto

/// What the builder learnt of one event.
public struct EventInfo: Sendable, Equatable {
    /// The event's id: the record's `eventID`, or (when absent) a stable hash of bucket, key and
    /// record index, so replays are idempotent either way.
    public var id: String
    /// Whether `@timestamp` came from the fallback rule (the event then carries the fallback tag).
    public var timestampFallback: Bool
    /// The event's time (RFC 3339, UTC, milliseconds) when the event does not begin with `@timestamp`
    /// (OCSF): outputs that name indices by date read it here.
    public var timestamp: [UInt8]?

    public init(id: String, timestampFallback: Bool, timestamp: [UInt8]? = nil) {
        self.id = id
        self.timestampFallback = timestampFallback
        self.timestamp = timestamp
    }
}

/// Builds the event every output receives, by splicing bytes (the record is never decoded):
///
///     {"@timestamp":"<eventTime as RFC 3339 UTC with milliseconds>","type":"CloudTrail",
///      "cloudtrail":<the record, byte for byte>,"s3":{"bucket":"…","key":"…"}}
///
/// (A record that spans lines, from a pretty-printed file, is compacted: whitespace between its
/// tokens is dropped, so that every event is one line of NDJSON and of an Elasticsearch bulk body.)
///
/// **Timestamp fallback rule.** When `eventTime` is missing or not an RFC 3339 time, `@timestamp` is
/// the minute in the object key's CloudTrail file name (`…_YYYYMMDDTHHmmZ_…`), or else the time the
/// object was received; the event then also carries `"tags":["cloudtrailbeat_eventtime_fallback"]`.
/// It never yields year 1.
public struct EventBuilder: Sendable {
    public static let fallbackTag = "cloudtrailbeat_eventtime_fallback"

    public let bucket: String
    public let key: String
    private let suffix: [UInt8]  // ,"s3":{…}}
    private let fallbackSuffix: [UInt8]  // ,"s3":{…},"tags":[…]}
    private let fallbackTimestamp: [UInt8]  // 24 bytes
    /// When the object was received, as a 24-byte RFC 3339 time (ECS `event.created`).
    public let receivedTimestamp: [UInt8]

    /// - Parameter receivedAt: when the object was received, in milliseconds since the epoch (the
    ///   last resort of the timestamp fallback rule).
    public init(bucket: String, key: String, receivedAt: Int64) {
        self.bucket = bucket
        self.key = key
        var s3 = Array(",\"s3\":{\"bucket\":\"".utf8)
        JSONText.appendEscaped(bucket, to: &s3)
        s3 += Array("\",\"key\":\"".utf8)
        JSONText.appendEscaped(key, to: &s3)
        s3 += Array("\"}".utf8)
        suffix = s3 + Array("}".utf8)
        fallbackSuffix = s3 + Array(",\"tags\":[\"".utf8) + Array(EventBuilder.fallbackTag.utf8) + Array("\"]}".utf8)
        receivedTimestamp = RFC3339.format(millis: receivedAt)
        fallbackTimestamp = EventBuilder.keyTimestamp(key) ?? receivedTimestamp
    }

    private static let head = Array("{\"@timestamp\":\"".utf8)
    private static let middle = Array("\",\"type\":\"CloudTrail\",\"cloudtrail\":".utf8)

    /// Appends the event for `record` to `out`.
    public func append(_ record: RecordView, to out: inout [UInt8]) -> EventInfo {
        let bytes = record.bytes
        out.append(contentsOf: EventBuilder.head)
        let fallback = appendTimestamp(record, to: &out)
        out.append(contentsOf: EventBuilder.middle)
        // Byte for byte, unless the record spans lines (a pretty-printed file): one event is one line.
        JSONText.appendOneLine(bytes, to: &out)
        out.append(contentsOf: fallback ? fallbackSuffix : suffix)
        return EventInfo(id: id(record), timestampFallback: fallback)
    }

    /// Appends the record's `@timestamp` (24 bytes: `eventTime` in UTC, or the fallback rule's time);
    /// returns whether the fallback rule gave it.
    @inline(__always)
    public func appendTimestamp(_ record: RecordView, to out: inout [UInt8]) -> Bool {
        if let span = record.eventTime, RFC3339.appendUTC(UnsafeRawBufferPointer(rebasing: record.bytes[span]), to: &out) {
            return false
        }
        out.append(contentsOf: fallbackTimestamp)
        return true
    }

    /// The event id of a record (see ``EventInfo/id``).
    public func id(_ record: RecordView) -> String {
        if let span = record.eventID, !span.isEmpty, span.count <= 128,
            !record.bytes[span].contains(UInt8(ascii: "\\"))
        {
            return String(decoding: UnsafeRawBufferPointer(rebasing: record.bytes[span]), as: UTF8.self)
        }
        return EventBuilder.syntheticID(bucket: bucket, key: key, index: record.index)
    }

    /// A stable id for a record without `eventID`: the first 128 bits of SHA-256(bucket, key, index), hex.
    public static func syntheticID(bucket: String, key: String, index: UInt64) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(bucket.utf8) + [0] + Array(key.utf8) + [0] + Array(String(index).utf8))
        let digest = hasher.finalize()
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in digest.prefix(16) {
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The minute of a CloudTrail file name (`…_20261128T2205Z_…`), as a 24-byte timestamp.
    static func keyTimestamp(_ key: String) -> [UInt8]? {
        let bytes = Array(key.utf8)
        let name = Array(bytes[(bytes.lastIndex(of: UInt8(ascii: "/")).map { $0 + 1 } ?? 0)...])
        guard name.count >= 15 else { return nil }
        var i = 0
        while i + 15 <= name.count {
            let w = name[i..<i + 15]
            let digits = { (r: Range<Int>) in r.allSatisfy { w[w.startIndex + $0] >= 0x30 && w[w.startIndex + $0] <= 0x39 } }
            if w[w.startIndex + 8] == UInt8(ascii: "T"), w[w.startIndex + 13] == UInt8(ascii: "Z"), digits(0..<8), digits(9..<13),
                i == 0 || name[i - 1] == UInt8(ascii: "_")
            {
                let d = Array(w)
                let text = "\(String(decoding: d[0..<4], as: UTF8.self))-\(String(decoding: d[4..<6], as: UTF8.self))-"
                    + "\(String(decoding: d[6..<8], as: UTF8.self))T\(String(decoding: d[9..<11], as: UTF8.self)):"
                    + "\(String(decoding: d[11..<13], as: UTF8.self)):00.000Z"
                var out: [UInt8] = []
                if Array(text.utf8).withUnsafeBytes({ RFC3339.appendUTC($0, to: &out) }) { return out }
                return nil
            }
            i += 1
        }
        return nil
    }
}

/// RFC 3339 times to `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds), without Foundation.
public enum RFC3339 {
    /// Parses `text` and appends its UTC form (24 bytes); returns false (appending nothing) when it is
    /// not an RFC 3339 date-time. A missing zone is read as UTC.
    public static func appendUTC(_ text: UnsafeRawBufferPointer, to out: inout [UInt8]) -> Bool {
        let n = text.count
        guard n >= 19 else { return false }
        func num(_ at: Int, _ len: Int) -> Int? {
            var v = 0
            for k in at..<at + len {
                let c = text[k]
                guard c >= 0x30 && c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            return v
        }
        guard let year = num(0, 4), text[4] == UInt8(ascii: "-"), let month = num(5, 2), text[7] == UInt8(ascii: "-"),
            let day = num(8, 2), text[10] | 0x20 == UInt8(ascii: "t") || text[10] == 0x20, let hour = num(11, 2),
            text[13] == UInt8(ascii: ":"), let minute = num(14, 2), text[16] == UInt8(ascii: ":"), let second = num(17, 2),
            year >= 1, (1...12).contains(month), day >= 1, day <= daysIn(month, year), hour <= 23, minute <= 59,
            second <= 60
        else { return false }
        var i = 19
        var millis = 0
        if i < n && text[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < n, text[i] >= 0x30, text[i] <= 0x39 {
                if digits < 3 { millis = millis * 10 + Int(text[i] - 0x30) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return false }
            if digits < 3 { for _ in digits..<3 { millis *= 10 } }
        }
        var offsetMinutes = 0
        if i < n {
            if text[i] | 0x20 == UInt8(ascii: "z") {
                i += 1
            } else if text[i] == UInt8(ascii: "+") || text[i] == UInt8(ascii: "-") {
                guard i + 6 <= n, let oh = num(i + 1, 2), text[i + 3] == UInt8(ascii: ":"), let om = num(i + 4, 2),
                    oh <= 23, om <= 59
                else { return false }
                offsetMinutes = (oh * 60 + om) * (text[i] == UInt8(ascii: "-") ? -1 : 1)
                i += 6
            } else {
                return false
            }
        }
        guard i == n else { return false }
        if offsetMinutes == 0 && second < 60 {
            appendFields(year, month, day, hour, minute, second, millis, to: &out)
            return true
        }
        let days = daysFromCivil(year, month, day)
        let total = (days * 86400 + hour * 3600 + minute * 60 + min(second, 59) - offsetMinutes * 60) * 1000 + millis
        out += format(millis: Int64(total))
        return true
    }

    /// Milliseconds since the epoch of an RFC 3339 date-time (nil when `text` is not one).
    public static func millis(_ text: UnsafeRawBufferPointer) -> Int64? {
        var utc: [UInt8] = []
        guard appendUTC(text, to: &utc), utc.count == 24 else { return nil }
        func num(_ at: Int, _ len: Int) -> Int { utc[at..<at + len].reduce(0) { $0 * 10 + Int($1 - 0x30) } }
        let days = daysFromCivil(num(0, 4), num(5, 2), num(8, 2))
        let seconds = days * 86400 + num(11, 2) * 3600 + num(14, 2) * 60 + num(17, 2)
        return Int64(seconds) * 1000 + Int64(num(20, 3))
    }

    /// Formats milliseconds since the epoch.
    public static func format(millis: Int64) -> [UInt8] {
        let ms = Int(millis)
        let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let frac = ms - seconds * 1000
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let rem = seconds - days * 86400
        let (y, m, d) = civilFromDays(days)
        var out: [UInt8] = []
        out.reserveCapacity(24)
        appendFields(y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, frac, to: &out)
        return out
    }

    static func appendFields(_ y: Int, _ mo: Int, _ d: Int, _ h: Int, _ mi: Int, _ s: Int, _ ms: Int, to out: inout [UInt8]) {
        @inline(__always) func two(_ v: Int) { out.append(UInt8(0x30 + v / 10)); out.append(UInt8(0x30 + v % 10)) }
        let yy = max(0, min(9999, y))
        out.append(UInt8(0x30 + yy / 1000)); out.append(UInt8(0x30 + yy / 100 % 10)); two(yy % 100)
        out.append(UInt8(ascii: "-")); two(mo); out.append(UInt8(ascii: "-")); two(d)
        out.append(UInt8(ascii: "T")); two(h); out.append(UInt8(ascii: ":")); two(mi); out.append(UInt8(ascii: ":")); two(s)
        out.append(UInt8(ascii: ".")); out.append(UInt8(0x30 + ms / 100)); two(ms % 100); out.append(UInt8(ascii: "Z"))
    }

    static func daysIn(_ month: Int, _ year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
